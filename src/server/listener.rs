//! The main loop: a mio Poll over the listeners, the signals, the control
//! socket and a Waker; it accepts connections onto the fixed session pool
//! and hands due retries to the workers from an in-memory schedule (the
//! spool is read once at startup, never rescanned on a tick).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, TrySendError, bounded};
use mio::net::{TcpListener, UnixDatagram};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::envelope::{Mode, RcptState};
use crate::spool::{Spool, SpoolError};

use super::conn::{self, Conn};
use super::shared::{Job, Notice, Shared, unix_now};
use super::worker;

const WAKER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const CONTROL: Token = Token(usize::MAX - 3);
/// Capacity of the worker job queue; a full queue leaves jobs to the schedule.
const JOB_QUEUE: usize = 256;
/// Capacity of the notice channel into the main loop.
const NOTICE_QUEUE: usize = 4096;
/// When the job queue is full, try a due message again after this long.
const REQUEUE_DELAY: i64 = 1;
/// The name of the control socket inside the spool.
pub const CONTROL_SOCKET: &str = "control";

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listen address could not be bound.
    Bind(SocketAddr, io::Error),
    /// The spool could not be opened or read.
    Spool(SpoolError),
    /// Threads, poll or signals could not be set up.
    Setup(&'static str, io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Spool(e) => write!(f, "spool: {e}"),
            StartError::Setup(what, e) => write!(f, "cannot set up {what}: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind(_, e) | StartError::Setup(_, e) => Some(e),
            StartError::Spool(e) => Some(e),
        }
    }
}

/// Rebuilds the configuration on SIGHUP.
pub type Reloader = Box<dyn Fn() -> Result<Config, String> + Send>;

/// How the server is embedded.
pub struct Options {
    /// Handle SIGTERM, SIGINT, SIGHUP and SIGUSR1 (the daemon does; tests
    /// that run several servers in one process do not).
    pub signals: bool,
    /// How to reload the configuration on SIGHUP.
    pub reload: Option<Reloader>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("signals", &self.signals)
            .finish_non_exhaustive()
    }
}

/// A running server.
#[derive(Debug)]
pub struct Handle {
    shared: Arc<Shared>,
    main: JoinHandle<()>,
    /// The addresses actually bound (useful with port 0).
    pub addrs: Vec<SocketAddr>,
}

impl Handle {
    /// Starts a clean shutdown (as SIGTERM does).
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// Asks for a flush (as SIGUSR1 does).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Waits until every thread has stopped.
    pub fn join(self) {
        let _ = self.main.join();
    }
}

/// Binds, recovers the spool and starts the session and worker threads;
/// the main loop runs when the caller calls [`Server::run`] (the daemon does
/// so on its main thread).
///
/// # Errors
/// Binding, the spool or thread/poll setup failed; nothing keeps running.
pub fn bind(config: Config, options: Options) -> Result<Server, StartError> {
    let poll = Poll::new().map_err(|e| StartError::Setup("poll", e))?;
    let mut listeners = Vec::new();
    for (i, addr) in config.listen.iter().enumerate() {
        let mut l = TcpListener::bind(*addr).map_err(|e| StartError::Bind(*addr, e))?;
        poll.registry()
            .register(&mut l, Token(i), Interest::READABLE)
            .map_err(|e| StartError::Setup("poll", e))?;
        listeners.push(l);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let spool = Spool::open(&config.spool, config.fsync, config.spool_max_bytes)
        .map_err(StartError::Spool)?;
    let recovered = spool.recover().map_err(StartError::Spool)?;

    let waker =
        Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| StartError::Setup("waker", e))?);
    let (job_tx, job_rx) = bounded(JOB_QUEUE);
    let (notice_tx, notice_rx) = bounded(NOTICE_QUEUE);
    let (conn_tx, conn_rx) = bounded::<Conn>(config.sessions);
    let sessions = config.sessions;
    let workers = config.workers;
    let shared = Arc::new(Shared::new(config, spool, job_tx, notice_tx, waker));

    let control_path = shared.spool.root().join(CONTROL_SOCKET);
    let _ = std::fs::remove_file(&control_path);
    let mut control =
        UnixDatagram::bind(&control_path).map_err(|e| StartError::Setup("control socket", e))?;
    poll.registry()
        .register(&mut control, CONTROL, Interest::READABLE)
        .map_err(|e| StartError::Setup("poll", e))?;
    let signals = if options.signals {
        let mut s = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
            .map_err(|e| StartError::Setup("signals", e))?;
        poll.registry()
            .register(&mut s, SIGNALS, Interest::READABLE)
            .map_err(|e| StartError::Setup("poll", e))?;
        Some(s)
    } else {
        None
    };

    let mut schedule = BinaryHeap::new();
    resume(&shared, recovered, &mut schedule);

    let mut threads = Vec::new();
    for i in 0..sessions {
        let (shared, rx) = (Arc::clone(&shared), conn_rx.clone());
        let t = std::thread::Builder::new()
            .name(format!("session-{i}"))
            .spawn(move || {
                for conn in rx.iter() {
                    conn::serve(&shared, conn);
                }
            })
            .map_err(|e| StartError::Setup("session thread", e))?;
        threads.push(t);
    }
    for i in 0..workers {
        let (shared, rx) = (Arc::clone(&shared), job_rx.clone());
        let t = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                let stop = shared.stop_signal();
                worker::run(shared, rx, stop)
            })
            .map_err(|e| StartError::Setup("worker thread", e))?;
        threads.push(t);
    }
    drop(job_rx);
    log::info!(
        "detad {} listening on {} (spool {}, {} sessions, {} workers, {} messages queued)",
        env!("CARGO_PKG_VERSION"),
        addrs
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        shared.spool.root().display(),
        sessions,
        workers,
        schedule.len()
    );
    let main_loop = MainLoop {
        poll,
        listeners,
        control,
        control_path,
        signals,
        options,
        schedule,
        retry_full: false,
        conn_tx,
    };
    Ok(Server {
        shared,
        main_loop,
        notices: notice_rx,
        threads,
        addrs,
    })
}

/// A server that is bound and has its threads running; [`Server::run`]
/// turns the calling thread into its main loop.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    main_loop: MainLoop,
    notices: Receiver<Notice>,
    threads: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
}

impl Server {
    /// The addresses actually bound.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Runs the main loop on this thread until shutdown (SIGTERM, SIGINT,
    /// [`Handle::shutdown`]), then waits for every other thread.
    pub fn run(self) {
        let Server {
            shared,
            mut main_loop,
            notices,
            threads,
            ..
        } = self;
        if let Err(e) = main_loop.run(&shared, &notices) {
            log::error!("main loop failed: {e}; shutting down");
            shared.begin_shutdown();
        }
        // Closing the hand-off ends the session threads once idle.
        drop(main_loop);
        for t in threads {
            let _ = t.join();
        }
        log::info!("detad stopped; spool consistent");
    }
}

/// [`bind`], then the main loop on a thread of its own (tests, embedding).
///
/// # Errors
/// As [`bind`].
pub fn start(config: Config, options: Options) -> Result<Handle, StartError> {
    let server = bind(config, options)?;
    let shared = Arc::clone(&server.shared);
    let addrs = server.addrs.clone();
    let main = std::thread::Builder::new()
        .name("main-loop".into())
        .spawn(move || server.run())
        .map_err(|e| StartError::Setup("main loop thread", e))?;
    Ok(Handle {
        shared,
        main,
        addrs,
    })
}

type Schedule = BinaryHeap<Reverse<(i64, String)>>;

/// Queues what the spool holds: finishes detached jobs, drops RDLV jobs
/// whose session is gone (the client never got a final reply), and
/// schedules the rest at their next attempt.
fn resume(shared: &Shared, recovered: Vec<crate::envelope::Envelope>, schedule: &mut Schedule) {
    for env in recovered {
        match env.mode {
            Mode::Reliable => {
                worker::abort(shared, &env, "server restarted before the final reply")
            }
            Mode::Detached if env.recipients.iter().any(|r| r.state == RcptState::Pending) => {
                shared.inflight.register(&env.id, &env.reverse_path, true);
                log::info!("id={} resuming detached job", env.id);
                schedule.push(Reverse((0, env.id)));
            }
            _ => {
                let pending = env.recipients.iter().any(|r| r.state == RcptState::Pending);
                let at = if pending { 0 } else { env.next_attempt };
                schedule.push(Reverse((at, env.id)));
            }
        }
    }
}

struct MainLoop {
    poll: Poll,
    listeners: Vec<TcpListener>,
    control: UnixDatagram,
    control_path: PathBuf,
    signals: Option<Signals>,
    options: Options,
    schedule: Schedule,
    /// The job queue was full at the last hand-out: wake up soon to retry.
    retry_full: bool,
    conn_tx: crossbeam_channel::Sender<Conn>,
}

impl fmt::Debug for MainLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MainLoop")
            .field("listeners", &self.listeners.len())
            .field("scheduled", &self.schedule.len())
            .finish_non_exhaustive()
    }
}

impl Drop for MainLoop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.control_path);
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl MainLoop {
    fn run(&mut self, shared: &Shared, notices: &Receiver<Notice>) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = if std::mem::take(&mut self.retry_full) {
                Some(Duration::from_secs(REQUEUE_DELAY as u64))
            } else {
                self.schedule.peek().map(|Reverse((at, _))| {
                    Duration::from_secs((*at - unix_now()).clamp(0, 3600) as u64)
                })
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    SIGNALS => self.signals(shared),
                    CONTROL => self.control(shared),
                    Token(i) => self.accept(shared, i),
                }
            }
            for notice in notices.try_iter() {
                match notice {
                    Notice::Schedule(id, at) => self.schedule.push(Reverse((at, id))),
                    Notice::Flush => self.flush(shared),
                }
            }
            if shared.shutting_down() {
                return Ok(());
            }
            self.hand_out_due(shared);
        }
    }

    /// Hands every due message to the workers; with their queue full, the
    /// rest waits a moment (the spool keeps them either way).
    fn hand_out_due(&mut self, shared: &Shared) {
        let now = unix_now();
        while self
            .schedule
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            let Some(Reverse((at, id))) = self.schedule.pop() else {
                break;
            };
            match shared.try_job(Job::Deliver {
                id,
                force: at == FORCED,
            }) {
                Ok(()) => {}
                Err(TrySendError::Full(Job::Deliver { id, .. })) => {
                    // A forced entry stays forced; it is handed out again at
                    // the next wake-up, which the timeout below guarantees.
                    let again = if at == FORCED {
                        FORCED
                    } else {
                        now + REQUEUE_DELAY
                    };
                    self.schedule.push(Reverse((again, id)));
                    self.retry_full = true;
                    break;
                }
                Err(_) => break,
            }
        }
    }

    fn flush(&mut self, shared: &Shared) {
        let ids: Vec<String> = self.schedule.drain().map(|Reverse((_, id))| id).collect();
        log::info!("flush: retrying {} queued message(s) now", ids.len());
        for id in ids {
            self.schedule.push(Reverse((FORCED, id)));
        }
        self.hand_out_due(shared);
    }

    fn accept(&mut self, shared: &Shared, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        loop {
            let (sock, peer) = match listener.accept() {
                Ok(pair) => pair,
                // No more queued connections: back to polling.
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            };
            let stream: std::net::TcpStream = sock.into();
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            match self.conn_tx.try_send(Conn { stream, peer }) {
                Ok(()) => {}
                Err(TrySendError::Full(conn)) => reject_busy(shared, conn),
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn signals(&mut self, shared: &Shared) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let pending: Vec<i32> = signals.pending().collect();
        for signal in pending {
            match signal {
                SIGTERM | SIGINT => {
                    log::info!("signal {signal}: shutting down");
                    shared.begin_shutdown();
                }
                SIGHUP => self.reload(shared),
                SIGUSR1 => self.flush(shared),
                _ => {}
            }
        }
    }

    fn reload(&mut self, shared: &Shared) {
        let Some(reload) = &self.options.reload else {
            return;
        };
        match reload() {
            Ok(new) => {
                let (applied, restart) = shared.config().reloaded(new);
                shared.set_config(applied);
                if restart.is_empty() {
                    log::info!("configuration reloaded");
                } else {
                    log::warn!(
                        "configuration reloaded; changes to {} need a restart",
                        restart.join(", ")
                    );
                }
            }
            Err(e) => log::error!("reload failed, keeping the old configuration: {e}"),
        }
    }

    fn control(&mut self, shared: &Shared) {
        let mut buf = [0u8; 256];
        loop {
            let n = match self.control.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    log::warn!("control socket: {e}");
                    return;
                }
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            let mut words = text.split_whitespace();
            match (words.next(), words.next()) {
                (Some("flush"), None) => self.flush(shared),
                (Some("retry" | "remove"), Some(id)) if !Spool::is_valid_id(id) => {
                    log::warn!("control socket: {id:?} is not a queue id");
                }
                (Some("retry"), Some(id)) => {
                    log::info!("id={id} retry requested");
                    self.schedule.push(Reverse((FORCED, id.to_string())));
                    self.hand_out_due(shared);
                }
                (Some("remove"), Some(id)) => {
                    if shared.try_job(Job::Remove(id.to_string())).is_err() {
                        log::warn!("id={id} remove not queued (workers busy); try again");
                    }
                }
                _ => log::warn!("control socket: unknown request {text:?}"),
            }
        }
    }
}

/// A schedule time that means "now, and retry deferred recipients too"
/// (flush); it sorts before every real time.
const FORCED: i64 = -1;

/// Every session thread is busy and the hand-off is full: say so and close
/// (RFC 5321 §3.8 allows 421 at connection time).
fn reject_busy(shared: &Shared, conn: Conn) {
    let host = shared.config().hostname.clone();
    log::warn!(
        "peer={} rejected: all {} sessions busy",
        conn.peer,
        shared.config().sessions
    );
    let mut stream = conn.stream;
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(format!("421 4.3.2 {host} too busy, try later\r\n").as_bytes());
}
