//! The content after a 354: decoded, written into `tmp/` under a byte
//! reservation, committed through the queue manager, and answered (at once
//! for a plain transaction, after processing for RDLV).
//!
//! The whole content must arrive by a deadline that grows with what was
//! received: `data_timeout` plus one second per `data_min_rate` octets
//! (Postfix's `smtpd_min_data_rate`), so a trickling client is dropped.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::conn::{Ctx, Flow};
use super::hold;
use super::policy::{ServerPolicy, sender_busy, storage_full};
use super::wire::{Wire, is_timeout};
use crate::queue::envelope::{Envelope, Mode, Recipient};
use crate::queue::limits::ByteReservation;
use crate::queue::manager::{Commit, CommitError};
use crate::queue::spool::ContentWriter;
use crate::smtp::data::DataDecoder;
use crate::smtp::reply::Reply;
use crate::smtp::session::{Policy, Session, Transaction};
use crate::time_fmt::rfc5322_date;

/// The most input decoded at once (see `read_content`).
const DECODE_PIECE: usize = 8 * 1024;

/// The spool could not be written (I/O error): temporary, nothing kept.
fn spool_error() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "local error writing the spool, try again later",
    )
}

/// How the content went to the spool.
pub(super) struct Sink {
    writer: Option<ContentWriter>,
    bytes: Option<ByteReservation>,
    /// What went wrong, if anything: the reply after the terminator.
    pub(super) failure: Option<Reply>,
}

impl Sink {
    pub(super) fn write(&mut self, chunk: &[u8]) {
        if self.failure.is_some() || chunk.is_empty() {
            return;
        }
        let grown = self
            .bytes
            .as_mut()
            .is_some_and(|b| b.grow(chunk.len() as u64));
        if !grown {
            self.fail(storage_full());
            return;
        }
        let Some(w) = self.writer.as_mut() else {
            self.fail(spool_error());
            return;
        };
        if let Err(e) = w.write(chunk) {
            log::error!("spool write failed: {e}");
            self.fail(spool_error());
        }
    }

    /// Stops storing: the file goes, the reservation is given back.
    fn fail(&mut self, reply: Reply) {
        self.failure = Some(reply);
        self.writer = None;
        self.bytes = None;
    }
}

/// The DATA deadline after `received` octets.
pub(super) fn data_deadline(
    start: Instant,
    timeout: Duration,
    min_rate: u64,
    received: u64,
) -> Instant {
    let allowance = Duration::from_secs(received / min_rate.max(1));
    crate::clock::after(start, timeout.saturating_add(allowance))
}

/// A message being received: its queue id, where its content goes, and
/// the judge of that content. DATA makes one per transaction; BDAT and
/// BURL keep one across their chunks.
pub(super) struct Message {
    pub(super) id: String,
    pub(super) sink: Sink,
    pub(super) decoder: DataDecoder,
    /// Unix time of the arrival.
    pub(super) now: i64,
    /// A BURL URL the worker fetches as the first processing step (an
    /// RDLV transaction ended with `BURL … LAST`).
    pub(super) fetch: Option<String>,
}

impl Message {
    /// A new message: an id, its content file in `tmp/` and a byte
    /// reservation, with our `Received:` line first.
    pub(super) fn start(
        ctx: &Ctx<'_>,
        wire: &Wire,
        session: &Session,
        decoder: DataDecoder,
    ) -> Message {
        let spool = ctx.shared.queue.spool();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id = spool.new_id(now.as_micros());
        let mut sink = Sink {
            writer: None,
            bytes: ctx.shared.queue.limits().reserve_bytes(0),
            failure: None,
        };
        match spool.create_content(&id) {
            Ok(w) => sink.writer = Some(w),
            Err(e) => {
                log::error!("id={id} cannot create the content file: {e}");
                sink.fail(spool_error());
            }
        }
        let tls = wire.is_tls().then(|| super::conn::tls_info(wire));
        let trace = received_header(
            ctx.config.hostname.as_str(),
            session,
            tls,
            ctx.peer.ip(),
            &id,
            now.as_secs() as i64,
        );
        sink.write(trace.as_bytes());
        Message {
            id,
            sink,
            decoder,
            now: now.as_secs() as i64,
            fetch: None,
        }
    }

    /// Judges and stores `bytes` of content.
    pub(super) fn feed(&mut self, bytes: &[u8], scratch: &mut Vec<u8>) {
        scratch.clear();
        self.decoder.decode(bytes, scratch);
        self.sink.write(scratch);
        scratch.clear();
    }
}

/// Reads the content and answers it. Returns whether the connection goes on.
pub fn receive(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
) -> io::Result<Flow> {
    let decoder = DataDecoder::new(ctx.config.max_message_size);
    let mut message = Message::start(ctx, wire, session, decoder);
    if let Some(flow) = read_content(ctx, wire, session, policy, &mut message)? {
        return Ok(flow);
    }
    let txn = match session.data_end(message.decoder.verdict(), policy) {
        Ok(txn) => txn,
        Err(reply) => {
            ctx.stats.rejected += 1;
            log::info!("peer={} message rejected: {reply}", ctx.peer);
            wire.reply(&reply);
            return Ok(Flow::Continue);
        }
    };
    commit(ctx, wire, session, policy, message, txn)
}

/// Reads the content up to its terminator into `sink`, against the DATA
/// deadline. `Some(flow)` when the transaction ended without it (EOF,
/// timeout): nothing is kept.
fn read_content(
    ctx: &Ctx<'_>,
    wire: &mut Wire,
    session: &Session,
    policy: &mut ServerPolicy<'_>,
    message: &mut Message,
) -> io::Result<Option<Flow>> {
    let Message { sink, decoder, .. } = message;
    let config = ctx.config;
    // Decoded a piece at a time: the decoder never emits more than it is
    // given, so `chunk` stays one piece long (20 sessions in DATA at once
    // each hold one).
    let mut chunk = Vec::with_capacity(DECODE_PIECE);
    let start = Instant::now();
    loop {
        let input = wire.buffered();
        let more = input.len() > DECODE_PIECE;
        let (n, done) = decoder.decode(&input[..input.len().min(DECODE_PIECE)], &mut chunk);
        wire.consume(n);
        sink.write(&chunk);
        chunk.clear();
        if done {
            return Ok(None);
        }
        if more && n > 0 {
            // The decoder takes all it is given until the terminator.
            continue;
        }
        let deadline = data_deadline(
            start,
            config.data_timeout,
            config.data_min_rate,
            decoder.size(),
        );
        match wire.fill(deadline) {
            Ok(0) => {
                // EOF before the terminator: RFC 5321 §4.1.1.10, nothing kept.
                policy.end_transaction();
                if ctx.shared.shutting_down() {
                    wire.reply(&session.shutting_down());
                }
                return Ok(Some(Flow::Close));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut || is_timeout(&e) => {
                policy.end_transaction();
                wire.reply(&session.timed_out());
                return Ok(Some(Flow::Close));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Hands the finished content to the queue manager and answers.
pub(super) fn commit(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    message: Message,
    txn: Transaction,
) -> io::Result<Flow> {
    let Message {
        id,
        mut sink,
        decoder,
        now,
        fetch,
    } = message;
    let id = id.as_str();
    let decoder = &decoder;
    let refuse = |ctx: &mut Ctx<'_>, wire: &mut Wire, reply: Reply| {
        ctx.stats.rejected += 1;
        wire.reply(&reply);
        Ok(Flow::Continue)
    };
    let slot = policy.take_slot();
    if let Some(reply) = sink.failure.take() {
        return refuse(ctx, wire, reply);
    }
    let (Some(writer), Some(bytes)) = (sink.writer.take(), sink.bytes.take()) else {
        return refuse(ctx, wire, spool_error());
    };
    let content = match writer.finish() {
        Ok(c) => c,
        Err(e) => {
            log::error!("id={id} cannot finish the content: {e}");
            return refuse(ctx, wire, spool_error());
        }
    };
    let hold = match (txn.rdlv, slot) {
        (None, _) => None,
        (Some(_), Some(slot)) => Some((slot, ctx.thread.doorbell.clone())),
        (Some(_), None) => return refuse(ctx, wire, sender_busy()),
    };
    let mut env = envelope_of(id, &txn, policy, decoder, ctx.peer.ip(), now);
    env.fetch = fetch;
    let mode = env.mode;
    match ctx.shared.queue.commit(Commit {
        content,
        env,
        bytes,
        hold,
    }) {
        Ok(()) => {}
        Err(CommitError::ShuttingDown) => {
            wire.reply(&session.shutting_down());
            return Ok(Flow::Close);
        }
        Err(CommitError::Spool(_)) => return refuse(ctx, wire, spool_error()),
    }
    ctx.stats.accepted += 1;
    log_accepted(ctx, id, &txn, decoder.size(), mode);
    let step = session.spooled(id, txn.rdlv);
    match step.reply {
        Some(reply) => {
            wire.reply(&reply);
            Ok(Flow::Continue)
        }
        None => hold::hold(ctx, wire, session, policy, id),
    }
}

/// The log line of an accepted message.
fn log_accepted(ctx: &Ctx<'_>, id: &str, txn: &Transaction, size: u64, mode: Mode) {
    log::info!(
        "id={id} peer={} from=<{}> recipients={} size={size} mode={}{}",
        ctx.peer,
        txn.reverse_path,
        txn.recipients.len(),
        if mode == Mode::Reliable {
            "rdlv"
        } else {
            "queued"
        },
        txn.auth
            .as_deref()
            .map(|a| format!(" auth={a}"))
            .unwrap_or_default()
    );
}

/// RFC 5321 §4.4: the trace line every SMTP server prepends; the client's
/// address goes in brackets (TCP-info is an address literal).
fn received_header(
    hostname: &str,
    session: &Session,
    tls: Option<String>,
    peer: IpAddr,
    id: &str,
    now: i64,
) -> String {
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
    let literal = match peer {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    };
    let with = protocol_name(session);
    let tls = match tls {
        Some(info) => format!("\t({info})\r\n"),
        None => String::new(),
    };
    format!(
        "Received: from {helo} ({literal})\r\n{tls}\tby {hostname} (detad) with {with} id {id};\r\n\t{}\r\n",
        rfc5322_date(now)
    )
}

/// RFC 3848: ESMTP, plus S for TLS and A for AUTH (ESMTPS, ESMTPA,
/// ESMTPSA); SMTP after HELO. RFC 6531 §3.7.3: UTF8SMTP (with S and A
/// likewise) when the transaction used SMTPUTF8, which needs EHLO.
fn protocol_name(session: &Session) -> &'static str {
    let (tls, auth) = (session.is_tls(), session.identity().is_some());
    if !session.is_esmtp() {
        return "SMTP";
    }
    match (session.is_smtputf8(), tls, auth) {
        (false, false, false) => "ESMTP",
        (false, true, false) => "ESMTPS",
        (false, false, true) => "ESMTPA",
        (false, true, true) => "ESMTPSA",
        (true, false, false) => "UTF8SMTP",
        (true, true, false) => "UTF8SMTPS",
        (true, false, true) => "UTF8SMTPA",
        (true, true, true) => "UTF8SMTPSA",
    }
}

fn envelope_of(
    id: &str,
    txn: &Transaction,
    policy: &ServerPolicy<'_>,
    decoder: &DataDecoder,
    peer: IpAddr,
    now: i64,
) -> Envelope {
    let recipients = txn
        .recipients
        .iter()
        .map(|r| Recipient::new(r.address.clone(), r.params.notify, r.params.orcpt.clone()))
        .collect();
    Envelope {
        ret: txn.params.ret,
        envid: txn.params.envid.clone(),
        body: txn.params.body,
        eight_bit: decoder.eight_bit(),
        smtputf8: txn.params.smtputf8,
        client_ip: peer.to_string(),
        helo: txn.helo.clone(),
        auth: policy.auth.clone(),
        mode: if txn.rdlv.is_some() {
            Mode::Reliable
        } else {
            Mode::Queued
        },
        ..Envelope::new(id.to_string(), txn.reverse_path.clone(), now, recipients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_deadline_grows_with_the_rate_and_never_overflows() {
        let start = Instant::now();
        let t = Duration::from_secs(10);
        assert_eq!(data_deadline(start, t, 1000, 0), start + t);
        assert_eq!(
            data_deadline(start, t, 1000, 5000),
            start + t + Duration::from_secs(5)
        );
        // A trickle of 1 octet/s earns nothing against 1000 octets/s.
        assert_eq!(data_deadline(start, t, 1000, 999), start + t);
        let far = data_deadline(start, Duration::from_secs(u64::MAX), 1, u64::MAX);
        assert!(far > start);
    }
}
