//! Blocking SMTP client for the `smtp:HOST:PORT` transport: hands spooled
//! messages to the next hop (RFC 5321 §3.3), several per connection.
//!
//! Guarantees:
//! - every recipient passed to [`Connection::send`] gets exactly one
//!   [`RcptResult`], in the order given;
//! - resolver and connect failures, timeouts, a lost connection, a malformed
//!   reply and `421` only ever give temporary results, never permanent ones;
//! - the content is dot-stuffed on the way out (RFC 5321 §4.5.2) and never
//!   carries a bare CR or LF: a message with one fails with `554 5.6.0`, the
//!   offending octet is not sent, and neither is the final dot;
//! - a transfer that is cancelled or fails while sending the content ends by
//!   closing the connection without the final dot, so the hop must not
//!   deliver it (RFC 5321 §4.1.1.10);
//! - message content is never logged; command and reply lines are, at
//!   `trace` level.
//!
//! Replies are parsed by the sans-IO [`crate::smtp::client_reply`].

use std::fmt::{self, Write as _};
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, trace};

use crate::envelope::{Envelope, Notify, Recipient, Ret};
use crate::smtp::client_reply::{self, Extensions, Reply, ReplyParser, Status};
use crate::smtp::xtext;

/// How long to wait for a TCP connection. RFC 5321 §4.5.3.2 sets none;
/// common MTAs use 30 seconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// RFC 5321 §4.5.3.2.1–.4: 5 minutes for the greeting and for the replies
/// to MAIL and RCPT (2 for DATA; we use one value for all commands).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// RFC 5321 §4.5.3.2.5: 3 minutes for each block of content to be sent.
pub const DATA_BLOCK_TIMEOUT: Duration = Duration::from_secs(3 * 60);

/// RFC 5321 §4.5.3.2.6: 10 minutes for the reply to the final dot ("a
/// spurious timeout at this point would be very wasteful").
pub const DATA_END_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How much content is read from the spool at a time.
const CHUNK_SIZE: usize = 16 * 1024;

/// How much is read from the socket at a time.
const READ_BUFFER_SIZE: usize = 4096;

/// Our diagnostic for an address we will not put on the wire.
const UNSENDABLE: &str = "address cannot be sent: control or non-ASCII characters";

/// The timeouts of one session (RFC 5321 §4.5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For each TCP connection attempt.
    pub connect: Duration,
    /// For the greeting and the reply to each command, and for writing a
    /// group of commands.
    pub command: Duration,
    /// For each write of message content.
    pub data_block: Duration,
    /// For the reply to the final dot.
    pub data_end: Duration,
}

impl Default for Timeouts {
    /// The RFC 5321 §4.5.3.2 values.
    fn default() -> Timeouts {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            command: COMMAND_TIMEOUT,
            data_block: DATA_BLOCK_TIMEOUT,
            data_end: DATA_END_TIMEOUT,
        }
    }
}

/// The next hop: the `HOST:PORT` of an `smtp:` transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// A host name, an IPv4 address, or an IPv6 address with or without
    /// brackets.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

/// The outcome for one recipient.
///
/// `reply` is always in the form of an SMTP reply (`550 5.1.1 ...`), so
/// [`enhanced_status`] works on it. When `remote` is true it is the hop's
/// reply as sent (multi-line replies joined with a space); otherwise it is
/// our own diagnostic, e.g. for a lost connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// The hop took responsibility for the message: its RCPT and the final
    /// dot were accepted. `reply` is the reply to the final dot.
    Accepted {
        /// The hop does not offer DSN, so RFC 3461 §5.2.2 makes this a
        /// `relayed` action (a DSN is due for `NOTIFY=SUCCESS`).
        relayed: bool,
        /// The hop's reply to the final dot.
        reply: String,
    },
    /// Not delivered this time; try again later.
    Temporary {
        /// The reply or diagnostic.
        reply: String,
        /// Whether `reply` is what the hop said.
        remote: bool,
    },
    /// Not deliverable through this hop.
    Permanent {
        /// The reply or diagnostic.
        reply: String,
        /// Whether `reply` is what the hop said.
        remote: bool,
    },
}

impl RcptResult {
    /// The reply or diagnostic.
    pub fn reply(&self) -> &str {
        match self {
            RcptResult::Accepted { reply, .. }
            | RcptResult::Temporary { reply, .. }
            | RcptResult::Permanent { reply, .. } => reply,
        }
    }

    /// The RFC 3463 status code of the reply (see [`enhanced_status`]).
    pub fn status(&self) -> String {
        enhanced_status(self.reply())
    }
}

/// The outcome of one [`Connection::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// One result per recipient passed in, in the same order.
    pub results: Vec<RcptResult>,
    /// The hop's host name, for the DSN `Remote-MTA` field.
    pub remote_mta: String,
}

/// Why [`Connection::send`] produced no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// The cancel check said stop. Nothing was delivered: either no MAIL
    /// was sent, or the connection was closed without the final dot and is
    /// no longer usable.
    Cancelled,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Cancelled => f.write_str("transfer cancelled"),
        }
    }
}

impl std::error::Error for TransferError {}

/// Why [`Connection::open`] failed. Always temporary: the message stays
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
    /// The failure as a temporary SMTP reply, for the recipients'
    /// diagnostic: e.g. `451 4.4.1 connect to mx.example[192.0.2.1]:25
    /// failed: Connection refused`.
    pub fn reply(&self) -> String {
        let status = match self {
            OpenError::Resolve { .. } => "4.4.3".to_string(),
            OpenError::Connect { .. } => "4.4.1".to_string(),
            // The hop's own status, made temporary: a refusal to talk is
            // retried like any other failure to open.
            OpenError::Refused { reply, .. } => match reply.enhanced_status() {
                Some(status) => format!("4{}", &status[1..]),
                None => "4.4.2".to_string(),
            },
            OpenError::Lost { source, .. } => io_status(source).to_string(),
        };
        format!("451 {status} {self}")
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

/// The RFC 3463 status code of a reply: its enhanced status code when it has
/// one of the right class (`550 5.1.1 ...` gives `5.1.1`), otherwise
/// derived from the basic code (`2.0.0`, `4.0.0` or `5.0.0`). Anything not
/// starting with 2 or 5 counts as temporary.
pub fn enhanced_status(reply: &str) -> String {
    if let Some(status) = client_reply::enhanced_status_of(reply) {
        return status.to_string();
    }
    match reply.as_bytes().first() {
        Some(b'2') => "2.0.0",
        Some(b'5') => "5.0.0",
        _ => "4.0.0",
    }
    .to_string()
}

/// An open session to one hop: connected, greeted, EHLO (or HELO) done.
/// Carries any number of messages; see [`Connection::is_usable`].
pub struct Connection {
    host: String,
    peer: SocketAddr,
    reader: TcpStream,
    writer: BufWriter<TcpStream>,
    parser: ReplyParser,
    /// Received bytes; `buf[start..end]` is not yet parsed.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    extensions: Extensions,
    timeouts: Timeouts,
    usable: bool,
    /// A MAIL was sent and no reply to a final dot has ended its
    /// transaction yet, so RSET comes before the next MAIL.
    needs_rset: bool,
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

/// A recipient's place in a transaction.
#[derive(Debug, Clone)]
enum Slot {
    /// No final result yet.
    Waiting,
    /// Its RCPT was accepted; the final dot decides.
    Accepted,
    /// Final.
    Done(RcptResult),
}

/// How a transaction ended early.
enum End {
    /// The cancel check said stop.
    Cancelled,
    /// Every recipient without a final result gets this one.
    Failed(RcptResult),
}

impl End {
    /// A temporary failure for all, with our own diagnostic.
    fn temporary(reply: String) -> End {
        End::Failed(RcptResult::Temporary {
            reply,
            remote: false,
        })
    }

    /// A permanent failure for all, with our own diagnostic.
    fn permanent(reply: String) -> End {
        End::Failed(RcptResult::Permanent {
            reply,
            remote: false,
        })
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
        if reply.is_positive_completion() {
            connection.extensions = Extensions::parse_ehlo(&reply);
            debug!(
                "relay: {} offers {:?}",
                connection.peer_name(),
                connection.extensions
            );
            return Ok(connection);
        }
        if !reply.is_permanent_negative() {
            return Err(refused(connection, reply));
        }
        // RFC 5321 §4.3.2: a server that does not support EHLO answers it
        // with 5yz (502, 500, 550); fall back to HELO, without extensions.
        let reply = connection
            .command(&format!("HELO {helo_name}\r\n"))
            .map_err(|e| lost("doing HELO", e))?;
        if !reply.is_positive_completion() {
            return Err(refused(connection, reply));
        }
        Ok(connection)
    }

    /// What the hop offered in its EHLO reply (nothing after HELO).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The address connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether another message may be sent: false after `421`, a timeout,
    /// a lost connection, a malformed reply, or an abandoned transfer.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Sends one message to `rcpts` (all through this hop) and reports the
    /// outcome for each. `content` is the message as spooled: CRLF line
    /// ends, not dot-stuffed; it is read in chunks and streamed.
    ///
    /// `cancel` is consulted before MAIL, after each chunk of content and
    /// right before the final dot. If it says stop once MAIL was sent, the
    /// connection is closed without the final dot, so the hop must not
    /// deliver (RFC 5321 §4.1.1.10).
    ///
    /// On a connection that is not usable, every recipient gets a
    /// temporary result.
    ///
    /// # Errors
    ///
    /// [`TransferError::Cancelled`] when `cancel` said stop.
    pub fn send(
        &mut self,
        env: &Envelope,
        rcpts: &[&Recipient],
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<TransferOutcome, TransferError> {
        let mut slots = vec![Slot::Waiting; rcpts.len()];
        let end = if rcpts.is_empty() {
            Ok(())
        } else if !self.usable {
            let reply = format!(
                "451 4.4.2 connection with {} is no longer usable",
                self.peer_name()
            );
            Err(End::temporary(reply))
        } else if cancel() {
            Err(End::Cancelled)
        } else {
            self.transact(env, rcpts, &mut slots, content, cancel)
        };
        let fallback = match end {
            Ok(()) => None,
            Err(End::Cancelled) => {
                debug!("relay: id={} cancelled", env.id);
                return Err(TransferError::Cancelled);
            }
            Err(End::Failed(result)) => Some(result),
        };
        let results: Vec<RcptResult> = slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Done(result) => result,
                Slot::Waiting | Slot::Accepted => fallback
                    .clone()
                    .expect("a completed transaction leaves every recipient with a result"),
            })
            .collect();
        debug!(
            "relay: id={} via {}: {:?}",
            env.id,
            self.peer_name(),
            results
        );
        Ok(TransferOutcome {
            results,
            remote_mta: self.host.clone(),
        })
    }

    /// Says QUIT, waits for the reply (RFC 5321 §4.1.1.10) and closes.
    pub fn quit(mut self) {
        if self.usable
            && let Err(e) = self.command("QUIT\r\n")
        {
            debug!("relay: QUIT to {}: {e}", self.peer_name());
        }
    }

    /// One transaction. Fills `slots`; an `Err` applies to the slots not yet
    /// done.
    fn transact(
        &mut self,
        env: &Envelope,
        rcpts: &[&Recipient],
        slots: &mut [Slot],
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), End> {
        if let Some(reply) = self.refuse_before_mail(env) {
            return Err(End::permanent(reply));
        }
        let mail = mail_command(env, &self.extensions);
        if !is_sendable(&mail) {
            return Err(End::permanent(format!("553 5.1.7 {UNSENDABLE}")));
        }
        let rcpt_commands: Vec<Option<String>> = slots
            .iter_mut()
            .zip(rcpts)
            .map(|(slot, rcpt)| {
                let command = rcpt_command(rcpt, &self.extensions);
                if is_sendable(&command) {
                    return Some(command);
                }
                let reply = format!("553 5.1.3 {UNSENDABLE}");
                *slot = Slot::Done(RcptResult::Permanent {
                    reply,
                    remote: false,
                });
                None
            })
            .collect();
        if rcpt_commands.iter().all(Option::is_none) {
            return Ok(());
        }
        if self.needs_rset {
            self.rset()?;
        }
        if self.send_envelope(mail, &rcpt_commands, slots)? == 0 {
            if self.extensions.pipelining {
                self.drain_replies(0);
            }
            return Ok(());
        }
        self.send_data(slots, content, cancel)
    }

    /// MAIL and the RCPTs, pipelined when the hop allows (then DATA goes
    /// out too). Records each RCPT's result; returns how many were accepted.
    fn send_envelope(
        &mut self,
        mail: String,
        rcpt_commands: &[Option<String>],
        slots: &mut [Slot],
    ) -> Result<usize, End> {
        let pipelining = self.extensions.pipelining;
        self.needs_rset = true;
        if pipelining {
            // RFC 2920 §3.1: MAIL and RCPT may appear anywhere in a group,
            // DATA only last. One write; then the replies, in order.
            let mut group = mail;
            rcpt_commands
                .iter()
                .flatten()
                .for_each(|c| group.push_str(c));
            group.push_str("DATA\r\n");
            self.write_commands(&group)
                .map_err(|e| self.lost(e, "sending MAIL FROM"))?;
        } else {
            self.write_commands(&mail)
                .map_err(|e| self.lost(e, "sending MAIL FROM"))?;
        }
        let reply = self.read_command_reply("MAIL FROM")?;
        if let Err(result) = self.check(&reply, 2, "MAIL FROM") {
            if pipelining && self.usable {
                // The RCPT and DATA replies mean nothing now (503), but
                // they must be read to keep in step.
                self.drain_replies(rcpt_commands.iter().flatten().count());
            }
            return Err(End::Failed(result));
        }
        let mut accepted = 0;
        for (slot, command) in slots.iter_mut().zip(rcpt_commands) {
            let Some(command) = command else { continue };
            if !pipelining {
                self.write_commands(command)
                    .map_err(|e| self.lost(e, "sending RCPT TO"))?;
            }
            let reply = self.read_command_reply("RCPT TO")?;
            match self.check(&reply, 2, "RCPT TO") {
                Ok(()) => {
                    *slot = Slot::Accepted;
                    accepted += 1;
                }
                // 421 or confusion: the session is over for everyone.
                Err(result) if !self.usable => return Err(End::Failed(result)),
                Err(result) => *slot = Slot::Done(result),
            }
        }
        Ok(accepted)
    }

    /// DATA (unless pipelined already), the content and the final dot; the
    /// reply to the dot decides for every accepted recipient.
    fn send_data(
        &mut self,
        slots: &mut [Slot],
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), End> {
        if !self.extensions.pipelining {
            self.write_commands("DATA\r\n")
                .map_err(|e| self.lost(e, "sending DATA"))?;
        }
        let reply = self.read_command_reply("DATA")?;
        // RFC 5321 §4.1.1.4: 354, or a 4yz/5yz that applies to every
        // accepted recipient.
        self.check(&reply, 3, "DATA").map_err(End::Failed)?;
        self.send_content(content, cancel)?;
        let reply = self
            .read_reply(self.timeouts.data_end)
            .map_err(|e| self.lost(e, "waiting for the reply to the end of data"))?;
        // Whatever the reply, the transaction is over (RFC 5321 §4.1.1.4).
        self.needs_rset = false;
        self.check(&reply, 2, "end of data").map_err(End::Failed)?;
        // RFC 3461 §5.2.2: past a hop without DSN, success is `relayed`.
        let relayed = !self.extensions.dsn;
        let reply = reply.to_string();
        for slot in slots.iter_mut() {
            if let Slot::Accepted = slot {
                let reply = reply.clone();
                *slot = Slot::Done(RcptResult::Accepted { relayed, reply });
            }
        }
        Ok(())
    }

    /// A permanent failure decided before MAIL, from what the hop offers.
    fn refuse_before_mail(&self, env: &Envelope) -> Option<String> {
        // RFC 6152 §3: 8-bit content may only go to a hop offering 8BITMIME,
        // and we do not convert to 7 bit.
        if env.eight_bit && !self.extensions.eight_bit_mime {
            return Some(format!(
                "554 5.6.3 conversion required but not supported: 8-bit message and {} does not offer 8BITMIME",
                self.peer_name()
            ));
        }
        // RFC 1870 §6: do not send a message larger than the fixed maximum.
        match self.extensions.size {
            Some(limit) if limit > 0 && env.size > limit => Some(format!(
                "552 5.3.4 message size {} exceeds the fixed maximum message size {limit} of {}",
                env.size,
                self.peer_name()
            )),
            _ => None,
        }
    }

    /// RFC 5321 §4.1.1.5: RSET ends the failed transaction; the reply MUST
    /// be 250, anything else leaves the session in an unknown state.
    fn rset(&mut self) -> Result<(), End> {
        let reply = self
            .command("RSET\r\n")
            .map_err(|e| self.lost(e, "doing RSET"))?;
        if !reply.is_positive_completion() {
            self.abandon();
            let reply = format!("451 4.4.2 {} refused RSET: {reply}", self.peer_name());
            return Err(End::temporary(reply));
        }
        self.needs_rset = false;
        Ok(())
    }

    /// Reads the replies to `rcpts` pipelined RCPTs and the DATA of a
    /// transaction that is going nowhere. Results are already decided, so
    /// trouble here only makes the connection unusable.
    fn drain_replies(&mut self, rcpts: usize) {
        for _ in 0..rcpts {
            match self.read_reply(self.timeouts.command) {
                Ok(reply) if reply.code != 421 => {}
                _ => return self.abandon(),
            }
        }
        let reply = match self.read_reply(self.timeouts.command) {
            Ok(reply) => reply,
            Err(_) => return self.abandon(),
        };
        if reply.code == 421 {
            return self.abandon();
        }
        if reply.is_positive_intermediate() {
            // RFC 2920 §3.1 / RFC 5321 §3.3: DATA was accepted with no valid
            // recipient; end the (empty) data, the server delivers nothing.
            trace!("> .");
            let end = self.write_raw(b".\r\n", self.timeouts.data_block);
            match end.and_then(|()| self.read_reply(self.timeouts.data_end)) {
                Ok(_) => self.needs_rset = false,
                Err(_) => self.abandon(),
            }
        }
    }

    /// Streams the content dot-stuffed, then the final dot unless cancelled.
    fn send_content(
        &mut self,
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), End> {
        // RFC 5321 §4.5.3.2.5: each block must be taken within 3 minutes.
        let timeout = Some(self.timeouts.data_block);
        self.writer
            .get_ref()
            .set_write_timeout(timeout)
            .map_err(|e| self.lost(e, "sending the content"))?;
        let mut stuffer = DotStuffer::new();
        let mut chunk = vec![0; CHUNK_SIZE];
        loop {
            let n = match content.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.abandon();
                    let reply = format!("451 4.3.0 cannot read the message from the spool: {e}");
                    return Err(End::temporary(reply));
                }
            };
            stuffer
                .stuff(&chunk[..n], &mut self.writer)
                .map_err(|e| self.content_error(e))?;
            if cancel() {
                self.abandon();
                return Err(End::Cancelled);
            }
        }
        stuffer
            .finish(&mut self.writer)
            .map_err(|e| self.content_error(e))?;
        self.writer
            .flush()
            .map_err(|e| self.lost(e, "sending the content"))?;
        // The last moment to cancel: without the final dot the hop must
        // cancel the transaction (RFC 5321 §4.1.1.10).
        if cancel() {
            self.abandon();
            return Err(End::Cancelled);
        }
        trace!("> .");
        self.writer
            .write_all(b".\r\n")
            .and_then(|()| self.writer.flush())
            .map_err(|e| self.lost(e, "sending the end of data"))
    }

    fn content_error(&mut self, error: StuffError) -> End {
        let what = match error {
            StuffError::Io(e) => return self.lost(e, "sending the content"),
            StuffError::BareCr => "CR",
            StuffError::BareLf => "LF",
        };
        // RFC 5321 §2.3.8: CR and LF only as CRLF. Forwarding a bare one is
        // the outbound half of SMTP smuggling, so the message is not sent.
        self.abandon();
        let reply = format!("554 5.6.0 message content has a bare {what}; refusing to relay it");
        End::permanent(reply)
    }

    /// Checks a reply against the class expected. Otherwise returns the
    /// result for the recipients it applies to; `421` and replies that make
    /// no sense here also end the session.
    fn check(&mut self, reply: &Reply, class: u16, command: &str) -> Result<(), RcptResult> {
        if reply.code / 100 == class {
            return Ok(());
        }
        let text = reply.to_string();
        if reply.is_transient_negative() {
            // RFC 5321 §3.8: after 421 the server closes the connection.
            if reply.code == 421 {
                self.abandon();
            }
            return Err(RcptResult::Temporary {
                reply: text,
                remote: true,
            });
        }
        if reply.is_permanent_negative() {
            return Err(RcptResult::Permanent {
                reply: text,
                remote: true,
            });
        }
        self.abandon();
        let reply = format!(
            "451 4.5.0 unexpected reply from {} to {command}: {text}",
            self.peer_name()
        );
        Err(RcptResult::Temporary {
            reply,
            remote: false,
        })
    }

    /// Reads the reply to a command, turning trouble into a temporary
    /// failure for all.
    fn read_command_reply(&mut self, command: &str) -> Result<Reply, End> {
        self.read_reply(self.timeouts.command).map_err(|e| {
            let during = format!("waiting for the reply to {command}");
            self.lost(e, &during)
        })
    }

    /// Marks the connection dead and makes the temporary result for all.
    fn lost(&mut self, error: io::Error, during: &str) -> End {
        self.abandon();
        let reply = format!(
            "451 {} {}",
            io_status(&error),
            describe_io(&error, &self.peer_name(), during)
        );
        End::temporary(reply)
    }

    /// Closes the connection for good, in both directions: whatever is
    /// still buffered (never a final dot) is not sent.
    fn abandon(&mut self) {
        self.usable = false;
        let _ = self.reader.shutdown(Shutdown::Both);
    }

    /// Best-effort QUIT without waiting, for a refused session
    /// (RFC 5321 §3.1: the client should QUIT after a 554 greeting).
    fn close_politely(mut self) {
        let _ = self.write_raw(b"QUIT\r\n", self.timeouts.command);
    }

    fn command(&mut self, command: &str) -> io::Result<Reply> {
        self.write_commands(command)?;
        self.read_reply(self.timeouts.command)
    }

    /// Writes command lines (CRLF-terminated) in one write.
    fn write_commands(&mut self, commands: &str) -> io::Result<()> {
        for line in commands.split_terminator("\r\n") {
            trace!("> {line}");
        }
        self.write_raw(commands.as_bytes(), self.timeouts.command)
    }

    fn write_raw(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        self.writer.get_ref().set_write_timeout(Some(timeout))?;
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Reads one complete reply within `timeout` in total. A timeout is a
    /// `TimedOut` error, a closed connection `UnexpectedEof`, a malformed
    /// reply `InvalidData`.
    fn read_reply(&mut self, timeout: Duration) -> io::Result<Reply> {
        let deadline = Instant::now() + timeout;
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
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.reader.set_read_timeout(Some(left))?;
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
                Err(e) if is_timeout(&e) => return Err(io::ErrorKind::TimedOut.into()),
                Err(e) => return Err(e),
            }
        }
    }

    fn peer_name(&self) -> String {
        peer_name(&self.host, &self.peer)
    }
}

/// `host[ip]`, as in Postfix diagnostics.
fn peer_name(host: &str, addr: &SocketAddr) -> String {
    format!("{host}[{}]", addr.ip())
}

/// std: an expired socket timeout is `WouldBlock` on Unix, `TimedOut`
/// elsewhere.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The RFC 3463 status for a connection-level error.
fn io_status(error: &io::Error) -> &'static str {
    match error.kind() {
        // X.5.0: other or undefined protocol status.
        io::ErrorKind::InvalidData => "4.5.0",
        // X.4.2: bad connection.
        _ => "4.4.2",
    }
}

/// A connection-level error in words.
fn describe_io(error: &io::Error, peer: &str, during: &str) -> String {
    match error.kind() {
        _ if is_timeout(error) => format!("conversation with {peer} timed out while {during}"),
        io::ErrorKind::UnexpectedEof => format!("lost connection with {peer} while {during}"),
        io::ErrorKind::InvalidData => {
            format!("malformed reply from {peer} while {during}: {error}")
        }
        _ => format!("connection with {peer} failed while {during}: {error}"),
    }
}

/// `MAIL FROM:<...>` with the parameters the hop takes.
fn mail_command(env: &Envelope, ext: &Extensions) -> String {
    let mut command = format!("MAIL FROM:<{}>", env.reverse_path);
    // RFC 1870 §5: the size as stored (CRLF, not dot-stuffed) is the one
    // SIZE wants.
    if ext.size.is_some() {
        let _ = write!(command, " SIZE={}", env.size);
    }
    // RFC 6152 §2: BODY=8BITMIME only when the content needs it.
    if env.eight_bit && ext.eight_bit_mime {
        command.push_str(" BODY=8BITMIME");
    }
    // RFC 3461 §4.3, §4.4: RET and ENVID are passed on unchanged, and only
    // to a hop that offers DSN.
    if ext.dsn {
        match env.ret {
            Some(Ret::Full) => command.push_str(" RET=FULL"),
            Some(Ret::Hdrs) => command.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &env.envid {
            let _ = write!(command, " ENVID={}", xtext::encode(envid));
        }
    }
    command.push_str("\r\n");
    command
}

/// `RCPT TO:<...>` with the parameters the hop takes.
fn rcpt_command(rcpt: &Recipient, ext: &Extensions) -> String {
    let mut command = format!("RCPT TO:<{}>", rcpt.address);
    // RFC 3461 §4.1, §4.2: NOTIFY and ORCPT are passed on unchanged, and
    // only to a hop that offers DSN.
    if ext.dsn {
        if let Some(notify) = rcpt.notify {
            let _ = write!(command, " NOTIFY={}", notify_value(notify));
        }
        if let Some(orcpt) = &rcpt.orcpt {
            let _ = write!(
                command,
                " ORCPT={};{}",
                orcpt.addr_type,
                xtext::encode(&orcpt.address)
            );
        }
    }
    command.push_str("\r\n");
    command
}

/// RFC 3461 §4.1: `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY`.
fn notify_value(notify: Notify) -> String {
    let words = [
        (notify.success, "SUCCESS"),
        (notify.failure, "FAILURE"),
        (notify.delay, "DELAY"),
    ];
    let list: Vec<&str> = words
        .iter()
        .filter(|(on, _)| *on)
        .map(|&(_, word)| word)
        .collect();
    if list.is_empty() {
        "NEVER".to_string()
    } else {
        list.join(",")
    }
}

/// A command line is printable ASCII up to its CRLF: no address or
/// parameter can smuggle in a line end or anything that needs SMTPUTF8.
fn is_sendable(command: &str) -> bool {
    let line = command.strip_suffix("\r\n").unwrap_or(command);
    line.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Why the content could not be sent.
#[derive(Debug)]
enum StuffError {
    /// A CR not followed by LF.
    BareCr,
    /// An LF not preceded by CR.
    BareLf,
    /// Writing failed.
    Io(io::Error),
}

impl From<io::Error> for StuffError {
    fn from(error: io::Error) -> StuffError {
        StuffError::Io(error)
    }
}

/// Dot-stuffing across chunk boundaries (RFC 5321 §4.5.2): a line starting
/// with `.` gets another `.` in front. Checks that CR and LF only come as
/// CRLF, and writes nothing of a bare one: a CR at the end of a chunk is
/// held back until the next chunk shows an LF.
#[derive(Debug)]
struct DotStuffer {
    /// The next octet starts a line.
    line_start: bool,
    /// A CR ended the previous chunk and was not written yet.
    held_cr: bool,
}

impl DotStuffer {
    fn new() -> DotStuffer {
        DotStuffer {
            line_start: true,
            held_cr: false,
        }
    }

    /// Writes one chunk, stuffed.
    fn stuff(&mut self, input: &[u8], out: &mut dyn Write) -> Result<(), StuffError> {
        let mut i = 0;
        if self.held_cr && !input.is_empty() {
            if input[0] != b'\n' {
                return Err(StuffError::BareCr);
            }
            out.write_all(b"\r\n")?;
            self.held_cr = false;
            self.line_start = true;
            i = 1;
        }
        // `input[run..i]` is checked and not yet written.
        let mut run = i;
        while i < input.len() {
            match input[i] {
                b'\r' => match input.get(i + 1) {
                    Some(b'\n') => {
                        self.line_start = true;
                        i += 2;
                        continue;
                    }
                    Some(_) => return Err(StuffError::BareCr),
                    None => {
                        out.write_all(&input[run..i])?;
                        self.held_cr = true;
                        return Ok(());
                    }
                },
                b'\n' => return Err(StuffError::BareLf),
                b'.' if self.line_start => {
                    // The extra dot; the original goes out with the run.
                    out.write_all(&input[run..i])?;
                    out.write_all(b".")?;
                    run = i;
                    self.line_start = false;
                }
                _ => self.line_start = false,
            }
            i += 1;
        }
        out.write_all(&input[run..])?;
        Ok(())
    }

    /// Ends the content so that the final dot can follow: RFC 5321 §4.1.1.4
    /// wants the content to end in CRLF, so one is added after a last line
    /// without it (never to empty content).
    fn finish(&mut self, out: &mut dyn Write) -> Result<(), StuffError> {
        if self.held_cr {
            return Err(StuffError::BareCr);
        }
        if !self.line_start {
            out.write_all(b"\r\n")?;
            self.line_start = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{BodyType, Mode, Orcpt};

    /// Stuffs `chunks` one after the other; the output, or the error.
    fn stuff_chunks(chunks: &[&[u8]]) -> Result<Vec<u8>, &'static str> {
        let mut stuffer = DotStuffer::new();
        let mut out = Vec::new();
        let mut run = || -> Result<(), StuffError> {
            for chunk in chunks {
                stuffer.stuff(chunk, &mut out)?;
            }
            stuffer.finish(&mut out)
        };
        match run() {
            Ok(()) => Ok(out),
            Err(StuffError::BareCr) => Err("bare CR"),
            Err(StuffError::BareLf) => Err("bare LF"),
            Err(StuffError::Io(_)) => Err("io"),
        }
    }

    /// Whole, cut at every offset, and byte by byte: same result, and a bare
    /// CR or LF is never written.
    #[track_caller]
    fn stuffs_to(input: &[u8], expected: Result<&[u8], &'static str>) {
        let expected = expected.map(<[u8]>::to_vec);
        assert_eq!(stuff_chunks(&[input]), expected, "whole");
        for cut in 0..=input.len() {
            assert_eq!(
                stuff_chunks(&[&input[..cut], &input[cut..]]),
                expected,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(stuff_chunks(&bytes), expected, "byte by byte");
        for cut in 0..=input.len() {
            let mut stuffer = DotStuffer::new();
            let mut out = Vec::new();
            let _ = stuffer
                .stuff(&input[..cut], &mut out)
                .and_then(|()| stuffer.stuff(&input[cut..], &mut out));
            assert!(!has_bare_cr_or_lf(&out), "cut at {cut} wrote {out:?}");
        }
    }

    fn has_bare_cr_or_lf(bytes: &[u8]) -> bool {
        bytes.iter().enumerate().any(|(i, &b)| {
            (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
                || (b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        })
    }

    #[test]
    fn leading_dots_are_doubled() {
        stuffs_to(
            b".hidden\r\n..two\r\n.\r\nend.\r\n",
            Ok(b"..hidden\r\n...two\r\n..\r\nend.\r\n"),
        );
        stuffs_to(b"a\r\n.\r\n", Ok(b"a\r\n..\r\n"));
    }

    #[test]
    fn plain_content_passes_unchanged() {
        stuffs_to(
            b"Subject: x\r\n\r\nbody\r\n",
            Ok(b"Subject: x\r\n\r\nbody\r\n"),
        );
        stuffs_to(b"", Ok(b""));
        stuffs_to(b"\r\n", Ok(b"\r\n"));
    }

    #[test]
    fn missing_final_crlf_is_added() {
        stuffs_to(b"a\r\nlast", Ok(b"a\r\nlast\r\n"));
        stuffs_to(b".", Ok(b"..\r\n"));
    }

    #[test]
    fn bare_cr_and_lf_are_refused() {
        stuffs_to(b"a\rb\r\n", Err("bare CR"));
        stuffs_to(b"a\r\nb\nc\r\n", Err("bare LF"));
        stuffs_to(b"\n", Err("bare LF"));
        stuffs_to(b"a\r\n\r", Err("bare CR"));
        stuffs_to(b"a\r\r\n", Err("bare CR"));
        stuffs_to(b"a\r\n.\n", Err("bare LF"));
    }

    fn envelope() -> Envelope {
        Envelope {
            id: "q1".to_string(),
            reverse_path: "alice@example.org".to_string(),
            ret: Some(Ret::Hdrs),
            envid: Some("id+1=x".to_string()),
            body: BodyType::EightBitMime,
            size: 1234,
            eight_bit: true,
            arrival: 0,
            client_ip: "192.0.2.9".to_string(),
            helo: "client".to_string(),
            mode: Mode::Queued,
            attempts: 0,
            next_attempt: 0,
            delay_warned: false,
            is_dsn: false,
            recipients: Vec::new(),
        }
    }

    const ALL: Extensions = Extensions {
        pipelining: true,
        size: Some(0),
        eight_bit_mime: true,
        dsn: true,
        enhanced_status_codes: true,
    };

    #[test]
    fn mail_takes_only_the_parameters_offered() {
        let env = envelope();
        assert_eq!(
            mail_command(&env, &ALL),
            "MAIL FROM:<alice@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=id+2B1+3Dx\r\n"
        );
        assert_eq!(
            mail_command(&env, &Extensions::default()),
            "MAIL FROM:<alice@example.org>\r\n"
        );
        let seven_bit = Envelope {
            eight_bit: false,
            reverse_path: String::new(),
            ret: None,
            envid: None,
            ..env
        };
        assert_eq!(mail_command(&seven_bit, &ALL), "MAIL FROM:<> SIZE=1234\r\n");
    }

    #[test]
    fn rcpt_takes_dsn_parameters_only_when_offered() {
        let notify = Notify {
            success: true,
            failure: true,
            delay: false,
        };
        let orcpt = Orcpt {
            addr_type: "rfc822".to_string(),
            address: "bob+tag@example.com".to_string(),
        };
        let rcpt = Recipient::new("bob@example.com".to_string(), Some(notify), Some(orcpt));
        assert_eq!(
            rcpt_command(&rcpt, &ALL),
            "RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@example.com\r\n"
        );
        assert_eq!(
            rcpt_command(&rcpt, &Extensions::default()),
            "RCPT TO:<bob@example.com>\r\n"
        );
        let plain = Recipient::new("c@example.com".to_string(), None, None);
        assert_eq!(rcpt_command(&plain, &ALL), "RCPT TO:<c@example.com>\r\n");
    }

    #[test]
    fn notify_values() {
        assert_eq!(notify_value(Notify::NEVER), "NEVER");
        assert_eq!(
            notify_value(Notify {
                success: false,
                failure: true,
                delay: true
            }),
            "FAILURE,DELAY"
        );
        assert_eq!(
            notify_value(Notify {
                success: true,
                failure: true,
                delay: true
            }),
            "SUCCESS,FAILURE,DELAY"
        );
    }

    #[test]
    fn commands_with_control_characters_are_not_sendable() {
        assert!(is_sendable("RCPT TO:<\"a b\"@example.com>\r\n"));
        assert!(!is_sendable("RCPT TO:<a\r\nDATA@example.com>\r\n"));
        assert!(!is_sendable("RCPT TO:<a\0@example.com>\r\n"));
        assert!(!is_sendable("RCPT TO:<j\u{f6}rg@example.com>\r\n"));
    }

    #[test]
    fn enhanced_status_falls_back_to_the_basic_code() {
        assert_eq!(enhanced_status("550 5.1.1 <x@y>: user unknown"), "5.1.1");
        assert_eq!(enhanced_status("550-5.7.1 a 550 5.7.1 b"), "5.7.1");
        assert_eq!(enhanced_status("550 user unknown"), "5.0.0");
        assert_eq!(enhanced_status("451 4.7.1 greylisted"), "4.7.1");
        assert_eq!(enhanced_status("452 too many"), "4.0.0");
        assert_eq!(enhanced_status("250 ok"), "2.0.0");
        assert_eq!(enhanced_status("550 4.1.1 mismatched class"), "5.0.0");
        assert_eq!(enhanced_status(""), "4.0.0");
    }

    #[test]
    fn refused_open_error_is_made_temporary() {
        let addr: SocketAddr = "192.0.2.1:25".parse().unwrap();
        let reply = Reply {
            code: 554,
            lines: vec!["5.7.1 go away".to_string()],
        };
        let e = OpenError::Refused {
            host: "mx.example".to_string(),
            addr,
            reply,
        };
        assert_eq!(
            e.reply(),
            "451 4.7.1 mx.example[192.0.2.1] refused to talk to me: 554 5.7.1 go away"
        );
        let e = OpenError::Lost {
            host: "mx".to_string(),
            addr,
            during: "waiting for the greeting",
            source: io::ErrorKind::TimedOut.into(),
        };
        assert_eq!(
            e.reply(),
            "451 4.4.2 conversation with mx[192.0.2.1] timed out while waiting for the greeting"
        );
    }
}
