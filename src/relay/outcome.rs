//! What a transfer reports: one [`RcptResult`] per recipient, gathered in
//! a [`TransferOutcome`], or a [`TransferError`] when there is no outcome;
//! and [`enhanced_status`], the RFC 3463 status code of a reply or
//! diagnostic.

use std::fmt;

use crate::smtp::client_reply;

/// The outcome for one recipient.
///
/// `reply` is always in the form of an SMTP reply (`550 5.1.1 ...`), so
/// [`enhanced_status`] works on it. When `remote` is true it is the hop's
/// reply as sent (multi-line replies joined with a space); otherwise it is
/// our own diagnostic, e.g. for a lost connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// The hop took responsibility for the message: its RCPT and the final
    /// dot were accepted. `reply` is the reply to the final dot.
    Accepted {
        /// The hop does not offer DSN, so RFC 3461 §5.2.2 makes this a
        /// `relayed` action (a DSN is due for `NOTIFY=SUCCESS`).
        relayed: bool,
        /// The hop's reply to the final dot.
        reply: String,
    },
    /// Not delivered this time; try again later.
    Temporary {
        /// The reply or diagnostic.
        reply: String,
        /// Whether `reply` is what the hop said.
        remote: bool,
    },
    /// Not deliverable through this hop.
    Permanent {
        /// The reply or diagnostic.
        reply: String,
        /// Whether `reply` is what the hop said.
        remote: bool,
    },
}

impl RcptResult {
    /// The reply or diagnostic.
    pub fn reply(&self) -> &str {
        match self {
            RcptResult::Accepted { reply, .. }
            | RcptResult::Temporary { reply, .. }
            | RcptResult::Permanent { reply, .. } => reply,
        }
    }

    /// The RFC 3463 status code of the reply (see [`enhanced_status`]).
    pub fn status(&self) -> String {
        enhanced_status(self.reply())
    }
}

/// The outcome of one [`Connection::send`](super::Connection::send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// One result per recipient passed in, in the same order.
    pub results: Vec<RcptResult>,
    /// The hop's host name, for the DSN `Remote-MTA` field.
    pub remote_mta: String,
}

/// Why [`Connection::send`](super::Connection::send) produced no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// The cancel check said stop. Nothing was delivered: either no MAIL
    /// was sent, or the connection was closed without the final dot and is
    /// no longer usable.
    Cancelled,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Cancelled => f.write_str("transfer cancelled"),
        }
    }
}

impl std::error::Error for TransferError {}

/// The RFC 3463 status code of a reply: its enhanced status code when it has
/// one of the right class (`550 5.1.1 ...` gives `5.1.1`), otherwise
/// derived from the basic code (`2.0.0`, `4.0.0` or `5.0.0`). Anything not
/// starting with 2 or 5 counts as temporary.
pub fn enhanced_status(reply: &str) -> String {
    if let Some(status) = client_reply::enhanced_status_of(reply) {
        return status.to_string();
    }
    match reply.as_bytes().first() {
        Some(b'2') => "2.0.0",
        Some(b'5') => "5.0.0",
        _ => "4.0.0",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_falls_back_to_the_basic_code() {
        assert_eq!(enhanced_status("550 5.1.1 <x@y>: user unknown"), "5.1.1");
        assert_eq!(enhanced_status("550-5.7.1 a 550 5.7.1 b"), "5.7.1");
        assert_eq!(enhanced_status("550 user unknown"), "5.0.0");
        assert_eq!(enhanced_status("451 4.7.1 greylisted"), "4.7.1");
        assert_eq!(enhanced_status("452 too many"), "4.0.0");
        assert_eq!(enhanced_status("250 ok"), "2.0.0");
        assert_eq!(enhanced_status("550 4.1.1 mismatched class"), "5.0.0");
        assert_eq!(enhanced_status(""), "4.0.0");
    }
}
