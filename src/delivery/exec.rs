//! The exec trampoline for `pipe:` programs. A pipe program is not started
//! directly: detad starts itself as `detad __pipe-exec PPID UID GID --
//! PROGRAM ARGS...`, and that short-lived process, single-threaded and in
//! safe code, does what must happen between fork and exec:
//!
//! 1. drop to the pipe user (supplementary groups, group, user), when detad
//!    runs as root: a program never runs as root;
//! 2. ask for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`; after the
//!    uid change, which would clear it), so a pipe program never outlives a
//!    `kill -9` of detad and a resumed job never runs twice at once;
//! 3. check that the parent is still the detad that started it (it may have
//!    died between fork and step 2), else exit;
//! 4. exec the program, which keeps the death signal.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use rustix::process::{Gid, Pid, Signal, Uid, getppid, set_parent_process_death_signal};

/// The first argument that selects the trampoline.
pub const TRAMPOLINE: &str = "__pipe-exec";
/// sysexits EX_TEMPFAIL: the trampoline could not run the program.
const EX_TEMPFAIL: u8 = 75;

/// Who a pipe program runs as, when detad can choose (it runs as root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id (also the only supplementary group).
    pub gid: u32,
}

/// The trampoline's arguments after [`TRAMPOLINE`], for the spawner.
pub fn trampoline_args(run_as: Option<RunAs>, program: &str, args: &[String]) -> Vec<OsString> {
    let (uid, gid) = match run_as {
        Some(r) => (r.uid.to_string(), r.gid.to_string()),
        None => ("-".into(), "-".into()),
    };
    let mut out: Vec<OsString> = vec![
        TRAMPOLINE.into(),
        std::process::id().to_string().into(),
        uid.into(),
        gid.into(),
        "--".into(),
        program.into(),
    ];
    out.extend(args.iter().map(OsString::from));
    out
}

fn fail(what: &str) -> ExitCode {
    eprintln!("detad pipe: {what}");
    ExitCode::from(EX_TEMPFAIL)
}

/// Runs the trampoline with the arguments after [`TRAMPOLINE`]; returns
/// only on failure (the program replaces this process).
pub fn run(args: &[OsString]) -> ExitCode {
    let text: Vec<String> = args
        .iter()
        .take(4)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let [ppid, uid, gid, dashes] = text.as_slice() else {
        return fail("usage: __pipe-exec PPID UID GID -- PROGRAM ARGS");
    };
    let (Ok(ppid), true, Some(program)) = (ppid.parse::<i32>(), dashes == "--", args.get(4)) else {
        return fail("usage: __pipe-exec PPID UID GID -- PROGRAM ARGS");
    };
    if uid != "-" {
        let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
            return fail("bad uid or gid");
        };
        if let Err(e) = drop_to(uid, gid) {
            return fail(&format!("cannot switch to uid {uid} gid {gid}: {e}"));
        }
    }
    if let Err(e) = set_parent_process_death_signal(Some(Signal::KILL)) {
        return fail(&format!("cannot set the parent-death signal: {e}"));
    }
    // The parent may have died before the signal was armed.
    if getppid() != Pid::from_raw(ppid) {
        return fail("detad went away before the program started");
    }
    let e = Command::new(program).args(&args[5..]).exec();
    fail(&format!("cannot run {}: {e}", program.to_string_lossy()))
}

/// Gives up root for good. This process has one thread, so the per-thread
/// system calls apply to the whole process.
fn drop_to(uid: u32, gid: u32) -> rustix::io::Result<()> {
    let gid = Gid::from_raw(gid);
    rustix::thread::set_thread_groups(&[gid])?;
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    // Proof that it cannot be undone.
    if rustix::thread::set_thread_uid(Uid::ROOT).is_ok() && !uid.is_root() {
        return Err(rustix::io::Errno::PERM);
    }
    Ok(())
}
