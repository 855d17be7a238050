//! Deadlines from durations without overflow: `Instant + Duration` panics
//! when the sum does not fit, and a configured duration must never crash
//! the daemon. A sum that does not fit means "not in any foreseeable time".

use std::time::{Duration, Instant};

/// What "never" is, as a deadline: a year from now.
const FAR: Duration = Duration::from_secs(365 * 86_400);

/// `now + d`, or a year from now when that does not fit.
pub fn deadline_after(d: Duration) -> Instant {
    after(Instant::now(), d)
}

/// `at + d`, or `at` plus a year when that does not fit.
pub fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate() {
        let now = Instant::now();
        assert!(after(now, Duration::from_secs(u64::MAX)) > now);
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
