//! The network side and the thread topology: binding, the spool lock, the
//! queue manager and worker threads, the session pool and the main loop.
//!
//! ```text
//! main thread: mio Poll (listeners, signals, control socket, Waker)
//!   accept ─▶ bounded channel<Conn> ─▶ session threads ──ask──▶ queue manager thread
//!                                                                   │ attempts
//!                                               worker threads ◀────┘ (bounded channel)
//! ```
//!
//! Shutdown goes in that order: the main loop stops accepting, sessions
//! answer 421 and end, the queue manager stops the running attempts at a
//! safe point, and the workers end when it closes their channel.

#[cfg(feature = "burl")]
mod burl_chunk;
mod chunks;
pub mod conn;
pub mod data;
pub mod hold;
mod listener;
pub mod policy;
pub mod privileges;
pub mod secrets;
pub mod shared;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::bounded;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::{Config, LiveConfig, Transport};
use crate::delivery::exec::RunAs;
use crate::delivery::maildir::clean_stale_tmp;
use crate::delivery::relay::{LiveSecurity, Security, SecurityError};
use crate::delivery::worker::{self, WorkerContext};
use crate::queue::control::socket_path;
use crate::queue::lock::{LockError, SpoolLock, lock_at_start};
use crate::queue::manager::{Manager, QueueHandle, doorbell};
use crate::queue::spool::{FaultInjector, Spool, SpoolError};

use conn::{Conn, SessionThread};
use listener::{CONTROL, MainLoop, SIGNALS, WAKER};
use secrets::{LiveSecrets, Secrets};
use shared::Shared;

/// Rebuilds the configuration on SIGHUP.
pub type Reloader = Box<dyn Fn() -> Result<Config, String> + Send>;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listen address could not be bound.
    Bind(SocketAddr, io::Error),
    /// Another daemon holds the spool.
    Lock(LockError),
    /// The spool could not be opened or read.
    Spool(SpoolError),
    /// Threads, poll, signals or the control socket could not be set up.
    Setup(&'static str, io::Error),
    /// The user to run as does not exist, or the switch failed.
    Privileges(privileges::PrivilegeError),
    /// The certificate, its key or the AUTH users could not be loaded.
    Secrets(secrets::SecretsError),
    /// The relay client's trust anchors (`relay_ca`, the system's bundle)
    /// could not be loaded.
    Uplink(SecurityError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Lock(e) => write!(f, "{e}"),
            StartError::Spool(e) => write!(f, "spool: {e}"),
            StartError::Setup(what, e) => write!(f, "cannot set up {what}: {e}"),
            StartError::Privileges(e) => write!(f, "{e}"),
            StartError::Secrets(e) => write!(f, "{e}"),
            StartError::Uplink(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// How the server is embedded.
pub struct Options {
    /// Handle SIGTERM, SIGINT, SIGHUP and SIGUSR1 (the daemon does; tests
    /// that run several servers in one process do not).
    pub signals: bool,
    /// How to reload the configuration on SIGHUP.
    pub reload: Option<Reloader>,
    /// The detad binary that runs the pipe trampoline.
    pub helper: PathBuf,
    /// Who pipe programs run as, when detad can choose (it runs as root).
    pub run_as: Option<RunAs>,
    /// Spool faults to inject (tests).
    pub faults: Option<Arc<dyn FaultInjector>>,
    /// Switch to `user` (and choose the pipe user) before the threads start;
    /// in-process tests, where the test runner owns the process, do not.
    pub settle_privileges: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            signals: false,
            reload: None,
            // The running binary, even if its file was replaced meanwhile.
            helper: PathBuf::from("/proc/self/exe"),
            run_as: None,
            faults: None,
            settle_privileges: true,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("signals", &self.signals)
            .field("helper", &self.helper)
            .finish_non_exhaustive()
    }
}

/// A server that is bound and has its threads running; [`Server::run`]
/// turns the calling thread into its main loop.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    main_loop: MainLoop,
    sessions: Vec<JoinHandle<()>>,
    manager: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
    _lock: SpoolLock,
}

/// A running server (tests, embedding).
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
        self.shared.queue.flush();
    }

    /// The queue, as the server's threads see it.
    pub fn queue(&self) -> &QueueHandle {
        &self.shared.queue
    }

    /// Waits until every thread has stopped.
    pub fn join(self) {
        let _ = self.main.join();
    }
}

fn setup(what: &'static str) -> impl Fn(io::Error) -> StartError {
    move |e| StartError::Setup(what, e)
}

/// The Maildirs the routes deliver into, for the startup clean-up.
pub(crate) fn maildir_roots(config: &Config) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = config
        .effective_routes()
        .into_iter()
        .filter_map(|r| match r.transport {
            Transport::Maildir(dir) => Some(dir),
            _ => None,
        })
        .collect();
    roots.extend(config.double_bounce.clone());
    roots
}

/// Binds, locks and recovers the spool, and starts the queue manager, the
/// workers and the session threads; the main loop runs when the caller
/// calls [`Server::run`].
///
/// # Errors
/// Binding, the lock, the spool or thread/poll setup failed.
pub fn bind(config: Config, options: Options) -> Result<Server, StartError> {
    let uplink = uplink(&config)?;
    let poll = Poll::new().map_err(setup("poll"))?;
    // Read while still root: the key may be readable by root alone.
    let secrets = Secrets::load(&config).map_err(StartError::Secrets)?;
    let listeners = bind_listeners(&poll, &config)?;
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    let (spool, spool_lock) = open_spool(&config, options.faults.clone())?;
    let control = open_control(&poll, &config)?;
    let signals = match options.signals {
        true => Some(register_signals(&poll)?),
        false => None,
    };
    // Everything that needs root is done: give it up before any thread.
    let run_as = match options.settle_privileges {
        true => privileges::settle(&config).map_err(StartError::Privileges)?,
        false => None,
    };
    let (manager, queue, attempts) =
        Manager::start(spool, Arc::new(config.clone())).map_err(StartError::Spool)?;
    let queued = manager.len();
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(setup("waker"))?);
    let live = Arc::new(LiveConfig::new(config.clone()));
    let shared = Arc::new(Shared::new(
        Arc::clone(&live),
        LiveSecrets::new(secrets),
        queue.clone(),
        waker,
    ));
    let manager = std::thread::Builder::new()
        .name("queue".into())
        .spawn(move || manager.run())
        .map_err(setup("queue manager thread"))?;
    let ctx = WorkerContext {
        queue,
        config: live,
        helper: options.helper.clone(),
        run_as: options.run_as.or(run_as),
        security: Arc::clone(&uplink),
    };
    let workers = spawn_workers(&ctx, &attempts, config.workers)?;
    drop(attempts);
    let (conn_tx, conn_rx) = bounded::<Conn>(config.sessions);
    let sessions = spawn_sessions(&shared, &conn_rx, config.sessions)?;
    log::info!(
        "detad {} listening on {} (spool {}, {} sessions, {} workers, {queued} messages queued)",
        env!("CARGO_PKG_VERSION"),
        addrs
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        config.spool.display(),
        config.sessions,
        config.workers,
    );
    let main_loop = MainLoop {
        poll,
        listeners,
        control,
        control_conns: HashMap::new(),
        next_control: 0,
        signals,
        reload: options.reload,
        conn_tx,
        uplink,
    };
    Ok(Server {
        shared,
        main_loop,
        sessions,
        manager,
        workers,
        addrs,
        _lock: spool_lock,
    })
}

/// The relay client's security settings, loaded once (the trust anchors
/// are read here, not per message), and said in one line when there is a
/// relay route.
fn uplink(config: &Config) -> Result<Arc<LiveSecurity>, StartError> {
    let security = Security::from_config(config).map_err(StartError::Uplink)?;
    let relays = config
        .routes
        .iter()
        .any(|r| matches!(r.transport, Transport::Smtp { .. }));
    if relays {
        log::info!("relay uplink: {}", security.summary());
    }
    Ok(Arc::new(LiveSecurity::new(security)))
}

/// Opens and locks the spool (the lock before anything else touches it: a
/// second daemon must leave the first one's control socket and messages
/// alone), and cleans what crashes left in the Maildirs' `tmp/`.
fn open_spool(
    config: &Config,
    faults: Option<Arc<dyn FaultInjector>>,
) -> Result<(Spool, SpoolLock), StartError> {
    let spool = Spool::open(&config.spool, config.fsync).map_err(StartError::Spool)?;
    let spool_lock = lock_at_start(&config.spool).map_err(StartError::Lock)?;
    let spool = match faults {
        Some(f) => spool.with_faults(f),
        None => spool,
    };
    for root in maildir_roots(config) {
        let n = clean_stale_tmp(&root);
        if n > 0 {
            log::info!(
                "removed {n} unfinished file(s) from the tmp/ folders under {}",
                root.display()
            );
        }
    }
    Ok((spool, spool_lock))
}

fn register_signals(poll: &Poll) -> Result<Signals, StartError> {
    let mut s = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]).map_err(setup("signals"))?;
    poll.registry()
        .register(&mut s, SIGNALS, Interest::READABLE)
        .map_err(setup("poll"))?;
    Ok(s)
}

/// The `listen` sockets, then the `listen_tls` ones (`true`: implicit
/// TLS); a listener's token is its index.
fn bind_listeners(poll: &Poll, config: &Config) -> Result<Vec<(TcpListener, bool)>, StartError> {
    let mut listeners = Vec::new();
    let plain = config.listen.iter().map(|a| (a, false));
    let tls = config.listen_tls.iter().map(|a| (a, true));
    for (i, (addr, implicit_tls)) in plain.chain(tls).enumerate() {
        let mut l = TcpListener::bind(*addr).map_err(|e| StartError::Bind(*addr, e))?;
        poll.registry()
            .register(&mut l, Token(i), Interest::READABLE)
            .map_err(setup("poll"))?;
        listeners.push((l, implicit_tls));
    }
    Ok(listeners)
}

/// The control socket, private to the daemon's user (mode 0600).
fn open_control(poll: &Poll, config: &Config) -> Result<UnixListener, StartError> {
    let control_path = socket_path(&config.spool);
    let _ = std::fs::remove_file(&control_path);
    let mut control = UnixListener::bind(&control_path).map_err(setup("control socket"))?;
    std::fs::set_permissions(&control_path, std::fs::Permissions::from_mode(0o600))
        .map_err(setup("control socket"))?;
    poll.registry()
        .register(&mut control, CONTROL, Interest::READABLE)
        .map_err(setup("poll"))?;
    Ok(control)
}

fn spawn_workers(
    ctx: &WorkerContext,
    attempts: &crossbeam_channel::Receiver<crate::queue::manager::Attempt>,
    n: usize,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    (0..n)
        .map(|i| {
            let (ctx, rx) = (ctx.clone(), attempts.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker::run(ctx, rx))
                .map_err(setup("worker thread"))
        })
        .collect()
}

fn spawn_sessions(
    shared: &Arc<Shared>,
    conns: &crossbeam_channel::Receiver<Conn>,
    n: usize,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    (0..n)
        .map(|i| {
            let (shared, rx) = (Arc::clone(shared), conns.clone());
            let (doorbell, bell) = doorbell().map_err(setup("session doorbell"))?;
            std::thread::Builder::new()
                .name(format!("session-{i}"))
                .stack_size(SESSION_STACK)
                .spawn(move || {
                    let thread = SessionThread { doorbell, bell };
                    for conn in rx.iter() {
                        conn::serve(&shared, &thread, conn);
                    }
                })
                .map_err(setup("session thread"))
        })
        .collect()
}

/// A session thread's stack: the session keeps its buffers on the heap,
/// so a small stack is enough (and an idle connection costs little).
const SESSION_STACK: usize = 128 * 1024;

impl Server {
    /// The addresses actually bound.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Runs the main loop on this thread until shutdown (SIGTERM, SIGINT,
    /// [`Handle::shutdown`]), then stops every other thread in order.
    pub fn run(self) {
        let Server {
            shared,
            mut main_loop,
            sessions,
            manager,
            workers,
            _lock,
            ..
        } = self;
        if let Err(e) = main_loop.run(&shared) {
            log::error!("main loop failed: {e}; shutting down");
        }
        shared.begin_shutdown();
        let control = socket_path(&shared.config.get().spool);
        // Closing the hand-off ends the session threads once idle.
        drop(main_loop);
        for t in sessions {
            let _ = t.join();
        }
        shared.queue.shutdown();
        let _ = manager.join();
        for t in workers {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(control);
        log::info!("detad stopped; spool consistent");
        drop(_lock);
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
        .map_err(setup("main loop thread"))?;
    Ok(Handle {
        shared,
        main,
        addrs,
    })
}
