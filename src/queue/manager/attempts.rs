//! New messages, attempts and their results: the commit, handing due
//! messages to free workers, recording each outcome before the worker goes
//! on, and what follows an attempt (DSNs, expiry, the next attempt or the
//! removal).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Sender, TrySendError};

use super::api::{Attempt, Commit, CommitError, Finish, HoldEvent, Next, Refill};
use super::recovery::delivered_list;
use super::{AfterBarrier, Entry, Hold, Manager, Removal, Running, unix_now};
use crate::queue::bounce::{self, DsnJob};
use crate::queue::delivery::{Delivery, DeliveryKind};
use crate::queue::envelope::{Envelope, Mode, RcptState};
use crate::queue::schedule::{after, backoff};
use crate::smtp::session::Outcome;

impl Manager {
    pub(super) fn commit(&mut self, commit: Commit, reply: Sender<Result<(), CommitError>>) {
        if self.shutting_down {
            let _ = reply.send(Err(CommitError::ShuttingDown));
            return;
        }
        let Commit {
            content,
            mut env,
            mut bytes,
            hold,
        } = commit;
        env.size = content.len;
        env.content_crc = content.crc;
        let id = env.id.clone();
        let (recipients, expanded) =
            crate::queue::aliases::expand(&self.config, std::mem::take(&mut env.recipients));
        env.recipients = recipients;
        for line in expanded {
            log::info!("id={id} alias {line}");
        }
        let size = match self.spool.commit(content, &env) {
            Ok(size) => size,
            Err(e) => {
                log::error!("id={id} cannot commit to the spool: {e}");
                let _ = reply.send(Err(CommitError::Spool(e.to_string())));
                return;
            }
        };
        bytes.settle(size);
        let (slot, hold) = match hold {
            Some((slot, doorbell)) => (
                Some(slot),
                Some(Hold {
                    doorbell,
                    answered: false,
                }),
            ),
            None => (None, None),
        };
        let held = hold.is_some();
        self.messages.insert(
            id.clone(),
            Box::new(Entry {
                env,
                bytes,
                slot,
                running: None,
                hold,
                removal: None,
                parked: None,
                force: false,
            }),
        );
        if held {
            // Not committed until the conclusion (a crash drops it), so it
            // needs no barrier: processing starts at once.
            self.schedule.set(&id, 0);
            let _ = reply.send(Ok(()));
        } else {
            self.after_barrier(AfterBarrier::Commit(reply, id));
        }
    }

    /// The fetched content of a BURL job takes the place of its file (a
    /// rename: a crash leaves the old file, fetch still pending, or the
    /// new). No barrier of its own: the next outcome's covers it, and a
    /// repeated fetch is harmless.
    pub(super) fn refill(&mut self, id: &str, refill: Refill) -> Result<Envelope, String> {
        let Refill {
            content,
            mut bytes,
            eight_bit,
        } = refill;
        let Some(entry) = self.messages.get_mut(id) else {
            return Err("the message is gone".into());
        };
        if entry.removal.is_some() || entry.running.as_ref().is_some_and(|r| r.stopped) {
            return Err("the message is being removed".into());
        }
        let mut env = entry.env.clone();
        env.size = content.len;
        env.content_crc = content.crc;
        env.eight_bit |= eight_bit;
        env.fetch = None;
        let size = self.spool.commit(content, &env).map_err(|e| {
            log::error!("id={id} cannot store the fetched content: {e}");
            e.to_string()
        })?;
        bytes.settle(size);
        entry.bytes = bytes;
        entry.env = env.clone();
        Ok(env)
    }

    /// Hands due messages to free workers, one attempt per message.
    pub(super) fn dispatch_due(&mut self) {
        let now = unix_now();
        while self.idle_workers > 0 {
            let Some(id) = self.schedule.pop_due(now) else {
                return;
            };
            let Some(entry) = self.messages.get_mut(&id) else {
                continue;
            };
            if entry.running.is_some() || entry.parked.is_some() {
                continue;
            }
            let retry_due = std::mem::take(&mut entry.force) || now >= entry.env.next_attempt;
            let due: Vec<usize> = (0..entry.env.recipients.len())
                .filter(|&i| match entry.env.recipients[i].state() {
                    RcptState::Pending => true,
                    RcptState::Deferred => retry_due,
                    _ => false,
                })
                .collect();
            if !due.is_empty() {
                entry.env.attempts = entry.env.attempts.saturating_add(1);
            }
            let cancel = Arc::new(AtomicBool::new(false));
            let attempt = Attempt {
                env: entry.env.clone(),
                due,
                cancel: Arc::clone(&cancel),
            };
            match self.attempts.try_send(attempt) {
                Ok(()) => {
                    entry.running = Some(Running {
                        cancel,
                        again: None,
                        stopped: false,
                    });
                    self.idle_workers -= 1;
                }
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.schedule.set(&id, now);
                    return;
                }
            }
        }
    }

    pub(super) fn record(
        &mut self,
        id: &str,
        results: Vec<(usize, Delivery)>,
        reply: Sender<Next>,
    ) {
        let now = unix_now();
        let Some(entry) = self.messages.get_mut(id) else {
            let _ = reply.send(Next::Stop);
            return;
        };
        for (i, delivery) in results {
            let Some(r) = entry.env.recipients.get_mut(i) else {
                continue;
            };
            // RFC 3461 §5.2.2: a next hop that took NOTIFY with the message
            // reports success itself (a `relayed` hop does not).
            r.dsn_done = delivery.kind == DeliveryKind::Delivered && delivery.remote_mta.is_some();
            r.last = Some(delivery);
            r.last_attempt = now;
        }
        let cancelled = entry
            .running
            .as_ref()
            .is_none_or(|r| r.cancel.load(Ordering::SeqCst));
        let next = if cancelled {
            Next::Stop
        } else {
            Next::Continue
        };
        if entry.removal.is_some() || entry.parked.is_some() {
            let _ = reply.send(Next::Stop);
            return;
        }
        // An RDLV job is not committed before its conclusion: its state
        // lives here. A message that this outcome finishes and that owes
        // nothing needs no write: its removal right after is the record.
        let held = entry.env.mode == Mode::Reliable;
        let quiet = entry.hold.is_none()
            && bounce::owes_nothing(&entry.env, self.config.delay_warning, now);
        if held || quiet {
            let _ = reply.send(next);
            return;
        }
        match self.persist(id) {
            Ok(()) => {
                self.after_barrier(AfterBarrier::Record(reply, id.to_string(), next));
            }
            Err(_) => {
                self.park(id, "an outcome could not be written");
                let _ = reply.send(Next::Stop);
            }
        }
    }

    pub(super) fn attempt_done(&mut self, id: &str, reply: Sender<Finish>) {
        let now = unix_now();
        let Some(entry) = self.messages.get_mut(id) else {
            self.worker_free(reply);
            return;
        };
        if let Some(removal) = entry.removal.take() {
            entry.running = None;
            self.worker_free(reply);
            match removal {
                Removal::Abort(why) => self.log_abort(id, &why),
                Removal::Operator(answer) => {
                    log::info!("id={id} removed by the operator");
                    if let Some(answer) = answer {
                        answer(super::ControlAnswer::Done(format!("removed {id}")));
                    }
                }
            }
            self.drop_message(id);
            return;
        }
        if entry.parked.is_some() {
            // What was recorded stays; nothing more until a write succeeds.
            entry.running = None;
            self.worker_free(reply);
            return;
        }
        if self.shutting_down {
            self.done_at_shutdown(id, now);
            self.worker_free(reply);
            return;
        }
        if entry.env.mode == Mode::Reliable
            && let Some(hold) = entry.hold.as_mut()
        {
            // The session holds the final reply: it decides what follows.
            entry.running = None;
            hold.answered = true;
            let outcome = outcome_of(&entry.env);
            hold.doorbell
                .ring(HoldEvent::Outcome(id.to_string(), outcome));
            self.worker_free(reply);
            return;
        }
        if entry.env.mode == Mode::Detached {
            // Processing reached a definite state: the place is given back.
            entry.slot = None;
        }
        let config = Arc::clone(&self.config);
        for address in bounce::expire(&mut entry.env, config.max_queue_lifetime, now) {
            log::info!("id={id} to=<{address}> status=expired after its queue lifetime");
        }
        let mut jobs = bounce::due(&entry.env, config.delay_warning, now);
        let reverse_path = entry.env.reverse_path.clone();
        jobs.retain(|job| self.keep_dsn_job(id, &reverse_path, job, now));
        let Some(entry) = self.messages.get_mut(id) else {
            self.worker_free(reply);
            return;
        };
        if jobs.is_empty() {
            self.finish(id);
            self.worker_free(reply);
        } else {
            // The worker stays busy with the reports; the message stays
            // running until it says they are spooled.
            let _ = reply.send(Finish::Dsns(Box::new(entry.env.clone()), jobs));
        }
    }

    /// Applies the DSN rate limit and the double-bounce setting: a job that
    /// will not be done is marked done here, with a log line.
    fn keep_dsn_job(&mut self, id: &str, reverse_path: &str, job: &DsnJob, now: i64) -> bool {
        let keep = match job {
            DsnJob::Report { action, .. } => {
                let allowed = self.allow_dsn(reverse_path, now);
                if !allowed {
                    log::warn!(
                        "id={id} {action} DSN to <{reverse_path}> dropped: dsn_per_sender_per_hour ({}) reached",
                        self.config.dsn_per_sender_per_hour
                    );
                }
                allowed
            }
            DsnJob::KeepDoubleBounce { .. } if self.config.double_bounce.is_none() => {
                log::warn!(
                    "id={id} undeliverable DSN to <{reverse_path}> dropped (no double_bounce)"
                );
                false
            }
            DsnJob::KeepDoubleBounce { .. } => true,
        };
        if !keep && let Some(entry) = self.messages.get_mut(id) {
            bounce::mark_done(&mut entry.env, job);
        }
        keep
    }

    pub(super) fn dsns_done(&mut self, id: &str, done: Vec<DsnJob>, reply: Sender<()>) {
        let now = unix_now();
        if let Some(entry) = self.messages.get_mut(id) {
            let owed = bounce::due(&entry.env, self.config.delay_warning, now);
            for job in &done {
                bounce::mark_done(&mut entry.env, job);
            }
            if owed.iter().any(|job| !done.contains(job)) {
                // A report could not be spooled: try again later.
                let retry = after(now, self.config.retry_min);
                entry.env.next_attempt = entry.env.next_attempt.max(retry);
            }
            self.finish(id);
        }
        self.idle_workers += 1;
        let _ = reply.send(());
    }

    /// No DSN work at a shutdown: a finished message that owes nothing
    /// goes, anything else is written as it stands for the next start (a
    /// result whose write was skipped must not be lost), with its retry
    /// time.
    fn done_at_shutdown(&mut self, id: &str, now: i64) {
        let Some(entry) = self.messages.get_mut(id) else {
            return;
        };
        entry.running = None;
        if bounce::owes_nothing(&entry.env, self.config.delay_warning, now) {
            self.drop_message(id);
        } else {
            if entry.env.has_open_recipients() {
                next_attempt(&mut entry.env, &self.config, now);
            }
            if self.persist(id).is_err() {
                log::error!("id={id} its last results could not be written before the stop");
            }
        }
        self.after_barrier(AfterBarrier::Sync);
    }

    fn worker_free(&mut self, reply: Sender<Finish>) {
        self.idle_workers += 1;
        let _ = reply.send(Finish::Done);
    }

    /// After an attempt of a message no session waits for: removal when
    /// nothing is left, else the next attempt, written before it is
    /// scheduled.
    fn finish(&mut self, id: &str) {
        let now = unix_now();
        let Some(entry) = self.messages.get_mut(id) else {
            return;
        };
        let again = entry.running.take().and_then(|r| r.again);
        // A report that could not be spooled stays owed: the message stays
        // for it, whatever its recipients' states.
        let owes = !bounce::due(&entry.env, self.config.delay_warning, now).is_empty();
        if !owes {
            bounce::settle(&mut entry.env);
        }
        if !entry.env.has_open_recipients() && !owes {
            log::info!("id={id} done, removed from the queue");
            self.drop_message(id);
            self.after_barrier(AfterBarrier::Sync);
            return;
        }
        next_attempt(&mut entry.env, &self.config, now);
        let at = match again {
            Some(force) => {
                entry.force |= force;
                now
            }
            None => entry.env.next_attempt,
        };
        match self.persist(id) {
            Ok(()) => {
                self.schedule.set(id, at);
                self.after_barrier(AfterBarrier::Sync);
            }
            Err(_) => self.park(id, "the next attempt could not be recorded"),
        }
    }

    /// Counts one DSN to `recipient` this hour; false once the hourly cap
    /// (`dsn_per_sender_per_hour`) is reached.
    fn allow_dsn(&mut self, recipient: &str, now: i64) -> bool {
        let cap = self.config.dsn_per_sender_per_hour;
        let hour = now / 3600;
        self.dsn_counts.retain(|_, (h, _)| *h == hour);
        let entry = self
            .dsn_counts
            .entry(recipient.to_ascii_lowercase())
            .or_insert((hour, 0));
        if entry.1 >= cap {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Retry every deferred message now; returns how many.
    pub(super) fn flush(&mut self) -> usize {
        let mut n = 0;
        for (id, entry) in self.messages.iter_mut() {
            if entry.parked.is_some() || entry.env.mode == Mode::Reliable {
                continue;
            }
            n += 1;
            match entry.running.as_mut() {
                Some(r) => r.again = Some(true),
                None => {
                    entry.force = true;
                    self.schedule.set(id, 0);
                }
            }
        }
        n
    }

    /// One log line for an aborted job: why, and what was delivered before.
    pub(super) fn log_abort(&self, id: &str, why: &str) {
        let delivered = self
            .messages
            .get(id)
            .map(|e| delivered_list(&e.env))
            .unwrap_or_else(|| "nothing".into());
        log::info!("id={id} aborted: {why}; delivered before the abort: {delivered}");
    }
}

/// What an RDLV session answers with.
pub(super) fn outcome_of(env: &Envelope) -> Outcome {
    let count =
        |pick: fn(RcptState) -> bool| env.recipients.iter().filter(|r| pick(r.state())).count();
    let first_failure = env
        .recipients
        .iter()
        .find(|r| r.state() == RcptState::Failed)
        .and_then(|r| r.last.as_ref().map(|d| d.failure_reply(&r.address)));
    Outcome::Done {
        delivered: count(|s| matches!(s, RcptState::Delivered { .. })),
        deferred: count(|s| s == RcptState::Deferred),
        first_failure,
    }
}

/// After an attempt with recipients still open: the next one, after the
/// backoff, unless one is already set later.
fn next_attempt(env: &mut Envelope, config: &crate::config::Config, now: i64) {
    if env.next_attempt <= now {
        let pause = backoff(
            config.retry_min,
            config.retry_max,
            env.attempts.max(1),
            now as u64 ^ env.arrival as u64,
        );
        env.next_attempt = after(now, pause);
    }
}
