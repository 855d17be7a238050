//! Blocking SMTP client for the `smtp:HOST:PORT` and `smtps:HOST:PORT`
//! transports: hands spooled messages to the next hop (RFC 5321 §3.3),
//! several per connection, encrypted and authenticated as [`Security`]
//! says.
//!
//! Guarantees:
//! - every recipient passed to [`Connection::send`] gets exactly one
//!   [`Delivery`](crate::queue::delivery::Delivery), in the order given;
//! - resolver and connect failures, timeouts, a lost connection, a malformed
//!   reply and `421` only ever give temporary results, never permanent ones;
//! - the content is dot-stuffed on the way out (RFC 5321 §4.5.2) and never
//!   carries a bare CR or LF: a message with one fails with `554 5.6.0`, the
//!   offending octet is not sent, and neither is the final dot;
//! - a transfer that is cancelled or fails while sending the content ends by
//!   closing the connection without the final dot, so the hop must not
//!   deliver it (RFC 5321 §4.1.1.10);
//! - message content is never logged; command and reply lines are, at
//!   `trace` level, except AUTH lines (`AUTH PLAIN <hidden>`);
//! - credentials are only ever sent over TLS; with `relay_tls = require`
//!   nothing of a message is sent unless TLS is up with a verified
//!   certificate; a failed TLS handshake or AUTH never falls back to
//!   plaintext or to sending without AUTH on that connection.
//!
//! Replies are parsed by the sans-IO [`crate::smtp::reply_parser`].
//!
//! The module is laid out by job:
//! - `connection`: the [`Connection`] itself: connecting, the greeting,
//!   EHLO/HELO, QUIT, and writing commands and reading replies within their
//!   timeouts;
//! - `link`: the one stream under it, plaintext or TLS;
//! - `secure`: implicit TLS and STARTTLS as `relay_tls` says;
//! - `auth`: AUTH PLAIN or LOGIN with the `relay_auth` credentials;
//! - `security`: [`Security`], those settings, built once per
//!   configuration ([`LiveSecurity`]);
//! - `transaction`: [`Connection::send`], one mail transaction (MAIL, RCPT,
//!   DATA, the content, the final dot) and its results;
//! - `wire`: pure helpers for what goes on the wire: the MAIL and RCPT
//!   command lines with their parameters, and the dot-stuffing of the
//!   content;
//! - `outcome`: what a transfer reports ([`TransferOutcome`],
//!   [`TransferError`]);
//! - `error`: [`OpenError`] and the wording and status codes of
//!   connection-level failures.

use std::time::Duration;

mod auth;
mod connection;
mod error;
mod link;
mod outcome;
mod secure;
mod security;
mod transaction;
mod wire;

pub use self::connection::Connection;
pub use self::error::{Insecurity, OpenError};
pub use self::outcome::{TransferError, TransferOutcome};
pub use self::security::{LiveSecurity, Security, SecurityError};

/// How long to wait for a TCP connection. RFC 5321 §4.5.3.2 sets none;
/// common MTAs use 30 seconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// RFC 5321 §4.5.3.2.1–.4: 5 minutes for the greeting and for the replies
/// to MAIL and RCPT (2 for DATA; we use one value for all commands).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// RFC 5321 §4.5.3.2.5: 3 minutes for each block of content to be sent.
pub const DATA_BLOCK_TIMEOUT: Duration = Duration::from_secs(3 * 60);

/// RFC 5321 §4.5.3.2.6: 10 minutes for the reply to the final dot ("a
/// spurious timeout at this point would be very wasteful").
pub const DATA_END_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The timeouts of one session (RFC 5321 §4.5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For each TCP connection attempt.
    pub connect: Duration,
    /// For the greeting and the reply to each command, and for writing a
    /// group of commands.
    pub command: Duration,
    /// For each write of message content.
    pub data_block: Duration,
    /// For the reply to the final dot.
    pub data_end: Duration,
}

impl Default for Timeouts {
    /// The RFC 5321 §4.5.3.2 values.
    fn default() -> Timeouts {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            command: COMMAND_TIMEOUT,
            data_block: DATA_BLOCK_TIMEOUT,
            data_end: DATA_END_TIMEOUT,
        }
    }
}

/// The next hop: the `HOST:PORT` of an `smtp:` or `smtps:` transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// A host name, an IPv4 address, or an IPv6 address with or without
    /// brackets. Also the name the server's certificate must carry.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// `smtps:`: TLS from the first byte (RFC 8314 §3.3).
    pub implicit_tls: bool,
}
