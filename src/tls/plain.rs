//! [`PlainStream`]: a TCP connection with its own read buffer and a read
//! deadline, the same API as [`TlsStream`], and the STARTTLS upgrade,
//! which drops whatever was read ahead (RFC 3207 §5, CVE-2011-0411).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use super::client::{ClientTls, PeerCheck};
use super::deadline;
use super::error::TlsError;
use super::server::ServerTls;
use super::stream::TlsStream;

/// Bytes read from the socket at a time (the session driver's line
/// buffer is separate).
const PLAIN_BUFFER_SIZE: usize = 8192;

/// A plaintext TCP connection: `Read`, `BufRead` and `Write`, reads
/// bounded by [`set_deadline`](PlainStream::set_deadline).
#[derive(Debug)]
pub struct PlainStream {
    reader: BufReader<DeadlineSocket>,
}

/// The socket, armed with the time left before each read.
#[derive(Debug)]
struct DeadlineSocket {
    sock: TcpStream,
    deadline: Option<Instant>,
}

impl Read for DeadlineSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        deadline::arm_read(&self.sock, self.deadline)?;
        (&self.sock).read(buf).map_err(deadline::normalize)
    }
}

impl PlainStream {
    /// Wraps a connected blocking socket, with no read deadline.
    pub fn new(sock: TcpStream) -> PlainStream {
        PlainStream {
            reader: BufReader::with_capacity(
                PLAIN_BUFFER_SIZE,
                DeadlineSocket {
                    sock,
                    deadline: None,
                },
            ),
        }
    }

    /// As [`TlsStream::set_deadline`].
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.reader.get_mut().deadline = deadline;
    }

    /// The read deadline in force.
    pub fn deadline(&self) -> Option<Instant> {
        self.reader.get_ref().deadline
    }

    /// How many bytes have been read from the socket and not consumed.
    pub fn buffered_len(&self) -> usize {
        self.reader.buffer().len()
    }

    /// As [`TlsStream::has_buffered_input`].
    pub fn has_buffered_input(&self) -> bool {
        self.buffered_len() > 0
    }

    /// Ends the sending direction of TCP (FIN); reading stays possible.
    /// A peer that is already gone is not an error.
    pub fn shutdown(&mut self) -> io::Result<()> {
        shutdown_write(self.tcp())
    }

    /// The TCP socket. Reading from it directly would bypass the buffer.
    pub fn tcp(&self) -> &TcpStream {
        &self.reader.get_ref().sock
    }

    /// STARTTLS, server side: after the `220` reply has been flushed, runs
    /// the server handshake by `deadline`. Bytes the client sent after the
    /// STARTTLS line and that sit in the buffer are discarded and logged:
    /// they came before TLS and must not be taken as commands inside it.
    ///
    /// # Errors
    /// As [`ServerTls::accept`].
    pub fn start_tls_server(
        self,
        tls: &ServerTls,
        deadline: Instant,
    ) -> Result<TlsStream, TlsError> {
        let (sock, read_deadline) = self.into_tcp_discarding();
        let mut stream = tls.accept(sock, deadline)?;
        stream.set_deadline(read_deadline);
        Ok(stream)
    }

    /// STARTTLS, client side, verified: after the server's `220` reply to
    /// STARTTLS; anything the server sent after it is discarded.
    ///
    /// # Errors
    /// As [`ClientTls::connect`].
    pub fn start_tls_client(
        self,
        tls: &ClientTls,
        server_name: &str,
        deadline: Instant,
    ) -> Result<TlsStream, TlsError> {
        let (sock, read_deadline) = self.into_tcp_discarding();
        let mut stream = tls.connect(sock, server_name, deadline)?;
        stream.set_deadline(read_deadline);
        Ok(stream)
    }

    /// STARTTLS, client side, opportunistic: as
    /// [`start_tls_client`](PlainStream::start_tls_client), but the
    /// certificate check is reported instead of enforced.
    ///
    /// # Errors
    /// As [`ClientTls::connect_opportunistic`].
    pub fn start_tls_client_opportunistic(
        self,
        tls: &ClientTls,
        server_name: &str,
        deadline: Instant,
    ) -> Result<(TlsStream, PeerCheck), TlsError> {
        let (sock, read_deadline) = self.into_tcp_discarding();
        let (mut stream, check) = tls.connect_opportunistic(sock, server_name, deadline)?;
        stream.set_deadline(read_deadline);
        Ok((stream, check))
    }

    /// The socket and the read deadline, the read-ahead dropped.
    fn into_tcp_discarding(self) -> (TcpStream, Option<Instant>) {
        let ahead = self.buffered_len();
        if ahead > 0 {
            // RFC 3207 §5: nothing from before TLS may be acted on after it.
            log::warn!(
                "tls: peer={} sent {ahead} bytes after STARTTLS before the handshake; discarded",
                self.tcp()
                    .peer_addr()
                    .map_or_else(|_| "unknown".to_string(), |a| a.to_string())
            );
        }
        let DeadlineSocket { sock, deadline } = self.reader.into_inner();
        (sock, deadline)
    }
}

/// Sends FIN. `NotConnected` means the peer has already reset the
/// connection: the end we wanted, not an error.
pub(super) fn shutdown_write(sock: &TcpStream) -> io::Result<()> {
    match sock.shutdown(Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

impl Read for PlainStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl BufRead for PlainStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.reader.consume(amt);
    }
}

impl Write for PlainStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sock = self.tcp();
        sock.write(buf).map_err(deadline::normalize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn pair() -> (PlainStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (PlainStream::new(server), client)
    }

    #[test]
    fn read_past_the_deadline_is_timed_out() {
        let (mut stream, _client) = pair();
        stream.set_deadline(Some(Instant::now() + Duration::from_millis(50)));
        let err = stream.fill_buf().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn pipelined_lines_stay_buffered_after_the_first() {
        let (mut stream, mut client) = pair();
        client.write_all(b"NOOP\r\nQUIT\r\n").unwrap();
        // One write on loopback: one read takes both lines.
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        assert_eq!(line, "NOOP\r\n");
        assert!(stream.has_buffered_input());
    }
}
