//! [`Action`]: what happened to a recipient, as the RFC 3464 §2.3.3
//! `Action` field says it, with what each action means for the status
//! class, the Subject and the human-readable text.

use std::fmt;

use crate::envelope::RcptState;

/// What happened to a recipient: the RFC 3464 §2.3.3 `Action` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
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

impl Action {
    /// The action a recipient state calls for, if any: `None` for a
    /// pending recipient. Whether a DSN is wanted at all (NOTIFY, a next hop
    /// that passes DSN on) is for the caller to decide.
    pub fn from_state(state: &RcptState) -> Option<Action> {
        match state {
            RcptState::Pending => None,
            RcptState::Delivered { relayed: false } => Some(Action::Delivered),
            RcptState::Delivered { relayed: true } => Some(Action::Relayed),
            RcptState::Deferred => Some(Action::Delayed),
            RcptState::Failed => Some(Action::Failed),
        }
    }

    /// The RFC 3464 §2.3.3 keyword, e.g. `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// RFC 3464 §2.3.4: the status class must agree with the action.
    pub(super) fn status_class(self) -> char {
        match self {
            Action::Failed => '5',
            Action::Delayed => '4',
            Action::Delivered | Action::Relayed => '2',
        }
    }

    /// The Subject suffix, in report priority order (see [`report_kind`](super::report_kind)).
    pub(super) fn subject(self) -> &'static str {
        match self {
            Action::Failed => "Failure",
            Action::Delayed => "Delay",
            Action::Delivered => "Success",
            Action::Relayed => "Relayed",
        }
    }

    /// The paragraph that introduces this action's recipients in the text.
    pub(super) fn explanation(self) -> &'static str {
        match self {
            Action::Failed => {
                "Your message could not be delivered to the following recipients. \
                 This is a permanent error; the mail system will not try again:"
            }
            Action::Delayed => {
                "Your message has not been delivered yet to the following \
                 recipients. The mail system will keep trying; you do not need \
                 to send it again:"
            }
            Action::Delivered => "Your message was delivered to the following recipients:",
            Action::Relayed => {
                "Your message was passed on to the following recipients, but the \
                 next mail system does not send delivery notifications, so this \
                 may be the last notice you get about them:"
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_follows_recipient_state() {
        let cases = [
            (RcptState::Pending, None),
            (RcptState::Deferred, Some(Action::Delayed)),
            (RcptState::Failed, Some(Action::Failed)),
            (
                RcptState::Delivered { relayed: false },
                Some(Action::Delivered),
            ),
            (
                RcptState::Delivered { relayed: true },
                Some(Action::Relayed),
            ),
        ];
        for (state, expected) in cases {
            assert_eq!(Action::from_state(&state), expected, "{state:?}");
        }
    }
}
