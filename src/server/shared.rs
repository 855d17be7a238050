//! State the acceptor and the session threads share: the configuration,
//! the queue handle, the shutdown flag, the open sockets (so a shutdown can
//! end their blocked reads), and the per-address session count.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;

use super::secrets::LiveSecrets;
use crate::auth::throttle::{Policy as ThrottlePolicy, Throttle};
use crate::config::LiveConfig;
use crate::queue::manager::QueueHandle;

/// Everything the network threads share.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in effect.
    pub config: Arc<LiveConfig>,
    /// The certificate and the AUTH users in effect.
    pub secrets: LiveSecrets,
    /// Failed AUTH attempts per client address, for the delay.
    pub auth_failures: Mutex<Throttle>,
    /// The way to the queue manager.
    pub queue: QueueHandle,
    waker: Arc<Waker>,
    shutdown: AtomicBool,
    sockets: Mutex<HashMap<usize, TcpStream>>,
    next_socket: AtomicUsize,
    per_ip: PerAddress,
}

/// Sessions per client address, counted as reservations.
#[derive(Debug, Default)]
pub struct PerAddress {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    /// A session for `ip` unless it has `max` already (checked and taken
    /// in one step).
    pub fn admit(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.counts.lock().expect("per-address count poisoned");
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            per_ip: Arc::clone(&self.counts),
            ip,
        })
    }
}

/// One of a client address's sessions (`max_sessions_per_ip`); given back
/// when dropped.
#[derive(Debug)]
pub struct IpSlot {
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.per_ip.lock().expect("per-address count poisoned");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    /// Assembles the shared state.
    pub fn new(
        config: Arc<LiveConfig>,
        secrets: LiveSecrets,
        queue: QueueHandle,
        waker: Arc<Waker>,
    ) -> Shared {
        Shared {
            config,
            secrets,
            auth_failures: Mutex::new(Throttle::new(ThrottlePolicy::default())),
            queue,
            waker,
            shutdown: AtomicBool::new(false),
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicUsize::new(0),
            per_ip: PerAddress::default(),
        }
    }

    fn sockets(&self) -> MutexGuard<'_, HashMap<usize, TcpStream>> {
        self.sockets.lock().expect("socket registry poisoned")
    }

    /// A session for `ip` unless it has `max` already.
    pub fn admit(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        self.per_ip.admit(ip, max)
    }

    /// Starts the shutdown: sessions answer 421 and end; each blocked read
    /// is ended by shutting the socket's read side.
    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for sock in self.sockets().values() {
            let _ = sock.shutdown(Shutdown::Read);
        }
        let _ = self.waker.wake();
    }

    /// Whether the server is shutting down.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Wakes the main loop (a flush or a shutdown request from a thread).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    /// Registers a session's socket for [`Shared::begin_shutdown`].
    pub fn track(&self, sock: &TcpStream) -> Option<usize> {
        let clone = sock.try_clone().ok()?;
        let key = self.next_socket.fetch_add(1, Ordering::Relaxed);
        self.sockets().insert(key, clone);
        if self.shutting_down() {
            let _ = sock.shutdown(Shutdown::Read);
        }
        Some(key)
    }

    /// Forgets a session's socket.
    pub fn untrack(&self, key: Option<usize>) {
        if let Some(key) = key {
            self.sockets().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_per_address_are_reserved_and_given_back() {
        let per = PerAddress::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = per.admit(ip("192.0.2.1"), 2).unwrap();
        let _b = per.admit(ip("192.0.2.1"), 2).unwrap();
        assert!(per.admit(ip("192.0.2.1"), 2).is_none());
        assert!(per.admit(ip("192.0.2.2"), 2).is_some());
        drop(a);
        assert!(per.admit(ip("192.0.2.1"), 2).is_some());
    }
}
