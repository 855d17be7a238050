//! One client connection's bytes: a bounded input buffer filled against
//! deadlines, and replies queued and flushed by the RFC 2920 §3.2 rule
//! (whenever the input buffer is empty).
//!
//! A timeout here is a deadline for a whole operation (a command line, the
//! whole content), never for one `read()`: each read gets what is left of
//! the deadline, so a client that trickles one byte at a time cannot
//! extend it.

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

/// The connection's I/O state.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pending: Vec<u8>,
    write_timeout: Duration,
}

impl Wire {
    /// Wraps a connected, blocking socket; each reply write must finish
    /// within `write_timeout` (a client that stops reading cannot hold the
    /// thread).
    pub fn new(stream: TcpStream, write_timeout: Duration) -> Wire {
        let _ = stream.set_nodelay(true);
        Wire {
            stream,
            buf: vec![0; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            pending: Vec::new(),
            write_timeout,
        }
    }

    /// The socket (for poll(2) and its addresses).
    pub fn socket(&self) -> &TcpStream {
        &self.stream
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
            self.stream.set_write_timeout(Some(self.write_timeout))?;
            self.stream.write_all(&self.pending)?;
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
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
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
        self.stream.set_nonblocking(true)?;
        let result = self.stream.read(&mut self.buf[self.end..]);
        self.stream.set_nonblocking(false)?;
        let n = result?;
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
