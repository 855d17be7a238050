//! [`DsnAction`]: what happened to a recipient, as the RFC 3464 §2.3.3
//! `Action` field says it, with what each action means for the status
//! class, the Subject and the human-readable text.

use std::fmt;

use crate::smtp::status::Class;

/// What happened to a recipient: the RFC 3464 §2.3.3 `Action` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    /// Permanent failure; no further attempts.
    Failed,
    /// Not delivered yet; still trying.
    Delayed,
    /// Delivered to the final destination (Maildir, program).
    Delivered,
    /// Handed to a next hop that does not take DSN parameters
    /// (RFC 3461 §5.2.2).
    Relayed,
}

impl DsnAction {
    /// The RFC 3464 §2.3.3 keyword, e.g. `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
        }
    }

    /// RFC 3464 §2.3.4: the status class must agree with the action.
    pub(super) fn status_class(self) -> Class {
        match self {
            DsnAction::Failed => Class::Permanent,
            DsnAction::Delayed => Class::Transient,
            DsnAction::Delivered | DsnAction::Relayed => Class::Success,
        }
    }

    /// The Subject suffix, in report priority order (see [`report_kind`](super::report_kind)).
    pub(super) fn subject(self) -> &'static str {
        match self {
            DsnAction::Failed => "Failure",
            DsnAction::Delayed => "Delay",
            DsnAction::Delivered => "Success",
            DsnAction::Relayed => "Relayed",
        }
    }

    /// The paragraph that introduces this action's recipients in the text.
    pub(super) fn explanation(self) -> &'static str {
        match self {
            DsnAction::Failed => {
                "Your message could not be delivered to the following recipients. \
                 This is a permanent error; the mail system will not try again:"
            }
            DsnAction::Delayed => {
                "Your message has not been delivered yet to the following \
                 recipients. The mail system will keep trying; you do not need \
                 to send it again:"
            }
            DsnAction::Delivered => "Your message was delivered to the following recipients:",
            DsnAction::Relayed => {
                "Your message was passed on to the following recipients, but the \
                 next mail system does not send delivery notifications, so this \
                 may be the last notice you get about them:"
            }
        }
    }
}

impl fmt::Display for DsnAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
