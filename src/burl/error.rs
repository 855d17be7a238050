//! Why a BURL fetch failed, and the SMTP reply for each reason (RFC 4468
//! §6, with RFC 3463 enhanced status codes).
//!
//! [`Failure`] is what the sans-IO conversation can decide from the
//! server's responses alone; [`FetchError`] adds what only the driver sees
//! (the connection, the clock, the sink). Every variant maps to one reply,
//! temporary (4xx) when a later retry may work, permanent (5xx) only when
//! the URL itself is at fault or the content is too big.

use std::fmt;
use std::io;

use crate::smtp::reply::Reply;

/// The longest piece of server text kept in a [`Failure`], for logs.
const MAX_SERVER_TEXT: usize = 200;

/// A failure decided by the conversation with the IMAP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server greeted with `BYE`, or sent `BYE` before the fetch was
    /// done.
    Unavailable {
        /// The server's text.
        text: String,
    },
    /// The server broke the protocol: a malformed response, an unknown
    /// tag, no URLFETCH response before the tagged OK, data left over
    /// after the STARTTLS reply.
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// STARTTLS was required but not offered or refused, or a PREAUTH
    /// greeting made it impossible (RFC 3501 §6.2.1).
    TlsUnavailable {
        /// What happened.
        detail: &'static str,
    },
    /// The server refused the submit credentials (tagged NO or BAD to
    /// AUTHENTICATE or LOGIN), or no login method can carry them.
    LoginRefused {
        /// The server's text, or why no login was attempted.
        text: String,
    },
    /// URLFETCH gave `NIL` (RFC 4467 §8: the URL is invalid for any
    /// reason), empty data, or a tagged BAD.
    UrlNotResolved {
        /// What the server said.
        detail: String,
    },
    /// A tagged NO to URLFETCH: "a server internal failure that may be
    /// resolved on later retry" (RFC 4467 §7).
    ServerTrouble {
        /// The server's text.
        text: String,
    },
    /// The content announced is larger than the message may still grow.
    TooLarge {
        /// The octets announced.
        size: u64,
        /// The octets allowed.
        limit: u64,
    },
}

impl Failure {
    /// The SMTP reply for this failure.
    pub fn reply(&self) -> Reply {
        match self {
            // RFC 4468 §6 shows "451 4.4.1 IMAP server unavailable" and
            // lets clients tolerate any code; detad answers 454, the code
            // of its other temporary failures of a server the submission
            // depends on (RFC 4954 §6 uses 454 for a temporary failure of
            // the authentication back end).
            Failure::Unavailable { .. } => Reply::new(454, "4.4.1", "IMAP server unavailable"),
            // RFC 3463 X.5.0: other or undefined protocol status.
            Failure::Protocol { .. } => Reply::new(451, "4.5.0", "IMAP server protocol error"),
            // RFC 3207 §4 and RFC 4954 §6 use 454 for these temporary
            // security failures; RFC 3463 X.7.0: other security status.
            Failure::TlsUnavailable { .. } => {
                Reply::new(454, "4.7.0", "TLS not available with the IMAP server")
            }
            Failure::LoginRefused { .. } => {
                Reply::new(454, "4.7.0", "IMAP server refused the submit login")
            }
            // RFC 4468 §6: "554 5.6.6 IMAP URL resolution failed".
            Failure::UrlNotResolved { .. } => {
                Reply::new(554, "5.6.6", "IMAP URL resolution failed")
            }
            // X.6.6 "may be useful as a permanent or persistent temporary
            // notification" (RFC 4468 §5).
            Failure::ServerTrouble { .. } => Reply::new(
                451,
                "4.6.6",
                "IMAP URL resolution failed temporarily, try again later",
            ),
            // The same reply as for DATA (RFC 1870 §6.2), so a client that
            // mixes BDAT and BURL sees one code for one condition; RFC 4468
            // §6 shows 554 with the same X.3.4.
            Failure::TooLarge { .. } => Reply::new(
                552,
                "5.3.4",
                "message size exceeds fixed maximum message size",
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unavailable { text } => write!(f, "IMAP server said BYE: {text}"),
            Failure::Protocol { detail } => write!(f, "IMAP protocol error: {detail}"),
            Failure::TlsUnavailable { detail } => {
                write!(f, "no TLS with the IMAP server: {detail}")
            }
            Failure::LoginRefused { text } => write!(f, "IMAP login refused: {text}"),
            Failure::UrlNotResolved { detail } => write!(f, "URLFETCH failed: {detail}"),
            Failure::ServerTrouble { text } => write!(f, "URLFETCH failed temporarily: {text}"),
            Failure::TooLarge { size, limit } => {
                write!(
                    f,
                    "URL content of {size} octets exceeds the {limit} allowed"
                )
            }
        }
    }
}

impl std::error::Error for Failure {}

/// Server text for a [`Failure`]: printable ASCII (anything else becomes
/// `?`), at most [`MAX_SERVER_TEXT`] characters, safe in logs.
pub(super) fn server_text(text: &[u8]) -> String {
    let printable = |&b: &u8| {
        if (0x20..0x7f).contains(&b) {
            char::from(b)
        } else {
            '?'
        }
    };
    text.iter().take(MAX_SERVER_TEXT).map(printable).collect()
}

/// Why [`fetch`](super::client::fetch) or
/// [`fetch_with_starttls`](super::client::fetch_with_starttls) failed. On
/// every error the sink may hold part of the content: discard it.
#[derive(Debug)]
pub enum FetchError {
    /// No TCP connection to the configured server
    /// ([`connect`](super::client::connect)).
    Unreachable(io::Error),
    /// The deadline passed.
    TimedOut,
    /// The server closed the connection, or reading or writing it failed.
    ConnectionLost(io::Error),
    /// The caller's STARTTLS upgrade (the TLS handshake) failed.
    Tls(io::Error),
    /// Writing the content to the sink (our spool) failed.
    Sink(io::Error),
    /// The conversation failed; see [`Failure`].
    Imap(Failure),
}

impl FetchError {
    /// The SMTP reply the session should send for this error.
    pub fn reply(&self) -> Reply {
        match self {
            // RFC 4468 §6: "The connection to the IMAP server to resolve
            // the URL failed."
            FetchError::Unreachable(_) => Reply::new(454, "4.4.1", "IMAP server unavailable"),
            // RFC 3463 X.4.2 bad connection: established, then time-out or
            // inadequate connection quality.
            FetchError::TimedOut => Reply::new(451, "4.4.2", "IMAP server timed out"),
            FetchError::ConnectionLost(_) => {
                Reply::new(451, "4.4.2", "connection to the IMAP server lost")
            }
            FetchError::Tls(_) => Reply::new(454, "4.7.0", "TLS with the IMAP server failed"),
            FetchError::Sink(e) if is_storage_full(e) => {
                Reply::new(452, "4.3.1", "insufficient system storage")
            }
            FetchError::Sink(_) => Reply::new(
                451,
                "4.3.0",
                "local error writing the spool, try again later",
            ),
            FetchError::Imap(failure) => failure.reply(),
        }
    }

    /// Whether the reply is temporary (4xx): the client may try again.
    pub fn is_temporary(&self) -> bool {
        self.reply().code / 100 == 4
    }
}

fn is_storage_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl From<Failure> for FetchError {
    fn from(failure: Failure) -> FetchError {
        FetchError::Imap(failure)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unreachable(e) => write!(f, "cannot connect to the IMAP server: {e}"),
            FetchError::TimedOut => f.write_str("IMAP fetch timed out"),
            FetchError::ConnectionLost(e) => write!(f, "IMAP connection lost: {e}"),
            FetchError::Tls(e) => write!(f, "TLS handshake with the IMAP server failed: {e}"),
            FetchError::Sink(e) => write!(f, "cannot write the fetched content: {e}"),
            FetchError::Imap(failure) => failure.fmt(f),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Unreachable(e)
            | FetchError::ConnectionLost(e)
            | FetchError::Tls(e)
            | FetchError::Sink(e) => Some(e),
            FetchError::Imap(failure) => Some(failure),
            FetchError::TimedOut => None,
        }
    }
}
