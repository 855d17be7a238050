//! Deciding which DSNs are due and writing them into the spool (RFC 3461
//! §5.2, RFC 3464). The report text itself is built by [`crate::dsn`].
//!
//! Rules:
//! - Never a DSN about a message whose reverse-path is `<>` or that is
//!   itself one of our DSNs (RFC 5321 §4.5.5, no loops). A DSN that cannot
//!   be delivered is logged, and kept in `double_bounce` if configured.
//! - `failed` unless NOTIFY excludes FAILURE (absent NOTIFY means FAILURE);
//!   `delivered`/`relayed` only with NOTIFY=SUCCESS; `delayed` only with
//!   NOTIFY=DELAY, once per message, after `delay_warning`.
//! - Recipients sharing an event share one report.
//! - The DSN is durable in the spool before the recipients are marked done,
//!   so a crash can repeat a DSN but never lose one.
//! - At most `dsn_per_sender_per_hour` reports to one address per hour.

use std::io::Read;

use crate::config::Config;
use crate::deliver;
use crate::dsn::{self, Action, RecipientReport, Report};
use crate::envelope::{Envelope, Notify, RcptState, Recipient};
use crate::server::shared::Shared;
use crate::spool::SpoolError;

/// How much of the original a headers-only report reads.
const HEADER_READ_LIMIT: u64 = 256 * 1024;

/// The event a recipient's state calls for, if its NOTIFY asks for one.
fn due_action(env: &Envelope, r: &Recipient, config: &Config, now: i64) -> Option<Action> {
    let notify = r.notify;
    let wants =
        |pick: fn(&Notify) -> bool, default: bool| notify.as_ref().map(pick).unwrap_or(default);
    match r.state {
        RcptState::Failed if !r.dsn_done && wants(|n| n.failure, true) => Some(Action::Failed),
        RcptState::Delivered { relayed: false } if !r.dsn_done && wants(|n| n.success, false) => {
            Some(Action::Delivered)
        }
        RcptState::Delivered { relayed: true } if !r.dsn_done && wants(|n| n.success, false) => {
            Some(Action::Relayed)
        }
        RcptState::Deferred
            if !env.delay_warned
                && wants(|n| n.delay, false)
                && now - env.arrival >= config.delay_warning.as_secs() as i64 =>
        {
            Some(Action::Delayed)
        }
        _ => None,
    }
}

/// RFC 5321 §4.5.5 and no loops: never a DSN about a message from `<>` or
/// about one of our own DSNs.
fn is_silent(env: &Envelope) -> bool {
    env.reverse_path.is_empty() || env.is_dsn
}

/// Whether `env` calls for a DSN now.
pub fn any_due(env: &Envelope, config: &Config, now: i64) -> bool {
    let silent = env.reverse_path.is_empty() || env.is_dsn;
    !silent
        && env
            .recipients
            .iter()
            .any(|r| due_action(env, r, config, now).is_some())
}

/// Writes the DSNs `env` calls for now and marks them done in `env` (the
/// caller persists `env`).
///
/// # Errors
/// A DSN could not be spooled; the reports spooled before it are marked in
/// `env`, which the caller persists before it retries.
pub fn emit(
    shared: &Shared,
    config: &Config,
    env: &mut Envelope,
    now: i64,
) -> Result<(), SpoolError> {
    if is_silent(env) {
        if env.is_dsn {
            keep_double_bounce(shared, config, env);
        }
    } else {
        for action in [
            Action::Failed,
            Action::Delayed,
            Action::Delivered,
            Action::Relayed,
        ] {
            let members: Vec<usize> = (0..env.recipients.len())
                .filter(|&i| due_action(env, &env.recipients[i], config, now) == Some(action))
                .collect();
            if members.is_empty() {
                continue;
            }
            if shared.allow_dsn(&env.reverse_path, now) {
                let dsn_id = spool_report(shared, config, env, &members, action, now)?;
                log::info!(
                    "id={} dsn={dsn_id} action={action} to=<{}> recipients={}",
                    env.id,
                    env.reverse_path,
                    members.len()
                );
            } else {
                log::warn!(
                    "id={} {action} DSN to <{}> dropped: dsn_per_sender_per_hour ({}) reached",
                    env.id,
                    env.reverse_path,
                    config.dsn_per_sender_per_hour
                );
            }
            // Marked as each report is spooled, so a failure on a later one
            // (persisted by the caller) does not send this one again.
            if action == Action::Delayed {
                env.delay_warned = true;
            } else {
                for &i in &members {
                    env.recipients[i].dsn_done = true;
                }
            }
        }
    }
    // Every final recipient is now reported or needs no report.
    for r in env.recipients.iter_mut() {
        if matches!(r.state, RcptState::Failed | RcptState::Delivered { .. }) {
            r.dsn_done = true;
        }
    }
    Ok(())
}

fn read_original(shared: &Shared, env: &Envelope, full: bool) -> Vec<u8> {
    let mut original = Vec::new();
    if let Ok(file) = shared.spool.open_content(&env.id) {
        let limit = if full { u64::MAX } else { HEADER_READ_LIMIT };
        let _ = file.take(limit).read_to_end(&mut original);
    }
    original
}

fn spool_report(
    shared: &Shared,
    config: &Config,
    env: &Envelope,
    members: &[usize],
    action: Action,
    now: i64,
) -> Result<String, SpoolError> {
    let until = env.arrival + config.max_queue_lifetime.as_secs() as i64;
    let reports: Vec<RecipientReport<'_>> = members
        .iter()
        .map(|&i| RecipientReport {
            recipient: &env.recipients[i],
            action,
            will_retry_until: (action == Action::Delayed).then_some(until),
        })
        .collect();
    let ret = dsn::return_content(env, &reports);
    let original = read_original(shared, env, ret == dsn::ReturnContent::Full);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let id = shared.spool.new_id(micros);
    let message_id = format!("<{id}.dsn@{}>", config.hostname);
    let bytes = dsn::build(&Report {
        reporting_mta: &config.hostname,
        envelope: env,
        recipients: &reports,
        original: &original,
        ret,
        now,
        message_id: &message_id,
        boundary_seed: &id,
    });
    let mut writer = shared.spool.create_content(&id)?;
    writer.write(&bytes)?;
    let size = writer.finish()?;
    let recipient = Recipient::new(env.reverse_path.clone(), Some(Notify::NEVER), None);
    let report_env = Envelope {
        size,
        client_ip: "127.0.0.1".into(),
        helo: config.hostname.clone(),
        is_dsn: true,
        ..Envelope::new(id.clone(), String::new(), now, vec![recipient])
    };
    shared.spool.commit(&report_env)?;
    shared.submit(&id);
    Ok(id)
}

/// A DSN of ours failed: keep a copy in `double_bounce` if configured,
/// otherwise it is only logged. Never another DSN.
fn keep_double_bounce(shared: &Shared, config: &Config, env: &Envelope) {
    for r in env
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Failed && !r.dsn_done)
    {
        let Some(dir) = &config.double_bounce else {
            log::warn!(
                "id={} undeliverable DSN to <{}> dropped ({})",
                env.id,
                r.address,
                r.diagnostic
            );
            continue;
        };
        let kept = shared
            .spool
            .open_content(&env.id)
            .map_err(|e| e.to_string())
            .and_then(|mut f| deliver::maildir_folder(dir, "", &r.address, &mut f, config.fsync));
        match kept {
            Ok(path) => log::warn!(
                "id={} undeliverable DSN to <{}> kept in {}",
                env.id,
                r.address,
                path.display()
            ),
            Err(e) => {
                log::error!(
                    "id={} undeliverable DSN to <{}> dropped: double_bounce failed: {e}",
                    env.id,
                    r.address
                )
            }
        }
    }
}
