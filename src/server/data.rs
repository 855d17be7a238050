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

/// The spool could not be written (I/O error): temporary, nothing kept.
fn spool_error() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "local error writing the spool, try again later",
    )
}

/// How the content went to the spool.
struct Sink {
    writer: Option<ContentWriter>,
    bytes: Option<ByteReservation>,
    /// What went wrong, if anything: the reply after the terminator.
    failure: Option<Reply>,
}

impl Sink {
    fn write(&mut self, chunk: &[u8]) {
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
fn data_deadline(start: Instant, timeout: Duration, min_rate: u64, received: u64) -> Instant {
    let allowance = Duration::from_secs(received / min_rate.max(1));
    crate::clock::after(start, timeout.saturating_add(allowance))
}

/// Reads the content and answers it. Returns whether the connection goes on.
pub fn receive(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
) -> io::Result<Flow> {
    let config = ctx.config;
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
    let trace = received_header(
        config.hostname.as_str(),
        session,
        ctx.peer.ip(),
        &id,
        now.as_secs() as i64,
    );
    sink.write(trace.as_bytes());
    let mut decoder = DataDecoder::new(config.max_message_size);
    if let Some(flow) = read_content(ctx, wire, session, policy, &mut decoder, &mut sink)? {
        return Ok(flow);
    }
    let txn = match session.data_end(decoder.verdict(), policy) {
        Ok(txn) => txn,
        Err(reply) => {
            ctx.stats.rejected += 1;
            log::info!("peer={} message rejected: {reply}", ctx.peer);
            wire.reply(&reply);
            return Ok(Flow::Continue);
        }
    };
    commit(
        ctx,
        wire,
        session,
        policy,
        sink,
        txn,
        &id,
        &decoder,
        now.as_secs() as i64,
    )
}

/// Reads the content up to its terminator into `sink`, against the DATA
/// deadline. `Some(flow)` when the transaction ended without it (EOF,
/// timeout): nothing is kept.
fn read_content(
    ctx: &Ctx<'_>,
    wire: &mut Wire,
    session: &Session,
    policy: &mut ServerPolicy<'_>,
    decoder: &mut DataDecoder,
    sink: &mut Sink,
) -> io::Result<Option<Flow>> {
    let config = ctx.config;
    let mut chunk = Vec::with_capacity(64 * 1024);
    let start = Instant::now();
    loop {
        let (n, done) = decoder.decode(wire.buffered(), &mut chunk);
        wire.consume(n);
        sink.write(&chunk);
        chunk.clear();
        if done {
            return Ok(None);
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
#[allow(clippy::too_many_arguments)]
fn commit(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    mut sink: Sink,
    txn: Transaction,
    id: &str,
    decoder: &DataDecoder,
    now: i64,
) -> io::Result<Flow> {
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
    let env = envelope_of(id, &txn, policy, decoder, ctx.peer.ip(), now);
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
    log::info!(
        "id={id} peer={} from=<{}> recipients={} size={} mode={}",
        ctx.peer,
        txn.reverse_path,
        txn.recipients.len(),
        decoder.size(),
        if mode == Mode::Reliable {
            "rdlv"
        } else {
            "queued"
        }
    );
    let step = session.spooled(id, txn.rdlv);
    match step.reply {
        Some(reply) => {
            wire.reply(&reply);
            Ok(Flow::Continue)
        }
        None => hold::hold(ctx, wire, session, policy, id),
    }
}

/// RFC 5321 §4.4: the trace line every SMTP server prepends; the client's
/// address goes in brackets (TCP-info is an address literal).
fn received_header(hostname: &str, session: &Session, peer: IpAddr, id: &str, now: i64) -> String {
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
    let with = if session.is_esmtp() { "ESMTP" } else { "SMTP" };
    format!(
        "Received: from {helo} ({literal})\r\n\tby {hostname} (detad) with {with} id {id};\r\n\t{}\r\n",
        rfc5322_date(now)
    )
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
