//! The IMAP side of BURL (RFC 4468): checking a client's URLAUTH URL and
//! fetching it from the one configured IMAP server with URLFETCH
//! (RFC 4467), streaming the content into a sink (the spool).
//!
//! ```text
//!  BURL imap://...;urlauth=submit+USER:internal:HEX [LAST]
//!    url::check(url, burl_imap host, port, AUTH identity) ──▶ UrlRefusal::reply()
//!    client::connect(host, port, deadline)        (the configured server only)
//!    client::fetch_with_starttls(stream, upgrade, credentials, url, sink, limits)
//!      └─ fetch::Conversation (sans-IO): greeting, CAPABILITY, STARTTLS,
//!         AUTHENTICATE PLAIN / LOGIN, URLFETCH, LOGOUT
//!           └─ imap::ResponseParser (sans-IO): bytes in, events out
//!    Ok(octets) or FetchError::reply()
//! ```
//!
//! The module is laid out by job:
//! - `url`: parse and check the URL; pure;
//! - `imap`: the IMAP commands and response parser; sans-IO;
//! - `fetch`: the conversation with the IMAP server; sans-IO;
//! - `client`: the blocking driver over any stream, with a deadline;
//! - `error`: [`FetchError`] and the SMTP reply for each failure.
//!
//! What the caller still owns: the fetched octets are the raw content; line
//! endings must be checked exactly as for DATA before the message is
//! committed, and on any error the sink's partial content must be
//! discarded.

pub mod client;
pub mod error;
pub mod fetch;
pub mod imap;
pub mod resolve;
pub mod url;

pub use self::client::{FETCH_TIMEOUT, Limits, TimedStream, connect, fetch, fetch_with_starttls};
pub use self::error::{Failure, FetchError};
pub use self::fetch::{Credentials, DEFAULT_SUBMIT_USER};
pub use self::resolve::{Cancellable, resolve};
pub use self::url::{AuthorizedUrl, ImapUrl, UrlRefusal, check};
