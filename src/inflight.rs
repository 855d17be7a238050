//! Jobs in processing that a session waits for (RDLV) or that run detached:
//! the meeting point of a session thread and a worker thread.
//!
//! The worker reports the outcome into the [`Ticket`]; the session waits on
//! it with a timeout (its keep-alive interval), cancels it (abort), or marks
//! it detached (DETA). Also counts jobs per sender for the DETA draft's
//! Security Considerations limit, and detached jobs for `max_detached`.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::smtp::session::Outcome;

/// The shared state of one job in processing.
#[derive(Debug, Default)]
pub struct TicketState {
    /// The client went away or sent something other than CONT/DETA: stop
    /// at the next safe point, deliver nothing more, remove the message.
    pub cancelled: bool,
    /// The client sent DETA: finish the job on its own, report by DSN.
    pub detached: bool,
    /// The outcome, once every recipient reached a definite state.
    pub outcome: Option<Outcome>,
}

/// One job in processing.
#[derive(Debug)]
pub struct Ticket {
    /// Queue id.
    pub id: String,
    /// The per-sender key (lower-cased reverse-path, `<>` for null).
    pub sender: String,
    state: Mutex<TicketState>,
    changed: Condvar,
}

impl Ticket {
    /// Locks the state. Envelope writes for a ticketed job happen under this
    /// lock, so a detach and a worker's progress never overwrite each other.
    pub fn lock(&self) -> MutexGuard<'_, TicketState> {
        self.state
            .lock()
            .expect("ticket lock poisoned: a thread panicked holding it")
    }

    /// Waits up to `timeout` for the outcome.
    pub fn wait_outcome(&self, timeout: Duration) -> Option<Outcome> {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.outcome.is_none())
            .expect("ticket lock poisoned: a thread panicked holding it");
        guard.outcome.clone()
    }

    /// Records `outcome` unless one is already there, and wakes the
    /// waiting session.
    pub fn offer_outcome(&self, outcome: Outcome) {
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.outcome = Some(outcome);
        }
        drop(state);
        self.notify();
    }

    /// Wakes the waiting session after the outcome was set under [`Ticket::lock`].
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }
}

/// The registry of jobs in processing.
#[derive(Debug, Default)]
pub struct Inflight {
    jobs: Mutex<HashMap<String, Arc<Ticket>>>,
}

/// The per-sender key of a reverse-path.
pub fn sender_key(reverse_path: &str) -> String {
    if reverse_path.is_empty() {
        "<>".into()
    } else {
        reverse_path.to_ascii_lowercase()
    }
}

impl Inflight {
    fn jobs(&self) -> MutexGuard<'_, HashMap<String, Arc<Ticket>>> {
        self.jobs
            .lock()
            .expect("inflight lock poisoned: a thread panicked holding it")
    }

    /// Registers a job; `detached` for jobs resumed from the spool.
    pub fn register(&self, id: &str, reverse_path: &str, detached: bool) -> Arc<Ticket> {
        let state = TicketState {
            detached,
            ..TicketState::default()
        };
        let ticket = Arc::new(Ticket {
            id: id.to_string(),
            sender: sender_key(reverse_path),
            state: Mutex::new(state),
            changed: Condvar::new(),
        });
        self.jobs().insert(id.to_string(), Arc::clone(&ticket));
        ticket
    }

    /// Registers a job unless its sender already has `limit` in processing;
    /// the count and the insertion happen under one lock, so concurrent
    /// sessions of one sender cannot all slip under the limit.
    pub fn register_within(
        &self,
        id: &str,
        reverse_path: &str,
        limit: usize,
    ) -> Option<Arc<Ticket>> {
        let key = sender_key(reverse_path);
        let mut jobs = self.jobs();
        if jobs.values().filter(|t| t.sender == key).count() >= limit {
            return None;
        }
        let ticket = Arc::new(Ticket {
            id: id.to_string(),
            sender: key,
            state: Mutex::new(TicketState::default()),
            changed: Condvar::new(),
        });
        jobs.insert(id.to_string(), Arc::clone(&ticket));
        Some(ticket)
    }

    /// The ticket of a job, if it is in processing.
    pub fn get(&self, id: &str) -> Option<Arc<Ticket>> {
        self.jobs().get(id).cloned()
    }

    /// Forgets a job (finished, aborted).
    pub fn remove(&self, id: &str) {
        self.jobs().remove(id);
    }

    /// Jobs of this sender in processing, detached ones included.
    pub fn count_for_sender(&self, reverse_path: &str) -> usize {
        let key = sender_key(reverse_path);
        self.jobs().values().filter(|t| t.sender == key).count()
    }

    /// Detached jobs in processing.
    pub fn detached_count(&self) -> usize {
        self.jobs().values().filter(|t| t.lock().detached).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_counted_case_insensitively() {
        let reg = Inflight::default();
        reg.register("A", "Bob@Example.com", false);
        reg.register("B", "bob@example.com", true);
        reg.register("C", "", false);
        assert_eq!(reg.count_for_sender("BOB@example.COM"), 2);
        assert_eq!(reg.count_for_sender(""), 1);
        assert_eq!(reg.detached_count(), 1);
        reg.remove("A");
        assert_eq!(reg.count_for_sender("bob@example.com"), 1);
    }

    #[test]
    fn registration_within_a_limit_refuses_the_one_too_many() {
        let reg = Inflight::default();
        assert!(reg.register_within("A", "a@b", 2).is_some());
        assert!(reg.register_within("B", "A@B", 2).is_some());
        assert!(reg.register_within("C", "a@b", 2).is_none());
        assert!(reg.register_within("C", "other@b", 2).is_some());
        reg.remove("A");
        assert!(reg.register_within("D", "a@b", 2).is_some());
    }

    #[test]
    fn outcome_wakes_the_waiter() {
        let reg = Inflight::default();
        let ticket = reg.register("A", "a@b", false);
        assert_eq!(ticket.wait_outcome(Duration::from_millis(10)), None);
        let t2 = Arc::clone(&ticket);
        let worker = std::thread::spawn(move || t2.offer_outcome(Outcome::Failed("x".into())));
        assert_eq!(
            ticket.wait_outcome(Duration::from_secs(10)),
            Some(Outcome::Failed("x".into()))
        );
        worker.join().unwrap();
    }
}
