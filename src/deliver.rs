//! Local delivery: into a Maildir, or to a program.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The result of one delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered.
    Delivered,
    /// Accepted by a next hop that does not take DSN parameters (RFC 3461
    /// §5.2.2: a `relayed` DSN is due for NOTIFY=SUCCESS).
    Relayed,
    /// Temporary failure: enhanced status and diagnostic.
    Deferred(String, String),
    /// Permanent failure: enhanced status and diagnostic.
    Failed(String, String),
    /// The job was cancelled while this ran; the result is discarded.
    Cancelled,
}

/// Whether a local part can name a Maildir folder safely: no `/`, no leading
/// `.`, no `..`, no control characters, not empty.
pub fn is_safe_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.contains("..")
        && !local.contains('/')
        && !local.bytes().any(|b| b < 32 || b == 127)
}

static MAILDIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Delivers `content` into the Maildir `dir/<local>/` (created if missing),
/// after a `Return-Path` and a `Delivered-To` line. tmp → fsync → new, then
/// fsync of `new/`, per the Maildir convention.
///
/// # Errors
/// The I/O error, as a diagnostic; callers treat it as temporary.
pub fn maildir(
    dir: &Path,
    local: &str,
    reverse_path: &str,
    recipient: &str,
    content: &mut dyn Read,
    fsync: bool,
) -> Result<PathBuf, String> {
    maildir_folder(&dir.join(local), reverse_path, recipient, content, fsync)
}

/// Delivers `content` into the Maildir `folder` itself (created if missing).
///
/// # Errors
/// As [`maildir`].
pub fn maildir_folder(
    folder: &Path,
    reverse_path: &str,
    recipient: &str,
    content: &mut dyn Read,
    fsync: bool,
) -> Result<PathBuf, String> {
    let describe =
        |what: &str, path: &Path, e: io::Error| format!("cannot {what} {}: {e}", path.display());
    for sub in ["tmp", "new", "cur"] {
        let p = folder.join(sub);
        fs::create_dir_all(&p).map_err(|e| describe("create", &p, e))?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Read once, not per delivery; `/` and `:` cannot stand in the name.
    static HOST: OnceLock<String> = OnceLock::new();
    let host = HOST.get_or_init(|| crate::config::kernel_hostname().replace(['/', ':'], "_"));
    let name = format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        MAILDIR_SEQ.fetch_add(1, Ordering::Relaxed),
        host
    );
    let tmp = folder.join("tmp").join(&name);
    let dest = folder.join("new").join(&name);
    let result = (|| {
        let mut file = io::BufWriter::new(File::create(&tmp)?);
        write!(
            file,
            "Return-Path: <{reverse_path}>\r\nDelivered-To: {recipient}\r\n"
        )?;
        io::copy(content, &mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        if fsync {
            file.sync_all()?;
        }
        fs::rename(&tmp, &dest)?;
        if fsync {
            File::open(folder.join("new"))?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e: io::Error| {
        let _ = fs::remove_file(&tmp);
        describe("deliver into", folder, e)
    })?;
    Ok(dest)
}

/// The envelope values a program gets.
#[derive(Debug, Clone, Copy)]
pub struct PipeEnv<'a> {
    /// Reverse-path (empty for `<>`).
    pub sender: &'a str,
    /// The recipient.
    pub recipient: &'a str,
    /// Queue id.
    pub id: &'a str,
}

/// sysexits EX_TEMPFAIL: the program asks to be retried.
const EX_TEMPFAIL: i32 = 75;
/// How long stderr may stay open after the program exited (a background
/// child holding it) before its process group is killed.
const STDERR_GRACE: Duration = Duration::from_secs(2);
/// How often a running program is checked for exit, cancel and timeout.
const PIPE_POLL: Duration = Duration::from_millis(20);

/// Kills a program and everything in its process group. std has no
/// killpg and this crate has no unsafe code, so the group is signalled with
/// kill(1), present on every busybox system; the leader is killed directly
/// as well. The stderr reader is not waited for: it ends when the last
/// process holding the pipe is gone.
fn kill_group(child: &mut std::process::Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Replaces `{sender}`, `{recipient}`, `{id}` in one argument.
pub fn expand_arg(arg: &str, env: &PipeEnv<'_>) -> String {
    arg.replace("{sender}", env.sender)
        .replace("{recipient}", env.recipient)
        .replace("{id}", env.id)
}

/// Runs `argv` (no shell) with the content on stdin. Exit 0 delivers, 75
/// defers, anything else fails with the first line of stderr; past
/// `timeout` the program is killed (deferred); when `cancelled()` turns true
/// it is killed and its result discarded.
pub fn pipe(
    argv: &[String],
    env: &PipeEnv<'_>,
    content: File,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Delivery {
    let args: Vec<String> = argv[1..].iter().map(|a| expand_arg(a, env)).collect();
    let spawned = Command::new(&argv[0])
        .args(&args)
        .env("SENDER", env.sender)
        .env("RECIPIENT", env.recipient)
        .env("QUEUE_ID", env.id)
        .stdin(Stdio::from(content))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a kill reaches what it started too.
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Delivery::Deferred("4.3.0".into(), format!("cannot run {}: {e}", argv[0]));
        }
    };
    // Drain stderr on a thread so a chatty program cannot block on a full pipe.
    let stderr = child.stderr.take();
    // The text comes back over a channel so that a grandchild still holding
    // stderr (`daemon &`) cannot make us wait for it forever.
    let (text_tx, text_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if text.len() < 4096 {
                    text.extend_from_slice(&buf[..n]);
                }
            }
        }
        let _ = text_tx.send(text);
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if cancelled() {
            kill_group(&mut child);
            return Delivery::Cancelled;
        }
        if started.elapsed() >= timeout {
            kill_group(&mut child);
            return Delivery::Deferred(
                "4.4.7".into(),
                format!("{} timed out after {}s", argv[0], timeout.as_secs()),
            );
        }
        std::thread::sleep(PIPE_POLL);
    };
    let stderr = match text_rx.recv_timeout(STDERR_GRACE) {
        Ok(text) => text,
        Err(_) => {
            // Its children outlive it with our pipe open: end them.
            kill_group(&mut child);
            text_rx.recv_timeout(STDERR_GRACE).unwrap_or_default()
        }
    };
    let first_line = String::from_utf8_lossy(&stderr)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(400)
        .collect::<String>();
    let diagnostic = |what: String| {
        if first_line.is_empty() {
            what
        } else {
            format!("{what}: {first_line}")
        }
    };
    match status.map(|s| s.code()) {
        Some(Some(0)) => Delivery::Delivered,
        Some(Some(EX_TEMPFAIL)) => {
            Delivery::Deferred("4.3.0".into(), diagnostic(format!("{} exited 75", argv[0])))
        }
        Some(Some(code)) => Delivery::Failed(
            "5.3.0".into(),
            diagnostic(format!("{} exited {code}", argv[0])),
        ),
        Some(None) => Delivery::Deferred(
            "4.3.0".into(),
            diagnostic(format!("{} killed by a signal", argv[0])),
        ),
        None => Delivery::Deferred("4.3.0".into(), format!("cannot wait for {}", argv[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("detad-deliver-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn unsafe_local_parts_are_refused() {
        for bad in ["", ".hidden", "a/b", "a..b", "a\u{1}b", ".."] {
            assert!(!is_safe_local_part(bad), "{bad:?}");
        }
        assert!(is_safe_local_part("jones"));
        assert!(is_safe_local_part("first.last+tag"));
    }

    #[test]
    fn maildir_delivery_lands_in_new() {
        let dir = temp_dir("maildir");
        let path = maildir(
            &dir,
            "bob",
            "a@b",
            "bob@c",
            &mut &b"Subject: hi\r\n\r\nbody\r\n"[..],
            true,
        )
        .unwrap();
        assert!(path.starts_with(dir.join("bob/new")));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("Return-Path: <a@b>\r\nDelivered-To: bob@c\r\nSubject: hi"));
        assert_eq!(fs::read_dir(dir.join("bob/tmp")).unwrap().count(), 0);
    }

    fn run_pipe(script: &str, cancelled: &dyn Fn() -> bool) -> Delivery {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = temp_dir(&format!("pipe{}", N.fetch_add(1, Ordering::Relaxed)));
        let input = dir.join("in");
        fs::write(&input, b"hello\r\n").unwrap();
        let argv: Vec<String> = ["/bin/sh", "-c", script]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = PipeEnv {
            sender: "a@b",
            recipient: "r@c",
            id: "ID1",
        };
        pipe(
            &argv,
            &env,
            File::open(&input).unwrap(),
            Duration::from_secs(5),
            cancelled,
        )
    }

    #[test]
    fn pipe_exit_codes_map_to_outcomes() {
        assert_eq!(
            run_pipe("cat >/dev/null; test \"$RECIPIENT\" = r@c", &|| false),
            Delivery::Delivered
        );
        assert!(
            matches!(run_pipe("echo later >&2; exit 75", &|| false), Delivery::Deferred(_, d) if d.ends_with("later"))
        );
        assert!(
            matches!(run_pipe("echo no such user >&2; exit 1", &|| false), Delivery::Failed(_, d) if d.ends_with("no such user"))
        );
    }

    #[test]
    fn a_background_child_holding_stderr_does_not_hang_delivery() {
        let start = Instant::now();
        assert_eq!(
            run_pipe("sleep 30 & exit 0", &|| false),
            Delivery::Delivered
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn cancelled_pipe_is_killed() {
        let start = Instant::now();
        assert_eq!(
            run_pipe("sleep 30", &|| start.elapsed() > Duration::from_millis(100)),
            Delivery::Cancelled
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
