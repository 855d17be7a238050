//! The per-connection driver: bounded line reads, the session core, replies
//! flushed whenever the input buffer is empty (RFC 2920 §3.2), DATA streamed
//! into the spool, and the RDLV wait with 120 keep-alives.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Transport};
use crate::deliver::is_safe_local_part;
use crate::envelope::{Envelope, Mode, RcptState, domain_of};
use crate::inflight::Ticket;
use crate::smtp::address::Path;
use crate::smtp::data::DataDecoder;
use crate::smtp::reply::Reply;
use crate::smtp::session::{
    Action, MAX_LINE_BUFFER, Policy, Session, SessionConfig, Step, Transaction,
};
use crate::spool::{ContentWriter, SpoolError};
use crate::time_fmt::rfc5322_date;

use super::shared::{Shared, unix_now};
use super::worker;

/// An accepted connection, handed from the acceptor to a session thread.
#[derive(Debug)]
pub struct Conn {
    /// The socket, in blocking mode.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
}

/// How often a waiting RDLV session looks at the shutdown flag.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(200);

/// draft-burger-smtp-deta §5: the sender has its limit of jobs in processing.
fn sender_busy() -> Reply {
    Reply::new(
        452,
        "4.7.1",
        "too many messages of this sender in processing, try again later",
    )
}

/// The spool is at `spool_max_bytes`.
fn storage_full() -> Reply {
    Reply::new(452, "4.3.1", "insufficient system storage")
}

/// The spool could not be written (I/O error): temporary, nothing kept.
fn spool_error() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "local error writing the spool, try again later",
    )
}

/// The server's answers to the session's questions.
struct ServerPolicy<'a> {
    shared: &'a Shared,
    config: &'a Config,
    peer: IpAddr,
}

impl Policy for ServerPolicy<'_> {
    fn check_sender(&mut self, reverse_path: &Path, size: Option<u64>) -> Result<(), Reply> {
        let sender = match reverse_path {
            Path::Null => "",
            Path::Mailbox(m) => m.as_str(),
        };
        // draft-burger-smtp-deta §5: limit concurrent jobs per sender.
        if self.shared.inflight.count_for_sender(sender) >= self.config.max_inflight_per_sender {
            return Err(sender_busy());
        }
        if !self.shared.spool.has_room(size.unwrap_or(0)) {
            return Err(storage_full());
        }
        Ok(())
    }

    fn check_recipient(&mut self, address: &str) -> Result<(), Reply> {
        if !self.config.may_relay(self.peer) {
            return Err(Reply::new(
                554,
                "5.7.1",
                format!("<{address}>: relay access denied"),
            ));
        }
        let domain = domain_of(address);
        let domain = if domain.is_empty() {
            self.config.hostname.to_ascii_lowercase()
        } else {
            domain
        };
        match self.config.route_for(&domain) {
            None => Err(Reply::new(
                550,
                "5.1.2",
                format!("<{address}>: no route to domain {domain}"),
            )),
            Some(Transport::Maildir(_)) => {
                let local = address.rsplit_once('@').map(|(l, _)| l).unwrap_or(address);
                if is_safe_local_part(local) {
                    Ok(())
                } else {
                    Err(Reply::new(
                        550,
                        "5.1.3",
                        format!("<{address}>: local part is not a valid mailbox name"),
                    ))
                }
            }
            Some(_) => Ok(()),
        }
    }

    fn check_data(&mut self) -> Result<(), Reply> {
        if self.shared.spool.has_room(0) {
            Ok(())
        } else {
            Err(storage_full())
        }
    }

    fn may_detach(&mut self) -> bool {
        self.shared.inflight.detached_count() < self.config.max_detached
    }
}

/// One line read from the client.
enum Line {
    /// A line with its LF (and CR, if sent).
    Complete,
    /// Longer than the buffer; read to its end and discarded.
    TooLong,
    /// The client closed the connection (or the server's shutdown did).
    Eof,
}

fn is_timeout(e: &io::Error) -> bool {
    // std: Unix reports an expired SO_RCVTIMEO as WouldBlock, not TimedOut.
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The connection's I/O state.
struct Wire {
    reader: BufReader<TcpStream>,
    out: TcpStream,
    pending: Vec<u8>,
}

impl Wire {
    /// Queues a reply; it goes out at the next flush.
    fn reply(&mut self, reply: &Reply) {
        log::trace!("> {reply}");
        reply.write_to(&mut self.pending);
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Reads one line of at most [`MAX_LINE_BUFFER`] octets into `line`.
    /// Pending replies are flushed first whenever a read could block: the
    /// RFC 2920 §3.2 rule, and it never loses buffered input.
    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<Line> {
        line.clear();
        let mut too_long = false;
        loop {
            if self.reader.buffer().is_empty() {
                self.flush()?;
            }
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(Line::Eof);
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !too_long && line.len() + take <= MAX_LINE_BUFFER {
                line.extend_from_slice(&buf[..take]);
            } else {
                too_long = true;
            }
            self.reader.consume(take);
            if done {
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }

    fn set_timeout(&self, timeout: Duration) {
        let _ = self
            .out
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    }
}

/// Serves one connection to its end.
pub fn serve(shared: &Arc<Shared>, conn: Conn) {
    let config = shared.config();
    let key = shared.track(&conn.stream);
    let peer = conn.peer;
    let started = Instant::now();
    let mut stats = Stats::default();
    let result = conn.stream.try_clone().and_then(|out| {
        let _ = conn.stream.set_nodelay(true);
        // A client that stops reading must not hold a session thread forever.
        let _ = conn.stream.set_write_timeout(Some(config.command_timeout));
        let mut wire = Wire {
            reader: BufReader::with_capacity(8192, conn.stream),
            out,
            pending: Vec::new(),
        };
        converse(shared, &config, &mut wire, peer, &mut stats)
    });
    shared.untrack(key);
    let end = match result {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("error: {e}"),
    };
    log::info!(
        "connection peer={peer} messages={} rejected={} duration={:.1}s {end}",
        stats.accepted,
        stats.rejected,
        started.elapsed().as_secs_f32()
    );
}

#[derive(Default)]
struct Stats {
    accepted: u32,
    rejected: u32,
}

fn converse(
    shared: &Shared,
    config: &Config,
    wire: &mut Wire,
    peer: SocketAddr,
    stats: &mut Stats,
) -> io::Result<()> {
    let mut session = Session::new(SessionConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.max_message_size,
        max_recipients: config.max_recipients,
        rdlv_mintimer: config.rdlv_mintimer,
    });
    let mut policy = ServerPolicy {
        shared,
        config,
        peer: peer.ip(),
    };
    if shared.shutting_down() {
        wire.reply(&session.shutting_down());
        return wire.flush();
    }
    wire.reply(&session.greeting());
    let mut line = Vec::with_capacity(MAX_LINE_BUFFER);
    loop {
        wire.set_timeout(config.command_timeout);
        let step = match wire.read_line(&mut line) {
            Ok(Line::Complete) => {
                log::trace!("< {}", String::from_utf8_lossy(&line).trim_end());
                if shared.shutting_down() {
                    // RFC 5321 §3.8: 421 may answer any command at shutdown.
                    wire.reply(&session.shutting_down());
                    return wire.flush();
                }
                session.feed(&line, &mut policy)
            }
            Ok(Line::TooLong) => session.line_too_long(),
            Ok(Line::Eof) if shared.shutting_down() => {
                wire.reply(&session.shutting_down());
                return wire.flush();
            }
            Ok(Line::Eof) => return Ok(()),
            Err(e) if is_timeout(&e) => {
                wire.reply(&session.timed_out());
                return wire.flush();
            }
            Err(e) => return Err(e),
        };
        if let Some(reply) = &step.reply {
            wire.reply(reply);
        }
        match step.action {
            Action::Continue => {}
            Action::Close => return wire.flush(),
            Action::ReceiveData => {
                wire.flush()?;
                if !receive_data(shared, config, wire, &mut session, &mut policy, stats)? {
                    return wire.flush();
                }
            }
            // Only a session holding an RDLV reply asks for these, and
            // receive_data handles that; anything else would be a bug: say
            // so and close rather than guess.
            Action::Wait | Action::Detach | Action::Abort { .. } => {
                log::error!(
                    "peer={peer} session asked for {:?} outside processing; closing",
                    step.action
                );
                wire.reply(&session.shutting_down());
                return wire.flush();
            }
        }
    }
}

/// Reads the content after a 354, spools it, and answers: at once for a
/// plain transaction, after processing for RDLV. Returns false when the
/// connection must close.
fn receive_data(
    shared: &Shared,
    config: &Config,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    stats: &mut Stats,
) -> io::Result<bool> {
    let peer = policy.peer;
    wire.set_timeout(config.data_timeout);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let id = shared.spool.new_id(now.as_micros());
    let mut writer = shared
        .spool
        .create_content(&id)
        .map_err(log_spool_error)
        .ok();
    let mut write_failed = writer.is_none();
    let mut decoder = DataDecoder::new(config.max_message_size);
    let mut chunk = Vec::with_capacity(16 * 1024);
    let mut header_written = false;
    loop {
        let buf = match wire.reader.fill_buf() {
            Ok(b) => b,
            Err(e) if is_timeout(&e) => {
                wire.reply(&session.timed_out());
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            // EOF before the terminator: RFC 5321 §4.1.1.10, nothing kept.
            if shared.shutting_down() {
                wire.reply(&session.shutting_down());
            }
            return Ok(false);
        }
        let (n, done) = decoder.decode(buf, &mut chunk);
        wire.reader.consume(n);
        if !shared.spool.has_room(decoder.size()) {
            write_failed = true;
        }
        if let (Some(w), false) = (writer.as_mut(), write_failed) {
            if !header_written {
                header_written = true;
                let trace = received_header(config, session, peer, &id, now.as_secs() as i64);
                write_failed |= w.write(trace.as_bytes()).map_err(log_spool_error).is_err();
            }
            write_failed |= w.write(&chunk).map_err(log_spool_error).is_err();
        }
        chunk.clear();
        if done {
            break;
        }
    }
    let txn = match session.data_end(decoder.verdict()) {
        Ok(txn) => txn,
        Err(reply) => {
            stats.rejected += 1;
            log::info!("peer={peer} message rejected: {reply}");
            wire.reply(&reply);
            return Ok(true);
        }
    };
    let writer = match (writer, write_failed) {
        (Some(w), false) => w,
        _ => {
            stats.rejected += 1;
            let reply = if shared.spool.has_room(decoder.size()) {
                spool_error()
            } else {
                storage_full()
            };
            wire.reply(&session.spool_failed(reply));
            return Ok(true);
        }
    };
    let env = envelope_of(&id, &txn, &decoder, peer, now.as_secs() as i64);
    // The per-sender limit, checked at MAIL, is enforced here for good:
    // several sessions of one sender may have passed MAIL together.
    let ticket = match env.mode {
        Mode::Reliable => {
            match shared.inflight.register_within(
                &id,
                &env.reverse_path,
                config.max_inflight_per_sender,
            ) {
                Some(ticket) => Some(ticket),
                None => {
                    stats.rejected += 1;
                    wire.reply(&session.spool_failed(sender_busy()));
                    return Ok(true);
                }
            }
        }
        _ => None,
    };
    match commit(shared, writer, env, ticket) {
        Ok(ticket) => {
            stats.accepted += 1;
            let step = session.spooled(&id);
            log::info!(
                "id={id} peer={peer} from=<{}> recipients={} size={} mode={}",
                txn.reverse_path,
                txn.recipients.len(),
                decoder.size(),
                if ticket.is_some() { "rdlv" } else { "queued" }
            );
            shared.submit(&id);
            match (step.action, ticket) {
                (Action::Wait, Some(ticket)) => {
                    hold_final_reply(shared, wire, session, policy, &ticket)
                }
                _ => {
                    if let Some(reply) = &step.reply {
                        wire.reply(reply);
                    }
                    Ok(true)
                }
            }
        }
        Err(e) => {
            log::error!("id={id} cannot commit to the spool: {e}");
            stats.rejected += 1;
            wire.reply(&session.spool_failed(spool_error()));
            Ok(true)
        }
    }
}

fn log_spool_error(e: SpoolError) -> SpoolError {
    log::error!("spool write failed: {e}");
    e
}

/// RFC 5321 §4.4: the trace line every SMTP server prepends.
fn received_header(config: &Config, session: &Session, peer: IpAddr, id: &str, now: i64) -> String {
    // The HELO name is the client's word: keep it to safe header characters.
    let helo: String = session
        .helo()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && c != '(' && c != ')' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let with = if session.is_esmtp() { "ESMTP" } else { "SMTP" };
    format!(
        "Received: from {helo} ({peer})\r\n\tby {} (detad) with {with} id {id};\r\n\t{}\r\n",
        config.hostname,
        rfc5322_date(now)
    )
}

fn envelope_of(
    id: &str,
    txn: &Transaction,
    decoder: &DataDecoder,
    peer: IpAddr,
    now: i64,
) -> Envelope {
    Envelope {
        ret: txn.params.ret,
        envid: txn.params.envid.clone(),
        body: txn.params.body,
        size: decoder.size(),
        eight_bit: decoder.eight_bit(),
        client_ip: peer.to_string(),
        helo: txn.helo.clone(),
        mode: if txn.rdlv.is_some() {
            Mode::Reliable
        } else {
            Mode::Queued
        },
        ..Envelope::new(
            id.to_string(),
            txn.reverse_path.clone(),
            now,
            txn.recipients.clone(),
        )
    }
}

/// Finishes the content and commits the envelope; an RDLV job's ticket is
/// registered before, so the worker always finds it, and dropped on failure.
fn commit(
    shared: &Shared,
    writer: ContentWriter,
    mut env: Envelope,
    ticket: Option<Arc<Ticket>>,
) -> Result<Option<Arc<Ticket>>, SpoolError> {
    let result = writer.finish().and_then(|size| {
        env.size = size;
        shared.spool.commit(&env)
    });
    if let Err(e) = result {
        shared.inflight.remove(&env.id);
        return Err(e);
    }
    Ok(ticket)
}

/// RDLV: holds the final reply until the job reaches a definite state,
/// sending a 120 before each interval runs out and reading CONT or DETA.
/// Whatever way this ends, the job is concluded, detached or aborted: an
/// I/O error (a reset seen when the 120 is written) aborts it too.
fn hold_final_reply(
    shared: &Shared,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    ticket: &Ticket,
) -> io::Result<bool> {
    let result = hold(shared, wire, session, policy, ticket);
    if let Err(e) = &result {
        log::info!(
            "id={} connection lost while its job was in processing: {e}",
            ticket.id
        );
        abort_job(shared, ticket);
        session.aborted();
    }
    result
}

fn hold(
    shared: &Shared,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    ticket: &Ticket,
) -> io::Result<bool> {
    let interval = Duration::from_secs(u64::from(session.interval_secs()));
    // Speak before the client's maxtimer expires: a tenth of it is margin
    // for the network and our own scheduling.
    let keepalive_after = interval.mul_f32(0.9);
    let mut line = Vec::with_capacity(MAX_LINE_BUFFER);
    loop {
        wire.flush()?;
        let started = Instant::now();
        let outcome = loop {
            let left = keepalive_after.saturating_sub(started.elapsed());
            if let Some(o) = ticket.wait_outcome(left.min(SHUTDOWN_CHECK)) {
                break Some(o);
            }
            if shared.shutting_down() {
                abort_job(shared, ticket);
                session.aborted();
                wire.reply(&session.shutting_down());
                return Ok(false);
            }
            if started.elapsed() >= keepalive_after {
                break None;
            }
        };
        if let Some(outcome) = outcome {
            let mut reply = session.outcome(&outcome, &ticket.id);
            if let Err(e) = conclude(shared, ticket, &reply) {
                // The 250 would promise what the spool does not hold.
                log::error!(
                    "id={} cannot commit after processing: {e}; answering 451",
                    ticket.id
                );
                reply = Reply::new(
                    451,
                    "4.3.0",
                    "local error writing the spool, nothing kept; try again later",
                );
            }
            wire.reply(&reply);
            return Ok(true);
        }
        // Bytes already buffered were sent before the client saw this 120.
        let mut early = wire.reader.buffer().len();
        wire.reply(&session.keepalive());
        wire.flush()?;
        wire.set_timeout(interval);
        loop {
            let read = wire.read_line(&mut line);
            let was_early = early > 0;
            early = early.saturating_sub(line.len());
            let step = match read {
                Ok(Line::Complete) if was_early => session.feed_early(&line, policy),
                Ok(Line::Complete) => session.feed(&line, policy),
                Ok(Line::TooLong) => Step {
                    reply: Some(Reply::new(500, "5.5.2", "line too long")),
                    action: Action::Abort { close: false },
                },
                Ok(Line::Eof) => {
                    abort_job(shared, ticket);
                    session.aborted();
                    if shared.shutting_down() {
                        // Our own shutdown ended the read: say so (RFC 5321 §3.8).
                        wire.reply(&session.shutting_down());
                    } else {
                        log::info!(
                            "id={} client closed the connection while its job was in processing",
                            ticket.id
                        );
                    }
                    return Ok(false);
                }
                Err(e) if is_timeout(&e) => {
                    log::info!(
                        "id={} client did not answer the 120 within {}s",
                        ticket.id,
                        interval.as_secs()
                    );
                    abort_job(shared, ticket);
                    session.aborted();
                    wire.reply(&session.timed_out());
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            if let Some(reply) = &step.reply {
                wire.reply(reply);
            }
            match step.action {
                Action::Wait => break,
                Action::Continue => continue,
                Action::Detach => match detach_job(shared, ticket) {
                    Ok(()) => {
                        wire.reply(&session.detached());
                        return Ok(false);
                    }
                    Err(e) => {
                        log::error!(
                            "id={} cannot mark detached: {e}; the client keeps waiting",
                            ticket.id
                        );
                        wire.reply(&session.detach_failed());
                        break;
                    }
                },
                Action::Abort { close } => {
                    abort_job(shared, ticket);
                    session.aborted();
                    return Ok(!close);
                }
                // Not produced while processing; should it ever be, the
                // job is aborted rather than left without its session.
                Action::Close | Action::ReceiveData => {
                    abort_job(shared, ticket);
                    session.aborted();
                    return Ok(false);
                }
            }
        }
    }
}

/// The session has the job's outcome: a 2xx reply commits (the rest goes
/// on as queued mail, with DSNs for what the reply did not say), anything
/// else drops the message (the client hears the failure).
///
/// # Errors
/// A 2xx could not be committed; the message is dropped and the caller
/// answers 451 instead.
fn conclude(shared: &Shared, ticket: &Ticket, reply: &Reply) -> Result<(), SpoolError> {
    let id = &ticket.id;
    let env = match shared.spool.load_if_present(id) {
        Ok(Some(env)) => env,
        Ok(None) if reply.is_positive() => {
            shared.inflight.remove(id);
            return Err(SpoolError::Corrupt {
                path: id.into(),
                why: "the message vanished".into(),
            });
        }
        Ok(None) => {
            shared.inflight.remove(id);
            return Ok(());
        }
        Err(e) => {
            shared.inflight.remove(id);
            return Err(e);
        }
    };
    if !reply.is_positive() {
        worker::abort(shared, &env, &format!("client told {reply}"));
        return Ok(());
    }
    let mut committed = env.clone();
    committed.mode = Mode::Queued;
    for r in committed.recipients.iter_mut() {
        // The 250 told the client these were delivered.
        if matches!(r.state, RcptState::Delivered { .. }) {
            r.dsn_done = true;
        }
    }
    let now = unix_now();
    if committed
        .recipients
        .iter()
        .any(|r| r.state == RcptState::Deferred)
        && committed.next_attempt <= now
    {
        committed.next_attempt = now + worker::backoff(&shared.config(), 1, now).as_secs() as i64;
    }
    if let Err(e) = shared.spool.write_envelope(&committed) {
        worker::abort(shared, &env, "the commit after the final reply failed");
        return Err(e);
    }
    // Only now: until the envelope says queued, the ticket (with its
    // outcome) tells a worker that this job is being concluded.
    shared.inflight.remove(id);
    shared.submit(id);
    Ok(())
}

/// DETA: the detached mark is made durable before the 221 is sent, so a
/// crash right after still finishes the job.
///
/// # Errors
/// The mark could not be written; nothing changed, the client keeps waiting.
fn detach_job(shared: &Shared, ticket: &Ticket) -> Result<(), SpoolError> {
    let id = &ticket.id;
    let mut state = ticket.lock();
    let mut env = shared.spool.load(id)?;
    env.mode = Mode::Detached;
    shared.spool.write_envelope(&env)?;
    state.detached = true;
    let finished = state.outcome.is_some();
    drop(state);
    log::info!("id={id} detached (DETA); the outcome will be reported by DSN");
    if finished {
        // The worker already reported: hand the result to the DSN path.
        shared.inflight.remove(id);
        shared.submit(id);
    }
    Ok(())
}

/// Abort: the worker stops at its next safe point and removes the message;
/// if it already finished, the message is removed here.
fn abort_job(shared: &Shared, ticket: &Ticket) {
    let mut state = ticket.lock();
    if state.outcome.is_none() {
        state.cancelled = true;
        return;
    }
    drop(state);
    shared.inflight.remove(&ticket.id);
    match shared.spool.load_if_present(&ticket.id) {
        Ok(Some(env)) => worker::abort(
            shared,
            &env,
            "the client went away or did not answer the 120",
        ),
        Ok(None) => {}
        Err(e) => log::error!("id={} cannot load for abort: {e}", ticket.id),
    }
}
