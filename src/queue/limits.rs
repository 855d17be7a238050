//! Limits as reservations: a place among a sender's jobs in processing
//! (draft-burger-smtp-deta §5, `max_inflight_per_sender`) and octets of
//! spool (`spool_max_bytes`). A reservation is taken with one check-and-add
//! under one lock, so concurrent sessions can never overshoot; it is given
//! back when dropped. The queue manager keeps them for the messages it
//! owns and gives the sessions a handle to take new ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Counts {
    per_sender: HashMap<String, usize>,
    max_per_sender: usize,
    bytes: u64,
    max_bytes: u64,
}

/// The reservation ledger.
#[derive(Debug)]
pub struct Limits {
    counts: Mutex<Counts>,
}

/// One of a sender's places in processing; given back when dropped.
#[derive(Debug)]
pub struct SenderSlot {
    limits: Arc<Limits>,
    key: String,
}

/// Octets of spool; given back when dropped.
#[derive(Debug)]
pub struct ByteReservation {
    limits: Arc<Limits>,
    bytes: u64,
}

impl Limits {
    /// A ledger with these caps (`max_bytes` 0 = no cap).
    pub fn new(max_per_sender: usize, max_bytes: u64) -> Arc<Limits> {
        Arc::new(Limits {
            counts: Mutex::new(Counts {
                max_per_sender,
                max_bytes,
                ..Counts::default()
            }),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().expect("limits lock poisoned")
    }

    /// New caps (SIGHUP); reservations already held stay.
    pub fn set_caps(&self, max_per_sender: usize, max_bytes: u64) {
        let mut c = self.counts();
        c.max_per_sender = max_per_sender;
        c.max_bytes = max_bytes;
    }

    /// A place for `key` unless it has its maximum already.
    pub fn reserve_sender(self: &Arc<Self>, key: &str) -> Option<SenderSlot> {
        let mut c = self.counts();
        let max = c.max_per_sender;
        let n = c.per_sender.entry(key.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SenderSlot {
            limits: Arc::clone(self),
            key: key.to_string(),
        })
    }

    /// A place for `key` whatever the cap (a detached job resumed at
    /// startup must be counted, not refused).
    pub fn force_sender(self: &Arc<Self>, key: &str) -> SenderSlot {
        *self.counts().per_sender.entry(key.to_string()).or_insert(0) += 1;
        SenderSlot {
            limits: Arc::clone(self),
            key: key.to_string(),
        }
    }

    /// How many places `key` holds.
    pub fn sender_count(&self, key: &str) -> usize {
        self.counts().per_sender.get(key).copied().unwrap_or(0)
    }

    /// `bytes` octets unless they do not fit.
    pub fn reserve_bytes(self: &Arc<Self>, bytes: u64) -> Option<ByteReservation> {
        let mut r = ByteReservation {
            limits: Arc::clone(self),
            bytes: 0,
        };
        r.grow(bytes).then_some(r)
    }

    /// `bytes` octets whatever the cap (messages found at startup).
    pub fn force_bytes(self: &Arc<Self>, bytes: u64) -> ByteReservation {
        let mut c = self.counts();
        c.bytes = c.bytes.saturating_add(bytes);
        ByteReservation {
            limits: Arc::clone(self),
            bytes,
        }
    }

    /// Whether `bytes` more would fit now (an early, advisory check: the
    /// reservation decides).
    pub fn has_room(&self, bytes: u64) -> bool {
        let c = self.counts();
        c.max_bytes == 0 || c.bytes.saturating_add(bytes) <= c.max_bytes
    }

    /// Octets reserved in all.
    pub fn bytes_used(&self) -> u64 {
        self.counts().bytes
    }
}

impl ByteReservation {
    /// Reserves `more` octets on top; false (and nothing taken) when they
    /// do not fit.
    pub fn grow(&mut self, more: u64) -> bool {
        let mut c = self.limits.counts();
        let total = c.bytes.saturating_add(more);
        if c.max_bytes != 0 && total > c.max_bytes {
            return false;
        }
        c.bytes = total;
        self.bytes += more;
        true
    }

    /// Sets the reservation to exactly `bytes` (the size a file turned out
    /// to have), whatever the cap: the file exists either way.
    pub fn settle(&mut self, bytes: u64) {
        let mut c = self.limits.counts();
        c.bytes = c.bytes.saturating_sub(self.bytes).saturating_add(bytes);
        self.bytes = bytes;
    }

    /// Octets held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for ByteReservation {
    fn drop(&mut self) {
        let mut c = self.limits.counts();
        c.bytes = c.bytes.saturating_sub(self.bytes);
    }
}

impl Drop for SenderSlot {
    fn drop(&mut self) {
        let mut c = self.limits.counts();
        if let Some(n) = c.per_sender.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_sender.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_places_are_reserved_and_given_back() {
        let l = Limits::new(2, 0);
        let a = l.reserve_sender("a@b").unwrap();
        let _b = l.reserve_sender("a@b").unwrap();
        assert!(l.reserve_sender("a@b").is_none());
        assert!(l.reserve_sender("c@d").is_some());
        drop(a);
        assert!(l.reserve_sender("a@b").is_some());
    }

    #[test]
    fn concurrent_reservations_never_overshoot() {
        let l = Limits::new(3, 1000);
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..50 {
                        if let Some(slot) = l.reserve_sender("x") {
                            held.lock().unwrap().push((slot, None));
                        }
                        if let Some(r) = l.reserve_bytes(100) {
                            held.lock().unwrap().push((l.force_sender("y"), Some(r)));
                        }
                    }
                });
            }
        });
        assert_eq!(l.sender_count("x"), 3);
        assert_eq!(l.bytes_used(), 1000);
        drop(held);
        assert_eq!((l.sender_count("x"), l.bytes_used()), (0, 0));
    }

    #[test]
    fn byte_reservations_grow_within_the_cap() {
        let l = Limits::new(1, 100);
        let mut r = l.reserve_bytes(60).unwrap();
        assert!(!r.grow(50));
        assert!(r.grow(40));
        assert!(!l.has_room(1));
        r.settle(10);
        assert_eq!(l.bytes_used(), 10);
        drop(r);
        assert_eq!(l.bytes_used(), 0);
    }
}
