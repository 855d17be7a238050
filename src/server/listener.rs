//! The main loop: a mio Poll over the listeners, the signals, the control
//! socket and a Waker. It accepts connections onto the fixed session pool
//! (a full pool, or an address over `max_sessions_per_ip`, is answered
//! `421` by the acceptor itself), reads control requests and hands them to
//! the queue manager, and turns signals into reload, flush and shutdown.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use mio::net::{TcpListener, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use super::Reloader;
use super::conn::Conn;
use super::shared::Shared;
use crate::queue::control::{MAX_REQUEST, encode_answer};

pub(super) const WAKER: Token = Token(usize::MAX - 1);
pub(super) const SIGNALS: Token = Token(usize::MAX - 2);
pub(super) const CONTROL: Token = Token(usize::MAX - 3);
/// Control connections get tokens from here up.
const CONTROL_CONNS: usize = 1 << 20;
/// At most this many control connections at once.
const MAX_CONTROL_CONNS: usize = 16;

/// The main loop's state.
pub(super) struct MainLoop {
    pub(super) poll: Poll,
    pub(super) listeners: Vec<TcpListener>,
    pub(super) control: UnixListener,
    pub(super) control_conns: HashMap<Token, (UnixStream, Vec<u8>)>,
    pub(super) next_control: usize,
    pub(super) signals: Option<Signals>,
    pub(super) reload: Option<Reloader>,
    pub(super) conn_tx: Sender<Conn>,
}

impl std::fmt::Debug for MainLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainLoop")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl MainLoop {
    /// Runs until shutdown.
    pub(super) fn run(&mut self, shared: &Shared) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    SIGNALS => self.signals(shared),
                    CONTROL => self.accept_control(),
                    Token(i) if i >= CONTROL_CONNS => self.read_control(shared, Token(i)),
                    Token(i) => self.accept(shared, i),
                }
            }
            if shared.shutting_down() {
                return Ok(());
            }
        }
    }

    fn accept(&mut self, shared: &Shared, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        let config = shared.config.get();
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
            let stream: TcpStream = sock.into();
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            let Some(slot) = shared.admit(peer.ip(), config.sessions_per_ip()) else {
                log::warn!(
                    "peer={peer} rejected: {} sessions from its address already",
                    config.sessions_per_ip()
                );
                refuse(
                    stream,
                    &format!(
                        "421 4.7.0 {} too many connections from your address, try later\r\n",
                        config.hostname
                    ),
                );
                continue;
            };
            let accepted = std::time::Instant::now();
            match self.conn_tx.try_send(Conn {
                stream,
                peer,
                slot,
                accepted,
            }) {
                Ok(()) => {}
                Err(TrySendError::Full(conn)) => {
                    log::warn!(
                        "peer={} rejected: all {} sessions busy",
                        conn.peer,
                        config.sessions
                    );
                    let text = format!("421 4.3.2 {} too busy, try later\r\n", config.hostname);
                    refuse(conn.stream, &text);
                }
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
                SIGUSR1 => shared.queue.flush(),
                _ => {}
            }
        }
    }

    fn reload(&mut self, shared: &Shared) {
        let Some(reload) = &self.reload else {
            return;
        };
        match reload() {
            Ok(new) => {
                let (applied, restart) = shared.config.get().reloaded(new);
                shared.queue.reload(Arc::new(applied.clone()));
                shared.config.set(applied);
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

    fn accept_control(&mut self) {
        loop {
            let (mut stream, _) = match self.control.accept() {
                Ok(pair) => pair,
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    log::warn!("control socket: {e}");
                    return;
                }
            };
            if self.control_conns.len() >= MAX_CONTROL_CONNS {
                let _ = stream.write_all(b"busy too many control connections\n");
                continue;
            }
            let token = Token(CONTROL_CONNS + self.next_control % CONTROL_CONNS);
            self.next_control += 1;
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
                .is_ok()
            {
                self.control_conns.insert(token, (stream, Vec::new()));
            }
        }
    }

    /// Reads a control request; once its line is complete it goes to the
    /// queue manager, whose answer is written back on the same stream.
    fn read_control(&mut self, shared: &Shared, token: Token) {
        let Some((stream, buf)) = self.control_conns.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; MAX_REQUEST];
        let done = loop {
            match stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.contains(&b'\n') || buf.len() > MAX_REQUEST {
                        break true;
                    }
                }
                Err(e) if would_block(&e) => break false,
                Err(_) => break true,
            }
        };
        if !done {
            return;
        }
        let Some((mut stream, buf)) = self.control_conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut stream);
        let Some(end) = buf.iter().position(|&b| b == b'\n') else {
            return;
        };
        let line = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        let std_stream: std::os::unix::net::UnixStream = stream.into();
        let _ = std_stream.set_nonblocking(false);
        let _ = std_stream.set_write_timeout(Some(Duration::from_secs(1)));
        shared.queue.control(
            &line,
            Box::new(move |answer| {
                let _ = (&std_stream).write_all(encode_answer(&answer).as_bytes());
            }),
        );
    }
}

/// Writes a one-line refusal and closes (RFC 5321 §3.8 allows 421 at
/// connection time).
fn refuse(mut stream: TcpStream, text: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(text.as_bytes());
}
