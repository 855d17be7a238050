//! Least privilege, as OpenSMTPD and Postfix do it: started as root with
//! `user = NAME`, detad binds its sockets, opens and locks the spool, hands
//! the spool and the Maildirs to that user, and then becomes that user for
//! good (real, effective and saved ids, supplementary groups), before it
//! starts a single thread. Pipe programs never run as root: as `user`, or,
//! when detad keeps root because no `user` is set, as `pipe_user` (default
//! `nobody`).

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::process::{Gid, Uid, geteuid};

use crate::config::Config;
use crate::delivery::exec::RunAs;

/// An account from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// Why the privileges could not be settled.
#[derive(Debug)]
pub struct PrivilegeError(pub String);

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrivilegeError {}

/// Finds `name` in passwd-format `text`.
pub fn find_account(text: &str, name: &str) -> Option<Account> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let (n, _, uid, gid) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (n == name).then_some(())?;
        Some(Account {
            name: n.to_string(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        })
    })
}

/// Looks `name` up in `/etc/passwd` (busybox systems have no NSS).
///
/// # Errors
/// No such user, or the file cannot be read.
pub fn lookup(name: &str) -> Result<Account, PrivilegeError> {
    let text = fs::read_to_string("/etc/passwd")
        .map_err(|e| PrivilegeError(format!("cannot read /etc/passwd to find user {name}: {e}")))?;
    find_account(&text, name).ok_or_else(|| {
        PrivilegeError(format!(
            "user {name} does not exist (create it, e.g. `adduser -S -H -D {name}` on busybox)"
        ))
    })
}

/// Gives `path` to `account` if it is not its already (no needless
/// metadata writes on flash).
fn hand_over(path: &Path, account: &Account) -> Result<(), PrivilegeError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if meta.uid() == account.uid && meta.gid() == account.gid {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(|e| {
        PrivilegeError(format!(
            "cannot give {} to {}: {e}",
            path.display(),
            account.name
        ))
    })
}

/// Gives the spool (its directories, its lock, its control socket and the
/// messages) and the Maildir roots to `account`.
fn hand_over_files(config: &Config, account: &Account) -> Result<(), PrivilegeError> {
    let spool = &config.spool;
    for p in [
        spool.clone(),
        spool.join("tmp"),
        spool.join("queue"),
        spool.join("spare"),
        spool.join("corrupt"),
        spool.join("lock"),
        spool.join("control"),
    ] {
        hand_over(&p, account)?;
    }
    if let Ok(entries) = fs::read_dir(spool.join("queue")) {
        for entry in entries.flatten() {
            hand_over(&entry.path(), account)?;
        }
    }
    for root in super::maildir_roots(config) {
        if !root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .create(&root)
                .map_err(|e| PrivilegeError(format!("cannot create {}: {e}", root.display())))?;
        }
        hand_over(&root, account)?;
    }
    Ok(())
}

/// The threads of this process (from /proc); the ids below change only
/// the calling thread, so this must be 1 when they are dropped.
fn thread_count() -> Option<usize> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Becomes `account` for good (also `detad sendmail` run by root, to
/// write a spool that belongs to another user as that user).
///
/// # Errors
/// More than one thread runs, or a switch failed.
pub fn drop_to(account: &Account) -> Result<(), PrivilegeError> {
    if thread_count() != Some(1) {
        return Err(PrivilegeError(
            "cannot drop root safely: more than one thread is running".into(),
        ));
    }
    let fail = |what: &str, e: rustix::io::Errno| {
        PrivilegeError(format!(
            "cannot switch to user {} ({what}): {e}",
            account.name
        ))
    };
    let gid = Gid::from_raw(account.gid);
    let uid = Uid::from_raw(account.uid);
    rustix::thread::set_thread_groups(&[gid]).map_err(|e| fail("groups", e))?;
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| fail("gid", e))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| fail("uid", e))?;
    if !uid.is_root() && rustix::thread::set_thread_uid(Uid::ROOT).is_ok() {
        return Err(PrivilegeError(
            "root could be regained after the switch".into(),
        ));
    }
    Ok(())
}

/// Settles who detad and its programs run as, before any thread starts:
/// switches to `user` when started as root with one; returns who pipe
/// programs run as when detad can still choose (it stays root).
///
/// # Errors
/// The user does not exist, the files cannot be handed over, or the switch
/// failed.
pub fn settle(config: &Config) -> Result<Option<RunAs>, PrivilegeError> {
    let root = geteuid().is_root();
    match (&config.user, root) {
        (Some(name), true) => {
            let account = lookup(name)?;
            hand_over_files(config, &account)?;
            drop_to(&account)?;
            log::info!("running as user {name} (uid {})", account.uid);
            Ok(None)
        }
        (Some(name), false) => {
            let account = lookup(name)?;
            if geteuid().as_raw() != account.uid {
                return Err(PrivilegeError(format!(
                    "`user = {name}` but detad runs as uid {}: start it as root or as {name}",
                    geteuid().as_raw()
                )));
            }
            Ok(None)
        }
        (None, true) => {
            log::warn!("running as root: set `user` so that detad gives up root after binding");
            let name = config.pipe_user.as_deref().unwrap_or("nobody");
            let account = lookup(name)?;
            Ok(Some(RunAs {
                uid: account.uid,
                gid: account.gid,
            }))
        }
        (None, false) => {
            if let Some(name) = &config.pipe_user {
                log::warn!("pipe_user = {name} ignored: detad is not root and cannot switch users");
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_found_in_passwd_text() {
        let text = "root:x:0:0:root:/root:/bin/sh\n\
                    detad:x:101:102::/var/spool/detad:/sbin/nologin\nbroken\n";
        assert_eq!(
            find_account(text, "detad"),
            Some(Account {
                name: "detad".into(),
                uid: 101,
                gid: 102
            })
        );
        assert_eq!(find_account(text, "det"), None);
        assert_eq!(find_account(text, "broken"), None);
    }
}
