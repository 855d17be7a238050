//! Why a session could not be opened ([`OpenError`], [`Insecurity`]), and how
//! connection-level failures (timeouts, a lost connection, a malformed
//! reply) are worded and given RFC 3463 status codes, for [`OpenError`] and
//! for the recipients of a transfer alike.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::queue::delivery::{Delivery, RemoteMta};
use crate::smtp::reply::Reply;
use crate::smtp::status::{Class, EnhancedStatus};
#[cfg(feature = "tls")]
use crate::tls::TlsError;

/// Why [`Connection::open`](super::Connection::open) failed. Temporary,
/// so the message stays queued and is retried (RFC 5321 §4.5.4.1), except
/// a permanent refusal of our credentials ([`OpenError::AuthRefused`]).
#[derive(Debug)]
pub enum OpenError {
    /// The host name did not resolve, or resolved to no address.
    Resolve {
        /// The hop's host.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address took a TCP connection; the error of the last one tried.
    Connect {
        /// The hop's host.
        host: String,
        /// The last address tried.
        addr: SocketAddr,
        /// The connect error.
        source: io::Error,
    },
    /// The hop answered the greeting, or EHLO and then HELO, with something
    /// other than success.
    Refused {
        /// The hop's host.
        host: String,
        /// The address that answered.
        addr: SocketAddr,
        /// The hop's reply.
        reply: Reply,
    },
    /// The connection failed, timed out or carried a malformed reply during
    /// the greeting or EHLO/HELO.
    Lost {
        /// The hop's host.
        host: String,
        /// The address connected to.
        addr: SocketAddr,
        /// What we were doing, e.g. `waiting for the greeting`.
        during: &'static str,
        /// The error; `TimedOut`, `UnexpectedEof` (closed by the hop) and
        /// `InvalidData` (malformed reply) are the common kinds.
        source: io::Error,
    },
    /// The session could not be secured as `relay_tls` and `relay_auth`
    /// want; nothing of the message (and no credential) was sent.
    Insecure {
        /// The hop's host.
        host: String,
        /// The address connected to.
        addr: SocketAddr,
        /// What was missing.
        problem: Insecurity,
    },
    /// The TLS handshake failed (STARTTLS or `smtps:`), or the certificate
    /// did not verify with `relay_tls = require`; the connection is closed
    /// (RFC 3207 §4.1: no way back to plaintext on it).
    #[cfg(feature = "tls")]
    Handshake {
        /// The hop's host.
        host: String,
        /// The address connected to.
        addr: SocketAddr,
        /// What failed, with the verification error if that was it.
        source: Box<TlsError>,
    },
    /// The hop answered AUTH with a failure (RFC 4954 §6): `535 5.7.8` and
    /// other 5yz replies are permanent, 4yz ones temporary.
    AuthRefused {
        /// The hop's host.
        host: String,
        /// The address connected to.
        addr: SocketAddr,
        /// The hop's reply.
        reply: Reply,
    },
}

/// What kept a session from being as secure as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insecurity {
    /// `relay_tls = require`, and the EHLO reply has no STARTTLS.
    NotOffered,
    /// `relay_tls = require`, and the hop refused STARTTLS (or said 421).
    StartTlsRefused(Reply),
    /// `relay_tls = require`, and this build or configuration cannot do
    /// TLS (why).
    Unavailable(&'static str),
    /// `relay_auth` is set and the hop offers AUTH, but the session is not
    /// encrypted: the credentials are not sent.
    CredentialsInClear,
}

impl OpenError {
    /// The failure as a temporary result for the recipients, e.g. `4.4.1
    /// connect to mx.example[192.0.2.1]:25 failed: Connection refused`.
    pub fn delivery(&self) -> Delivery {
        let status = match self {
            OpenError::Resolve { .. } => EnhancedStatus::of(4, 4, 3),
            OpenError::Connect { .. } => EnhancedStatus::of(4, 4, 1),
            // The hop's own status, made temporary: a refusal to talk is
            // retried like any other failure to open.
            OpenError::Refused { reply, .. } => reply
                .status
                .map(|s| s.with_class(Class::Transient))
                .unwrap_or(EnhancedStatus::of(4, 4, 2)),
            OpenError::Lost { source, .. } => io_status(source),
            // RFC 3463 §3.8 X.7.4: security features not supported.
            OpenError::Insecure {
                problem: Insecurity::CredentialsInClear,
                ..
            } => EnhancedStatus::of(4, 7, 10),
            OpenError::Insecure { .. } => EnhancedStatus::of(4, 7, 4),
            // X.7.5: cryptographic failure.
            #[cfg(feature = "tls")]
            OpenError::Handshake { .. } => EnhancedStatus::of(4, 7, 5),
            OpenError::AuthRefused { host, reply, .. } => {
                return Delivery::from_reply(reply.clone(), RemoteMta::from_host(host), false);
            }
        };
        Delivery::deferred(status, self.to_string())
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            OpenError::Connect { host, addr, source } => {
                write!(
                    f,
                    "connect to {host}[{}]:{} failed: {source}",
                    addr.ip(),
                    addr.port()
                )
            }
            OpenError::Refused { host, addr, reply } => {
                write!(f, "{host}[{}] refused to talk to me: {reply}", addr.ip())
            }
            OpenError::Lost {
                host,
                addr,
                during,
                source,
            } => f.write_str(&describe_io(source, &peer_name(host, addr), during)),
            OpenError::Insecure {
                host,
                addr,
                problem,
            } => describe_insecurity(f, &peer_name(host, addr), problem),
            #[cfg(feature = "tls")]
            OpenError::Handshake { host, source, .. } => write!(f, "{host}: {source}"),
            OpenError::AuthRefused { host, addr, reply } => write!(
                f,
                "{} refused authentication: {reply}",
                peer_name(host, addr)
            ),
        }
    }
}

fn describe_insecurity(
    f: &mut fmt::Formatter<'_>,
    peer: &str,
    problem: &Insecurity,
) -> fmt::Result {
    match problem {
        Insecurity::NotOffered => write!(
            f,
            "TLS is required (relay_tls = require), but was not offered by {peer}"
        ),
        Insecurity::StartTlsRefused(reply) => write!(
            f,
            "TLS is required (relay_tls = require), but {peer} refused STARTTLS: {reply}"
        ),
        Insecurity::Unavailable(why) => {
            write!(f, "TLS is required for {peer}, but cannot be had: {why}")
        }
        Insecurity::CredentialsInClear => write!(
            f,
            "{peer} offers AUTH, but the session is not encrypted; \
             relay_auth credentials are only ever sent over TLS"
        ),
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Resolve { source, .. }
            | OpenError::Connect { source, .. }
            | OpenError::Lost { source, .. } => Some(source),
            #[cfg(feature = "tls")]
            OpenError::Handshake { source, .. } => Some(source.as_ref()),
            OpenError::Refused { .. }
            | OpenError::Insecure { .. }
            | OpenError::AuthRefused { .. } => None,
        }
    }
}

/// `host[ip]`, as in Postfix diagnostics.
pub(super) fn peer_name(host: &str, addr: &SocketAddr) -> String {
    format!("{host}[{}]", addr.ip())
}

/// std: an expired socket timeout is `WouldBlock` on Unix, `TimedOut`
/// elsewhere.
pub(super) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The RFC 3463 status for a connection-level error.
pub(super) fn io_status(error: &io::Error) -> EnhancedStatus {
    match error.kind() {
        // X.5.0: other or undefined protocol status.
        io::ErrorKind::InvalidData => EnhancedStatus::of(4, 5, 0),
        // X.4.2: bad connection.
        _ => EnhancedStatus::of(4, 4, 2),
    }
}

/// A connection-level error in words.
pub(super) fn describe_io(error: &io::Error, peer: &str, during: &str) -> String {
    match error.kind() {
        _ if is_timeout(error) => format!("conversation with {peer} timed out while {during}"),
        io::ErrorKind::UnexpectedEof => format!("lost connection with {peer} while {during}"),
        io::ErrorKind::InvalidData => {
            format!("malformed reply from {peer} while {during}: {error}")
        }
        _ => format!("connection with {peer} failed while {during}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_open_error_is_made_temporary() {
        let addr: SocketAddr = "192.0.2.1:25".parse().unwrap();
        let reply = Reply::new(554, "5.7.1", "go away");
        let e = OpenError::Refused {
            host: "mx.example".to_string(),
            addr,
            reply,
        };
        let d = e.delivery();
        assert_eq!(d.status.to_string(), "4.7.1");
        assert_eq!(
            d.diagnostic.unwrap().to_string(),
            "mx.example[192.0.2.1] refused to talk to me: 554 5.7.1 go away"
        );
        let e = OpenError::Lost {
            host: "mx".to_string(),
            addr,
            during: "waiting for the greeting",
            source: io::ErrorKind::TimedOut.into(),
        };
        let d = e.delivery();
        assert_eq!(d.status.to_string(), "4.4.2");
        assert_eq!(
            d.diagnostic.unwrap().to_string(),
            "conversation with mx[192.0.2.1] timed out while waiting for the greeting"
        );
    }
}
