//! [`Link`]: the one stream a [`Connection`](super::Connection) reads
//! replies from and writes commands to, plaintext or TLS, with the same
//! read-timeout and write-timeout controls either way. STARTTLS turns a
//! plaintext link into a TLS one over the same socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

#[cfg(feature = "tls")]
use crate::tls::TlsStream;

/// A connection to the hop: plaintext, or TLS after STARTTLS or from the
/// first byte (`smtps:`). Unbuffered: the connection buffers both ways.
#[derive(Debug)]
pub(super) enum Link {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
    /// Nothing, for the moment of an upgrade: the socket is with the
    /// handshake. Reads and writes fail; a failed upgrade leaves it so.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Gone,
}

impl Link {
    /// Whether the link is encrypted.
    pub(super) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Link::Tls(_) = self {
            return true;
        }
        false
    }

    /// The TCP socket under the link, if it still has one.
    pub(super) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Link::Plain(sock) => Some(sock),
            #[cfg(feature = "tls")]
            Link::Tls(tls) => Some(tls.tcp()),
            Link::Gone => None,
        }
    }

    /// The next read waits at most `timeout`; a read that runs out fails
    /// with `WouldBlock` or `TimedOut` (see `is_timeout`).
    pub(super) fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        match self {
            Link::Plain(sock) => sock.set_read_timeout(Some(timeout)),
            #[cfg(feature = "tls")]
            Link::Tls(tls) => {
                tls.set_deadline(Some(crate::clock::deadline_after(timeout)));
                Ok(())
            }
            Link::Gone => Err(gone()),
        }
    }

    /// Each later write waits at most `timeout`.
    pub(super) fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.tcp()
            .ok_or_else(gone)?
            .set_write_timeout(Some(timeout))
    }

    /// Closes both directions at once, without a TLS close_notify: what
    /// is still unsent (never a final dot) is not sent.
    pub(super) fn abandon(&self) {
        if let Some(sock) = self.tcp() {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection was given up during a TLS handshake",
    )
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(sock) => sock.read(buf),
            #[cfg(feature = "tls")]
            Link::Tls(tls) => tls.read(buf),
            Link::Gone => Err(gone()),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(sock) => sock.write(buf),
            #[cfg(feature = "tls")]
            Link::Tls(tls) => tls.write(buf),
            Link::Gone => Err(gone()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(sock) => sock.flush(),
            #[cfg(feature = "tls")]
            Link::Tls(tls) => tls.flush(),
            Link::Gone => Err(gone()),
        }
    }
}
