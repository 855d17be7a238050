//! The command line beside the daemon: `detad queue`, `queue remove|retry`
//! and `flush`, `detad sendmail` (and `mailq`), and the binary's log setup.
//! Reads the spool directly; changes go through the running daemon's
//! control socket (a submission through its SMTP listener), or, when none
//! runs, straight to the spool under its lock. Each command says what was
//! actually done and exits with a sysexits code.

pub mod logging;
pub mod queue;
#[cfg(feature = "sendmail")]
pub mod sendmail;

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::queue::control::request;
use crate::queue::manager::{ControlAnswer, unix_now};
use crate::queue::offline::{self, OfflineError};
use crate::queue::spool::Spool;

/// sysexits.h codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Command line usage error.
    pub const USAGE: u8 = 64;
    /// The input is not a message (`sendmail`: a NUL, too large).
    pub const DATAERR: u8 = 65;
    /// No such message, or no spool.
    pub const NOINPUT: u8 = 66;
    /// `sendmail`: the daemon refused a recipient permanently.
    pub const NOUSER: u8 = 67;
    /// No daemon runs (flush).
    pub const UNAVAILABLE: u8 = 69;
    /// Internal software error.
    pub const SOFTWARE: u8 = 70;
    /// Cannot listen, or set up threads, poll, signals.
    pub const OSERR: u8 = 71;
    /// The spool cannot be created or written.
    pub const CANTCREAT: u8 = 73;
    /// The spool cannot be read.
    pub const IOERR: u8 = 74;
    /// Temporary: try again (the spool is busy, a removal is under way).
    pub const TEMPFAIL: u8 = 75;
    /// Permission denied (another user's spool).
    pub const NOPERM: u8 = 77;
    /// Configuration error.
    pub const CONFIG: u8 = 78;
}

/// How long a command waits for the daemon's answer (a removal waits for
/// a running delivery to stop at its next safe point).
const ANSWER_WAIT: Duration = Duration::from_secs(60);

fn permission_hint(path: &Path, e: &io::Error) -> u8 {
    eprintln!(
        "detad: {}: {e}; the spool belongs to the user detad runs as (try as that user or root)",
        path.display()
    );
    exit::NOPERM
}

/// `detad queue [--json]`.
pub fn list(config: &Config, json: bool) -> u8 {
    let queue_dir = config.spool.join("queue");
    match std::fs::read_dir(&queue_dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return permission_hint(&queue_dir, &e);
        }
        Err(_) => {
            eprintln!(
                "detad: no spool at {} (check -s or `spool`)",
                config.spool.display()
            );
            return exit::NOINPUT;
        }
    }
    let spool = match Spool::open(&config.spool, config.fsync) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("detad: {e}");
            return exit::IOERR;
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match queue::list(&spool, json, unix_now(), &mut out) {
        Ok(n) => {
            if !json {
                let _ = writeln!(out, "{n} message(s) in the queue");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("detad: {e}");
            exit::IOERR
        }
    }
}

/// Prints the daemon's answer; its exit code.
fn answered(answer: ControlAnswer) -> u8 {
    match answer {
        ControlAnswer::Done(text) => {
            println!("{text}");
            exit::OK
        }
        ControlAnswer::NotFound(text) => {
            eprintln!("detad: {text}");
            exit::NOINPUT
        }
        ControlAnswer::Busy(text) => {
            eprintln!("detad: not done now: {text}");
            exit::TEMPFAIL
        }
        ControlAnswer::Refused(text) => {
            eprintln!("detad: refused: {text}");
            exit::USAGE
        }
    }
}

/// Whether an error means "no daemon listens".
fn no_daemon(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// `detad flush`.
pub fn flush(config: &Config) -> u8 {
    match request(&config.spool, "flush", ANSWER_WAIT) {
        Ok(answer) => answered(answer),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            permission_hint(&config.spool.join("control"), &e)
        }
        Err(e) => {
            eprintln!(
                "detad: no running daemon on spool {} ({e}); start it to deliver",
                config.spool.display()
            );
            exit::UNAVAILABLE
        }
    }
}

/// `detad queue remove ID` / `detad queue retry ID`.
pub fn change(config: &Config, what: &str, id: &str) -> u8 {
    if !Spool::is_valid_id(id) {
        eprintln!("detad: {id:?} is not a queue id (16 hex digits, see `detad queue`)");
        return exit::USAGE;
    }
    match request(&config.spool, &format!("{what} {id}"), ANSWER_WAIT) {
        Ok(answer) => return answered(answer),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return permission_hint(&config.spool.join("control"), &e);
        }
        Err(e) if no_daemon(&e) => {}
        Err(e) => {
            eprintln!(
                "detad: no answer from the daemon: {e}; the request may still be carried out"
            );
            return exit::TEMPFAIL;
        }
    }
    // No daemon: change the spool directly, under its lock.
    let result = match what {
        "remove" => offline::remove(&config.spool, config.fsync, id),
        _ => offline::retry(&config.spool, config.fsync, id),
    };
    match result {
        Ok(()) if what == "remove" => {
            println!("removed {id} (no daemon running)");
            exit::OK
        }
        Ok(()) => {
            println!("retry {id}: due at the daemon's next start (no daemon running)");
            exit::OK
        }
        Err(OfflineError::NotFound(_)) => {
            eprintln!("detad: no message {id} in the queue");
            exit::NOINPUT
        }
        Err(OfflineError::Lock(e)) => {
            eprintln!("detad: {e}; try again");
            exit::TEMPFAIL
        }
        Err(e) => {
            eprintln!("detad: {e}");
            exit::CANTCREAT
        }
    }
}
