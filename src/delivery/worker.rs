//! A worker: takes attempts from the queue manager, routes each recipient
//! at delivery time, runs the transport, and reports each typed result to
//! the manager, waiting until it is recorded before the next recipient.
//! Then it does the DSN work the manager hands back.
//!
//! Safe points, where an attempt the manager cancelled stops: before each
//! recipient (or group of recipients for one hop), while a `pipe:` program
//! runs (it is killed), and before the final dot of an upstream transfer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::exec::RunAs;
#[cfg(feature = "burl")]
use super::fetch;
use super::maildir;
use super::pipe::{self, Launcher, PipeEnv};
use super::relay;
use super::reports;
use crate::config::{Config, LiveConfig, Transport};
use crate::queue::delivery::{Delivery, DeliveryKind};
use crate::queue::envelope::Recipient;
use crate::queue::manager::{Attempt, Finish, Next, QueueHandle};
use crate::smtp::status::EnhancedStatus;

/// How long an idle upstream connection is kept for the next message.
const RELAY_IDLE: Duration = Duration::from_secs(5);

/// What every worker shares.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// The queue.
    pub queue: QueueHandle,
    /// The configuration in effect (reloaded on SIGHUP).
    pub config: Arc<LiveConfig>,
    /// The binary that runs the pipe trampoline.
    pub helper: PathBuf,
    /// Who pipe programs run as, when detad can choose.
    pub run_as: Option<RunAs>,
    /// How upstream sessions are secured (TLS, AUTH); rebuilt on SIGHUP.
    pub security: Arc<relay::LiveSecurity>,
}

/// The open upstream connection a worker keeps between messages to the
/// same hop.
#[derive(Debug)]
struct Kept {
    hop: relay::Hop,
    /// The settings it was secured with: after a reload, a new one.
    security: Arc<relay::Security>,
    conn: relay::Connection,
    used: Instant,
}

/// One open upstream connection, if any.
type OpenHop = Option<Kept>;

/// Runs one worker until the manager closes the attempt channel.
pub fn run(ctx: WorkerContext, attempts: Receiver<Attempt>) {
    let mut hop: OpenHop = None;
    loop {
        let attempt = select! {
            recv(attempts) -> a => match a {
                Ok(a) => a,
                Err(_) => break,
            },
            default(RELAY_IDLE) => {
                if let Some(kept) = hop.take() {
                    kept.conn.quit();
                }
                continue;
            }
        };
        let config = ctx.config.get();
        deliver(&ctx, &config, &attempt, &mut hop);
        match ctx.queue.attempt_done(&attempt.env.id) {
            Finish::Done => {}
            Finish::Dsns(env, jobs) => {
                let done = reports::run(&ctx.queue, &config, &env, jobs);
                ctx.queue.dsns_done(&env.id, done);
            }
        }
    }
    if let Some(kept) = hop.take() {
        kept.conn.quit();
    }
}

/// Recipients of one group: their index in the envelope, and the recipient
/// as delivered (our postmaster's address replaced by its destination).
type Members = Vec<(usize, Recipient)>;

/// The attempt's recipients, grouped: all those of one smarthost together
/// (one transaction), each local one alone, in order.
fn groups(config: &Config, attempt: &Attempt) -> Vec<(Option<Transport>, Members)> {
    let mut groups: Vec<(Option<Transport>, Members)> = Vec::new();
    for &i in &attempt.due {
        let original = &attempt.env.recipients[i];
        let (transport, address) = config.destination(&original.address);
        let rcpt = Recipient {
            address,
            ..original.clone()
        };
        let same_hop = groups
            .iter_mut()
            .find(|(t, _)| *t == transport && matches!(t, Some(Transport::Smtp { .. })));
        match same_hop {
            Some((_, members)) => members.push((i, rcpt)),
            None => groups.push((transport, vec![(i, rcpt)])),
        }
    }
    groups
}

fn deliver(ctx: &WorkerContext, config: &Config, attempt: &Attempt, hop: &mut OpenHop) {
    // An RDLV job that ended with BURL … LAST: its content comes first.
    let fetched;
    let attempt = match attempt.env.fetch {
        Some(_) => match fetch_pending(ctx, config, attempt) {
            Some(a) => {
                fetched = a;
                &fetched
            }
            None => return,
        },
        None => attempt,
    };
    let id = &attempt.env.id;
    for (transport, members) in groups(config, attempt) {
        // Safe point: a cancelled attempt stops here.
        if attempt.cancelled() {
            return;
        }
        let results: Vec<(usize, Delivery)> = match &transport {
            None => members
                .iter()
                .map(|&(i, _)| {
                    let d = Delivery::failed(
                        EnhancedStatus::of(5, 1, 2),
                        "no route to this domain (check `route` lines)",
                    );
                    (i, d)
                })
                .collect(),
            Some(Transport::Smtp {
                host,
                port,
                implicit_tls,
            }) => {
                let target = relay::Hop {
                    host: host.clone(),
                    port: *port,
                    implicit_tls: *implicit_tls,
                };
                relay_group(ctx, config, attempt, &members, target, hop)
            }
            Some(local) => members
                .iter()
                .filter_map(|(i, r)| deliver_local(ctx, config, attempt, r, local).map(|d| (*i, d)))
                .collect(),
        };
        let via = transport
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "none".into());
        for (i, d) in &results {
            log_result(id, &attempt.env.recipients[*i].address, &via, d);
        }
        if results.is_empty() {
            return;
        }
        if ctx.queue.record(id, results) == Next::Stop {
            return;
        }
    }
}

#[cfg(feature = "burl")]
fn fetch_pending(ctx: &WorkerContext, config: &Config, attempt: &Attempt) -> Option<Attempt> {
    fetch::fetch_pending(ctx, config, attempt)
}

/// A spool written by a build with BURL: this one cannot fetch; the
/// recipients wait (a build with it takes the spool over).
#[cfg(not(feature = "burl"))]
fn fetch_pending(ctx: &WorkerContext, _: &Config, attempt: &Attempt) -> Option<Attempt> {
    let d = Delivery::deferred(
        EnhancedStatus::of(4, 3, 5),
        "this build of detad cannot fetch BURL content (cargo feature `burl`)",
    );
    let results = attempt.due.iter().map(|&i| (i, d.clone())).collect();
    ctx.queue.record(&attempt.env.id, results);
    None
}

fn log_result(id: &str, address: &str, via: &str, d: &Delivery) {
    let diag = d
        .diagnostic
        .as_ref()
        .map(|x| format!(" ({} {x})", d.status))
        .unwrap_or_default();
    match d.kind {
        DeliveryKind::Delivered => log::info!("id={id} to=<{address}> via={via} status=delivered"),
        DeliveryKind::Relayed => log::info!("id={id} to=<{address}> via={via} status=relayed"),
        DeliveryKind::Deferred => {
            log::warn!("id={id} to=<{address}> via={via} status=deferred{diag}")
        }
        DeliveryKind::Failed => log::info!("id={id} to=<{address}> via={via} status=failed{diag}"),
    }
}

/// One local recipient; `None` when the attempt was cancelled meanwhile.
fn deliver_local(
    ctx: &WorkerContext,
    config: &Config,
    attempt: &Attempt,
    r: &Recipient,
    transport: &Transport,
) -> Option<Delivery> {
    let env = &attempt.env;
    let content = match ctx.queue.spool().open_content(env) {
        Ok(f) => f,
        Err(e) => {
            return Some(Delivery::deferred(
                EnhancedStatus::of(4, 3, 0),
                e.to_string(),
            ));
        }
    };
    match transport {
        Transport::Maildir(dir) => {
            let Some(name) = maildir::mailbox_name(r.local_part()) else {
                return Some(Delivery::failed(
                    EnhancedStatus::of(5, 1, 3),
                    "local part is not a safe mailbox name",
                ));
            };
            let mut content = content;
            let folder = dir.join(name);
            Some(maildir::deliver(
                &folder,
                &env.reverse_path,
                &r.address,
                &mut content,
                config.fsync,
            ))
        }
        Transport::Pipe(argv) => {
            let penv = PipeEnv {
                sender: &env.reverse_path,
                recipient: &r.address,
                id: &env.id,
            };
            let launcher = Launcher {
                helper: &ctx.helper,
                run_as: ctx.run_as,
                timeout: config.pipe_timeout,
            };
            pipe::run(argv, &penv, content, &launcher, &|| attempt.cancelled())
        }
        // groups() sends smtp recipients to relay_group; never here.
        Transport::Smtp { .. } => Some(Delivery::deferred(
            EnhancedStatus::of(4, 3, 0),
            "internal error: smtp route in local delivery",
        )),
    }
}

fn relay_group(
    ctx: &WorkerContext,
    config: &Config,
    attempt: &Attempt,
    members: &[(usize, Recipient)],
    target: relay::Hop,
    hop: &mut OpenHop,
) -> Vec<(usize, Delivery)> {
    let env = &attempt.env;
    let all = |d: Delivery| {
        members
            .iter()
            .map(|(i, _)| (*i, d.clone()))
            .collect::<Vec<_>>()
    };
    let conn = match connection(ctx, config, target, hop) {
        Ok(conn) => conn,
        Err(d) => return all(d),
    };
    // Reply waits end early when the attempt is cancelled (shutdown, abort).
    conn.set_interrupt(Arc::clone(&attempt.cancel));
    let mut content = match ctx.queue.spool().open_content(env) {
        Ok(c) => c,
        Err(e) => {
            return all(Delivery::deferred(
                EnhancedStatus::of(4, 3, 0),
                e.to_string(),
            ));
        }
    };
    let rcpts: Vec<&Recipient> = members.iter().map(|(_, r)| r).collect();
    let result = conn.send(env, &rcpts, &mut content, &|| attempt.cancelled());
    match result {
        Ok(outcome) => {
            if let Some(kept) = hop.as_mut() {
                kept.used = Instant::now();
            }
            members
                .iter()
                .map(|(i, _)| *i)
                .zip(outcome.results)
                .collect()
        }
        Err(relay::TransferError::Cancelled) => {
            hop.take();
            Vec::new()
        }
    }
}

/// The connection to `target`: the kept one if it is fresh, to the same
/// hop and secured with the settings in effect; otherwise a new one.
fn connection<'a>(
    ctx: &WorkerContext,
    config: &Config,
    target: relay::Hop,
    hop: &'a mut OpenHop,
) -> Result<&'a mut relay::Connection, Delivery> {
    let security = ctx.security.get();
    // An idle connection older than RELAY_IDLE may have been timed out by
    // the hop (a 421 on the next command would defer the message): reuse
    // only fresh ones.
    let reuse = hop.as_ref().is_some_and(|k| {
        k.hop == target
            && Arc::ptr_eq(&k.security, &security)
            && k.conn.is_usable()
            && k.used.elapsed() < RELAY_IDLE
    });
    if !reuse {
        if let Some(old) = hop.take() {
            old.conn.quit();
        }
        let timeouts = relay::Timeouts {
            connect: config.smtp_connect_timeout,
            command: config.smtp_command_timeout,
            data_block: config.smtp_command_timeout,
            data_end: config.smtp_data_timeout,
        };
        let conn = relay::Connection::open_secured(&target, &config.hostname, &timeouts, &security)
            .map_err(|e| e.delivery())?;
        *hop = Some(Kept {
            hop: target,
            security,
            conn,
            used: Instant::now(),
        });
    }
    match hop.as_mut() {
        Some(kept) => Ok(&mut kept.conn),
        None => Err(Delivery::deferred(
            EnhancedStatus::of(4, 3, 0),
            "internal error: no upstream connection",
        )),
    }
}
