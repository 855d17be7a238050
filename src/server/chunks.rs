//! BDAT (RFC 3030) and BURL (RFC 4468): a message assembled from counted
//! chunks over several commands. The connection keeps the [`Message`]
//! between them; the session says when it is over ([`Session::in_chunks`]).
//!
//! A BDAT's octets are always read, also when the command is refused, so
//! that content is never taken for commands. A chunk must arrive by the
//! same rate-based deadline as DATA content.

use std::io;

use super::conn::{Ctx, Flow};
use super::data::{Message, commit, data_deadline};
use super::policy::ServerPolicy;
use super::wire::{Wire, is_timeout};
use crate::smtp::data::DataDecoder;
use crate::smtp::reply::Reply;
use crate::smtp::session::{ChunkEnd, Session};

/// How a counted read ended early.
enum Cut {
    /// The client closed the connection.
    Eof,
    /// The deadline passed.
    Timeout,
}

/// Reads exactly `size` octets, giving each piece to `take`.
fn read_counted(
    ctx: &Ctx<'_>,
    wire: &mut Wire,
    size: u64,
    mut take: impl FnMut(&[u8]),
) -> io::Result<Result<(), Cut>> {
    let config = ctx.config;
    let start = std::time::Instant::now();
    let deadline = data_deadline(start, config.data_timeout, config.data_min_rate, size);
    let mut left = size;
    while left > 0 {
        let buffered = wire.buffered();
        let n = buffered
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        if n > 0 {
            take(&buffered[..n]);
            wire.consume(n);
            left -= n as u64;
            continue;
        }
        match wire.fill(deadline) {
            Ok(0) => return Ok(Err(Cut::Eof)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut || is_timeout(&e) => {
                return Ok(Err(Cut::Timeout));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Ok(()))
}

/// The connection ends inside a chunk: nothing is kept (RFC 5321
/// §4.1.1.10), and a timeout is said.
fn cut(
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    how: Cut,
    message: &mut Option<Message>,
) -> Flow {
    *message = None;
    let _ = session.chunk_failed(Reply::new(451, "4.4.2", "lost"), policy);
    if let Cut::Timeout = how {
        wire.reply(&session.timed_out());
    }
    Flow::Close
}

/// `BDAT size [LAST]` accepted: reads the chunk into the message.
pub(super) fn bdat(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    message: &mut Option<Message>,
    (size, last): (u64, bool),
) -> io::Result<Flow> {
    let m = message.get_or_insert_with(|| start(ctx, wire, session));
    let mut scratch = Vec::new();
    if let Err(how) = read_counted(ctx, wire, size, |piece| m.feed(piece, &mut scratch))? {
        return Ok(cut(wire, session, policy, how, message));
    }
    end_chunk(ctx, wire, session, policy, message, (size, last, last))
}

/// A refused BDAT: its octets are read and dropped.
pub(super) fn discard(
    ctx: &Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    size: u64,
) -> io::Result<Flow> {
    match read_counted(ctx, wire, size, |_| {})? {
        Ok(()) => Ok(Flow::Continue),
        Err(how) => Ok(cut(wire, session, policy, how, &mut None)),
    }
}

pub(super) fn start(ctx: &Ctx<'_>, wire: &Wire, session: &Session) -> Message {
    Message::start(
        ctx,
        wire,
        session,
        DataDecoder::raw(ctx.config.max_message_size),
    )
}

/// After a chunk: the next one is awaited, or the message is judged and
/// committed, or the transaction failed. `finish`: the content is complete
/// (not when a worker will append a fetch to it).
pub(super) fn end_chunk(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    message: &mut Option<Message>,
    (size, last, finish): (u64, bool, bool),
) -> io::Result<Flow> {
    let Some(m) = message.as_mut() else {
        wire.reply(&session.chunk_failed(spool_lost(), policy));
        return Ok(Flow::Continue);
    };
    if finish {
        let mut tail = Vec::new();
        m.decoder.finish(&mut tail);
        m.sink.write(&tail);
    }
    match session.chunk_end(size, last, m.decoder.verdict(), policy) {
        ChunkEnd::More(reply) => {
            wire.reply(&reply);
            Ok(Flow::Continue)
        }
        ChunkEnd::Failed(reply) => {
            *message = None;
            ctx.stats.rejected += 1;
            log::info!("peer={} message rejected: {reply}", ctx.peer);
            wire.reply(&reply);
            Ok(Flow::Continue)
        }
        ChunkEnd::Last(txn) => match message.take() {
            Some(m) => commit(ctx, wire, session, policy, m, txn),
            None => {
                wire.reply(&spool_lost());
                Ok(Flow::Continue)
            }
        },
    }
}

fn spool_lost() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "local error writing the spool, try again later",
    )
}

/// `BURL` in a build without it (the configuration refuses `burl_imap`
/// there, so the session never offers it): the transaction fails.
#[cfg(not(feature = "burl"))]
pub(super) fn burl(
    _: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    message: &mut Option<Message>,
    _: bool,
) -> io::Result<Flow> {
    *message = None;
    let _ = session.take_url();
    let reply = Reply::new(502, "5.5.1", "BURL not available");
    wire.reply(&session.chunk_failed(reply, policy));
    Ok(Flow::Continue)
}
