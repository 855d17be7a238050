//! The DSN work the queue manager hands a worker after an attempt: build
//! each report ([`crate::queue::dsn`]) and commit it as a new message from
//! `<>` (durable before the worker says it is done), or keep a failed DSN
//! of ours in the `double_bounce` Maildir.

use std::io::Read;

use super::maildir;
use crate::config::Config;
use crate::queue::bounce::DsnJob;
use crate::queue::dsn::{self, RecipientReport, Report};
use crate::queue::envelope::{BodyType, Envelope, Notify, Recipient};
use crate::queue::manager::{Commit, QueueHandle};
use crate::queue::schedule::after;

/// How much of the original a headers-only report reads.
const HEADER_READ_LIMIT: u64 = 256 * 1024;

/// Does `jobs` for `env`; returns the ones done (the rest stay owed).
pub fn run(
    handle: &QueueHandle,
    config: &Config,
    env: &Envelope,
    jobs: Vec<DsnJob>,
) -> Vec<DsnJob> {
    let now = crate::queue::manager::unix_now();
    jobs.into_iter()
        .filter(|job| match job {
            DsnJob::Report { action, members } => {
                match spool_report(handle, config, env, *action, members, now) {
                    Ok(dsn_id) => {
                        log::info!(
                            "id={} dsn={dsn_id} action={action} to=<{}> recipients={}",
                            env.id,
                            env.reverse_path,
                            members.len()
                        );
                        true
                    }
                    Err(e) => {
                        log::error!("id={} cannot write a {action} DSN: {e}; will retry", env.id);
                        false
                    }
                }
            }
            DsnJob::KeepDoubleBounce { members } => {
                keep_double_bounce(handle, config, env, members);
                true
            }
        })
        .collect()
}

fn read_original(handle: &QueueHandle, env: &Envelope, full: bool) -> Vec<u8> {
    let mut original = Vec::new();
    if let Ok(content) = handle.spool().open_content(env) {
        let limit = if full { u64::MAX } else { HEADER_READ_LIMIT };
        let _ = content.take(limit).read_to_end(&mut original);
    }
    original
}

fn spool_report(
    handle: &QueueHandle,
    config: &Config,
    env: &Envelope,
    action: dsn::DsnAction,
    members: &[usize],
    now: i64,
) -> Result<String, String> {
    let until = after(env.arrival, config.max_queue_lifetime);
    let reports: Vec<RecipientReport<'_>> = members
        .iter()
        .filter_map(|&i| env.recipients.get(i))
        .map(|recipient| RecipientReport {
            recipient,
            action,
            will_retry_until: (action == dsn::DsnAction::Delayed).then_some(until),
        })
        .collect();
    let ret = dsn::return_content(env, &reports);
    let original = read_original(handle, env, ret == dsn::ReturnContent::Full);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let id = handle.spool().new_id(micros);
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
    let mut writer = handle
        .spool()
        .create_content(&id)
        .map_err(|e| e.to_string())?;
    writer.write(&bytes).map_err(|e| e.to_string())?;
    let content = writer.finish().map_err(|e| e.to_string())?;
    // A report is small and owed: it is counted, never refused for space.
    let reserved = handle.limits().force_bytes(content.len);
    let recipient = Recipient::new(env.reverse_path.clone(), Some(Notify::NEVER), None);
    // A report about an SMTPUTF8 message has 8-bit parts (RFC 6533); it
    // needs SMTPUTF8 itself only to reach a UTF-8 reverse-path (its own
    // header fields are ASCII otherwise), so it can also come back to an
    // ASCII sender through a hop without SMTPUTF8 (with 8BITMIME).
    let eight_bit = bytes.iter().any(|&b| b > 127);
    let report_env = Envelope {
        client_ip: "127.0.0.1".into(),
        helo: config.hostname.clone(),
        is_dsn: true,
        eight_bit,
        body: if eight_bit {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        },
        smtputf8: !env.reverse_path.is_ascii(),
        ..Envelope::new(id.clone(), String::new(), now, vec![recipient])
    };
    handle
        .commit(Commit {
            content,
            env: report_env,
            bytes: reserved,
            hold: None,
        })
        .map_err(|e| e.to_string())?;
    Ok(id)
}

/// A DSN of ours failed: keep a copy in `double_bounce`; never another DSN.
fn keep_double_bounce(handle: &QueueHandle, config: &Config, env: &Envelope, members: &[usize]) {
    let Some(dir) = &config.double_bounce else {
        return;
    };
    for r in members.iter().filter_map(|&i| env.recipients.get(i)) {
        let kept = handle
            .spool()
            .open_content(env)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|mut content| {
                maildir::write_message(dir, "", &r.address, &mut content, config.fsync)
            });
        match kept {
            Ok(path) => log::warn!(
                "id={} undeliverable DSN to <{}> kept in {}",
                env.id,
                r.address,
                path.display()
            ),
            Err(e) => log::error!(
                "id={} undeliverable DSN to <{}> dropped: double_bounce failed: {e}",
                env.id,
                r.address
            ),
        }
    }
}
