//! `log = syslog` with the real binary: RFC 3164 datagrams with facility
//! mail and the tag `detad[PID]` on a socket the test binds, with the
//! same lines stderr would carry; a missing socket falls back to stderr
//! with one warning (issue "At home on a gateway").

mod support;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, write_conf};
use support::{Client, HOSTNAME, TempDir, WAIT, wait_for_mail};

const MAILDIR_ROUTE: &str = "route = * maildir:{dir}/maildir\n";

/// A detad child that logs to syslog, killed on drop.
struct Syslogged(Child);

impl Drop for Syslogged {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Receives datagrams until one contains `what`; returns it.
#[track_caller]
fn datagram_with(socket: &UnixDatagram, what: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no datagram with {what:?} in:\n{}",
            seen.join("\n")
        );
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let d = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(d.clone());
            if d.contains(what) {
                return d;
            }
        }
    }
}

fn start(conf: &Path) -> Syslogged {
    let child = Command::new(env!("CARGO_BIN_EXE_detad"))
        .arg("-c")
        .arg(conf)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run detad");
    Syslogged(child)
}

#[test]
fn the_log_goes_to_syslog_as_rfc3164_mail_lines_tagged_with_the_pid() {
    let dir = TempDir::new("syslog");
    let socket_path = dir.join("log");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let conf = write_conf(
        &dir,
        &format!(
            "{MAILDIR_ROUTE}log = syslog\nsyslog_socket = {}\n",
            socket_path.display()
        ),
    );
    let mut daemon = start(&conf);
    let tag = format!("detad[{}]: ", daemon.0.id());
    let mut seen = Vec::new();
    let started = datagram_with(&socket, "listening on ", &mut seen);
    assert!(
        started.starts_with(&format!("<22>{tag}detad ")),
        "{started}"
    );
    let addr = started
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ',']).next())
        .and_then(|a| a.parse().ok())
        .expect("the address");
    let mut c = Client::connect(addr);
    c.expect(220, HOSTNAME);
    c.command("EHLO client.test", 250);
    c.mail_to_bob("to syslog", "x");
    c.quit();
    wait_for_mail(&dir.maildir(), "bob", 1);
    let delivered = datagram_with(&socket, "status=delivered", &mut seen);
    // The same text as on stderr: `id=... to=<...> via=... status=delivered`.
    let text = delivered
        .strip_prefix(&format!("<22>{tag}"))
        .unwrap_or_else(|| panic!("not mail.info with {tag:?}: {delivered}"));
    assert!(text.starts_with("id="), "{text}");
    assert!(
        text.contains(" to=<bob@example.com> via=maildir:") && text.ends_with(" status=delivered"),
        "{text}"
    );
    let connection = format!("<22>{tag}connection peer=127.0.0.1:");
    assert!(seen.iter().any(|d| d.starts_with(&connection)), "{seen:?}");
    assert!(seen.iter().all(|d| !d.ends_with('\n')), "{seen:?}");
    // An error is mail.err (19): a second detad on the spool cannot start.
    let second = Command::new(env!("CARGO_BIN_EXE_detad"))
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(75));
    let refused = datagram_with(&socket, "is in use by pid", &mut seen);
    assert!(
        refused.starts_with("<19>detad[") && !refused.starts_with(&format!("<19>{tag}")),
        "{refused}"
    );
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let mut stderr = String::new();
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.is_empty(), "nothing doubled on stderr: {stderr}");
}

#[test]
fn a_missing_syslog_socket_falls_back_to_stderr_with_one_warning() {
    let dir = TempDir::new("nosyslog");
    let conf = write_conf(
        &dir,
        &format!(
            "{MAILDIR_ROUTE}log = syslog\nsyslog_socket = {}/nothing\n",
            dir.path().display()
        ),
    );
    let daemon = Daemon::start(&conf);
    let log = daemon.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("logging to stderr"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("/nothing"), "{log}");
    let mut c = daemon.ehlo();
    c.mail_to_bob("fallback", "x");
    c.quit();
    wait_for_mail(&dir.maildir(), "bob", 1);
    let deadline = Instant::now() + WAIT;
    while !daemon.log().contains("status=delivered") {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.terminate();
}
