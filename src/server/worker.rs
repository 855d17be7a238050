//! The worker pool: takes jobs, routes each recipient at delivery time,
//! records every outcome in the spool before going on, writes DSNs, and
//! either removes a finished message or schedules its next attempt.
//!
//! Safe points (where a cancelled RDLV job stops): before each recipient,
//! while a `pipe:` program runs (it is killed), and before the final dot of
//! an upstream transfer.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use crate::config::{Config, Transport};
use crate::deliver::{self, Delivery, PipeEnv};
use crate::envelope::{Envelope, Mode, RcptState, Recipient};
use crate::inflight::Ticket;
use crate::relay;
use crate::smtp::reply::Reply;
use crate::smtp::session::Outcome;
use crate::spool::SpoolError;

use super::shared::{Job, Shared, unix_now};

/// How long an idle upstream connection is kept for the next message.
const RELAY_IDLE: Duration = Duration::from_secs(5);

/// One open upstream connection, kept between messages to the same hop,
/// with when it was last used.
type OpenHop = Option<((String, u16), relay::Connection, Instant)>;

/// Runs one worker until shutdown: `stop` disconnects when the server
/// begins to shut down (crossbeam: a dropped sender is the signal). Jobs
/// still queued then stay in the spool for the next start.
pub fn run(shared: Arc<Shared>, jobs: Receiver<Job>, stop: Receiver<()>) {
    let mut hop: OpenHop = None;
    loop {
        let job = select! {
            recv(jobs) -> job => match job {
                Ok(job) => job,
                Err(_) => break,
            },
            recv(stop) -> _ => break,
            default(RELAY_IDLE) => {
                if let Some((_, conn, _)) = hop.take() {
                    conn.quit();
                }
                continue;
            }
        };
        if shared.shutting_down() {
            break;
        }
        match job {
            Job::Deliver { id, force } => {
                if !shared.claims.claim(&id, force) {
                    continue;
                }
                let mut force = force;
                loop {
                    process(&shared, &id, force, &mut hop);
                    match shared.claims.release(&id) {
                        Some(again) => force = again,
                        None => break,
                    }
                }
            }
            Job::Remove(id) => remove_when_free(&shared, &id),
        }
    }
    if let Some((_, conn, _)) = hop.take() {
        conn.quit();
    }
}

fn remove_when_free(shared: &Shared, id: &str) {
    if let Some(ticket) = shared.inflight.get(id) {
        // Stop the job at its next safe point; a session holding its final
        // reply answers 451.
        ticket.lock().cancelled = true;
        ticket.offer_outcome(Outcome::Failed("removed by the operator".into()));
    }
    for _ in 0..600 {
        if shared.claims.claim(id, false) {
            match shared.spool.remove(id) {
                Ok(()) => log::info!("id={id} removed by the operator"),
                Err(e) => log::error!("id={id} cannot remove: {e}"),
            }
            shared.inflight.remove(id);
            shared.claims.release(id);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    log::warn!("id={id} still busy after 30s; not removed, try again");
}

/// Persists the envelope; for a ticketed job under the ticket's lock, with
/// the detached flag folded in, so a concurrent DETA is never overwritten.
fn persist(shared: &Shared, env: &mut Envelope, ticket: Option<&Ticket>) -> Result<(), SpoolError> {
    match ticket {
        Some(t) => {
            let state = t.lock();
            if state.detached && env.mode == Mode::Reliable {
                env.mode = Mode::Detached;
            }
            shared.spool.write_envelope(env)
        }
        None => shared.spool.write_envelope(env),
    }
}

fn process(shared: &Shared, id: &str, force: bool, hop: &mut OpenHop) {
    let mut env = match shared.spool.load_if_present(id) {
        Ok(Some(env)) => env,
        Ok(None) => return,
        Err(e) => {
            log::error!("id={id} cannot load: {e}");
            if let Some(t) = shared.inflight.get(id) {
                t.offer_outcome(Outcome::Failed(format!("cannot read the spool: {e}")));
            }
            shared.inflight.remove(id);
            return;
        }
    };
    let ticket = shared.inflight.get(id);
    if env.mode == Mode::Reliable && ticket.as_ref().is_some_and(|t| t.lock().outcome.is_some()) {
        // Processed; its session is concluding it and hands it back then.
        return;
    }
    if env.mode == Mode::Reliable && ticket.is_none() {
        // The session that held the final reply is gone (restart): the
        // client never heard a 250 and will send again; abort.
        abort(
            shared,
            &env,
            "no session holds its final reply (server restarted)",
        );
        return;
    }
    let config = shared.config();
    // Shutdown cancels like an abort does: a running program is killed and
    // an upstream transfer abandoned before its dot; what was not finished
    // stays pending in the spool for the next start.
    let cancelled = || shared.shutting_down() || ticket.as_ref().is_some_and(|t| t.is_cancelled());
    let now = unix_now();
    // Deferred recipients wait for their time unless this is a flush.
    let retry_due = force || now >= env.next_attempt;
    let due: Vec<usize> = (0..env.recipients.len())
        .filter(|&i| match env.recipients[i].state {
            RcptState::Pending => true,
            RcptState::Deferred => retry_due,
            _ => false,
        })
        .collect();
    if !due.is_empty() {
        env.attempts += 1;
    }
    let mut groups: Vec<(Option<Transport>, Vec<usize>)> = Vec::new();
    for i in due {
        let transport = config.route_for(&env.recipients[i].domain());
        match groups
            .iter_mut()
            .find(|(t, _)| *t == transport && matches!(t, Some(Transport::Smtp { .. })))
        {
            Some((_, members)) => members.push(i),
            None => groups.push((transport, vec![i])),
        }
    }
    for (transport, members) in groups {
        // Safe point: a cancelled job stops here.
        if cancelled() {
            break;
        }
        let results: Vec<(Delivery, Option<String>)> = match &transport {
            None => members
                .iter()
                .map(|_| {
                    (
                        Delivery::Failed(
                            "5.1.2".into(),
                            "no route to this domain (check `route` lines)".into(),
                        ),
                        None,
                    )
                })
                .collect(),
            Some(Transport::Smtp { host, port }) => relay_group(
                shared, &config, &env, &members, host, *port, hop, &cancelled,
            ),
            Some(local) => members
                .iter()
                .map(|&i| {
                    (
                        deliver_local(shared, &config, &env, i, local, &cancelled),
                        None,
                    )
                })
                .collect(),
        };
        for (&i, (result, remote)) in members.iter().zip(results) {
            if result == Delivery::Cancelled {
                continue;
            }
            env.recipients[i].remote_mta = remote;
            record(&mut env.recipients[i], &result, transport.as_ref(), now, id);
            // Flash wear: when this outcome finishes a message that owes no
            // DSN, its removal right after is the durable record. Writing the
            // envelope first would gain nothing: a crash before either write
            // repeats the delivery alike.
            let finished_quietly = ticket.is_none()
                && env
                    .recipients
                    .iter()
                    .all(|r| matches!(r.state, RcptState::Delivered { .. } | RcptState::Failed))
                && !crate::bounce::any_due(&env, &config, now);
            if finished_quietly {
                continue;
            }
            if let Err(e) = persist(shared, &mut env, ticket.as_deref()) {
                log::error!("id={id} cannot record outcome: {e}; will retry");
                match ticket.as_deref().filter(|_| env.mode == Mode::Reliable) {
                    // The client is waiting: tell it (451), the session drops the message.
                    Some(t) => {
                        t.offer_outcome(Outcome::Failed(format!("cannot write the spool: {e}")))
                    }
                    None => shared.schedule(id, now + config.retry_min.as_secs() as i64),
                }
                return;
            }
        }
    }
    if let Some(t) = &ticket {
        let mut state = t.lock();
        if state.cancelled {
            drop(state);
            abort(
                shared,
                &env,
                "the client went away or did not answer the 120",
            );
            return;
        }
        if shared.shutting_down() {
            // A detached job resumes at the next start. A held one is
            // aborted: its session answers 421, the client never heard a
            // final reply and will send again.
            let held = !state.detached && env.mode == Mode::Reliable;
            drop(state);
            if held {
                abort(shared, &env, "server shutting down before the final reply");
            }
            return;
        }
        if state.detached && env.mode == Mode::Reliable {
            env.mode = Mode::Detached;
        }
        if env.mode == Mode::Reliable {
            // The session holds the final reply; it decides what follows.
            // Set under the same lock a cancel takes, so exactly one side
            // (the worker on cancel, the session on outcome) cleans up.
            state.outcome = Some(outcome_of(&env));
            drop(state);
            t.notify();
            return;
        }
    }
    if shared.shutting_down() && env.recipients.iter().any(|r| r.state == RcptState::Pending) {
        // What was not finished stays pending in the spool for the next start.
        return;
    }
    finish_attempt(shared, &config, env);
}

/// What an RDLV session answers with.
fn outcome_of(env: &Envelope) -> Outcome {
    let delivered = env
        .recipients
        .iter()
        .filter(|r| matches!(r.state, RcptState::Delivered { .. }))
        .count();
    let deferred = env
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Deferred)
        .count();
    let first_failure = env
        .recipients
        .iter()
        .find(|r| r.state == RcptState::Failed)
        .map(failure_reply);
    Outcome::Done {
        delivered,
        deferred,
        first_failure,
    }
}

/// A failed recipient's diagnostic as a reply: the remote reply as it came,
/// or ours with its status.
fn failure_reply(r: &Recipient) -> Reply {
    let text = r.diagnostic.clone();
    let code = text
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (500..600).contains(c));
    match code {
        Some(code) => {
            let rest = text[3..].trim_start();
            let rest = rest
                .strip_prefix(r.status.as_str())
                .map(str::trim_start)
                .unwrap_or(rest);
            Reply::new(code, &r.status, format!("<{}>: {rest}", r.address))
        }
        None => Reply::new(550, &r.status, format!("<{}>: {text}", r.address)),
    }
}

fn record(r: &mut Recipient, result: &Delivery, transport: Option<&Transport>, now: i64, id: &str) {
    r.last_attempt = now;
    // RFC 3461 §5.2.2: a next hop that took NOTIFY with the message reports
    // success itself (a `relayed` hop does not, so that DSN stays ours).
    r.dsn_done =
        *result == Delivery::Delivered && matches!(transport, Some(Transport::Smtp { .. }));
    let via = transport
        .map(|t| t.to_string())
        .unwrap_or_else(|| "none".into());
    match result {
        Delivery::Delivered | Delivery::Relayed => {
            let relayed = *result == Delivery::Relayed;
            r.state = RcptState::Delivered { relayed };
            r.status = "2.0.0".into();
            let what = if relayed { "relayed" } else { "delivered" };
            log::info!("id={id} to=<{}> via={via} status={what}", r.address);
        }
        Delivery::Deferred(status, diag) => {
            r.state = RcptState::Deferred;
            r.status = status.clone();
            r.diagnostic = diag.clone();
            log::warn!(
                "id={id} to=<{}> via={via} status=deferred ({status} {diag})",
                r.address
            );
        }
        Delivery::Failed(status, diag) => {
            r.state = RcptState::Failed;
            r.status = status.clone();
            r.diagnostic = diag.clone();
            log::info!(
                "id={id} to=<{}> via={via} status=failed ({status} {diag})",
                r.address
            );
        }
        Delivery::Cancelled => {}
    }
}

fn deliver_local(
    shared: &Shared,
    config: &Config,
    env: &Envelope,
    i: usize,
    transport: &Transport,
    cancelled: &dyn Fn() -> bool,
) -> Delivery {
    let r = &env.recipients[i];
    let content = match shared.spool.open_content(&env.id) {
        Ok(f) => f,
        Err(e) => return Delivery::Deferred("4.3.0".into(), e.to_string()),
    };
    match transport {
        Transport::Maildir(dir) => {
            if !deliver::is_safe_local_part(r.local_part()) {
                return Delivery::Failed(
                    "5.1.3".into(),
                    "local part is not a safe mailbox name".into(),
                );
            }
            let mut content = content;
            match deliver::maildir(
                dir,
                r.local_part(),
                &env.reverse_path,
                &r.address,
                &mut content,
                config.fsync,
            ) {
                Ok(_) => Delivery::Delivered,
                Err(e) => Delivery::Deferred("4.3.0".into(), e),
            }
        }
        Transport::Pipe(argv) => {
            let penv = PipeEnv {
                sender: &env.reverse_path,
                recipient: &r.address,
                id: &env.id,
            };
            deliver::pipe(argv, &penv, content, config.pipe_timeout, cancelled)
        }
        // process() sends smtp recipients to relay_group; never here.
        Transport::Smtp { .. } => Delivery::Deferred(
            "4.3.0".into(),
            "internal error: smtp route in local delivery".into(),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn relay_group(
    shared: &Shared,
    config: &Config,
    env: &Envelope,
    members: &[usize],
    host: &str,
    port: u16,
    hop: &mut OpenHop,
    cancelled: &dyn Fn() -> bool,
) -> Vec<(Delivery, Option<String>)> {
    let all = |d: Delivery| {
        members
            .iter()
            .map(|_| (d.clone(), None))
            .collect::<Vec<_>>()
    };
    let key = (host.to_string(), port);
    let timeouts = relay::Timeouts {
        connect: config.smtp_connect_timeout,
        command: config.smtp_command_timeout,
        data_block: config.smtp_command_timeout,
        data_end: config.smtp_data_timeout,
    };
    // An idle connection older than RELAY_IDLE may have been timed out by
    // the hop (a 421 on the next command would defer the message): reuse
    // only fresh ones.
    let reuse = matches!(hop, Some((k, c, used)) if *k == key && c.is_usable() && used.elapsed() < RELAY_IDLE);
    if !reuse {
        if let Some((_, old, _)) = hop.take() {
            old.quit();
        }
        let target = relay::Hop {
            host: host.to_string(),
            port,
        };
        match relay::Connection::open(&target, &config.hostname, &timeouts) {
            Ok(mut conn) => {
                conn.set_interrupt(shared.shutdown_flag());
                *hop = Some((key, conn, Instant::now()));
            }
            Err(e) => {
                let reply = e.reply();
                return all(Delivery::Deferred(relay::enhanced_status(&reply), reply));
            }
        }
    }
    let Some((_, conn, used)) = hop.as_mut() else {
        return all(Delivery::Deferred(
            "4.3.0".into(),
            "internal error: no upstream connection".into(),
        ));
    };
    let mut content = match shared.spool.open_content(&env.id) {
        Ok(f) => f,
        Err(e) => return all(Delivery::Deferred("4.3.0".into(), e.to_string())),
    };
    let rcpts: Vec<&Recipient> = members.iter().map(|&i| &env.recipients[i]).collect();
    let result = conn.send(env, &rcpts, &mut content as &mut dyn Read, cancelled);
    *used = Instant::now();
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(relay::TransferError::Cancelled) => {
            hop.take();
            return all(Delivery::Cancelled);
        }
    };
    let remote_mta = outcome.remote_mta;
    outcome
        .results
        .into_iter()
        .map(|r| {
            // RFC 3464 §2.3.5: Remote-MTA only when the hop itself answered.
            let from_hop = |remote: bool| remote.then(|| remote_mta.clone());
            match r {
                relay::RcptResult::Accepted { relayed: false, .. } => {
                    (Delivery::Delivered, from_hop(true))
                }
                relay::RcptResult::Accepted { relayed: true, .. } => {
                    (Delivery::Relayed, from_hop(true))
                }
                relay::RcptResult::Temporary { reply, remote } => (
                    Delivery::Deferred(relay::enhanced_status(&reply), reply),
                    from_hop(remote),
                ),
                relay::RcptResult::Permanent { reply, remote } => (
                    Delivery::Failed(relay::enhanced_status(&reply), reply),
                    from_hop(remote),
                ),
            }
        })
        .collect()
}

/// After an attempt of a message no session is waiting for: DSNs, then
/// removal or the next attempt.
fn finish_attempt(shared: &Shared, config: &Config, mut env: Envelope) {
    let before = env.clone();
    let id = env.id.clone();
    let now = unix_now();
    let age = now - env.arrival;
    // Give up on recipients deferred past the queue lifetime.
    if age >= config.max_queue_lifetime.as_secs() as i64 {
        for r in env
            .recipients
            .iter_mut()
            .filter(|r| r.state == RcptState::Deferred)
        {
            r.state = RcptState::Failed;
            r.status = "5.4.7".into();
            r.diagnostic = format!("delivery time expired; last error: {}", r.diagnostic);
            r.dsn_done = false;
            log::info!(
                "id={id} to=<{}> status=expired after {}s in the queue",
                r.address,
                age
            );
        }
    }
    if let Err(e) = crate::bounce::emit(shared, config, &mut env, now) {
        log::error!("id={id} cannot write DSN: {e}; will retry");
        if let Err(e) = shared.spool.write_envelope(&env) {
            log::error!("id={id} cannot record the DSNs written so far: {e}");
        }
        shared.schedule(&id, now + config.retry_min.as_secs() as i64);
        return;
    }
    let open = env
        .recipients
        .iter()
        .any(|r| matches!(r.state, RcptState::Pending | RcptState::Deferred));
    if !open {
        shared.inflight.remove(&id);
        match shared.spool.remove(&id) {
            Ok(()) => log::info!("id={id} done, removed from the queue"),
            Err(e) => log::error!("id={id} cannot remove finished message: {e}"),
        }
        return;
    }
    // Only an attempt moves the schedule; a spurious job keeps it.
    if env.next_attempt <= now {
        env.next_attempt = now + backoff(config, env.attempts.max(1), now).as_secs() as i64;
    }
    shared.inflight.remove(&id);
    // A run that changed nothing (a duplicate schedule entry) writes nothing.
    if env != before
        && let Err(e) = shared.spool.write_envelope(&env)
    {
        log::error!("id={id} cannot record next attempt: {e}");
    }
    shared.schedule(&id, env.next_attempt);
}

/// Capped exponential backoff with ±20 % jitter so a fleet does not retry in
/// step: retry_min · 2^(attempts-1), at most retry_max.
pub fn backoff(config: &Config, attempts: u32, seed: i64) -> Duration {
    let base =
        config.retry_min.as_secs_f64() * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    let capped = base.min(config.retry_max.as_secs_f64());
    let mut x = (seed as u64) ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(attempts);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let jitter = 0.8 + (x % 1000) as f64 / 2500.0;
    Duration::from_secs_f64((capped * jitter).clamp(1.0, config.retry_max.as_secs_f64().max(1.0)))
}

/// Aborts a job: nothing more is delivered, no DSN, the message is removed;
/// the log says what had been delivered before.
pub fn abort(shared: &Shared, env: &Envelope, why: &str) {
    let delivered: Vec<&str> = env
        .recipients
        .iter()
        .filter(|r| matches!(r.state, RcptState::Delivered { .. }))
        .map(|r| r.address.as_str())
        .collect();
    let before = if delivered.is_empty() {
        "nothing".to_string()
    } else {
        delivered.join(", ")
    };
    log::info!(
        "id={} aborted: {why}; delivered before the abort: {before}",
        env.id
    );
    if let Err(e) = shared.spool.remove(&env.id) {
        log::error!("id={} cannot remove aborted message: {e}", env.id);
    }
    shared.inflight.remove(&env.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = Config {
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            ..Config::default()
        };
        let secs = |n| backoff(&c, n, 12345).as_secs();
        assert!((48..=72).contains(&secs(1)), "{}", secs(1));
        assert!((96..=144).contains(&secs(2)));
        assert!(secs(20) <= 3600);
        assert!(secs(20) >= 2880);
    }
}
