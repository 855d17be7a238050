//! When each message is attempted next: one entry per message, and the
//! retry policy. Pure: times are unix seconds passed in, and every
//! computation on them saturates instead of overflowing.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// The schedule: at most one entry per message, ordered by time.
#[derive(Debug, Default)]
pub struct Schedule {
    by_time: BTreeSet<(i64, String)>,
    at: HashMap<String, i64>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Schedule {
        Schedule::default()
    }

    /// Schedules `id` at `at`, replacing its entry if it had one.
    pub fn set(&mut self, id: &str, at: i64) {
        if let Some(old) = self.at.insert(id.to_string(), at) {
            self.by_time.remove(&(old, id.to_string()));
        }
        self.by_time.insert((at, id.to_string()));
    }

    /// Schedules `id` at `at` unless it already has an earlier entry.
    pub fn set_earlier(&mut self, id: &str, at: i64) {
        match self.at.get(id) {
            Some(&old) if old <= at => {}
            _ => self.set(id, at),
        }
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.at.remove(id) {
            self.by_time.remove(&(old, id.to_string()));
        }
    }

    /// When `id` is scheduled, if it is.
    pub fn get(&self, id: &str) -> Option<i64> {
        self.at.get(id).copied()
    }

    /// The earliest time anything is due.
    pub fn next_due(&self) -> Option<i64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes the earliest message due at `now`, if any.
    pub fn pop_due(&mut self, now: i64) -> Option<String> {
        let (at, _) = self.by_time.first()?;
        if *at > now {
            return None;
        }
        let (_, id) = self.by_time.pop_first()?;
        self.at.remove(&id);
        Some(id)
    }

    /// Moves every entry to `now` (a flush); returns how many there are.
    pub fn all_now(&mut self, now: i64) -> usize {
        let ids: Vec<String> = self.at.keys().cloned().collect();
        for id in &ids {
            self.set(id, now);
        }
        ids.len()
    }

    /// How many messages are scheduled.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// `now + d` in unix seconds, saturating (a huge configured duration means
/// "never", not a wrap into the past).
pub fn after(now: i64, d: Duration) -> i64 {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    now.saturating_add(secs)
}

/// Capped exponential backoff with ±20 % jitter so a fleet of gateways
/// does not retry in step: `retry_min · 2^(attempts-1)`, at most
/// `retry_max`, never below one second. `seed` varies the jitter.
pub fn backoff(retry_min: Duration, retry_max: Duration, attempts: u32, seed: u64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(62);
    let base = retry_min.as_secs().saturating_mul(1u64 << exponent);
    let capped = base.min(retry_max.as_secs()).max(1);
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(attempts);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // 80 % .. 120 %, in thousandths, computed without overflow.
    let permille = 800 + x % 401;
    let jittered = u128::from(capped) * u128::from(permille) / 1000;
    let max = retry_max.as_secs().max(1);
    Duration::from_secs(u64::try_from(jittered).unwrap_or(u64::MAX).clamp(1, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_message() {
        let mut s = Schedule::new();
        s.set("A", 100);
        s.set("A", 50);
        s.set("B", 70);
        assert_eq!(s.len(), 2);
        assert_eq!(s.pop_due(60).as_deref(), Some("A"));
        assert_eq!(s.pop_due(60), None);
        assert_eq!(s.pop_due(70).as_deref(), Some("B"));
        assert!(s.is_empty());
    }

    #[test]
    fn set_earlier_never_postpones() {
        let mut s = Schedule::new();
        s.set("A", 10);
        s.set_earlier("A", 20);
        assert_eq!(s.get("A"), Some(10));
        s.set_earlier("A", 5);
        assert_eq!(s.get("A"), Some(5));
    }

    #[test]
    fn flush_makes_everything_due_once() {
        let mut s = Schedule::new();
        s.set("A", 1000);
        s.set("B", 2000);
        assert_eq!(s.all_now(5), 2);
        assert_eq!(s.next_due(), Some(5));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let secs =
            |n| backoff(Duration::from_secs(60), Duration::from_secs(3600), n, 12345).as_secs();
        assert!((48..=72).contains(&secs(1)), "{}", secs(1));
        assert!((96..=144).contains(&secs(2)));
        assert!(secs(20) <= 3600);
        assert!(secs(20) >= 2880);
    }

    #[test]
    fn extreme_values_saturate_instead_of_overflowing() {
        let max = Duration::from_secs(u64::MAX);
        assert_eq!(after(i64::MAX - 5, max), i64::MAX);
        assert_eq!(after(0, max), i64::MAX);
        let d = backoff(max, max, u32::MAX, u64::MAX);
        assert!(d.as_secs() >= 1);
        assert_eq!(backoff(Duration::ZERO, Duration::ZERO, 0, 0).as_secs(), 1);
    }

    #[test]
    fn random_policies_and_times_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..10_000 {
            let (min, max) = (next() >> (next() % 64), next() >> (next() % 64));
            let d = backoff(
                Duration::from_secs(min),
                Duration::from_secs(max),
                next() as u32,
                next(),
            );
            let now = next() as i64;
            let at = after(now, d);
            assert!(at >= now || now < 0, "{now} {d:?}");
            assert!(d.as_secs() >= 1);
        }
    }
}
