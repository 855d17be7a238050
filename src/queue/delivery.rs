//! What one delivery attempt of one recipient came to, as a value decided
//! where it happened (the relay client, the Maildir writer, the pipe
//! runner) and carried unchanged into the spool and the DSN (RFC 3464
//! §2.3: Action, Status, Remote-MTA, Diagnostic-Code). Nothing downstream
//! parses text to recover it.

use core::net::IpAddr;
use std::fmt;

use crate::smtp::reply::Reply;
use crate::smtp::status::{Class, EnhancedStatus};

/// The kind of result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// Delivered to its final destination (Maildir, program), or accepted
    /// by a next hop that takes the DSN parameters (RFC 3461 §5.2.2: that
    /// hop reports success itself).
    Delivered,
    /// Accepted by a next hop that does not take DSN parameters: the DSN
    /// action is `relayed` (RFC 3461 §5.2.2).
    Relayed,
    /// A temporary failure: retried later.
    Deferred,
    /// A permanent failure.
    Failed,
}

/// Who produced a diagnostic, and so its RFC 3464 §2.3.6 type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnostic {
    /// A reply from a remote SMTP server: type `smtp`, the reply as sent.
    Smtp(Reply),
    /// Our own explanation or what a local program said: type `x-unix`
    /// (the extension type sendmail and Postfix use for local events).
    Local(String),
}

impl Diagnostic {
    /// The RFC 3464 `diagnostic-type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Diagnostic::Smtp(_) => "smtp",
            Diagnostic::Local(_) => "x-unix",
        }
    }
}

impl fmt::Display for Diagnostic {
    /// The diagnostic text: a remote reply on one line (`550 5.1.1 ...`),
    /// or the local text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnostic::Smtp(reply) => write!(f, "{reply}"),
            Diagnostic::Local(text) => f.write_str(text),
        }
    }
}

/// The remote MTA that answered (RFC 3464 §2.3.5), by name or, when it has
/// none, by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteMta {
    /// A host name, as configured in the route.
    Name(String),
    /// An address: written as an address literal (`dns; [192.0.2.1]`).
    Address(IpAddr),
}

impl RemoteMta {
    /// The hop as configured: an IP address becomes [`RemoteMta::Address`].
    pub fn from_host(host: &str) -> RemoteMta {
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => RemoteMta::Address(ip),
            Err(_) => RemoteMta::Name(host.to_string()),
        }
    }
}

impl fmt::Display for RemoteMta {
    /// The `mta-name` of an RFC 3464 `dns` field: a name, or an RFC 5321
    /// §4.1.3 address literal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteMta::Name(name) => f.write_str(name),
            RemoteMta::Address(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            RemoteMta::Address(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

/// The typed result of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// What happened.
    pub kind: DeliveryKind,
    /// The RFC 3463 status; its class agrees with `kind`.
    pub status: EnhancedStatus,
    /// What was said, if anything.
    pub diagnostic: Option<Diagnostic>,
    /// The remote MTA, when one answered.
    pub remote_mta: Option<RemoteMta>,
}

impl Delivery {
    /// Delivered locally (Maildir, program): `2.0.0`.
    pub fn delivered() -> Delivery {
        Delivery {
            kind: DeliveryKind::Delivered,
            status: EnhancedStatus::of(2, 0, 0),
            diagnostic: None,
            remote_mta: None,
        }
    }

    /// A local temporary failure with our explanation.
    pub fn deferred(status: EnhancedStatus, text: impl Into<String>) -> Delivery {
        Delivery::local(DeliveryKind::Deferred, status, text)
    }

    /// A local permanent failure with our explanation.
    pub fn failed(status: EnhancedStatus, text: impl Into<String>) -> Delivery {
        Delivery::local(DeliveryKind::Failed, status, text)
    }

    fn local(kind: DeliveryKind, status: EnhancedStatus, text: impl Into<String>) -> Delivery {
        let class = match kind {
            DeliveryKind::Deferred => Class::Transient,
            DeliveryKind::Failed => Class::Permanent,
            _ => Class::Success,
        };
        Delivery {
            kind,
            status: status.with_class(class),
            diagnostic: Some(Diagnostic::Local(text.into())),
            remote_mta: None,
        }
    }

    /// A remote reply decides: its class (2, 4, 5) gives the kind, its
    /// enhanced status (or the one its code implies) the status. `relayed`
    /// says whether a success is a `relayed` one.
    pub fn from_reply(reply: Reply, remote: RemoteMta, relayed: bool) -> Delivery {
        let kind = match reply.code / 100 {
            2 if relayed => DeliveryKind::Relayed,
            2 => DeliveryKind::Delivered,
            5 => DeliveryKind::Failed,
            _ => DeliveryKind::Deferred,
        };
        let status = reply.effective_status();
        Delivery {
            kind,
            status,
            diagnostic: Some(Diagnostic::Smtp(reply)),
            remote_mta: Some(remote),
        }
    }

    /// The final reply an RDLV client hears for this failure: the remote
    /// code and status with the remote text, or ours with the code the
    /// status implies ([`local_code`]).
    pub fn failure_reply(&self, address: &str) -> Reply {
        let (code, text) = match &self.diagnostic {
            Some(Diagnostic::Smtp(reply)) => (reply.code, format!("<{address}>: {reply}")),
            Some(Diagnostic::Local(text)) => {
                (local_code(self.status), format!("<{address}>: {text}"))
            }
            None => (
                local_code(self.status),
                format!("<{address}>: delivery failed"),
            ),
        };
        Reply::with_status(code, self.status, text)
    }
}

/// The reply code of a failure of ours, from its RFC 3463 status: `552`
/// for a full mailbox or a message too big (X.2.2, X.3.4), `554`
/// "transaction failed" for content and security failures (X.6, X.7: e.g.
/// RFC 4468 §6's `554 5.6.6` for a BURL URL that cannot be resolved and
/// `554 5.7.0` for one not bound to the user), `550` for the rest.
pub fn local_code(status: EnhancedStatus) -> u16 {
    match (status.subject(), status.detail()) {
        (2, 2) | (3, 4) => 552,
        (6 | 7, _) => 554,
        _ => 550,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_failures_get_the_code_their_status_implies() {
        for (status, code) in [
            ((5, 1, 1), 550),
            ((5, 2, 2), 552),
            ((5, 3, 4), 552),
            ((5, 6, 6), 554),
            ((5, 7, 0), 554),
            ((5, 3, 0), 550),
            ((5, 4, 4), 550),
        ] {
            let s = EnhancedStatus::of(status.0, status.1, status.2);
            let d = Delivery::failed(s, "x");
            assert_eq!(d.failure_reply("a@b").code, code, "{s}");
        }
    }

    #[test]
    fn remote_mta_without_a_name_is_an_address_literal() {
        assert_eq!(RemoteMta::from_host("192.0.2.1").to_string(), "[192.0.2.1]");
        assert_eq!(RemoteMta::from_host("[::1]").to_string(), "[IPv6:::1]");
        assert_eq!(RemoteMta::from_host("mx.example").to_string(), "mx.example");
    }

    #[test]
    fn a_remote_reply_decides_kind_and_status() {
        let r = Reply::new(550, "5.1.1", "no such user");
        let d = Delivery::from_reply(r, RemoteMta::from_host("mx"), false);
        assert_eq!(d.kind, DeliveryKind::Failed);
        assert_eq!(d.status.to_string(), "5.1.1");
        assert_eq!(d.diagnostic.as_ref().unwrap().type_name(), "smtp");
        let d = Delivery::from_reply(
            Reply::plain(451, "later"),
            RemoteMta::from_host("mx"),
            false,
        );
        assert_eq!(
            (d.kind, d.status.to_string().as_str()),
            (DeliveryKind::Deferred, "4.0.0")
        );
    }

    #[test]
    fn local_results_get_the_class_of_their_kind() {
        let d = Delivery::failed(EnhancedStatus::of(4, 2, 2), "full");
        assert_eq!(d.status.to_string(), "5.2.2");
        assert_eq!(d.diagnostic.unwrap().type_name(), "x-unix");
    }
}
