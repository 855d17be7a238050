//! The delay after failed logins, per client address.
//!
//! Each failed AUTH from an address doubles the delay before the next
//! reply to it: 1 s, 2 s, 4 s, 8 s, then 16 s for every further failure
//! (with the default [`Policy`]). A success, or a quiet spell of
//! [`Policy::forget_after_secs`] since the last failure, resets it.
//!
//! Guarantees:
//! - Pure: no clock, no sleep. Time comes in as `now`, whole seconds since
//!   an epoch the caller chooses (a monotonic one, e.g. seconds since the
//!   server started); a `now` that goes backwards is treated as no time
//!   passing.
//! - Bounded memory: at most [`Policy::capacity`] addresses are tracked.
//!   When full, forgotten entries go first, then the one whose last
//!   failure is oldest. An attacker with many addresses can so push out
//!   another address's entry; it cannot make the table grow.
//! - IPv6 clients are tracked per /64 (one subscriber's usual allocation,
//!   so a client cannot shed its delay by changing its interface
//!   identifier); IPv4-mapped IPv6 addresses count as their IPv4 address.
//!
//! The delay slows guessing down; it does not stop a slow, patient
//! guesser, and a success resets the delay of the whole address.

// core::net: only the address types, no sockets.
use core::net::{IpAddr, Ipv6Addr};
use std::collections::HashMap;
use std::time::Duration;

/// How the delay grows and how much is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The delay after the first failure; each further one doubles it.
    pub first_delay: Duration,
    /// The largest delay.
    pub max_delay: Duration,
    /// Seconds without a failure after which an address is forgotten.
    pub forget_after_secs: u64,
    /// The most addresses tracked at once; 0 disables the delay.
    pub capacity: usize,
}

impl Default for Policy {
    /// 1 s doubling to 16 s, forgotten after 10 minutes, 1024 addresses
    /// (under 100 KiB of table).
    fn default() -> Policy {
        Policy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            forget_after_secs: 10 * 60,
            capacity: 1024,
        }
    }
}

/// Failed-login counts per client address.
#[derive(Debug, Clone)]
pub struct Throttle {
    policy: Policy,
    entries: HashMap<IpAddr, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures since the entry was last reset; at least 1.
    failures: u32,
    /// When the last one happened.
    last_failure: u64,
}

impl Throttle {
    /// An empty table with this policy.
    pub fn new(policy: Policy) -> Throttle {
        Throttle {
            policy,
            entries: HashMap::new(),
        }
    }

    /// Records a failed login from `ip` at `now`.
    pub fn failure(&mut self, ip: IpAddr, now: u64) {
        if self.policy.capacity == 0 {
            return;
        }
        let key = key_of(ip);
        let failures = match self.entries.get(&key) {
            Some(entry) if self.remembers(entry, now) => entry.failures.saturating_add(1),
            _ => 1,
        };
        if !self.entries.contains_key(&key) && self.entries.len() >= self.policy.capacity {
            self.make_room(now);
        }
        self.entries.insert(
            key,
            Entry {
                failures,
                last_failure: now,
            },
        );
    }

    /// Records a successful login from `ip`: its delay is reset.
    pub fn success(&mut self, ip: IpAddr) {
        self.entries.remove(&key_of(ip));
    }

    /// How long to wait before answering `ip` at `now`: zero if it has no
    /// failures remembered, else the first delay doubled per further
    /// failure, at most the maximum.
    pub fn delay(&self, ip: IpAddr, now: u64) -> Duration {
        match self.entries.get(&key_of(ip)) {
            Some(entry) if self.remembers(entry, now) => {
                let doublings = (entry.failures - 1).min(31);
                self.policy
                    .first_delay
                    .saturating_mul(1 << doublings)
                    .min(self.policy.max_delay)
            }
            _ => Duration::ZERO,
        }
    }

    /// The number of addresses tracked (forgotten ones may linger until
    /// room is needed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry's failures still count at `now`.
    fn remembers(&self, entry: &Entry, now: u64) -> bool {
        now.saturating_sub(entry.last_failure) < self.policy.forget_after_secs
    }

    /// Frees at least one slot: drops forgotten entries, else the oldest.
    fn make_room(&mut self, now: u64) {
        let forget_after = self.policy.forget_after_secs;
        self.entries
            .retain(|_, entry| now.saturating_sub(entry.last_failure) < forget_after);
        if self.entries.len() >= self.policy.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_failure)
                .map(|(&key, _)| key);
            if let Some(key) = oldest {
                self.entries.remove(&key);
            }
        }
    }
}

/// The table key: IPv4 as is (also when IPv4-mapped), IPv6 cut to /64.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = v6.to_bits() & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from_bits(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 7));
    const OTHER: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 8));

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(core::net::Ipv4Addr::new(198, 51, 100, last))
    }

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn unknown_address_has_no_delay() {
        let throttle = Throttle::new(Policy::default());
        assert_eq!(throttle.delay(CLIENT, 0), Duration::ZERO);
    }

    #[test]
    fn delay_doubles_per_failure_up_to_the_cap() {
        let mut throttle = Throttle::new(Policy::default());
        let mut delays = Vec::new();
        for now in 0..7 {
            throttle.failure(CLIENT, now);
            delays.push(throttle.delay(CLIENT, now).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut throttle = Throttle::new(Policy::default());
        for _ in 0..100 {
            throttle.failure(CLIENT, 5);
        }
        assert_eq!(throttle.delay(CLIENT, 5), secs(16));
        let mut entry = throttle.entries[&CLIENT];
        entry.failures = u32::MAX;
        throttle.entries.insert(CLIENT, entry);
        throttle.failure(CLIENT, 5);
        assert_eq!(throttle.delay(CLIENT, 5), secs(16));
    }

    #[test]
    fn addresses_are_counted_separately() {
        let mut throttle = Throttle::new(Policy::default());
        throttle.failure(CLIENT, 0);
        throttle.failure(CLIENT, 0);
        throttle.failure(OTHER, 0);
        assert_eq!(throttle.delay(CLIENT, 0), secs(2));
        assert_eq!(throttle.delay(OTHER, 0), secs(1));
    }

    #[test]
    fn success_resets_the_delay() {
        let mut throttle = Throttle::new(Policy::default());
        throttle.failure(CLIENT, 0);
        throttle.failure(CLIENT, 1);
        throttle.success(CLIENT);
        assert_eq!(throttle.delay(CLIENT, 1), Duration::ZERO);
        throttle.failure(CLIENT, 2);
        assert_eq!(throttle.delay(CLIENT, 2), secs(1));
        assert!(!throttle.is_empty());
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_spell() {
        let policy = Policy::default();
        let mut throttle = Throttle::new(policy);
        throttle.failure(CLIENT, 100);
        throttle.failure(CLIENT, 100);
        let quiet = policy.forget_after_secs;
        assert_eq!(throttle.delay(CLIENT, 100 + quiet - 1), secs(2));
        assert_eq!(throttle.delay(CLIENT, 100 + quiet), Duration::ZERO);
        // The next failure starts again from the first delay.
        throttle.failure(CLIENT, 100 + quiet);
        assert_eq!(throttle.delay(CLIENT, 100 + quiet), secs(1));
    }

    #[test]
    fn each_failure_restarts_the_quiet_spell() {
        let mut throttle = Throttle::new(Policy::default());
        throttle.failure(CLIENT, 0);
        throttle.failure(CLIENT, 500);
        assert_eq!(throttle.delay(CLIENT, 1000), secs(2));
    }

    #[test]
    fn time_going_backwards_counts_as_no_time() {
        let mut throttle = Throttle::new(Policy::default());
        throttle.failure(CLIENT, 1000);
        assert_eq!(throttle.delay(CLIENT, 10), secs(1));
        throttle.failure(CLIENT, 10);
        assert_eq!(throttle.delay(CLIENT, 10), secs(2));
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_oldest() {
        let policy = Policy {
            capacity: 3,
            ..Policy::default()
        };
        let mut throttle = Throttle::new(policy);
        throttle.failure(v4(1), 10);
        throttle.failure(v4(2), 20);
        throttle.failure(v4(3), 30);
        throttle.failure(v4(1), 40); // refreshed: now the newest
        throttle.failure(v4(4), 50);
        assert_eq!(throttle.len(), 3);
        assert_eq!(throttle.delay(v4(2), 50), Duration::ZERO, "oldest evicted");
        assert_eq!(throttle.delay(v4(1), 50), secs(2));
        assert_eq!(throttle.delay(v4(3), 50), secs(1));
        assert_eq!(throttle.delay(v4(4), 50), secs(1));
        for last in 10..200 {
            throttle.failure(v4(last), 60);
        }
        assert_eq!(throttle.len(), 3);
    }

    #[test]
    fn forgotten_entries_are_evicted_before_remembered_ones() {
        let policy = Policy {
            capacity: 2,
            forget_after_secs: 100,
            ..Policy::default()
        };
        let mut throttle = Throttle::new(policy);
        throttle.failure(v4(1), 0); // forgotten by 150
        throttle.failure(v4(2), 100);
        throttle.failure(v4(3), 150);
        assert_eq!(throttle.len(), 2);
        assert_eq!(throttle.delay(v4(2), 150), secs(1));
        assert_eq!(throttle.delay(v4(3), 150), secs(1));
    }

    #[test]
    fn zero_capacity_tracks_nothing() {
        let mut throttle = Throttle::new(Policy {
            capacity: 0,
            ..Policy::default()
        });
        throttle.failure(CLIENT, 0);
        assert_eq!(throttle.delay(CLIENT, 0), Duration::ZERO);
        assert!(throttle.is_empty());
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_delay() {
        let mut throttle = Throttle::new(Policy::default());
        throttle.failure(v6("2001:db8:1:2::1"), 0);
        throttle.failure(v6("2001:db8:1:2:ffff:eeee:dddd:cccc"), 0);
        assert_eq!(throttle.delay(v6("2001:db8:1:2::99"), 0), secs(2));
        assert_eq!(throttle.delay(v6("2001:db8:1:3::1"), 0), Duration::ZERO);
        throttle.success(v6("2001:db8:1:2::5"));
        assert_eq!(throttle.delay(v6("2001:db8:1:2::1"), 0), Duration::ZERO);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let mut throttle = Throttle::new(Policy::default());
        throttle.failure(v6("::ffff:192.0.2.7"), 0);
        assert_eq!(throttle.delay(CLIENT, 0), secs(1));
        // Other IPv4 addresses are not lumped together by the /64 rule.
        assert_eq!(throttle.delay(OTHER, 0), Duration::ZERO);
    }

    #[test]
    fn custom_policy_is_followed() {
        let mut throttle = Throttle::new(Policy {
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_millis(600),
            ..Policy::default()
        });
        let mut delays = Vec::new();
        for _ in 0..4 {
            throttle.failure(CLIENT, 0);
            delays.push(throttle.delay(CLIENT, 0).as_millis());
        }
        assert_eq!(delays, [250, 500, 600, 600]);
    }
}
