//! RDLV jobs and their sessions: DETA (detach), abort, and the conclusion
//! once the session has answered the client.

use crossbeam_channel::Sender;

use super::{AfterBarrier, Manager, unix_now};
use crate::queue::bounce;
use crate::queue::envelope::{Mode, RcptState};
use crate::queue::schedule::{after, backoff};
use crate::smtp::session::DetachRefusal;

impl Manager {
    /// DETA: the detached mark is made durable before the session may send
    /// its 221, so a crash right after still finishes the job. The limit
    /// (`max_detached`) is checked and taken in the same step.
    pub(super) fn detach(&mut self, id: &str, reply: Sender<Result<(), DetachRefusal>>) {
        let detached = self
            .messages
            .values()
            .filter(|e| e.env.mode == Mode::Detached && e.slot.is_some())
            .count();
        let Some(entry) = self.messages.get_mut(id) else {
            let _ = reply.send(Err(DetachRefusal::Spool));
            return;
        };
        if entry.hold.is_none() || entry.env.mode != Mode::Reliable {
            let _ = reply.send(Err(DetachRefusal::Spool));
            return;
        }
        if detached >= self.config.max_detached {
            let _ = reply.send(Err(DetachRefusal::Limit));
            return;
        }
        entry.env.mode = Mode::Detached;
        if self.persist(id).is_err() {
            if let Some(entry) = self.messages.get_mut(id) {
                entry.env.mode = Mode::Reliable;
            }
            let _ = reply.send(Err(DetachRefusal::Spool));
            return;
        }
        self.after_barrier(AfterBarrier::Detach(reply, id.to_string()));
    }

    /// The detached mark is durable (or not): the session is told, and a
    /// job whose processing had already ended goes on to its DSNs.
    pub(super) fn detach_durable(
        &mut self,
        id: &str,
        reply: Sender<Result<(), DetachRefusal>>,
        durable: bool,
    ) {
        let Some(entry) = self.messages.get_mut(id) else {
            let _ = reply.send(Err(DetachRefusal::Spool));
            return;
        };
        if !durable {
            entry.env.mode = Mode::Reliable;
            let _ = reply.send(Err(DetachRefusal::Spool));
            return;
        }
        log::info!("id={id} detached (DETA); the outcome will be reported by DSN");
        entry.hold = None;
        if entry.running.is_none() {
            // Processing had ended: what is owed now follows as queued mail.
            self.schedule.set(id, 0);
        }
        let _ = reply.send(Ok(()));
    }

    /// The client of a held job went away or said something else than
    /// CONT/DETA: nothing more is delivered, no DSN, the message goes; what
    /// was delivered before stands and is logged.
    pub(super) fn abort(&mut self, id: &str, why: String) {
        let Some(entry) = self.messages.get_mut(id) else {
            return;
        };
        entry.hold = None;
        if let Some(running) = entry.running.as_mut() {
            // Stopped at the worker's next safe point, removed then.
            running.stopped = true;
            running
                .cancel
                .store(true, std::sync::atomic::Ordering::SeqCst);
            entry.removal = Some(super::Removal::Abort(why));
            return;
        }
        self.log_abort(id, &why);
        self.drop_message(id);
    }

    /// The session answered the client: a 2xx (`positive`) keeps the job
    /// (the 250 told the client what was delivered; deferred recipients
    /// and owed DSNs become ordinary queued mail), anything else drops it.
    pub(super) fn conclude(&mut self, id: &str, positive: bool, reply: Sender<Result<(), String>>) {
        let now = unix_now();
        let Some(entry) = self.messages.get_mut(id) else {
            let _ = reply.send(if positive {
                Err("the message vanished before its conclusion".into())
            } else {
                Ok(())
            });
            return;
        };
        entry.hold = None;
        entry.slot = None;
        if !positive {
            log::info!("id={id} not kept: the client was told it failed");
            self.drop_message(id);
            let _ = reply.send(Ok(()));
            return;
        }
        entry.env.mode = Mode::Queued;
        for r in entry.env.recipients.iter_mut() {
            if matches!(r.state(), RcptState::Delivered { .. }) {
                r.dsn_done = true;
            }
        }
        if bounce::owes_nothing(&entry.env, self.config.delay_warning, now) {
            log::info!("id={id} done, removed from the queue");
            self.drop_message(id);
            let _ = reply.send(Ok(()));
            return;
        }
        if entry.env.has_open_recipients() && entry.env.next_attempt <= now {
            let pause = backoff(self.config.retry_min, self.config.retry_max, 1, now as u64);
            entry.env.next_attempt = after(now, pause);
        }
        if let Err(e) = self.persist(id) {
            log::error!("id={id} cannot keep it after processing: {e}; answering 451");
            self.drop_message(id);
            let _ = reply.send(Err(e.to_string()));
            return;
        }
        // DSNs for what the 250 did not say go out now; deferred
        // recipients wait for their time.
        let reports_due = self
            .messages
            .get(id)
            .is_some_and(|e| !bounce::due(&e.env, self.config.delay_warning, now).is_empty());
        let at = match self.messages.get(id) {
            Some(_) if reports_due => 0,
            Some(e) => e.env.next_attempt,
            None => 0,
        };
        self.schedule.set(id, at);
        self.after_barrier(AfterBarrier::Conclude(reply, id.to_string()));
    }
}
