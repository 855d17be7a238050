//! [`TlsStream`]: one rustls connection, server or client, over a blocking
//! [`TcpStream`], for a thread that owns the connection.
//!
//! The handshake finishes by its deadline or fails; reads honour the
//! stream's deadline and fail with `TimedOut` past it; writes are bounded by
//! the socket's write timeout. Every record rustls produces is written
//! before a call returns, so nothing waits in rustls' buffers for a flush.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use rustls::{CipherSuite, Connection, ProtocolVersion};

use super::deadline;
use super::error::TlsError;
use super::plain;

/// An established TLS connection over a blocking TCP socket: `Read`,
/// `BufRead` (rustls' own plaintext buffer, no second copy) and `Write`.
///
/// Reads honour [`set_deadline`](TlsStream::set_deadline); writes go out
/// at once, each bounded by the socket's write timeout
/// ([`TcpStream::set_write_timeout`] through [`tcp`](TlsStream::tcp)).
/// After any error other than a read timeout, the connection is not
/// usable any more: close it.
#[derive(Debug)]
pub struct TlsStream {
    conn: Connection,
    sock: TcpStream,
    deadline: Option<Instant>,
}

/// Why a handshake stopped, before the peer address is added.
enum Failure {
    Tls(rustls::Error),
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl Failure {
    fn into_error(self, sock: &TcpStream) -> TlsError {
        let peer = sock.peer_addr().ok();
        match self {
            Failure::Tls(source) => TlsError::Handshake { peer, source },
            Failure::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                TlsError::HandshakeTimeout { peer }
            }
            Failure::Io(source) => TlsError::HandshakeIo { peer, source },
        }
    }
}

impl TlsStream {
    /// Runs the handshake of `conn` (a fresh `rustls::ServerConnection` or
    /// `ClientConnection`) over `sock`, and returns the established stream.
    ///
    /// The whole handshake must finish by `deadline`: each socket read and
    /// write waits at most for the time left, so a peer that sends nothing,
    /// or trickles bytes, cannot hold the thread past it. The socket's write
    /// timeout is restored afterwards; the stream starts without a read
    /// deadline. [`ServerTls::accept`](super::ServerTls::accept) and
    /// [`ClientTls::connect`](super::ClientTls::connect) call this.
    ///
    /// # Errors
    /// [`TlsError::HandshakeTimeout`] at the deadline,
    /// [`TlsError::Handshake`] when rustls or the peer refuses (the alert
    /// saying why has been sent), [`TlsError::HandshakeIo`] when the
    /// connection fails or the peer closes it.
    pub fn new(
        conn: impl Into<Connection>,
        sock: TcpStream,
        deadline: Instant,
    ) -> Result<TlsStream, TlsError> {
        let mut stream = TlsStream {
            conn: conn.into(),
            sock,
            deadline: None,
        };
        let write_timeout = stream
            .sock
            .write_timeout()
            .map_err(|e| Failure::Io(e).into_error(&stream.sock))?;
        let result = stream.handshake(deadline);
        let restored = stream.sock.set_write_timeout(write_timeout);
        match result.and(restored.map_err(Failure::Io)) {
            Ok(()) => Ok(stream),
            Err(failure) => Err(failure.into_error(&stream.sock)),
        }
    }

    fn handshake(&mut self, deadline: Instant) -> Result<(), Failure> {
        while self.conn.is_handshaking() {
            self.write_tls_by(deadline)?;
            if !self.conn.wants_read() {
                // rustls always wants to read while it handshakes; guard
                // against a loop that could only spin.
                return Err(io::Error::other("TLS handshake stalled").into());
            }
            deadline::arm_read(&self.sock, Some(deadline))?;
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the peer during the TLS handshake",
                    )
                    .into());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(deadline::normalize(e).into()),
            }
            self.process().map_err(Failure::Tls)?;
        }
        // The last flight: the client's Finished, the server's tickets.
        Ok(self.write_tls_by(deadline)?)
    }

    /// Writes what rustls has queued, each write bounded by the time left.
    fn write_tls_by(&mut self, deadline: Instant) -> io::Result<()> {
        while self.conn.wants_write() {
            deadline::arm_write(&self.sock, deadline)?;
            self.write_tls_once()?;
        }
        Ok(())
    }

    /// Writes what rustls has queued, bounded by the socket's write timeout.
    fn write_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.write_tls_once()?;
        }
        Ok(())
    }

    fn write_tls_once(&mut self) -> io::Result<()> {
        match self.conn.write_tls(&mut self.sock) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(deadline::normalize(e)),
        }
    }

    /// Decrypts what was read. On an error, rustls has queued the alert
    /// that tells the peer why: one last write sends it, if it can.
    fn process(&mut self) -> Result<(), rustls::Error> {
        match self.conn.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.conn.write_tls(&mut self.sock);
                Err(e)
            }
        }
    }

    /// Reads from the socket until plaintext is buffered, or the end of the
    /// stream is known.
    fn fill(&mut self) -> io::Result<()> {
        loop {
            match self.conn.reader().into_first_chunk() {
                // Plaintext, or the end after the peer's close_notify.
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // UnexpectedEof: TCP closed without close_notify.
                Err(e) => return Err(e),
            }
            // Anything rustls must say first, e.g. a KeyUpdate reply.
            self.write_pending()?;
            deadline::arm_read(&self.sock, self.deadline)?;
            match self.conn.read_tls(&mut self.sock) {
                // 0 = TCP end: the reader says which kind on the next turn.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(deadline::normalize(e)),
            }
            self.process()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }

    /// Sets the instant by which every later read must have data: a read
    /// that would wait past it fails with `ErrorKind::TimedOut`. `None`:
    /// reads wait without limit. The stream owns the socket's read timeout.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The read deadline in force.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether decrypted input is waiting, so that the next read will not
    /// touch the socket: the RFC 2920 §3.2 test (flush replies only when
    /// no more input is buffered). Records not yet complete do not count.
    pub fn has_buffered_input(&mut self) -> bool {
        self.conn
            .reader()
            .into_first_chunk()
            .is_ok_and(|chunk| !chunk.is_empty())
    }

    /// Sends close_notify and ends the sending direction of TCP (FIN).
    /// Reading stays possible. Dropping the stream without it closes the
    /// connection too, but the peer then cannot tell a truncation from the
    /// end (for SMTP harmless after QUIT: the dialogue says where it ends).
    /// A peer that has already reset the connection is not an error.
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.write_pending()?;
        plain::shutdown_write(&self.sock)
    }

    /// The TCP socket, for the peer address, `set_nodelay`, the write
    /// timeout, or its file descriptor in a poll. Never read from or write
    /// to it directly: that would corrupt the TLS records.
    pub fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    /// The rustls connection, e.g. for the peer's certificates.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The negotiated version and cipher suite, for logs and the
    /// `Received:` header.
    pub fn info(&self) -> TlsInfo {
        TlsInfo {
            version: self.conn.protocol_version(),
            cipher_suite: self.conn.negotiated_cipher_suite().map(|s| s.suite()),
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.fill()?;
        self.conn.reader().read(buf)
    }
}

impl BufRead for TlsStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.fill()?;
        self.conn.reader().into_first_chunk()
    }

    fn consume(&mut self, amt: usize) {
        self.conn.reader().consume(amt);
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.write_pending()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.write_pending()
    }
}

/// What a handshake negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version (TLS 1.3 or 1.2).
    pub version: Option<ProtocolVersion>,
    /// The cipher suite.
    pub cipher_suite: Option<CipherSuite>,
}

impl fmt::Display for TlsInfo {
    /// `version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(ProtocolVersion::TLSv1_3) => f.write_str("version=TLSv1.3")?,
            Some(ProtocolVersion::TLSv1_2) => f.write_str("version=TLSv1.2")?,
            Some(other) => write!(f, "version={other:?}")?,
            None => f.write_str("version=none")?,
        }
        match self.cipher_suite {
            Some(suite) => write!(f, " cipher={suite:?}"),
            None => f.write_str(" cipher=none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reads_like_a_log_field() {
        let info = TlsInfo {
            version: Some(ProtocolVersion::TLSv1_3),
            cipher_suite: Some(CipherSuite::TLS13_AES_256_GCM_SHA384),
        };
        assert_eq!(
            info.to_string(),
            "version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384"
        );
    }
}
