//! [`Connection`]: an open session to one hop, and its I/O. Resolving and
//! connecting, the greeting, EHLO with a fallback to HELO, QUIT; below the
//! transaction logic, writing command lines and reading whole replies, each
//! within its RFC 5321 §4.5.3.2 timeout, and giving up on the connection.

use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, trace};

use super::error::{OpenError, is_timeout, peer_name};
use super::{Hop, Timeouts};

/// How often a reply wait looks at the interrupt flag.
const INTERRUPT_CHECK: Duration = Duration::from_millis(500);
use crate::smtp::reply_parser::{Extensions, Reply, ReplyParser, Status};

/// How much is read from the socket at a time.
const READ_BUFFER_SIZE: usize = 4096;

/// An open session to one hop: connected, greeted, EHLO (or HELO) done.
/// Carries any number of messages; see [`Connection::is_usable`].
pub struct Connection {
    // The transaction logic (`transaction.rs`) uses the `pub(super)`
    // fields; the socket's read side and buffer stay private to this file.
    pub(super) host: String,
    peer: SocketAddr,
    reader: TcpStream,
    pub(super) writer: BufWriter<TcpStream>,
    parser: ReplyParser,
    /// Received bytes; `buf[start..end]` is not yet parsed.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pub(super) extensions: Extensions,
    pub(super) timeouts: Timeouts,
    pub(super) usable: bool,
    /// A MAIL was sent and no reply to a final dot has ended its
    /// transaction yet, so RSET comes before the next MAIL.
    pub(super) needs_rset: bool,
    /// Set when the server shuts down: a reply wait then ends early.
    interrupt: Option<Arc<AtomicBool>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("peer", &self.peer)
            .field("extensions", &self.extensions)
            .field("usable", &self.usable)
            .field("needs_rset", &self.needs_rset)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Resolves the hop, connects to its addresses in turn until one greets
    /// us and takes EHLO (or HELO), and returns the session.
    ///
    /// # Errors
    ///
    /// An [`OpenError`] (always temporary) when no address got that far;
    /// the error is that of the last address tried.
    pub fn open(hop: &Hop, helo_name: &str, timeouts: &Timeouts) -> Result<Connection, OpenError> {
        // `smtp:[2001:db8::1]:25`: the resolver wants the literal bare.
        let name = hop
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&hop.host);
        let resolve_error = |source| OpenError::Resolve {
            host: hop.host.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = (name, hop.port)
            .to_socket_addrs()
            .map_err(resolve_error)?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "no address",
            )));
        }
        let mut last_error = None;
        for addr in addrs {
            match Connection::open_addr(&hop.host, addr, helo_name, timeouts) {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    debug!("relay: {e}");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.expect("at least one address was tried"))
    }

    fn open_addr(
        host: &str,
        addr: SocketAddr,
        helo_name: &str,
        timeouts: &Timeouts,
    ) -> Result<Connection, OpenError> {
        let connect_error = |source| OpenError::Connect {
            host: host.to_string(),
            addr,
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, timeouts.connect).map_err(connect_error)?;
        debug!("relay: connected to {}", peer_name(host, &addr));
        // Commands go out in whole lines or groups; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let lost = |during, source| OpenError::Lost {
            host: host.to_string(),
            addr,
            during,
            source,
        };
        let writer = stream
            .try_clone()
            .map_err(|e| lost("setting up the connection", e))?;
        let mut connection = Connection {
            host: host.to_string(),
            peer: addr,
            reader: stream,
            writer: BufWriter::new(writer),
            parser: ReplyParser::new(),
            buf: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            extensions: Extensions::default(),
            timeouts: *timeouts,
            usable: true,
            needs_rset: false,
            interrupt: None,
        };
        let refused = |connection: Connection, reply| {
            connection.close_politely();
            OpenError::Refused {
                host: host.to_string(),
                addr,
                reply,
            }
        };
        // RFC 5321 §4.5.3.2.1: the greeting gets the command timeout.
        let greeting = connection
            .read_reply(timeouts.command)
            .map_err(|e| lost("waiting for the greeting", e))?;
        if greeting.code != 220 {
            return Err(refused(connection, greeting));
        }
        let reply = connection
            .command(&format!("EHLO {helo_name}\r\n"))
            .map_err(|e| lost("doing EHLO", e))?;
        if reply.is_positive() {
            connection.extensions = Extensions::parse_ehlo(&reply);
            debug!(
                "relay: {} offers {:?}",
                connection.peer_name(),
                connection.extensions
            );
            return Ok(connection);
        }
        if !reply.is_permanent() {
            return Err(refused(connection, reply));
        }
        // RFC 5321 §4.3.2: a server that does not support EHLO answers it
        // with 5yz (502, 500, 550); fall back to HELO, without extensions.
        let reply = connection
            .command(&format!("HELO {helo_name}\r\n"))
            .map_err(|e| lost("doing HELO", e))?;
        if !reply.is_positive() {
            return Err(refused(connection, reply));
        }
        Ok(connection)
    }

    /// What the hop offered in its EHLO reply (nothing after HELO).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Whether another message may be sent: false after `421`, a timeout,
    /// a lost connection, a malformed reply, or an abandoned transfer.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Says QUIT, waits for the reply (RFC 5321 §4.1.1.10) and closes.
    pub fn quit(mut self) {
        if self.usable
            && let Err(e) = self.command("QUIT\r\n")
        {
            debug!("relay: QUIT to {}: {e}", self.peer_name());
        }
    }

    /// Closes the connection for good, in both directions: whatever is
    /// still buffered (never a final dot) is not sent.
    pub(super) fn abandon(&mut self) {
        self.usable = false;
        let _ = self.reader.shutdown(Shutdown::Both);
    }

    /// Best-effort QUIT without waiting, for a refused session
    /// (RFC 5321 §3.1: the client should QUIT after a 554 greeting).
    fn close_politely(mut self) {
        let _ = self.write_raw(b"QUIT\r\n", self.timeouts.command);
    }

    pub(super) fn command(&mut self, command: &str) -> io::Result<Reply> {
        self.write_commands(command)?;
        self.read_reply(self.timeouts.command)
    }

    /// Writes command lines (CRLF-terminated) in one write.
    pub(super) fn write_commands(&mut self, commands: &str) -> io::Result<()> {
        for line in commands.split_terminator("\r\n") {
            trace!("> {line}");
        }
        self.write_raw(commands.as_bytes(), self.timeouts.command)
    }

    pub(super) fn write_raw(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        self.writer.get_ref().set_write_timeout(Some(timeout))?;
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Reads one complete reply within `timeout` in total. A timeout is a
    /// `TimedOut` error, a closed connection `UnexpectedEof`, a malformed
    /// reply `InvalidData`.
    pub(super) fn read_reply(&mut self, timeout: Duration) -> io::Result<Reply> {
        let deadline = crate::clock::deadline_after(timeout);
        loop {
            if self.start < self.end {
                match self.parser.feed(&self.buf[self.start..self.end]) {
                    Ok(Status::Complete(reply, n)) => {
                        self.start += n;
                        trace!("< {reply}");
                        return Ok(reply);
                    }
                    Ok(Status::Partial) => self.start = self.end,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            if self
                .interrupt
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst))
            {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "interrupted: shutting down",
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // In slices, so a shutdown is noticed within one.
            let slice = if self.interrupt.is_some() {
                left.min(INTERRUPT_CHECK)
            } else {
                left
            };
            self.reader.set_read_timeout(Some(slice))?;
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ));
                }
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A slice ran out: check the interrupt and the deadline again.
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends reply waits early once `flag` is set (the server's shutdown
    /// flag): the transfer then fails as a lost connection, temporarily,
    /// instead of holding the shutdown for up to the data timeout.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    pub(super) fn peer_name(&self) -> String {
        peer_name(&self.host, &self.peer)
    }
}
