//! Changes to the spool when no daemon runs (`detad queue remove|retry`
//! without a control socket): under the spool lock, so that a daemon
//! starting meanwhile waits for nothing and sees a consistent spool.

use std::fmt;
use std::path::Path;

use super::lock::{LockError, lock};
use super::spool::{Spool, SpoolError};

/// Why an offline change was not made.
#[derive(Debug)]
pub enum OfflineError {
    /// A daemon (or another tool) holds the spool.
    Lock(LockError),
    /// No such message.
    NotFound(String),
    /// The spool could not be changed.
    Spool(SpoolError),
}

impl fmt::Display for OfflineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfflineError::Lock(e) => write!(f, "{e}"),
            OfflineError::NotFound(id) => write!(f, "no message {id} in the queue"),
            OfflineError::Spool(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OfflineError {}

fn open(
    root: &Path,
    fsync: bool,
    id: &str,
) -> Result<(super::lock::SpoolLock, Spool), OfflineError> {
    let held = lock(root).map_err(OfflineError::Lock)?;
    let spool = Spool::open(root, fsync).map_err(OfflineError::Spool)?;
    if !Spool::is_valid_id(id)
        || !spool
            .ids()
            .map_err(OfflineError::Spool)?
            .iter()
            .any(|i| i == id)
    {
        return Err(OfflineError::NotFound(id.to_string()));
    }
    Ok((held, spool))
}

/// Removes message `id`.
///
/// # Errors
/// See [`OfflineError`].
pub fn remove(root: &Path, fsync: bool, id: &str) -> Result<(), OfflineError> {
    let (_held, spool) = open(root, fsync, id)?;
    spool.remove(id).map_err(OfflineError::Spool)?;
    spool.barrier().map_err(OfflineError::Spool)
}

/// Makes message `id` due now (deferred recipients included) at the
/// daemon's next start.
///
/// # Errors
/// See [`OfflineError`].
pub fn retry(root: &Path, fsync: bool, id: &str) -> Result<(), OfflineError> {
    let (_held, spool) = open(root, fsync, id)?;
    let mut env = spool.load(id).map_err(OfflineError::Spool)?;
    env.next_attempt = 0;
    spool.append(&env).map_err(OfflineError::Spool)?;
    spool.barrier().map_err(OfflineError::Spool)
}

/// Commits a new message whose content was written with
/// [`Spool::create_content`]; `env.size` and `env.content_crc` are taken
/// from the content. Durable when this returns (`detad sendmail` without a
/// daemon, and tests that craft what a crash leaves).
///
/// # Errors
/// See [`OfflineError`].
pub fn commit(
    root: &Path,
    fsync: bool,
    content: super::spool::ContentFile,
    mut env: super::envelope::Envelope,
) -> Result<(), OfflineError> {
    let _held = lock(root).map_err(OfflineError::Lock)?;
    let spool = Spool::open(root, fsync).map_err(OfflineError::Spool)?;
    env.size = content.len;
    env.content_crc = content.crc;
    spool.commit(content, &env).map_err(OfflineError::Spool)?;
    spool.barrier().map_err(OfflineError::Spool)
}
