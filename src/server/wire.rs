//! One client connection's bytes: a bounded input buffer filled against
//! deadlines, and replies queued and flushed by the RFC 2920 §3.2 rule
//! (whenever the input buffer is empty).
//!
//! A timeout here is a deadline for a whole operation (a command line, the
//! whole content), never for one `read()`: each read gets what is left of
//! the deadline, so a client that trickles one byte at a time cannot
//! extend it.
//!
//! The connection is plain TCP or TLS ([`Io`]); after STARTTLS the input
//! read ahead in plaintext is thrown away, never read as if it had come
//! through TLS (RFC 3207 §5, the CVE-2011-0411 class).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::smtp::reply::Reply;

/// The input buffer's size; a command line longer than the protocol core
/// accepts is read to its end in pieces and discarded.
pub const INPUT_BUFFER: usize = 16 * 1024;
/// The most octets of one over-long line that are read and thrown away
/// before the connection is closed (RFC 5321 §4.5.3.1.4 asks us to read to
/// the end of the line; a client that never ends it gets no more).
pub const MAX_DISCARD: usize = 64 * 1024;

/// One line read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line with its LF (and CR, if sent) is in the caller's buffer.
    Complete,
    /// Longer than the caller's limit; read to its end and discarded.
    TooLong,
    /// Longer than [`MAX_DISCARD`]: not read to its end.
    Flood,
    /// The client closed the connection (or the server's shutdown did).
    Eof,
    /// The deadline passed.
    Timeout,
}

/// Whether an I/O error is an expired socket timeout (std: Unix reports
/// an expired SO_RCVTIMEO as `WouldBlock`, not `TimedOut`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// How far the socket's receive timeout may be from the time left before
/// it is set again: a read then ends at most this much after its deadline,
/// and a session does not pay a setsockopt(2) for every read.
const TIMEOUT_SLACK: Duration = Duration::from_millis(100);

/// The byte stream under the SMTP conversation; a plain socket remembers
/// the receive timeout it has.
#[derive(Debug)]
enum Io {
    Plain(TcpStream, Option<Duration>),
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::TlsStream>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s, _) => s,
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.tcp(),
        }
    }

    /// Writes it all; the socket's write timeout (set once, in
    /// [`Wire::new`]) bounds each write.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Io::Plain(s, _) => s.write_all(bytes),
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.write_all(bytes),
        }
    }

    /// One read that waits until `deadline` at the latest; `TimedOut`
    /// after it.
    fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let result = match self {
                Io::Plain(s, armed) => {
                    let off = match *armed {
                        Some(a) => a.abs_diff(left) > TIMEOUT_SLACK,
                        None => true,
                    };
                    if off {
                        s.set_read_timeout(Some(left))?;
                        *armed = Some(left);
                    }
                    s.read(buf)
                }
                #[cfg(feature = "tls")]
                Io::Tls(t) => {
                    t.set_deadline(Some(deadline));
                    t.read(buf)
                }
            };
            match result {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Spurious wake-ups of SO_RCVTIMEO: try again with the time left.
                Err(e) if is_timeout(&e) => {}
                // A TLS peer that closes without close_notify (or our own
                // shutdown(2) at server shutdown): the end of the input.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what has arrived without waiting (`WouldBlock` if nothing).
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s, _) => {
                s.set_nonblocking(true)?;
                let result = s.read(buf);
                s.set_nonblocking(false)?;
                result
            }
            #[cfg(feature = "tls")]
            Io::Tls(t) => {
                // The socket is readable, but maybe with only part of a
                // record: give the rest a moment, then report nothing.
                t.set_deadline(Some(crate::clock::deadline_after(TLS_RECORD_WAIT)));
                match t.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                    other => other,
                }
            }
        }
    }
}

/// How long a read waits for the rest of a TLS record once poll(2) said
/// part of it arrived.
#[cfg(feature = "tls")]
const TLS_RECORD_WAIT: Duration = Duration::from_millis(50);

/// The connection's I/O state.
#[derive(Debug)]
pub struct Wire {
    io: Io,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pending: Vec<u8>,
}

impl Wire {
    /// Wraps a connected, blocking socket; each reply write must finish
    /// within `write_timeout` (a client that stops reading cannot hold the
    /// thread).
    pub fn new(stream: TcpStream, write_timeout: Duration) -> Wire {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(write_timeout));
        Wire {
            io: Io::Plain(stream, None),
            buf: vec![0; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            pending: Vec::new(),
        }
    }

    /// The socket (for poll(2) and its addresses).
    pub fn socket(&self) -> &TcpStream {
        self.io.tcp()
    }

    /// Whether input waits, decrypted, inside TLS, where poll(2) on the
    /// socket cannot see it.
    pub fn has_hidden_input(&mut self) -> bool {
        match &mut self.io {
            Io::Plain(..) => false,
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.has_buffered_input(),
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self.io, Io::Plain(..))
    }

    /// The negotiated TLS version and cipher, for the log and `Received:`.
    #[cfg(feature = "tls")]
    pub fn tls_info(&self) -> Option<crate::tls::TlsInfo> {
        match &self.io {
            Io::Tls(t) => Some(t.info()),
            Io::Plain(..) => None,
        }
    }

    /// Runs the server side of a TLS handshake by `deadline`: right after
    /// the accept (implicit TLS), or after the `220` to STARTTLS, which is
    /// written first. Input read ahead in plaintext is discarded (RFC 3207
    /// §5): commands pipelined behind STARTTLS are never executed.
    ///
    /// # Errors
    /// The handshake failed or timed out; close the connection.
    #[cfg(feature = "tls")]
    pub fn start_tls(
        &mut self,
        tls: &crate::tls::ServerTls,
        deadline: Instant,
    ) -> Result<(), crate::tls::TlsError> {
        if self.is_tls() {
            return Err(crate::tls::TlsError::AlreadyTls);
        }
        self.flush()
            .map_err(|source| crate::tls::TlsError::HandshakeIo {
                peer: self.io.tcp().peer_addr().ok(),
                source,
            })?;
        if self.start < self.end {
            log::info!(
                "peer={} {} octet(s) sent after STARTTLS before the handshake discarded",
                self.io
                    .tcp()
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string()),
                self.end - self.start
            );
        }
        self.start = 0;
        self.end = 0;
        let sock = self
            .io
            .tcp()
            .try_clone()
            .map_err(|source| crate::tls::TlsError::HandshakeIo { peer: None, source })?;
        let stream = tls.accept(sock, deadline)?;
        self.io = Io::Tls(Box::new(stream));
        Ok(())
    }

    /// Octets received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered octets as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Queues a reply; it goes out at the next flush.
    pub fn reply(&mut self, reply: &Reply) {
        log::trace!("> {reply}");
        reply.write_to(&mut self.pending);
    }

    /// Writes the queued replies.
    ///
    /// # Errors
    /// The write failed or timed out.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.io.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Reads more input, waiting until `deadline` at the latest. Replies
    /// are flushed first: the read may block (RFC 2920 §3.2). Returns the
    /// number of octets read; 0 is the end of the stream.
    ///
    /// # Errors
    /// `TimedOut` when the deadline passed, or the socket's error.
    pub fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        self.flush()?;
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::other("input buffer full"));
        }
        let n = self.io.read_by(&mut self.buf[self.end..], deadline)?;
        self.end += n;
        Ok(n)
    }

    /// Reads one line of at most `limit` octets into `line`, to be complete
    /// by `deadline`.
    ///
    /// # Errors
    /// The socket's error (a reset, say).
    pub fn read_line(
        &mut self,
        line: &mut Vec<u8>,
        limit: usize,
        deadline: Instant,
    ) -> io::Result<Line> {
        line.clear();
        let mut discarded = 0usize;
        loop {
            let data = self.buffered();
            let (take, done) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (data.len(), false),
            };
            if discarded == 0 && line.len() + take <= limit {
                line.extend_from_slice(&data[..take]);
            } else {
                discarded += line.len() + take;
                line.clear();
            }
            self.consume(take);
            if done {
                return Ok(if discarded > 0 {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
            if discarded > MAX_DISCARD {
                return Ok(Line::Flood);
            }
            match self.fill(deadline) {
                Ok(0) => return Ok(Line::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Line::Timeout),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads whatever the client has sent, without waiting: for a held RDLV
    /// reply, after poll(2) said the socket is readable. Returns the octets
    /// read (0: the client closed the connection).
    ///
    /// # Errors
    /// The socket's error (a reset), or `WouldBlock` when nothing was
    /// there after all.
    pub fn read_available(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::other("input buffer full"));
        }
        let n = self.io.read_now(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Wire, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (Wire::new(server, Duration::from_secs(5)), client)
    }

    #[test]
    fn a_trickling_client_cannot_extend_the_deadline() {
        let (mut wire, mut client) = pair();
        let t = std::thread::spawn(move || {
            for _ in 0..40 {
                if client.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let mut line = Vec::new();
        let got = wire
            .read_line(&mut line, 512, started + Duration::from_millis(400))
            .unwrap();
        assert_eq!(got, Line::Timeout);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        drop(wire);
        t.join().unwrap();
    }

    #[test]
    fn long_lines_are_discarded_to_their_end_then_bounded() {
        let (mut wire, mut client) = pair();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut long = vec![b'a'; 2000];
        long.extend_from_slice(b"\r\nNOOP\r\n");
        client.write_all(&long).unwrap();
        let mut line = Vec::new();
        assert_eq!(
            wire.read_line(&mut line, 512, deadline).unwrap(),
            Line::TooLong
        );
        assert_eq!(
            wire.read_line(&mut line, 512, deadline).unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"NOOP\r\n");
        let flood = vec![b'b'; MAX_DISCARD + INPUT_BUFFER * 2];
        let t = std::thread::spawn(move || {
            let _ = client.write_all(&flood);
            client
        });
        assert_eq!(
            wire.read_line(&mut line, 512, deadline).unwrap(),
            Line::Flood
        );
        drop(wire);
        drop(t.join().unwrap());
    }
}
