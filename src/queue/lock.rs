//! One daemon per spool: the daemon holds an exclusive `flock(2)` on
//! `<spool>/lock` for its whole life, and writes its pid into it so that a
//! second one can say who has it. The lock goes with the process, also on
//! `kill -9`: nothing stale to clean up.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// The lock file's name inside the spool.
pub const LOCK_FILE: &str = "lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct SpoolLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    InUse {
        /// The spool directory.
        spool: PathBuf,
        /// Its pid, as it wrote it (absent while it is being written).
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    Io(PathBuf, io::Error),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::InUse {
                spool,
                pid: Some(pid),
            } => {
                write!(f, "spool {} is in use by pid {pid}", spool.display())
            }
            LockError::InUse { spool, pid: None } => {
                write!(f, "spool {} is in use by another detad", spool.display())
            }
            LockError::Io(path, e) => write!(f, "cannot lock {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for LockError {}

/// Takes the spool's lock for a starting daemon. When the process named in
/// the lock file is gone, the lock is only held a moment longer (a killed
/// daemon's last thread tearing down, a child between fork and exec):
/// waits for it up to [`STALE_WAIT`]. A live holder is refused at once.
///
/// # Errors
/// As [`lock`].
pub fn lock_at_start(spool: &Path) -> Result<SpoolLock, LockError> {
    let deadline = crate::clock::deadline_after(STALE_WAIT);
    loop {
        match lock(spool) {
            Err(LockError::InUse { pid, .. })
                if !pid.is_some_and(is_alive) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// How long a lock whose holder is gone may take to be released.
pub const STALE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether process `pid` exists (signal 0; a permission error means it
/// exists as another user's).
fn is_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Takes the spool's lock without waiting.
///
/// # Errors
/// Another process holds it, or the file could not be opened.
pub fn lock(spool: &Path) -> Result<SpoolLock, LockError> {
    let path = spool.join(LOCK_FILE);
    let io = |e: io::Error| LockError::Io(path.clone(), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::InUse {
                spool: spool.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(e) => return Err(io(e.into())),
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .map_err(io)?;
    Ok(SpoolLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = std::env::temp_dir().join(format!("detad-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = lock(&dir).unwrap();
        match lock(&dir) {
            Err(LockError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        // A live holder is refused at once at start too.
        let t = std::time::Instant::now();
        assert!(matches!(lock_at_start(&dir), Err(LockError::InUse { .. })));
        assert!(t.elapsed() < STALE_WAIT);
        drop(held);
        assert!(lock(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dead_holders_pid_is_told_apart() {
        assert!(is_alive(std::process::id()));
        // PIDs above the kernel's maximum (4194304) never exist.
        assert!(!is_alive(4_194_305 * 2));
    }
}
