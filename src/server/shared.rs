//! State shared by the acceptor, the session threads and the workers.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use crate::config::Config;
use crate::inflight::Inflight;
use crate::spool::Spool;

/// Work for the worker pool. The spool is the truth: a job is only a hint
/// that a message may have something to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Attempt the message's pending recipients, and its deferred ones when
    /// their time has come (or `force`, a flush), then write DSNs.
    Deliver {
        /// Queue id.
        id: String,
        /// Retry deferred recipients now, whatever their schedule.
        force: bool,
    },
    /// Remove the message (operator request).
    Remove(String),
}

/// Messages from the threads to the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Attempt `id` again at this unix time.
    Schedule(String, i64),
    /// Retry every deferred message now (flush).
    Flush,
}

/// Which messages a worker is working on, so no two workers ever process
/// the same message; a job that arrives meanwhile is remembered (with
/// whether it was a flush) and run again by the worker that holds it.
#[derive(Debug, Default)]
pub struct Claims {
    /// Held ids, each with the rerun asked for meanwhile: `Some(force)`.
    busy: Mutex<HashMap<String, Option<bool>>>,
}

impl Claims {
    /// Claims `id`; false (and a rerun noted) when another worker has it.
    pub fn claim(&self, id: &str, force: bool) -> bool {
        let mut busy = self.busy.lock().expect("claims lock poisoned");
        match busy.get_mut(id) {
            Some(rerun) => {
                *rerun = Some(rerun.unwrap_or(false) || force);
                false
            }
            None => {
                busy.insert(id.to_string(), None);
                true
            }
        }
    }

    /// Releases `id` unless a rerun was asked for meanwhile; then the caller
    /// still holds it and must run it again, as a flush if `Some(true)`.
    pub fn release(&self, id: &str) -> Option<bool> {
        let mut busy = self.busy.lock().expect("claims lock poisoned");
        match busy.get_mut(id) {
            Some(rerun @ Some(_)) => rerun.take(),
            _ => {
                busy.remove(id);
                None
            }
        }
    }
}

/// Everything the threads share.
#[derive(Debug)]
pub struct Shared {
    config: RwLock<Arc<Config>>,
    /// The spool.
    pub spool: Spool,
    /// RDLV and detached jobs in processing.
    pub inflight: Inflight,
    /// Messages being worked on.
    pub claims: Claims,
    jobs: Sender<Job>,
    notices: Sender<Notice>,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    stop: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
    sockets: Mutex<HashMap<usize, TcpStream>>,
    next_socket: AtomicUsize,
    dsn_counts: Mutex<HashMap<String, (i64, u32)>>,
}

/// Unix time now, in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Shared {
    /// Assembles the shared state.
    pub fn new(
        config: Config,
        spool: Spool,
        jobs: Sender<Job>,
        notices: Sender<Notice>,
        waker: Arc<Waker>,
    ) -> Shared {
        // Never sent on: dropping the sender at shutdown wakes every worker.
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        Shared {
            config: RwLock::new(Arc::new(config)),
            spool,
            inflight: Inflight::default(),
            claims: Claims::default(),
            jobs,
            notices,
            waker,
            shutdown: Arc::new(AtomicBool::new(false)),
            stop: Mutex::new(Some(stop_tx)),
            stop_rx,
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicUsize::new(0),
            dsn_counts: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration in effect now (replaced whole on SIGHUP).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().expect("config lock poisoned"))
    }

    /// Installs a reloaded configuration.
    pub fn set_config(&self, config: Config) {
        self.spool.set_max_bytes(config.spool_max_bytes);
        *self.config.write().expect("config lock poisoned") = Arc::new(config);
    }

    /// Hands a message to the workers now; when their queue is full the
    /// main loop's scheduler takes it (a full queue is harmless).
    pub fn submit(&self, id: &str) {
        match self.jobs.try_send(Job::Deliver {
            id: id.to_string(),
            force: false,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.schedule(id, unix_now()),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Offers a job to the workers without waiting.
    ///
    /// # Errors
    /// The queue is full or closed; the job is handed back.
    pub fn try_job(&self, job: Job) -> Result<(), TrySendError<Job>> {
        self.jobs.try_send(job)
    }

    /// Asks the main loop to run `id` at unix time `at`.
    pub fn schedule(&self, id: &str, at: i64) {
        if self
            .notices
            .send(Notice::Schedule(id.to_string(), at))
            .is_ok()
        {
            let _ = self.waker.wake();
        }
    }

    /// Starts the shutdown: sessions answer 421, workers stop at a safe point.
    /// Each session's blocked read is ended by shutting the socket's read
    /// side, so it answers at once instead of after its timeout.
    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.stop.lock().expect("stop lock poisoned").take();
        for sock in self
            .sockets
            .lock()
            .expect("socket registry poisoned")
            .values()
        {
            let _ = sock.shutdown(Shutdown::Read);
        }
        let _ = self.waker.wake();
    }

    /// Registers a session's socket for [`Shared::begin_shutdown`].
    pub fn track(&self, sock: &TcpStream) -> Option<usize> {
        let clone = sock.try_clone().ok()?;
        let key = self.next_socket.fetch_add(1, Ordering::Relaxed);
        self.sockets
            .lock()
            .expect("socket registry poisoned")
            .insert(key, clone);
        if self.shutting_down() {
            let _ = sock.shutdown(Shutdown::Read);
        }
        Some(key)
    }

    /// Forgets a session's socket.
    pub fn untrack(&self, key: Option<usize>) {
        if let Some(key) = key {
            self.sockets
                .lock()
                .expect("socket registry poisoned")
                .remove(&key);
        }
    }

    /// Asks the main loop to retry every deferred message now.
    pub fn flush(&self) {
        if self.notices.send(Notice::Flush).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// The shutdown flag itself, for loops outside this crate's threads
    /// (the relay client's reply waits).
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// A receiver that disconnects when the shutdown begins.
    pub fn stop_signal(&self) -> Receiver<()> {
        self.stop_rx.clone()
    }

    /// Whether the server is shutting down.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Counts one DSN to `recipient` this hour; false once the hourly cap
    /// (`dsn_per_sender_per_hour`) is reached.
    pub fn allow_dsn(&self, recipient: &str, now: i64) -> bool {
        let cap = self.config().dsn_per_sender_per_hour;
        let mut counts = self.dsn_counts.lock().expect("dsn counter lock poisoned");
        let hour = now / 3600;
        counts.retain(|_, (h, _)| *h == hour);
        let entry = counts
            .entry(recipient.to_ascii_lowercase())
            .or_insert((hour, 0));
        if entry.1 >= cap {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_message_is_rerun_not_run_twice() {
        let claims = Claims::default();
        assert!(claims.claim("A", false));
        assert!(!claims.claim("A", false));
        assert_eq!(
            claims.release("A"),
            Some(false),
            "the second job must be run by the holder"
        );
        assert_eq!(claims.release("A"), None);
        assert!(claims.claim("A", false));
    }

    #[test]
    fn a_flush_during_processing_is_not_lost() {
        let claims = Claims::default();
        assert!(claims.claim("A", false));
        assert!(!claims.claim("A", true));
        assert!(!claims.claim("A", false));
        assert_eq!(claims.release("A"), Some(true));
        assert_eq!(claims.release("A"), None);
    }
}
