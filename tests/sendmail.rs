//! `detad sendmail` and `mailq` with the real binary: to a running daemon
//! over SMTP, straight into the spool without one, refused when the user
//! may not write the spool, `-t` and the DSN options into the envelope,
//! the exit codes of refused recipients, and the `sendmail` and `mailq`
//! names (issue "At home on a gateway").

#![cfg(feature = "sendmail")]

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use detad::queue::spool::Spool;
use support::daemon::{Daemon, run_cli, write_conf};
use support::{TempDir, WAIT, assert_never, queue, wait_for_mail, wait_until};

const MAILDIR_ROUTE: &str = "route = * maildir:{dir}/maildir\n";
/// Defers everything and retries only in an hour: what was queued stays.
const DEFER_ROUTE: &str = "route = * pipe:/bin/sh -c \"cat >/dev/null; echo uplink down >&2; exit 75\"\nretry_min = 1h\nretry_max = 2h\n";

/// The test configuration (see `write_conf`) with `listen` at `addr`:
/// what `sendmail` reads to find the daemon. Returns its path.
fn conf_at(dir: &TempDir, routes: &str, addr: SocketAddr) -> PathBuf {
    let base = write_conf(dir, routes);
    let text = fs::read_to_string(&base).unwrap();
    let text = text.replace("listen = 127.0.0.1:0", &format!("listen = {addr}"));
    let path = dir.join("sendmail.conf");
    fs::write(&path, text).unwrap();
    path
}

/// A loopback address where nothing listens (a port just freed).
fn closed_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Runs `program ARGS` with `input` on stdin, to its end.
fn run_with_input(mut command: Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().expect("wait for sendmail")
}

/// `detad sendmail -C conf ARGS` with `input`.
fn sendmail(conf: &Path, args: &[&str], input: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_detad"));
    c.arg("sendmail").arg("-C").arg(conf).args(args);
    run_with_input(c, input.as_bytes())
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The header section of a delivered message (Maildir: LF line ends).
fn header_section(message: &str) -> &str {
    message.split("\n\n").next().unwrap()
}

#[test]
fn with_the_daemon_running_a_script_s_message_is_delivered_with_its_headers() {
    let dir = TempDir::new("smdaemon");
    let daemon = Daemon::start(&write_conf(&dir, MAILDIR_ROUTE));
    let conf = conf_at(&dir, MAILDIR_ROUTE, daemon.addr);
    // As cron writes it: LF line ends, no headers, no final newline.
    let out = sendmail(&conf, &["root"], "disk usage 91%\n.\nlast line");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    let mail = wait_for_mail(&dir.maildir(), "root", 1).remove(0);
    let headers = header_section(&mail);
    assert!(headers.contains("\nFrom: "), "{mail}");
    assert!(headers.contains("@gw.test"), "{mail}");
    assert!(headers.contains("\nDate: "), "{mail}");
    assert!(headers.contains("\nMessage-ID: <"), "{mail}");
    assert!(
        headers.contains("Received: from gw.test ([127.0.0.1])"),
        "{mail}"
    );
    // The lone dot is content (as with -i), the last line is ended.
    assert!(
        mail.ends_with("\n\ndisk usage 91%\n.\nlast line\n"),
        "{mail:?}"
    );
    daemon.terminate();
}

#[test]
fn without_a_daemon_the_message_waits_in_the_spool_for_the_next_start() {
    let dir = TempDir::new("smoffline");
    let addr = closed_address();
    let conf = conf_at(&dir, MAILDIR_ROUTE, addr);
    let out = sendmail(
        &conf,
        &["-v", "root"],
        "Subject: while down\n\nqueued offline\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("detad is not running"),
        "{}",
        text(&out)
    );
    assert_eq!(queue(&dir.spool()).len(), 1);
    // `mailq` sees it; then a daemon on that configuration delivers it.
    let out = mailq(&dir, &conf);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<root@gw.test>  pending"),
        "{}",
        text(&out)
    );
    let daemon = Daemon::start(&conf);
    let mail = wait_for_mail(&dir.maildir(), "root", 1).remove(0);
    assert!(mail.contains("Subject: while down\n"), "{mail}");
    assert!(mail.contains("(detad sendmail, from userid "), "{mail}");
    assert!(mail.ends_with("\n\nqueued offline\n"), "{mail:?}");
    daemon.terminate();
}

#[test]
fn a_utf8_recipient_goes_with_smtputf8_to_the_daemon_and_into_the_spool() {
    let dir = TempDir::new("smutf8");
    let local = "j\u{f6}s\u{e9}";
    // No daemon: into the spool, marked SMTPUTF8.
    let conf = conf_at(&dir, MAILDIR_ROUTE, closed_address());
    let out = sendmail(&conf, &[local], "Subject: Gr\u{fc}\u{df}e\n\noffline\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let spool = Spool::open(&dir.spool(), false).unwrap();
    let ids = spool.ids().unwrap();
    let env = spool.load(&ids[0]).unwrap();
    assert!(env.smtputf8, "{env:?}");
    assert_eq!(env.recipients[0].address, format!("{local}@gw.test"));
    // A daemon delivers it, then takes the next one over SMTP (SMTPUTF8 on
    // MAIL, or the daemon would answer 553 5.6.7 and sendmail exit 67).
    let daemon = Daemon::start(&conf);
    wait_for_mail(&dir.maildir(), local, 1);
    let conf = conf_at(&dir, MAILDIR_ROUTE, daemon.addr);
    let out = sendmail(
        &conf,
        &[&format!("{local}@gw.test")],
        "Subject: online\n\nhi\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mail = wait_for_mail(&dir.maildir(), local, 2);
    assert!(
        mail.iter()
            .any(|m| m.contains("Subject: Gr\u{fc}\u{df}e\n")),
        "{mail:?}"
    );
    assert!(
        mail.iter().any(|m| m.contains(" with UTF8SMTP id ")),
        "{mail:?}"
    );
    daemon.terminate();
}

/// Whether this test process is root (effective uid 0).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[test]
fn a_user_who_may_not_write_the_spool_gets_75_and_nothing_is_lost_silently() {
    if !is_root() {
        eprintln!("skipped: needs root to run sendmail as another user");
        return;
    }
    let dir = TempDir::new("smnobody");
    let conf = conf_at(&dir, MAILDIR_ROUTE, closed_address());
    // The daemon's spool, root's, 0700.
    drop(Spool::open(&dir.spool(), false).unwrap());
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_detad"))
        .arg("sendmail")
        .arg("-C")
        .arg(&conf)
        .arg("root");
    let out = run_with_input(c, b"hello\n");
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("detad is not running and the spool")
            && err.contains("is not writable by you; the message was not sent"),
        "{err}"
    );
    assert!(queue(&dir.spool()).is_empty());
}

#[test]
fn root_writes_another_user_s_spool_as_that_user() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = TempDir::new("smowner");
    let conf = conf_at(&dir, MAILDIR_ROUTE, closed_address());
    drop(Spool::open(&dir.spool(), false).unwrap());
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.spool())
        .status()
        .unwrap();
    assert!(status.success());
    let out = sendmail(&conf, &["root"], "for the daemon's user\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let files = queue(&dir.spool());
    assert_eq!(files.len(), 1);
    let meta = fs::metadata(&files[0]).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{files:?}");
}

#[test]
fn t_and_the_dsn_options_reach_the_envelope_and_bcc_is_removed() {
    let dir = TempDir::new("smenvelope");
    let daemon = Daemon::start(&write_conf(&dir, DEFER_ROUTE));
    let conf = conf_at(&dir, DEFER_ROUTE, daemon.addr);
    let input = "To: Bob <bob@example.com>, root\nCc: carol@example.net (Carol)\n\
                 Bcc: dave@example.org\nSubject: envelope\n\nbody\n";
    let out = sendmail(
        &conf,
        &[
            "-t",
            "-oi",
            "-oem",
            "-f",
            "ops@gw.test",
            "-N",
            "never",
            "-R",
            "hdrs",
            "-V",
            "env-7",
        ],
        input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed = run_cli(&conf, &["queue", "--json"]);
    let json = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(json.contains("\"sender\":\"ops@gw.test\""), "{json}");
    assert!(
        json.contains("\"ret\":\"hdrs\",\"envid\":\"env-7\""),
        "{json}"
    );
    for rcpt in [
        "bob@example.com",
        "root@gw.test",
        "carol@example.net",
        "dave@example.org",
    ] {
        assert!(
            json.contains(&format!(
                "{{\"address\":\"{rcpt}\",\"state\":\"pending\",\"notify\":\"never\""
            )) || json.contains(&format!(
                "{{\"address\":\"{rcpt}\",\"state\":\"deferred\",\"notify\":\"never\""
            )),
            "{rcpt} in {json}"
        );
    }
    // What is spooled has no Bcc line.
    let spool = Spool::open(&dir.spool(), false).unwrap();
    let id = spool.ids().unwrap().remove(0);
    let env = spool.load(&id).unwrap();
    let mut content = String::new();
    spool
        .open_content(&env)
        .unwrap()
        .read_to_string(&mut content)
        .unwrap();
    assert!(
        !content.contains("Bcc") && !content.contains("dave"),
        "{content}"
    );
    assert!(content.contains("\r\nFrom: ops@gw.test\r\n"), "{content}");
    daemon.terminate();
}

/// `mailq -C conf` through a link named `mailq`.
fn mailq(dir: &TempDir, conf: &Path) -> Output {
    let link = dir.join("bin/mailq");
    if !link.exists() {
        fs::create_dir_all(dir.join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_detad"), &link).unwrap();
    }
    Command::new(&link).arg("-C").arg(conf).output().unwrap()
}

#[test]
fn links_named_sendmail_and_mailq_are_the_commands() {
    let dir = TempDir::new("smlinks");
    let daemon = Daemon::start(&write_conf(&dir, DEFER_ROUTE));
    let conf = conf_at(&dir, DEFER_ROUTE, daemon.addr);
    fs::create_dir_all(dir.join("bin")).unwrap();
    let link = dir.join("bin/sendmail");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_detad"), &link).unwrap();
    // The configuration through $DETAD_CONF, as a board's profile sets it.
    let mut c = Command::new(&link);
    c.env("DETAD_CONF", &conf).args(["-i", "ops@example.com"]);
    let out = run_with_input(c, b"Subject: through the link\n\nx\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    wait_until("the message in the queue", WAIT, || {
        queue(&dir.spool()).len() == 1
    });
    let out = mailq(&dir, &conf);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("<ops@example.com>"), "{listing}");
    assert!(listing.contains("1 message(s) in the queue"), "{listing}");
    daemon.terminate();
}

/// A scripted SMTP server: answers RCPT for addresses starting with
/// `bad` with 550 and `later` with 451, holds the reply to the final dot
/// until told, and reports the content it received.
struct FakeDaemon {
    addr: SocketAddr,
    content: mpsc::Receiver<Vec<u8>>,
    release: mpsc::Sender<()>,
}

impl FakeDaemon {
    fn start() -> FakeDaemon {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (content_tx, content) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            serve(stream, &content_tx, &release_rx);
        });
        FakeDaemon {
            addr,
            content,
            release,
        }
    }
}

fn serve(stream: TcpStream, content: &mpsc::Sender<Vec<u8>>, release: &mpsc::Receiver<()>) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 fake ESMTP\r\n").unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250 fake\r\n"
        } else if upper.starts_with("RCPT TO:<BAD") {
            b"550 5.1.1 no such user\r\n"
        } else if upper.starts_with("RCPT TO:<LATER") {
            b"451 4.3.0 try later\r\n"
        } else if upper.starts_with("DATA") {
            out.write_all(b"354 go on\r\n").unwrap();
            let mut data = Vec::new();
            while !data.ends_with(b"\r\n.\r\n") {
                let mut buf = Vec::new();
                if reader.read_until(b'\n', &mut buf).unwrap_or(0) == 0 {
                    return;
                }
                data.extend_from_slice(&buf);
            }
            content.send(data).unwrap();
            let _ = release.recv_timeout(WAIT);
            b"250 2.0.0 queued as FAKE\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = out.write_all(b"221 bye\r\n");
            return;
        } else {
            b"250 ok\r\n"
        };
        out.write_all(reply).unwrap();
    }
}

#[test]
fn exit_0_comes_only_with_the_daemon_s_250_and_lf_became_crlf_on_the_wire() {
    let dir = TempDir::new("smwire");
    let fake = FakeDaemon::start();
    let conf = conf_at(&dir, MAILDIR_ROUTE, fake.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_detad"))
        .arg("sendmail")
        .arg("-C")
        .arg(&conf)
        .args(["-f", "ops@gw.test", "root"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line one\n.dot line\nlast")
        .unwrap();
    let data = fake.content.recv_timeout(WAIT).expect("the content");
    let data = String::from_utf8(data).unwrap();
    assert!(
        data.ends_with("\r\n\r\nline one\r\n..dot line\r\nlast\r\n.\r\n"),
        "{data:?}"
    );
    assert!(
        !data.replace("\r\n", "").contains('\n'),
        "bare LF: {data:?}"
    );
    // Not durable yet: sendmail waits for the reply to the final dot.
    assert_never(
        "sendmail exited before the 250",
        Instant::now() + Duration::from_millis(500),
        || child.try_wait().unwrap().is_some(),
    );
    fake.release.send(()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn refused_recipients_are_named_with_67_for_5xx_and_75_for_4xx() {
    for (rcpts, code, said) in [
        (
            &["bad@x.test", "ok@x.test"][..],
            67,
            "<bad@x.test>: 550 5.1.1 no such user",
        ),
        (
            &["later@x.test"][..],
            75,
            "<later@x.test>: 451 4.3.0 try later",
        ),
    ] {
        let dir = TempDir::new("smrefused");
        let fake = FakeDaemon::start();
        let conf = conf_at(&dir, MAILDIR_ROUTE, fake.addr);
        let _ = fake.release.send(());
        let out = sendmail(&conf, rcpts, "x\n");
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{err}");
        let tail = if rcpts.len() > 1 {
            "the message was queued for the other 1 recipient(s)"
        } else {
            "the message was not sent"
        };
        assert!(err.contains(tail), "{err}");
    }
}

#[test]
fn a_nul_in_the_message_is_refused_with_65() {
    let dir = TempDir::new("smnul");
    let conf = conf_at(&dir, MAILDIR_ROUTE, closed_address());
    let out = sendmail(&conf, &["root"], "a\nb\0c\n");
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        text(&out)
    );
    assert!(queue(&dir.spool()).is_empty());
}
