//! The queue manager: the one owner of every message (the model is
//! OpenSMTPD's queue and scheduler processes and Postfix's qmgr).
//!
//! It alone writes envelopes, keeps the schedule (one entry per message),
//! decides retries, backoff, expiry and which DSNs are due, grants the
//! limits, and answers the control socket. Sessions ask it to commit,
//! hold, detach, abort and conclude; workers take attempts from it and
//! report typed [`Delivery`](crate::queue::delivery::Delivery) results.
//! Everyone waits for its answer.
//!
//! It runs on one thread and handles requests in batches: it drains what
//! has arrived, does the writes, and answers them once one barrier has
//! made them all durable (group commit). The barrier runs on a helper
//! thread, the syncer, so the manager goes on taking requests (and
//! writing the next batch) while the disk works: one barrier is in flight
//! at a time, and the writes that arrive meanwhile wait for the next one.
//! Changes nobody waits for (a removal, a new retry time) do not start a
//! barrier of their own: they ride with the next one, or are synced after
//! [`LAZY_SYNC`] at the latest (lost in a crash, they repeat a delivery
//! or a try, never lose one).

mod api;
mod attempts;
mod control;
mod hold;
mod recovery;

pub use api::{
    Attempt, Commit, CommitError, ControlAnswer, ControlReply, Doorbell, DoorbellReceiver, Finish,
    HoldEnd, HoldEvent, Next, QueueHandle, Refill, doorbell,
};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never, select};

use api::Request;

use super::envelope::{Envelope, Mode};
use super::limits::{ByteReservation, Limits, SenderSlot};
use super::schedule::Schedule;
use super::spool::{Spool, SpoolError};
use crate::config::Config;
use crate::smtp::session::DetachRefusal;

/// Capacity of the request channel; senders wait when it is full.
const REQUEST_QUEUE: usize = 1024;
/// The first wait before a parked message's state is written again.
const PARK_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between tries to write a parked message's state.
const PARK_MAX: Duration = Duration::from_secs(300);
/// The longest a change nobody waits for stays without a barrier.
pub const LAZY_SYNC: Duration = Duration::from_secs(1);

/// A running attempt of one message.
#[derive(Debug)]
struct Running {
    cancel: Arc<AtomicBool>,
    /// Run again right after (a retry or flush came in meanwhile); `true`
    /// means deferred recipients too.
    again: Option<bool>,
    /// Told to stop at the next safe point (records after that are
    /// discarded).
    stopped: bool,
}

/// An RDLV session waiting for the final reply.
#[derive(Debug)]
struct Hold {
    doorbell: Doorbell,
    /// The outcome went to the session; its conclusion is awaited.
    answered: bool,
}

/// Why a message will be removed once its attempt stops.
enum Removal {
    /// The RDLV client went away: remove silently, log what was delivered.
    Abort(String),
    /// The operator asked; the answer goes to the control client.
    Operator(Option<ControlReply>),
}

impl std::fmt::Debug for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::Abort(why) => write!(f, "Abort({why:?})"),
            Removal::Operator(_) => f.write_str("Operator"),
        }
    }
}

/// A message whose state could not be written: no further attempts until
/// a write succeeds again (a delivery that cannot be recorded would be
/// repeated).
#[derive(Debug)]
struct Parked {
    retry_at: Instant,
    wait: Duration,
}

/// Everything the manager knows about one message.
#[derive(Debug)]
struct Entry {
    /// The manager's copy: authoritative, written through to the spool.
    env: Envelope,
    bytes: ByteReservation,
    /// RDLV and detached jobs in processing hold a place of their sender.
    slot: Option<SenderSlot>,
    running: Option<Running>,
    hold: Option<Hold>,
    removal: Option<Removal>,
    parked: Option<Parked>,
    /// The next attempt also retries deferred recipients (flush, retry).
    force: bool,
}

/// A reply that may only be sent once the batch's writes are durable.
enum AfterBarrier {
    /// A new message: its commit is answered, and it is scheduled.
    Commit(Sender<Result<(), CommitError>>, String),
    /// A recorded outcome: the worker goes on (or stops) after it.
    Record(Sender<Next>, String, Next),
    /// An RDLV job's conclusion: the session may send its 250.
    Conclude(Sender<Result<(), String>>, String),
    /// The detached mark: the session may send its 221.
    Detach(Sender<Result<(), DetachRefusal>>, String),
    /// A removal or a new schedule: nobody waits, and it needs no barrier
    /// of its own ([`LAZY_SYNC`]).
    Sync,
}

impl AfterBarrier {
    /// Whether someone waits for this answer (so a barrier starts now).
    fn is_waited_for(&self) -> bool {
        !matches!(self, AfterBarrier::Sync)
    }
}

/// The manager's end of the syncer thread.
#[derive(Debug)]
struct Syncer {
    start: Sender<()>,
    done: Receiver<Result<(), SpoolError>>,
}

/// The group commit's state: the changes waiting for a barrier and those
/// the barrier in flight covers.
#[derive(Default)]
struct Barriers {
    /// Written, not yet covered by a barrier.
    pending: Vec<AfterBarrier>,
    /// When the oldest change in `pending` was made.
    pending_since: Option<Instant>,
    /// Covered by the barrier in flight (`None`: none in flight).
    in_flight: Option<Vec<AfterBarrier>>,
    /// The syncer, while the manager runs.
    syncer: Option<Syncer>,
}

/// The queue manager.
pub struct Manager {
    spool: Arc<Spool>,
    limits: Arc<Limits>,
    config: Arc<Config>,
    requests: Receiver<Request>,
    attempts: Sender<Attempt>,
    /// Boxed: a map's table holds its values inline and grows in powers of
    /// two, so unboxed entries (about 400 octets) made a backlog of 2,000
    /// messages cost 1.7 MB of table alone.
    messages: HashMap<String, Box<Entry>>,
    schedule: Schedule,
    idle_workers: usize,
    barriers: Barriers,
    /// Every request sender is gone.
    disconnected: bool,
    dsn_counts: HashMap<String, (i64, u32)>,
    shutting_down: bool,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("messages", &self.messages.len())
            .field("scheduled", &self.schedule.len())
            .finish_non_exhaustive()
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Manager {
    /// Opens the queue: recovers the spool (the manager's first act) and
    /// returns the manager, its handle, and the receiver of attempts for
    /// `workers` worker threads.
    ///
    /// # Errors
    /// The spool could not be read.
    pub fn start(
        spool: Spool,
        config: Arc<Config>,
    ) -> Result<(Manager, QueueHandle, Receiver<Attempt>), SpoolError> {
        let spool = Arc::new(spool);
        let limits = Limits::new(config.max_inflight_per_sender, config.spool_max_bytes);
        let (req_tx, req_rx) = bounded(REQUEST_QUEUE);
        let (att_tx, att_rx) = bounded(config.workers.max(1));
        let mut manager = Manager {
            spool: Arc::clone(&spool),
            limits: Arc::clone(&limits),
            idle_workers: config.workers.max(1),
            config,
            requests: req_rx,
            attempts: att_tx,
            messages: HashMap::new(),
            schedule: Schedule::new(),
            barriers: Barriers::default(),
            disconnected: false,
            dsn_counts: HashMap::new(),
            shutting_down: false,
        };
        manager.recover()?;
        let handle = QueueHandle {
            requests: req_tx,
            spool,
            limits,
        };
        Ok((manager, handle, att_rx))
    }

    /// How many messages the queue holds.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Runs until shutdown, until every worker is free again and every
    /// barrier has ended.
    pub fn run(mut self) {
        let (start_tx, start_rx) = bounded::<()>(1);
        let (done_tx, done_rx) = bounded(1);
        let spool = Arc::clone(&self.spool);
        std::thread::scope(|scope| {
            let syncer = std::thread::Builder::new()
                .name("syncer".into())
                .spawn_scoped(scope, move || {
                    for () in start_rx {
                        if done_tx.send(spool.barrier()).is_err() {
                            break;
                        }
                    }
                });
            if let Err(e) = syncer {
                // Without the helper thread every barrier runs inline.
                log::warn!("cannot start the syncer thread ({e}); barriers run inline");
            } else {
                self.barriers.syncer = Some(Syncer {
                    start: start_tx,
                    done: done_rx,
                });
            }
            self.serve();
            // Dropping the syncer's channel ends its thread.
            self.barriers.syncer = None;
        });
        log::debug!(
            "queue manager stopped with {} message(s)",
            self.messages.len()
        );
    }

    fn serve(&mut self) {
        loop {
            let timeout = self.next_timer();
            let requests = if self.disconnected {
                never()
            } else {
                self.requests.clone()
            };
            let done = match &self.barriers.syncer {
                Some(s) if self.barriers.in_flight.is_some() => s.done.clone(),
                _ => never(),
            };
            select! {
                recv(requests) -> r => match r {
                    Ok(r) => self.handle(r),
                    Err(_) => {
                        self.disconnected = true;
                        self.begin_shutdown();
                    }
                },
                recv(done) -> r => {
                    let result = r.unwrap_or_else(|_| {
                        // The syncer is gone: barriers run inline from now.
                        log::error!("the syncer thread stopped; barriers run inline");
                        self.barriers.syncer = None;
                        self.spool.barrier()
                    });
                    self.barrier_ended(result);
                }
                default(timeout) => {}
            }
            // The batch: whatever else has arrived meanwhile.
            while let Ok(r) = self.requests.try_recv() {
                self.handle(r);
            }
            self.start_barrier();
            self.retry_parked();
            if self.shutting_down {
                if self.running_count() == 0
                    && self.barriers.in_flight.is_none()
                    && self.barriers.pending.is_empty()
                {
                    break;
                }
                continue;
            }
            self.dispatch_due();
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Commit(commit, reply) => self.commit(*commit, reply),
            Request::Refill(id, refill, reply) => {
                let _ = reply.send(self.refill(&id, *refill));
            }
            Request::Detach(id, reply) => self.detach(&id, reply),
            Request::Abort(id, why) => self.abort(&id, why),
            Request::Conclude(id, positive, reply) => self.conclude(&id, positive, reply),
            Request::Record(id, results, reply) => self.record(&id, results, reply),
            Request::AttemptDone(id, reply) => self.attempt_done(&id, reply),
            Request::DsnsDone(id, done, reply) => self.dsns_done(&id, done, reply),
            Request::Control(line, reply) => self.control(&line, reply),
            Request::Flush => {
                let n = self.flush();
                log::info!("flush: retrying {n} queued message(s) now");
            }
            Request::Reload(config) => {
                self.limits
                    .set_caps(config.max_inflight_per_sender, config.spool_max_bytes);
                self.config = config;
            }
            Request::Shutdown => self.begin_shutdown(),
        }
    }

    /// Queues an answer (or a change) for the next barrier.
    fn after_barrier(&mut self, waiting: AfterBarrier) {
        self.barriers.pending_since.get_or_insert_with(Instant::now);
        self.barriers.pending.push(waiting);
    }

    /// Starts a barrier for the pending changes, unless one is in flight
    /// (they wait for the next) or nobody waits for them yet.
    fn start_barrier(&mut self) {
        let b = &mut self.barriers;
        if b.in_flight.is_some() || b.pending.is_empty() {
            return;
        }
        let lazy_due = b
            .pending_since
            .is_some_and(|t| t.elapsed() >= LAZY_SYNC || self.shutting_down);
        if !lazy_due && !b.pending.iter().any(AfterBarrier::is_waited_for) {
            return;
        }
        b.pending_since = None;
        let batch = std::mem::take(&mut b.pending);
        // Even one `fdatasync` goes to the syncer: run here, it blocked the
        // manager for as long as the disk took (18 ms at the 99th
        // percentile of DETA in the bench, against 5 ms on the syncer).
        match &b.syncer {
            Some(syncer) if syncer.start.send(()).is_ok() => b.in_flight = Some(batch),
            _ => {
                b.in_flight = Some(batch);
                let result = self.spool.barrier();
                self.barrier_ended(result);
            }
        }
    }

    /// The barrier in flight ended: the replies that waited for it go out.
    /// A failed barrier fails them all: nothing it covered is promised.
    fn barrier_ended(&mut self, result: Result<(), SpoolError>) {
        if let Err(e) = &result {
            log::error!("spool: {e}; the changes of this batch are not durable");
        }
        for waiting in self.barriers.in_flight.take().unwrap_or_default() {
            self.answer_after_barrier(waiting, result.as_ref().err());
        }
    }

    fn answer_after_barrier(&mut self, waiting: AfterBarrier, error: Option<&SpoolError>) {
        match waiting {
            AfterBarrier::Commit(reply, id) => match error {
                None => {
                    self.schedule.set(&id, 0);
                    let _ = reply.send(Ok(()));
                }
                Some(e) => {
                    self.drop_message(&id);
                    let _ = reply.send(Err(CommitError::Spool(e.to_string())));
                }
            },
            AfterBarrier::Record(reply, id, next) => {
                if error.is_some() {
                    self.park(&id, "the spool could not make an outcome durable");
                    let _ = reply.send(Next::Stop);
                } else {
                    let _ = reply.send(next);
                }
            }
            AfterBarrier::Conclude(reply, id) => match error {
                None => {
                    let _ = reply.send(Ok(()));
                }
                Some(e) => {
                    self.drop_message(&id);
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            AfterBarrier::Detach(reply, id) => self.detach_durable(&id, reply, error.is_none()),
            AfterBarrier::Sync => {}
        }
    }

    /// When the loop must wake without a request: the next scheduled
    /// message (if a worker is free) or parked retry.
    fn next_timer(&self) -> Duration {
        let now = unix_now();
        let due = self
            .schedule
            .next_due()
            .filter(|_| self.idle_workers > 0 && !self.shutting_down)
            .map(|at| Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0)));
        let parked = self
            .messages
            .values()
            .filter_map(|e| e.parked.as_ref())
            .map(|p| p.retry_at.saturating_duration_since(Instant::now()))
            .min();
        let lazy = self
            .barriers
            .pending_since
            .map(|t| LAZY_SYNC.saturating_sub(t.elapsed()));
        let wait = [due, parked, lazy].into_iter().flatten().min();
        // Wake at least hourly: a clock step must not leave mail waiting.
        wait.unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(3600))
    }

    fn running_count(&self) -> usize {
        self.messages
            .values()
            .filter(|e| e.running.is_some())
            .count()
    }

    /// Forgets a message and removes its file (no barrier: an RDLV job is
    /// dropped at startup anyway, and a finished one repeats at most once).
    fn drop_message(&mut self, id: &str) {
        self.schedule.remove(id);
        if let Some(entry) = self.messages.remove(id)
            && let Some(hold) = entry.hold
        {
            hold.doorbell
                .ring(HoldEvent::Ended(id.to_string(), HoldEnd::Removed));
        }
        if let Err(e) = self.spool.remove(id) {
            log::error!("id={id} cannot remove: {e}");
        }
    }

    /// Writes the current state of a message (appended, durable at the
    /// barrier). On failure the message is parked.
    fn persist(&mut self, id: &str) -> Result<(), SpoolError> {
        let Some(entry) = self.messages.get_mut(id) else {
            return Ok(());
        };
        match self.spool.append(&entry.env) {
            Ok(size) => {
                entry.bytes.settle(size);
                Ok(())
            }
            Err(e) => {
                log::error!("id={id} cannot record its state: {e}");
                Err(e)
            }
        }
    }

    /// Stops attempts of a message until its state can be written again.
    fn park(&mut self, id: &str, why: &str) {
        let Some(entry) = self.messages.get_mut(id) else {
            return;
        };
        if entry.parked.is_none() {
            log::error!(
                "id={id} parked: {why}; no further attempts until the spool takes writes again"
            );
            entry.parked = Some(Parked {
                retry_at: crate::clock::deadline_after(PARK_FIRST),
                wait: PARK_FIRST,
            });
        }
        if let Some(running) = entry.running.as_mut() {
            running.stopped = true;
            running.cancel.store(true, Ordering::SeqCst);
        }
        self.schedule.remove(id);
    }

    /// Tries again to write the state of parked messages whose time came;
    /// one log line when a message is unparked.
    fn retry_parked(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .messages
            .iter()
            .filter(|(_, e)| {
                e.running.is_none() && e.parked.as_ref().is_some_and(|p| p.retry_at <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let written = self
                .messages
                .get(&id)
                .map(|e| self.spool.append(&e.env).and_then(|_| self.spool.barrier()));
            let Some(entry) = self.messages.get_mut(&id) else {
                continue;
            };
            match written {
                Some(Ok(())) => {
                    log::info!("id={id} unparked: the spool takes writes again");
                    entry.parked = None;
                    let at = entry.env.next_attempt;
                    self.schedule.set(&id, at);
                }
                _ => {
                    if let Some(p) = entry.parked.as_mut() {
                        p.wait = (p.wait * 2).min(PARK_MAX);
                        p.retry_at = crate::clock::after(now, p.wait);
                    }
                }
            }
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let held: Vec<String> = self
            .messages
            .iter()
            .filter(|(_, e)| e.hold.is_some() && e.env.mode == Mode::Reliable)
            .map(|(id, _)| id.clone())
            .collect();
        for entry in self.messages.values_mut() {
            if let Some(r) = entry.running.as_mut() {
                r.cancel.store(true, Ordering::SeqCst);
                r.again = None;
            }
        }
        // A held job ends: the client never heard a final reply and will
        // send again (its session answers 421).
        for id in held {
            if let Some(entry) = self.messages.get_mut(&id)
                && let Some(hold) = entry.hold.take()
            {
                hold.doorbell
                    .ring(HoldEvent::Ended(id.clone(), HoldEnd::Shutdown));
                if entry.running.is_some() {
                    entry.removal = Some(Removal::Abort("server shutting down".into()));
                } else {
                    self.log_abort(&id, "server shutting down before the final reply");
                    self.drop_message(&id);
                }
            }
        }
    }
}
