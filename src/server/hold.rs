//! RDLV: the final reply is held while the job is processed. Until the
//! next 120 is due the session watches two things at once with poll(2):
//! its client's socket (EOF or a reset at any time aborts the job, even
//! before the first 120) and the queue's doorbell (the outcome). After a
//! 120 it reads the client's answer: CONT waits again, DETA detaches,
//! anything else, silence or a lost connection aborts.
//!
//! Commands that arrive early (pipelined before a 120 was sent) are kept
//! and answered in order after the next 120: they cannot answer it.

use std::io;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use super::conn::{Ctx, Flow};
use super::policy::ServerPolicy;
use super::wire::{INPUT_BUFFER, Line, Wire};
use crate::clock::deadline_after;
use crate::queue::manager::{HoldEnd, HoldEvent};
use crate::smtp::reply::Reply;
use crate::smtp::session::{Action, MAX_LINE_BUFFER, Outcome, Session};

/// The most octets a client may pipeline while its reply is held.
const MAX_EARLY_INPUT: usize = INPUT_BUFFER / 2;

/// What ended a wait for the outcome.
enum Waited {
    Outcome(Outcome),
    Ended(HoldEnd),
    /// The client went away or broke the rules: abort with this reason.
    Gone(String),
    /// The next 120 is due.
    KeepaliveDue,
}

/// Holds the final reply of job `id` until it is decided, then answers.
pub fn hold(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    id: &str,
) -> io::Result<Flow> {
    wire.flush()?;
    let mut line = Vec::with_capacity(MAX_LINE_BUFFER);
    loop {
        let Some(after) = session.keepalive_after() else {
            return Ok(Flow::Continue);
        };
        match wait(ctx, wire, id, deadline_after(after)) {
            Waited::Outcome(outcome) => return answer(ctx, wire, session, id, &outcome),
            Waited::Ended(end) => {
                if end == HoldEnd::Shutdown {
                    ctx.shared
                        .queue
                        .abort(id, "server shutting down before the final reply");
                }
                return Ok(ended(wire, session, end));
            }
            Waited::Gone(why) => {
                ctx.shared.queue.abort(id, &why);
                session.aborted();
                return Ok(Flow::Close);
            }
            Waited::KeepaliveDue => {}
        }
        // Bytes already buffered were sent before the client saw this 120.
        let early = wire.buffered().len();
        wire.reply(&session.keepalive());
        if let Err(e) = wire.flush() {
            ctx.shared
                .queue
                .abort(id, &format!("connection lost writing the 120: {e}"));
            session.aborted();
            return Err(e);
        }
        match answer_keepalive(ctx, wire, session, policy, id, early, &mut line)? {
            Some(flow) => return Ok(flow),
            None => continue,
        }
    }
}

/// Waits for the outcome, the client's socket and the deadline at once.
fn wait(ctx: &Ctx<'_>, wire: &mut Wire, id: &str, until: Instant) -> Waited {
    let bell = &ctx.thread.bell;
    loop {
        while let Some(event) = bell.take() {
            match event {
                HoldEvent::Outcome(of, outcome) if of == id => return Waited::Outcome(outcome),
                HoldEvent::Ended(of, end) if of == id => return Waited::Ended(end),
                // A stale event of an earlier job of this thread.
                _ => {}
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Waited::KeepaliveDue;
        }
        let timeout = Timespec::try_from(left.min(Duration::from_secs(3600))).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds = [
            PollFd::new(wire.socket(), PollFlags::IN | PollFlags::RDHUP),
            PollFd::new(bell.socket(), PollFlags::IN),
        ];
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Waited::Gone(format!("cannot watch the connection: {e}")),
        }
        let client = fds[0].revents();
        if client.intersects(PollFlags::IN | PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR) {
            match wire.read_available() {
                Ok(0) if ctx.shared.shutting_down() => return Waited::Ended(HoldEnd::Shutdown),
                Ok(0) => return Waited::Gone("the client closed the connection (EOF)".into()),
                Ok(_) if wire.buffered().len() > MAX_EARLY_INPUT => {
                    return Waited::Gone(
                        "the client sent too much while its reply was held".into(),
                    );
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Waited::Gone("the connection was reset".into());
                }
                Err(e) => return Waited::Gone(format!("connection error: {e}")),
            }
        }
    }
}

/// Reads the client's answer to a 120. `Some(flow)` when the hold is over.
fn answer_keepalive(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    id: &str,
    mut early: usize,
    line: &mut Vec<u8>,
) -> io::Result<Option<Flow>> {
    let window = session.answer_window().unwrap_or(Duration::from_secs(1));
    let deadline = deadline_after(window);
    loop {
        let read = wire.read_line(line, MAX_LINE_BUFFER, deadline)?;
        let was_early = early > 0;
        early = early.saturating_sub(line.len());
        let step = match read {
            Line::Complete if was_early => session.feed_early(line, policy),
            Line::Complete => session.feed(line, policy),
            other => return Ok(Some(lost_answer(ctx, wire, session, id, other, window))),
        };
        if let Some(reply) = &step.reply {
            wire.reply(reply);
        }
        match step.action {
            Action::Wait => return Ok(None),
            Action::Continue => continue,
            Action::Detach => return detach(ctx, wire, session, id),
            Action::Abort { close } => {
                let what = String::from_utf8_lossy(line).trim_end().to_string();
                let why = match what.to_ascii_uppercase().as_str() {
                    "RSET" => "the client sent RSET after a 120".to_string(),
                    "QUIT" => "the client sent QUIT after a 120".to_string(),
                    _ => format!("unexpected command after a 120: {:.40}", what),
                };
                ctx.shared.queue.abort(id, &why);
                return Ok(Some(if close { Flow::Close } else { Flow::Continue }));
            }
            // Not produced while processing; should it ever be, the job is
            // aborted rather than left without its session.
            Action::Close | Action::ReceiveData => {
                abort(ctx, session, id, "the session left processing unexpectedly");
                return Ok(Some(Flow::Close));
            }
        }
    }
}

/// No answer to a 120 came: the job is aborted, with the reason logged.
fn lost_answer(
    ctx: &Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    id: &str,
    read: Line,
    window: Duration,
) -> Flow {
    match read {
        Line::Eof if ctx.shared.shutting_down() => {
            abort(
                ctx,
                session,
                id,
                "server shutting down before the final reply",
            );
            wire.reply(&session.shutting_down());
            Flow::Close
        }
        Line::Eof => {
            abort(
                ctx,
                session,
                id,
                "the client closed the connection after a 120 (EOF)",
            );
            Flow::Close
        }
        Line::Timeout => {
            let why = format!(
                "the client did not answer the 120 within {}s",
                window.as_secs()
            );
            abort(ctx, session, id, &why);
            wire.reply(&session.timed_out());
            Flow::Close
        }
        Line::TooLong | Line::Flood | Line::Complete => {
            abort(
                ctx,
                session,
                id,
                "the client sent an over-long line after a 120",
            );
            wire.reply(&Reply::new(500, "5.5.2", "line too long"));
            Flow::Continue
        }
    }
}

fn abort(ctx: &Ctx<'_>, session: &mut Session, id: &str, why: &str) {
    ctx.shared.queue.abort(id, why);
    session.aborted();
}

/// DETA: the queue makes the detached mark durable, then the 221.
fn detach(
    ctx: &Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    id: &str,
) -> io::Result<Option<Flow>> {
    match ctx.shared.queue.detach(id) {
        Ok(()) => {
            wire.reply(&session.detached());
            Ok(Some(Flow::Close))
        }
        Err(why) => {
            log::warn!("id={id} DETA refused ({why:?}); the client keeps waiting");
            wire.reply(&session.detach_refused(why));
            Ok(None)
        }
    }
}

/// The job is decided: the session makes the reply, the queue concludes it
/// (after a 2xx what is left is kept, durably; anything else drops it), and
/// only then the reply goes out.
fn answer(
    ctx: &Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    id: &str,
    outcome: &Outcome,
) -> io::Result<Flow> {
    let mut reply = session.outcome(outcome, id);
    if let Err(e) = ctx.shared.queue.conclude(id, reply.is_positive()) {
        // The 250 would promise what the spool does not hold.
        log::error!("id={id} cannot keep it after processing: {e}; answering 451");
        reply = Reply::new(
            451,
            "4.3.0",
            "local error writing the spool, nothing kept; try again later",
        );
    }
    wire.reply(&reply);
    Ok(Flow::Continue)
}

/// The hold ended without an outcome.
fn ended(wire: &mut Wire, session: &mut Session, end: HoldEnd) -> Flow {
    session.aborted();
    match end {
        HoldEnd::Removed => {
            wire.reply(&Reply::new(
                451,
                "4.3.0",
                "message removed by the operator, nothing kept",
            ));
            Flow::Continue
        }
        HoldEnd::Shutdown => {
            wire.reply(&session.shutting_down());
            Flow::Close
        }
    }
}
