//! Why a session could not be opened ([`OpenError`]), and how
//! connection-level failures (timeouts, a lost connection, a malformed
//! reply) are worded and given RFC 3463 status codes, for [`OpenError`] and
//! for the recipients of a transfer alike.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::queue::delivery::Delivery;
use crate::smtp::reply::Reply;
use crate::smtp::status::{Class, EnhancedStatus};

/// Why [`Connection::open`](super::Connection::open) failed. Always temporary: the message stays
/// queued and is retried (RFC 5321 §4.5.4.1).
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
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Resolve { source, .. }
            | OpenError::Connect { source, .. }
            | OpenError::Lost { source, .. } => Some(source),
            OpenError::Refused { .. } => None,
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
