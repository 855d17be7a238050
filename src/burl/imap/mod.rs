//! Just enough of the IMAP4rev1 client side (RFC 3501) to fetch one URL
//! with URLFETCH (RFC 4467), sans-IO:
//! - `command`: the commands detad sends, the capabilities it acts on, and
//!   the SASL PLAIN response;
//! - `response`: the incremental parser for the server's responses, which
//!   streams URLFETCH data without buffering it;
//! - `syntax`: the grammar of one complete response.

mod command;
mod response;
mod syntax;

pub use self::command::{Capabilities, Command, plain_response};
pub use self::response::{Event, MAX_RESPONSE_LINE, ParseError, ResponseParser, Status, UrlData};
