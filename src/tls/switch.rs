//! [`Stream`]: plaintext or TLS behind one API, so a session driver has one
//! code path, and STARTTLS turns one into the other.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::client::{ClientTls, PeerCheck};
use super::error::TlsError;
use super::plain::PlainStream;
use super::server::ServerTls;
use super::stream::{TlsInfo, TlsStream};

/// A connection, plaintext or TLS: `Read`, `BufRead` and `Write`, a read
/// deadline, the buffered-input test and shutdown, whichever it is.
///
/// Use its own buffer (`BufRead`: `fill_buf`, `read_until`) rather than a
/// `BufReader` around it: then [`has_buffered_input`](Stream::has_buffered_input)
/// sees everything read ahead, and STARTTLS can drop it. A caller that does
/// buffer on its own must empty that buffer at STARTTLS itself.
///
/// STARTTLS: `stream = stream.start_tls_server(&tls, deadline)?` after the
/// `220` reply is flushed. It consumes the stream: on an error the
/// connection is closed (RFC 3207 gives no way back to plaintext).
#[derive(Debug)]
pub enum Stream {
    /// Plaintext: before STARTTLS, or with no TLS at all.
    Plain(PlainStream),
    /// TLS: after STARTTLS, or implicit TLS from the start.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// A plaintext stream over a connected blocking socket.
    pub fn plain(sock: TcpStream) -> Stream {
        Stream::Plain(PlainStream::new(sock))
    }

    /// Implicit TLS (RFC 8314, e.g. port 465): the server handshake at
    /// once, by `deadline`.
    ///
    /// # Errors
    /// As [`ServerTls::accept`].
    pub fn accept_tls(
        sock: TcpStream,
        tls: &ServerTls,
        deadline: Instant,
    ) -> Result<Stream, TlsError> {
        Ok(tls.accept(sock, deadline)?.into())
    }

    /// STARTTLS, server side (RFC 3207): see
    /// [`PlainStream::start_tls_server`]. The read deadline carries over.
    ///
    /// # Errors
    /// [`TlsError::AlreadyTls`] on a TLS stream; else as
    /// [`ServerTls::accept`].
    pub fn start_tls_server(self, tls: &ServerTls, deadline: Instant) -> Result<Stream, TlsError> {
        Ok(self.into_plain()?.start_tls_server(tls, deadline)?.into())
    }

    /// STARTTLS, client side, verified: see [`PlainStream::start_tls_client`].
    ///
    /// # Errors
    /// [`TlsError::AlreadyTls`] on a TLS stream; else as
    /// [`ClientTls::connect`].
    pub fn start_tls_client(
        self,
        tls: &ClientTls,
        server_name: &str,
        deadline: Instant,
    ) -> Result<Stream, TlsError> {
        Ok(self
            .into_plain()?
            .start_tls_client(tls, server_name, deadline)?
            .into())
    }

    /// STARTTLS, client side, opportunistic: see
    /// [`PlainStream::start_tls_client_opportunistic`].
    ///
    /// # Errors
    /// [`TlsError::AlreadyTls`] on a TLS stream; else as
    /// [`ClientTls::connect_opportunistic`].
    pub fn start_tls_client_opportunistic(
        self,
        tls: &ClientTls,
        server_name: &str,
        deadline: Instant,
    ) -> Result<(Stream, PeerCheck), TlsError> {
        let (stream, check) =
            self.into_plain()?
                .start_tls_client_opportunistic(tls, server_name, deadline)?;
        Ok((stream.into(), check))
    }

    fn into_plain(self) -> Result<PlainStream, TlsError> {
        match self {
            Stream::Plain(plain) => Ok(plain),
            Stream::Tls(_) => Err(TlsError::AlreadyTls),
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The negotiated TLS version and cipher suite; `None` in plaintext.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(tls.info()),
        }
    }

    /// Sets the instant by which every later read must have data; past
    /// it a read fails with `ErrorKind::TimedOut`. `None`: no limit.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        match self {
            Stream::Plain(s) => s.set_deadline(deadline),
            Stream::Tls(s) => s.set_deadline(deadline),
        }
    }

    /// The read deadline in force.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Stream::Plain(s) => s.deadline(),
            Stream::Tls(s) => s.deadline(),
        }
    }

    /// Whether input is buffered, so the next read will not wait: flush
    /// pending replies when this is false (RFC 2920 §3.2).
    pub fn has_buffered_input(&mut self) -> bool {
        match self {
            Stream::Plain(s) => s.has_buffered_input(),
            Stream::Tls(s) => s.has_buffered_input(),
        }
    }

    /// Ends the sending direction: close_notify first on TLS, then FIN.
    pub fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown(),
            Stream::Tls(s) => s.shutdown(),
        }
    }

    /// The TCP socket (peer address, `set_nodelay`, write timeout, poll).
    /// Never read from or write to it directly.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s.tcp(),
            Stream::Tls(s) => s.tcp(),
        }
    }
}

impl From<PlainStream> for Stream {
    fn from(plain: PlainStream) -> Stream {
        Stream::Plain(plain)
    }
}

impl From<TlsStream> for Stream {
    fn from(tls: TlsStream) -> Stream {
        Stream::Tls(Box::new(tls))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl BufRead for Stream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Stream::Plain(s) => s.fill_buf(),
            Stream::Tls(s) => s.fill_buf(),
        }
    }

    fn consume(&mut self, amt: usize) {
        match self {
            Stream::Plain(s) => s.consume(amt),
            Stream::Tls(s) => s.consume(amt),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
