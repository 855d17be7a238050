//! The first processing step of an RDLV job that ended with `BURL … LAST`
//! (RFC 4468 with the RDLV of draft-burger-smtp-deta): its content is
//! fetched here, by the worker, so that the session holds the final reply
//! with `120`s, `CONT` and `DETA` while the fetch runs, exactly as while
//! a delivery runs.
//!
//! The content so far (our `Received:` line and any earlier chunks) and the
//! fetched part go into `tmp/ID`, judged like DATA, and the queue manager
//! puts that file in the message's place. A failure is the recipients'
//! outcome: permanent (`554 5.6.6`, a refused URL) fails them, temporary
//! (IMAP unreachable) defers them. An aborted job stops at the next piece
//! of content.

use std::io::{self, Read, Write};

use super::worker::WorkerContext;
use crate::burl::{self, Cancellable, Limits};
use crate::config::Config;
use crate::queue::delivery::Delivery;
use crate::queue::envelope::Envelope;
use crate::queue::limits::ByteReservation;
use crate::queue::manager::{Attempt, Refill};
use crate::queue::spool::ContentWriter;
use crate::smtp::data::DataDecoder;
use crate::smtp::reply::Reply;
use crate::smtp::status::EnhancedStatus;

/// Why no content came.
enum Failed {
    /// The job was aborted (or removed): nothing to record.
    Cancelled,
    /// The recipients' outcome.
    Reply(Reply),
}

/// Fetches the pending content of `attempt`'s message. Returns the attempt
/// to go on with (its envelope now has the whole content), or `None` when
/// the outcome is recorded already or the job is gone.
pub fn fetch_pending(ctx: &WorkerContext, config: &Config, attempt: &Attempt) -> Option<Attempt> {
    let id = &attempt.env.id;
    match fetch(ctx, config, attempt) {
        Ok(env) => Some(Attempt {
            env,
            due: attempt.due.clone(),
            cancel: attempt.cancel.clone(),
        }),
        Err(Failed::Cancelled) => None,
        Err(Failed::Reply(reply)) => {
            log::warn!("id={id} BURL content not fetched: {reply}");
            let status = reply
                .status
                .unwrap_or_else(|| EnhancedStatus::from_reply_code(reply.code));
            let text = reply.text();
            let outcome = match reply.is_permanent() {
                true => Delivery::failed(status, text),
                false => Delivery::deferred(status, text),
            };
            let results = attempt.due.iter().map(|&i| (i, outcome.clone())).collect();
            ctx.queue.record(id, results);
            None
        }
    }
}

fn spool_failure(e: impl std::fmt::Display) -> Failed {
    log::error!("BURL content cannot be written to the spool: {e}");
    Failed::Reply(Reply::new(
        451,
        "4.3.0",
        "local error writing the spool, try again later",
    ))
}

/// The new content file, fed through the judge, under a byte reservation.
struct Content {
    writer: ContentWriter,
    bytes: ByteReservation,
    decoder: DataDecoder,
    scratch: Vec<u8>,
}

impl Write for Content {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.scratch.clear();
        self.decoder.decode(buf, &mut self.scratch);
        if !self.bytes.grow(self.scratch.len() as u64) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "spool_max_bytes reached",
            ));
        }
        self.writer.write(&self.scratch).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn fetch(ctx: &WorkerContext, config: &Config, attempt: &Attempt) -> Result<Envelope, Failed> {
    let env = &attempt.env;
    let url = env.fetch.as_deref().unwrap_or_default();
    let Some(settings) = config.burl() else {
        return Err(Failed::Reply(Reply::new(
            451,
            "4.3.5",
            "BURL is no longer configured (burl_imap)",
        )));
    };
    let identity = env.auth.as_deref().unwrap_or_default();
    let authorized = burl::check(url, &settings.host, settings.port, identity)
        .map_err(|r| Failed::Reply(r.reply()))?;
    let mut content = start(ctx, config, env)?;
    let room = config
        .max_message_size
        .saturating_sub(content.decoder.size());
    let limits = Limits::new(room, burl::FETCH_TIMEOUT);
    let mut sink = Cancellable {
        inner: &mut content,
        cancel: &attempt.cancel,
    };
    if let Err(e) = burl::resolve(&settings, &authorized, &mut sink, &limits) {
        if attempt.cancelled() {
            return Err(Failed::Cancelled);
        }
        log::warn!("id={} BURL fetch failed: {e}", env.id);
        return Err(Failed::Reply(e.reply()));
    }
    let mut tail = Vec::new();
    content.decoder.finish(&mut tail);
    if !tail.is_empty() {
        content.write_all(&tail).map_err(spool_failure)?;
    }
    if let Some(refusal) = content.decoder.verdict().refusal() {
        return Err(Failed::Reply(refusal));
    }
    let Content {
        writer,
        bytes,
        decoder,
        ..
    } = content;
    let finished = writer.finish().map_err(spool_failure)?;
    log::info!(
        "id={} BURL fetched, content now {} octets",
        env.id,
        finished.len
    );
    ctx.queue
        .refill(
            &env.id,
            Refill {
                content: finished,
                bytes,
                eight_bit: decoder.eight_bit(),
            },
        )
        .map_err(|e| {
            log::warn!("id={} fetched content not stored: {e}", env.id);
            Failed::Cancelled
        })
}

/// The new content file with the content so far, judged again so that the
/// judge knows where the last line stands when the fetched part follows.
fn start(ctx: &WorkerContext, config: &Config, env: &Envelope) -> Result<Content, Failed> {
    let spool = ctx.queue.spool();
    let writer = spool.create_content(&env.id).map_err(spool_failure)?;
    let bytes = ctx
        .queue
        .limits()
        .reserve_bytes(0)
        .ok_or_else(|| spool_failure("spool_max_bytes reached"))?;
    let mut content = Content {
        writer,
        bytes,
        decoder: DataDecoder::raw(config.max_message_size),
        scratch: Vec::new(),
    };
    let mut old = spool.open_content(env).map_err(spool_failure)?;
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = old.read(&mut buf).map_err(spool_failure)?;
        if n == 0 {
            return Ok(content);
        }
        content.write_all(&buf[..n]).map_err(spool_failure)?;
    }
}
