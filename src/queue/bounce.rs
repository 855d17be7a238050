//! Deciding which DSNs a message owes now (RFC 3461 §5.2, RFC 3464) and
//! when its recipients expire. Pure: the envelope and the time in, the
//! decisions out; the queue manager applies them and a worker builds and
//! spools the reports ([`super::dsn`]).
//!
//! Rules:
//! - Never a DSN about a message whose reverse-path is `<>` or that is
//!   itself one of our DSNs (RFC 5321 §4.5.5, no loops). A DSN of ours that
//!   fails is kept in `double_bounce` if configured, else only logged.
//! - `failed` unless NOTIFY excludes FAILURE (absent NOTIFY means FAILURE);
//!   `delivered`/`relayed` only with NOTIFY=SUCCESS; `delayed` only with
//!   NOTIFY=DELAY, once per message, after `delay_warning`.
//! - Recipients sharing an event share one report.
//! - A report is durable in the spool before its recipients are marked
//!   done, so a crash can repeat a DSN but never lose one.

use std::time::Duration;

use super::delivery::Delivery;
use super::dsn::DsnAction;
use super::envelope::{Envelope, Notify, RcptState, Recipient};
use super::schedule::after;
use crate::smtp::status::EnhancedStatus;

/// One piece of DSN work for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnJob {
    /// Build and spool a report about these recipients (indices).
    Report {
        /// What happened to them.
        action: DsnAction,
        /// Their indices in the envelope.
        members: Vec<usize>,
    },
    /// One of our DSNs failed: keep a copy in the `double_bounce` Maildir.
    KeepDoubleBounce {
        /// The failed recipients (indices), whose copies are kept.
        members: Vec<usize>,
    },
}

/// The event a recipient's state calls for, if its NOTIFY asks for one.
fn due_action(
    env: &Envelope,
    r: &Recipient,
    delay_warning: Duration,
    now: i64,
) -> Option<DsnAction> {
    let wants =
        |pick: fn(&Notify) -> bool, default: bool| r.notify.as_ref().map(pick).unwrap_or(default);
    match r.state() {
        RcptState::Failed if !r.dsn_done && wants(|n| n.failure, true) => Some(DsnAction::Failed),
        RcptState::Delivered { relayed: false } if !r.dsn_done && wants(|n| n.success, false) => {
            Some(DsnAction::Delivered)
        }
        RcptState::Delivered { relayed: true } if !r.dsn_done && wants(|n| n.success, false) => {
            Some(DsnAction::Relayed)
        }
        RcptState::Deferred
            if !env.delay_warned
                && wants(|n| n.delay, false)
                && now >= after(env.arrival, delay_warning) =>
        {
            Some(DsnAction::Delayed)
        }
        _ => None,
    }
}

/// RFC 5321 §4.5.5 and no loops: never a DSN about a message from `<>` or
/// about one of our own DSNs.
pub fn is_silent(env: &Envelope) -> bool {
    env.reverse_path.is_empty() || env.is_dsn
}

/// The DSN work `env` calls for now, grouped by event in the order
/// failed, delayed, delivered, relayed.
pub fn due(env: &Envelope, delay_warning: Duration, now: i64) -> Vec<DsnJob> {
    if env.is_dsn {
        let members: Vec<usize> = (0..env.recipients.len())
            .filter(|&i| {
                let r = &env.recipients[i];
                r.state() == RcptState::Failed && !r.dsn_done
            })
            .collect();
        return if members.is_empty() {
            Vec::new()
        } else {
            vec![DsnJob::KeepDoubleBounce { members }]
        };
    }
    if is_silent(env) {
        return Vec::new();
    }
    [
        DsnAction::Failed,
        DsnAction::Delayed,
        DsnAction::Delivered,
        DsnAction::Relayed,
    ]
    .into_iter()
    .filter_map(|action| {
        let members: Vec<usize> = (0..env.recipients.len())
            .filter(|&i| due_action(env, &env.recipients[i], delay_warning, now) == Some(action))
            .collect();
        (!members.is_empty()).then_some(DsnJob::Report { action, members })
    })
    .collect()
}

/// Records that `job` is done (spooled, kept, or deliberately dropped).
pub fn mark_done(env: &mut Envelope, job: &DsnJob) {
    match job {
        DsnJob::Report {
            action: DsnAction::Delayed,
            ..
        } => env.delay_warned = true,
        DsnJob::Report { members, .. } | DsnJob::KeepDoubleBounce { members } => {
            for &i in members {
                if let Some(r) = env.recipients.get_mut(i) {
                    r.dsn_done = true;
                }
            }
        }
    }
}

/// After the reports: every recipient in a final state is settled, so
/// nothing is owed for it any more (it needed no report, or had one).
pub fn settle(env: &mut Envelope) {
    for r in env.recipients.iter_mut() {
        if r.state().is_final() {
            r.dsn_done = true;
        }
    }
}

/// Whether the message owes nothing more: every recipient final and
/// settled, or no report would be due for it.
pub fn owes_nothing(env: &Envelope, delay_warning: Duration, now: i64) -> bool {
    !env.has_open_recipients() && due(env, delay_warning, now).is_empty()
}

/// Gives up on deferred recipients older than `lifetime` (`5.4.7`, RFC
/// 3463 "delivery time expired"); returns their addresses.
pub fn expire(env: &mut Envelope, lifetime: Duration, now: i64) -> Vec<String> {
    if now < after(env.arrival, lifetime) {
        return Vec::new();
    }
    let mut expired = Vec::new();
    for r in env
        .recipients
        .iter_mut()
        .filter(|r| r.state() == RcptState::Deferred)
    {
        let last = r
            .last
            .as_ref()
            .and_then(|d| d.diagnostic.as_ref())
            .map(|d| d.to_string())
            .unwrap_or_default();
        let mut failed = Delivery::failed(
            EnhancedStatus::of(5, 4, 7),
            format!("delivery time expired; last error: {last}"),
        );
        failed.remote_mta = r.last.as_ref().and_then(|d| d.remote_mta.clone());
        r.last = Some(failed);
        r.dsn_done = false;
        expired.push(r.address.clone());
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::delivery::DeliveryKind;

    fn env_with(states: &[(Option<DeliveryKind>, Option<Notify>)]) -> Envelope {
        let recipients = states
            .iter()
            .enumerate()
            .map(|(i, (kind, notify))| {
                let mut r = Recipient::new(format!("r{i}@x"), *notify, None);
                r.last = kind.map(|k| Delivery {
                    kind: k,
                    ..Delivery::delivered()
                });
                r
            })
            .collect();
        Envelope::new("ID".into(), "a@b".into(), 1000, recipients)
    }

    const SUCCESS: Option<Notify> = Some(Notify {
        success: true,
        failure: false,
        delay: false,
    });

    #[test]
    fn failures_are_reported_unless_notify_excludes_them() {
        let env = env_with(&[
            (Some(DeliveryKind::Failed), None),
            (Some(DeliveryKind::Failed), Some(Notify::NEVER)),
            (Some(DeliveryKind::Delivered), SUCCESS),
            (Some(DeliveryKind::Relayed), None),
        ]);
        assert_eq!(
            due(&env, Duration::from_secs(60), 1000),
            vec![
                DsnJob::Report {
                    action: DsnAction::Failed,
                    members: vec![0]
                },
                DsnJob::Report {
                    action: DsnAction::Delivered,
                    members: vec![2]
                },
            ]
        );
    }

    #[test]
    fn null_sender_and_our_own_dsns_never_get_a_report() {
        let mut env = env_with(&[(Some(DeliveryKind::Failed), None)]);
        env.reverse_path.clear();
        assert!(due(&env, Duration::ZERO, 1000).is_empty());
        env.is_dsn = true;
        assert_eq!(
            due(&env, Duration::ZERO, 1000),
            vec![DsnJob::KeepDoubleBounce { members: vec![0] }]
        );
    }

    #[test]
    fn delay_is_reported_once_after_the_warning_time() {
        let delay = Some(Notify {
            delay: true,
            ..Notify::NEVER
        });
        let mut env = env_with(&[(Some(DeliveryKind::Deferred), delay)]);
        assert!(due(&env, Duration::from_secs(100), 1050).is_empty());
        let jobs = due(&env, Duration::from_secs(100), 1100);
        assert_eq!(jobs.len(), 1);
        mark_done(&mut env, &jobs[0]);
        assert!(due(&env, Duration::from_secs(100), 1200).is_empty());
    }

    #[test]
    fn expiry_fails_deferred_recipients_with_5_4_7() {
        let mut env = env_with(&[(Some(DeliveryKind::Deferred), None), (None, None)]);
        assert!(expire(&mut env, Duration::from_secs(500), 1400).is_empty());
        assert_eq!(
            expire(&mut env, Duration::from_secs(500), 1500),
            vec!["r0@x"]
        );
        assert_eq!(env.recipients[0].state(), RcptState::Failed);
        assert_eq!(
            env.recipients[0].last.as_ref().unwrap().status.to_string(),
            "5.4.7"
        );
        // A huge lifetime never wraps into the past.
        let mut env = env_with(&[(Some(DeliveryKind::Deferred), None)]);
        assert!(expire(&mut env, Duration::from_secs(u64::MAX), i64::MAX - 1).is_empty());
    }
}
