//! [`Connection`]: an open session to one hop, and its I/O. Resolving and
//! connecting, implicit TLS, the greeting, EHLO with a fallback to HELO,
//! then STARTTLS and AUTH as [`Security`] asks (`secure.rs`), QUIT; below
//! the transaction logic, writing command lines and reading whole replies,
//! each within its RFC 5321 §4.5.3.2 timeout, and giving up on the
//! connection.

use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, trace};

use super::error::{OpenError, is_timeout, peer_name};
use super::link::Link;
use super::{Hop, Security, Timeouts};
use crate::smtp::reply_parser::{Extensions, Reply, ReplyParser, Status};

/// How often a reply wait looks at the interrupt flag.
const INTERRUPT_CHECK: Duration = Duration::from_millis(500);

/// How much is read from the socket at a time.
const READ_BUFFER_SIZE: usize = 4096;

/// An open session to one hop: connected, greeted, EHLO (or HELO) done,
/// and secured as asked. Carries any number of messages; see
/// [`Connection::is_usable`].
pub struct Connection {
    // The transaction logic (`transaction.rs`) and the securing of the
    // session (`secure.rs`) use the `pub(super)` fields; the read buffer
    // stays private to this file.
    pub(super) host: String,
    pub(super) peer: SocketAddr,
    /// The link, buffered for writing; flushed before every reply wait,
    /// so reads go to the link itself.
    pub(super) stream: BufWriter<Link>,
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
            .field("tls", &self.is_tls())
            .field("extensions", &self.extensions)
            .field("usable", &self.usable)
            .field("needs_rset", &self.needs_rset)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Resolves the hop, connects to its addresses in turn until one greets
    /// us and takes EHLO (or HELO), and returns the session, in plaintext
    /// and without AUTH (or over TLS for an `smtps:` hop): as
    /// [`Connection::open_secured`] with [`Security::default`].
    ///
    /// # Errors
    /// As [`Connection::open_secured`].
    pub fn open(hop: &Hop, helo_name: &str, timeouts: &Timeouts) -> Result<Connection, OpenError> {
        Connection::open_secured(hop, helo_name, timeouts, &Security::default())
    }

    /// Resolves the hop, connects to its addresses in turn until one greets
    /// us, takes EHLO (or HELO) and is secured as `security` asks
    /// (STARTTLS, AUTH), and returns the session.
    ///
    /// # Errors
    /// An [`OpenError`] when no address got that far; the error is that of
    /// the last address tried. Temporary, except a permanent refusal of
    /// our credentials.
    pub fn open_secured(
        hop: &Hop,
        helo_name: &str,
        timeouts: &Timeouts,
        security: &Security,
    ) -> Result<Connection, OpenError> {
        let resolve_error = |source| OpenError::Resolve {
            host: hop.host.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = (bare_host(&hop.host), hop.port)
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
            match Connection::open_addr(hop, addr, helo_name, timeouts, security) {
                Ok(connection) => return Ok(connection),
                // Our credentials are refused: another address of the same
                // hop would only refuse them again.
                Err(e @ OpenError::AuthRefused { .. }) => return Err(e),
                Err(e) => {
                    debug!("relay: {e}");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.expect("at least one address was tried"))
    }

    fn open_addr(
        hop: &Hop,
        addr: SocketAddr,
        helo_name: &str,
        timeouts: &Timeouts,
        security: &Security,
    ) -> Result<Connection, OpenError> {
        let connect_error = |source| OpenError::Connect {
            host: hop.host.clone(),
            addr,
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, timeouts.connect).map_err(connect_error)?;
        debug!("relay: connected to {}", peer_name(&hop.host, &addr));
        // Commands go out in whole lines or groups; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let mut connection = Connection {
            host: hop.host.clone(),
            peer: addr,
            stream: BufWriter::new(Link::Plain(stream)),
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
        if hop.implicit_tls {
            // RFC 8314 §3.3: TLS from the first byte, then the greeting.
            connection.implicit_tls(security)?;
        }
        // RFC 5321 §4.5.3.2.1: the greeting gets the command timeout.
        let greeting = connection
            .read_reply(timeouts.command)
            .map_err(|e| connection.lost_open("waiting for the greeting", e))?;
        if greeting.code != 220 {
            return Err(connection.refused(greeting));
        }
        connection.hello(helo_name)?;
        connection.secure(security, helo_name)?;
        if let Some(auth) = &security.auth {
            connection.authenticate(auth)?;
        }
        Ok(connection)
    }

    /// EHLO, or HELO where the hop does not know EHLO; records the
    /// extensions offered.
    fn hello(&mut self, helo_name: &str) -> Result<(), OpenError> {
        let reply = self
            .command(&format!("EHLO {helo_name}\r\n"))
            .map_err(|e| self.lost_open("doing EHLO", e))?;
        if reply.is_positive() {
            self.extensions = Extensions::parse_ehlo(&reply);
            debug!("relay: {} offers {:?}", self.peer_name(), self.extensions);
            return Ok(());
        }
        if !reply.is_permanent() {
            return Err(self.refused(reply));
        }
        // RFC 5321 §4.3.2: a server that does not support EHLO answers it
        // with 5yz (502, 500, 550); fall back to HELO, without extensions.
        let reply = self
            .command(&format!("HELO {helo_name}\r\n"))
            .map_err(|e| self.lost_open("doing HELO", e))?;
        if !reply.is_positive() {
            return Err(self.refused(reply));
        }
        Ok(())
    }

    /// The hop refused to talk: a best-effort QUIT, and the error.
    pub(super) fn refused(&mut self, reply: Reply) -> OpenError {
        self.close_politely();
        OpenError::Refused {
            host: self.host.clone(),
            addr: self.peer,
            reply,
        }
    }

    /// A connection-level failure while opening: the connection is done.
    pub(super) fn lost_open(&mut self, during: &'static str, source: io::Error) -> OpenError {
        self.abandon();
        OpenError::Lost {
            host: self.host.clone(),
            addr: self.peer,
            during,
            source,
        }
    }

    /// Whether the session is encrypted (STARTTLS or `smtps:`).
    pub fn is_tls(&self) -> bool {
        self.stream.get_ref().is_tls()
    }

    /// Drops what was received and not parsed, with the parser's state: at
    /// a TLS upgrade nothing from before it may be read as a reply after
    /// it (RFC 3207 §4.2). Returns how many bytes were dropped.
    #[cfg(feature = "tls")]
    pub(super) fn discard_input(&mut self) -> usize {
        let dropped = self.end - self.start;
        self.start = 0;
        self.end = 0;
        self.parser = ReplyParser::new();
        dropped
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
        self.stream.get_ref().abandon();
    }

    /// Best-effort QUIT without waiting, for a refused session
    /// (RFC 5321 §3.1: the client should QUIT after a 554 greeting).
    pub(super) fn close_politely(&mut self) {
        let _ = self.write_raw(b"QUIT\r\n", self.timeouts.command);
        self.usable = false;
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

    /// Writes a command line that carries a secret (an AUTH response);
    /// the trace log shows `shown` instead.
    pub(super) fn write_secret(&mut self, line: &str, shown: &str) -> io::Result<()> {
        trace!("> {shown}");
        self.write_raw(line.as_bytes(), self.timeouts.command)
    }

    pub(super) fn write_raw(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        self.stream.get_ref().set_write_timeout(timeout)?;
        self.stream.write_all(bytes)?;
        self.stream.flush()
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
            let link = self.stream.get_mut();
            link.set_read_timeout(slice)?;
            match link.read(&mut self.buf) {
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

/// `smtp:[2001:db8::1]:25`: the resolver and TLS want the literal bare.
pub(super) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}
