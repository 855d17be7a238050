//! Delivery to a program (`pipe:`), as Postfix's pipe(8) does it: no
//! shell, the message on stdin, the envelope in arguments and environment,
//! and the result from the exit status (sysexits) and the first line of
//! stderr. The program runs through the [`super::exec`] trampoline: never
//! as root, never outliving detad, in its own process group, which is
//! killed on timeout, cancel or shutdown.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use super::exec::{RunAs, trampoline_args};
use crate::queue::delivery::Delivery;
use crate::smtp::status::{Class, EnhancedStatus};

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

/// How a program is started: the trampoline binary and who it runs as.
#[derive(Debug, Clone)]
pub struct Launcher<'a> {
    /// The detad binary that runs the trampoline (`/proc/self/exe`).
    pub helper: &'a Path,
    /// The pipe user, when detad may switch to it (it runs as root).
    pub run_as: Option<RunAs>,
    /// Longest run before the program is killed (deferred).
    pub timeout: Duration,
}

/// sysexits EX_TEMPFAIL: the program asks to be retried.
const EX_TEMPFAIL: i32 = 75;
/// How long stderr may stay open after the program exited (a background
/// child holding it) before its process group is killed.
const STDERR_GRACE: Duration = Duration::from_secs(2);
/// How often a running program is checked for exit, cancel and timeout.
const PIPE_POLL: Duration = Duration::from_millis(20);

/// Replaces `{sender}`, `{recipient}`, `{id}` in one argument.
pub fn expand_arg(arg: &str, env: &PipeEnv<'_>) -> String {
    arg.replace("{sender}", env.sender)
        .replace("{recipient}", env.recipient)
        .replace("{id}", env.id)
}

/// Kills a program and everything in its process group.
fn kill_group(child: &mut std::process::Child) {
    let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// The first non-empty line of stderr, printable, at most 400 characters.
fn first_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
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
        .collect()
}

/// The result of a program that ran to its end. Postfix pipe(8): a first
/// stderr line that starts with an enhanced status code (`5.1.1 no such
/// user`) sets the status, and its class decides between deferral and
/// failure; otherwise exit 75 defers and any other non-zero exit fails.
pub fn judge(program: &str, exit: Option<i32>, stderr_line: &str) -> Delivery {
    if exit == Some(0) {
        return Delivery::delivered();
    }
    if let Some((status, text)) = EnhancedStatus::split_prefix(stderr_line)
        && status.class() != Class::Success
    {
        let text = if text.is_empty() {
            format!("{program} failed")
        } else {
            text.to_string()
        };
        return match status.class() {
            Class::Transient => Delivery::deferred(status, text),
            _ => Delivery::failed(status, text),
        };
    }
    let with_line = |what: String| {
        if stderr_line.is_empty() {
            what
        } else {
            format!("{what}: {stderr_line}")
        }
    };
    match exit {
        Some(EX_TEMPFAIL) => Delivery::deferred(
            EnhancedStatus::of(4, 3, 0),
            with_line(format!("{program} exited 75")),
        ),
        Some(code) => Delivery::failed(
            EnhancedStatus::of(5, 3, 0),
            with_line(format!("{program} exited {code}")),
        ),
        None => Delivery::deferred(
            EnhancedStatus::of(4, 3, 0),
            with_line(format!("{program} killed by a signal")),
        ),
    }
}

/// How a program run ended.
enum Waited {
    /// It exited (or could not be waited for: `None`).
    Exited(Option<std::process::ExitStatus>),
    /// The attempt was cancelled: it was killed.
    Cancelled,
    /// It ran too long: it was killed.
    TimedOut(Delivery),
}

/// Waits for the program, killing its group on cancel or timeout.
fn wait(
    child: &mut std::process::Child,
    argv: &[String],
    launcher: &Launcher<'_>,
    cancelled: &dyn Fn() -> bool,
) -> Waited {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Waited::Exited(Some(status)),
            Ok(None) => {}
            Err(_) => return Waited::Exited(None),
        }
        if cancelled() {
            kill_group(child);
            return Waited::Cancelled;
        }
        if started.elapsed() >= launcher.timeout {
            kill_group(child);
            return Waited::TimedOut(Delivery::deferred(
                EnhancedStatus::of(4, 4, 7),
                format!(
                    "{} timed out after {}s",
                    argv[0],
                    launcher.timeout.as_secs()
                ),
            ));
        }
        std::thread::sleep(PIPE_POLL);
    }
}

/// Runs `argv` (no shell) with the content on stdin; `None` when
/// `cancelled()` turned true (the program was killed, its result is void).
pub fn run(
    argv: &[String],
    env: &PipeEnv<'_>,
    content: std::io::Take<File>,
    launcher: &Launcher<'_>,
    cancelled: &dyn Fn() -> bool,
) -> Option<Delivery> {
    let args: Vec<String> = argv[1..].iter().map(|a| expand_arg(a, env)).collect();
    let spawned = Command::new(launcher.helper)
        .args(trampoline_args(launcher.run_as, &argv[0], &args))
        .env("SENDER", env.sender)
        .env("RECIPIENT", env.recipient)
        .env("QUEUE_ID", env.id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a kill reaches what it started too.
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Some(Delivery::deferred(
                EnhancedStatus::of(4, 3, 0),
                format!("cannot start {}: {e}", launcher.helper.display()),
            ));
        }
    };
    // The content (and nothing after it in the spool file) goes in on a
    // thread: a program that does not read it cannot block us, and ends
    // the copy when it exits (EPIPE).
    if let Some(mut stdin) = child.stdin.take() {
        let mut content = content;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut content, &mut stdin);
        });
    }
    // stderr is drained on a thread so a chatty program cannot block on a
    // full pipe; the text comes back over a channel so that a grandchild
    // still holding stderr (`daemon &`) cannot make us wait forever.
    let stderr = child.stderr.take();
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
    let status = match wait(&mut child, argv, launcher, cancelled) {
        Waited::Exited(status) => status,
        Waited::Cancelled => return None,
        Waited::TimedOut(d) => return Some(d),
    };
    let stderr = text_rx.recv_timeout(STDERR_GRACE).unwrap_or_else(|_| {
        // Its children outlive it with our pipe open: end them.
        kill_group(&mut child);
        text_rx.recv_timeout(STDERR_GRACE).unwrap_or_default()
    });
    let exit = match status {
        Some(s) => s.code(),
        None => {
            return Some(Delivery::deferred(
                EnhancedStatus::of(4, 3, 0),
                format!("cannot wait for {}", argv[0]),
            ));
        }
    };
    Some(judge(&argv[0], exit, &first_line(&stderr)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::delivery::DeliveryKind;

    #[test]
    fn exit_codes_map_to_results() {
        assert_eq!(judge("p", Some(0), "noise").kind, DeliveryKind::Delivered);
        let d = judge("p", Some(75), "later");
        assert_eq!(
            (d.kind, d.status.to_string().as_str()),
            (DeliveryKind::Deferred, "4.3.0")
        );
        let d = judge("p", Some(1), "no such user");
        assert_eq!(
            (d.kind, d.status.to_string().as_str()),
            (DeliveryKind::Failed, "5.3.0")
        );
        assert_eq!(
            d.diagnostic.unwrap().to_string(),
            "p exited 1: no such user"
        );
        assert_eq!(judge("p", None, "").kind, DeliveryKind::Deferred);
    }

    #[test]
    fn an_enhanced_status_on_stderr_sets_the_dsn_status() {
        let d = judge("p", Some(67), "5.1.1 no such user");
        assert_eq!(d.kind, DeliveryKind::Failed);
        assert_eq!(d.status.to_string(), "5.1.1");
        assert_eq!(d.diagnostic.unwrap().to_string(), "no such user");
        // Its class decides, whatever the exit code.
        let d = judge("p", Some(1), "4.2.2 mailbox full");
        assert_eq!(
            (d.kind, d.status.to_string().as_str()),
            (DeliveryKind::Deferred, "4.2.2")
        );
        // Not a status: the exit code decides.
        assert_eq!(judge("p", Some(1), "5.1 x").status.to_string(), "5.3.0");
    }

    #[test]
    fn first_line_is_printable_and_bounded() {
        assert_eq!(first_line(b"\n\n  hello\tworld \nmore"), "hello?world");
        assert_eq!(first_line(&[b'x'; 1000]).len(), 400);
    }
}
