//! Handing a prepared message over, so that exit 0 means it is durable.
//!
//! 1. To the running daemon, over SMTP on its first loopback `listen`
//!    address, with the relay client (as nullmailer and msmtp do): the
//!    daemon answers `250` only once the message is in its spool. A
//!    refused recipient is reported with the daemon's reply.
//! 2. No daemon (the connection is refused): into the spool directly,
//!    under its lock, when the user may write it (root, who then acts as
//!    the spool's owner, or that owner); the daemon delivers it at its
//!    next start. Otherwise exit 75 and say so.
//!
//! A daemon that is busy (`421`), or that holds the spool but does not
//! answer yet (it is starting), is tried again a few times, 1, 2, 4 and
//! 8 seconds apart.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::process::geteuid;

use super::{Failure, Prepared};
use crate::cli::exit;
use crate::config::Config;
use crate::delivery::relay::{Connection, Hop, OpenError, Timeouts};
use crate::queue::delivery::DeliveryKind;
use crate::queue::envelope::{BodyType, Envelope, Recipient};
use crate::queue::lock::LockError;
use crate::queue::offline::{self, OfflineError};
use crate::queue::spool::{Spool, SpoolError};
use crate::server::privileges::{Account, drop_to};
use crate::time_fmt::rfc5322_date;

/// Hand-off attempts before giving up on a busy or starting daemon.
const ATTEMPTS: u32 = 5;

/// A connection to loopback that takes longer than this is not coming.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's address for local submission: its first loopback `listen`
/// address; else the first wildcard one, as loopback (`0.0.0.0:25` and
/// `[::]:25` take connections on loopback too); else the first one.
pub fn daemon_address(listen: &[SocketAddr]) -> Option<SocketAddr> {
    let loopback = listen.iter().find(|a| a.ip().is_loopback());
    let wildcard = || {
        listen.iter().find(|a| a.ip().is_unspecified()).map(|a| {
            let ip = match a.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            SocketAddr::new(ip, a.port())
        })
    };
    loopback
        .copied()
        .or_else(wildcard)
        .or(listen.first().copied())
}

/// The envelope of `p` under queue id `id`.
fn envelope(p: &Prepared, id: &str) -> Envelope {
    let eight_bit = p.content.iter().any(|&b| b >= 0x80);
    let recipients = p
        .recipients
        .iter()
        .map(|r| Recipient::new(r.clone(), p.notify, None))
        .collect();
    Envelope {
        ret: p.ret,
        envid: p.envid.clone(),
        // RFC 6152: 8-bit content is declared as such.
        body: if eight_bit {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        },
        eight_bit,
        // RFC 6531 §3.4: a UTF-8 address needs SMTPUTF8. The header
        // section is not judged: raw 8-bit headers from old scripts relay
        // as 8BITMIME, as before.
        smtputf8: !p.sender.is_ascii() || p.recipients.iter().any(|r| !r.is_ascii()),
        size: p.content.len() as u64,
        ..Envelope::new(id.to_string(), p.sender.clone(), p.now, recipients)
    }
}

/// How one hand-off attempt ended, when not in a final failure.
enum Attempt {
    /// The message is durable; what happened, for `-v`.
    Done(String),
    /// Try again after a pause; the reason, for the final message.
    Again(String),
}

/// Hands `p` over; on success, what happened (for `-v`).
///
/// # Errors
/// The message is not durable; the failure says why and with which code.
pub fn submit(config: &Config, p: &Prepared) -> Result<String, Failure> {
    let Some(addr) = daemon_address(&config.listen) else {
        return Err(Failure::new(exit::CONFIG, "no `listen` address configured"));
    };
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1 << (attempt - 1)));
        }
        match attempt_once(config, p, addr)? {
            Attempt::Done(note) => return Ok(note),
            Attempt::Again(why) => last = why,
        }
    }
    Err(Failure::new(
        exit::TEMPFAIL,
        format!("{last}; the message was not sent, try again later"),
    ))
}

/// One attempt; `Err` is final.
fn attempt_once(config: &Config, p: &Prepared, addr: SocketAddr) -> Result<Attempt, Failure> {
    let hop = Hop {
        host: addr.ip().to_string(),
        port: addr.port(),
        // The daemon's plain `listen` address, on this host.
        implicit_tls: false,
    };
    let timeouts = Timeouts {
        connect: CONNECT_TIMEOUT,
        ..Timeouts::default()
    };
    match Connection::open(&hop, &config.hostname, &timeouts) {
        Ok(connection) => hand_to_daemon(connection, p, addr).map(Attempt::Done),
        Err(OpenError::Connect { source, .. })
            if source.kind() == io::ErrorKind::ConnectionRefused =>
        {
            store_offline(config, p, addr)
        }
        Err(OpenError::Refused { reply, .. }) if reply.is_permanent() => Err(Failure::new(
            exit::UNAVAILABLE,
            format!("detad at {addr} refused the message: {reply}"),
        )),
        Err(e) => Ok(Attempt::Again(format!("detad at {addr}: {e}"))),
    }
}

/// Sends over SMTP; every recipient must be accepted.
fn hand_to_daemon(
    mut connection: Connection,
    p: &Prepared,
    addr: SocketAddr,
) -> Result<String, Failure> {
    let env = envelope(p, "sendmail");
    let rcpts: Vec<&Recipient> = env.recipients.iter().collect();
    let mut content = p.content.as_slice();
    let outcome = connection
        .send(&env, &rcpts, &mut content, &|| false)
        .expect("a transfer that is never cancelled has an outcome");
    connection.quit();
    let mut refused = Vec::new();
    let mut code = exit::OK;
    for (rcpt, result) in env.recipients.iter().zip(&outcome.results) {
        let temporary = match result.kind {
            DeliveryKind::Delivered | DeliveryKind::Relayed => continue,
            DeliveryKind::Deferred => true,
            DeliveryKind::Failed => false,
        };
        // A permanent refusal outweighs a temporary one: trying again
        // would not help.
        code = match (code, temporary) {
            (exit::NOUSER, _) | (_, false) => exit::NOUSER,
            _ => exit::TEMPFAIL,
        };
        let why = result
            .diagnostic
            .as_ref()
            .map_or_else(|| result.status.to_string(), ToString::to_string);
        refused.push(format!("<{}>: {why}", rcpt.address));
    }
    if refused.is_empty() {
        return Ok(format!(
            "queued by detad at {addr} for {} recipient(s)",
            rcpts.len()
        ));
    }
    let accepted = rcpts.len() - refused.len();
    let mut message = format!("detad at {addr} did not take {}", refused.join("; "));
    if accepted > 0 {
        message.push_str(&format!(
            "; the message was queued for the other {accepted} recipient(s)"
        ));
    } else {
        message.push_str("; the message was not sent");
    }
    Err(Failure::new(code, message))
}

/// The `Received:` line of a message that did not come over SMTP
/// (RFC 5321 §4.4 wants one from every MTA that takes it in).
fn trace(hostname: &str, uid: u32, id: &str, now: i64) -> String {
    format!(
        "Received: by {hostname} (detad sendmail, from userid {uid})\r\n\tid {id}; {}\r\n",
        rfc5322_date(now)
    )
}

fn not_writable(spool: &Path) -> Failure {
    Failure::new(
        exit::TEMPFAIL,
        format!(
            "detad is not running and the spool {} is not writable by you; the message was not sent",
            spool.display()
        ),
    )
}

/// Whether this process may write the spool, becoming its owner first when
/// it is root and the spool is another user's (so that what it writes is
/// the daemon's to read and remove).
fn take_spool_owner(spool: &Path) -> Result<(), Failure> {
    let euid = geteuid();
    let meta = match fs::metadata(spool) {
        Ok(meta) => meta,
        // None yet: whoever may create it owns it (root, at the first boot
        // before the daemon ran; the daemon hands it to `user` at start).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => return Err(not_writable(spool)),
    };
    if euid.is_root() && meta.uid() != 0 {
        let owner = Account {
            name: format!("uid {}", meta.uid()),
            uid: meta.uid(),
            gid: meta.gid(),
        };
        return drop_to(&owner).map_err(|e| Failure::new(exit::TEMPFAIL, e.to_string()));
    }
    if !euid.is_root() && meta.uid() != euid.as_raw() {
        return Err(not_writable(spool));
    }
    Ok(())
}

/// Commits the message into the spool; [`Attempt::Again`] when a daemon
/// holds the spool after all (it is starting: hand it over then).
fn store_offline(config: &Config, p: &Prepared, addr: SocketAddr) -> Result<Attempt, Failure> {
    let root = &config.spool;
    take_spool_owner(root)?;
    let spool_error = |e: &dyn std::fmt::Display| {
        Failure::new(
            exit::TEMPFAIL,
            format!(
                "detad is not running and the spool cannot take the message ({e}); the message was not sent"
            ),
        )
    };
    let spool = Spool::open(root, config.fsync).map_err(|e| match &e {
        SpoolError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
            not_writable(root)
        }
        _ => spool_error(&e),
    })?;
    let now_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let id = spool.new_id(now_micros);
    let mut writer = spool.create_content(&id).map_err(|e| spool_error(&e))?;
    writer
        .write(trace(&config.hostname, p.uid, &id, p.now).as_bytes())
        .and_then(|()| writer.write(&p.content))
        .map_err(|e| spool_error(&e))?;
    let content = writer.finish().map_err(|e| spool_error(&e))?;
    // The daemon expands aliases at its commit; here, the same.
    let mut env = envelope(p, &id);
    env.recipients = crate::queue::aliases::expand(config, std::mem::take(&mut env.recipients)).0;
    match offline::commit(root, config.fsync, content, env) {
        Ok(()) => Ok(Attempt::Done(format!(
            "queued as {id} in {} (detad is not running; it delivers at its next start)",
            root.display()
        ))),
        Err(OfflineError::Lock(LockError::InUse { .. })) => Ok(Attempt::Again(format!(
            "detad holds the spool {} but does not answer at {addr} (starting, or listening elsewhere)",
            root.display()
        ))),
        Err(e) => Err(spool_error(&e)),
    }
}
