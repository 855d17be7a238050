//! With the real binary: one daemon per spool, pipe programs that never
//! outlive detad, an RDLV client whose going away is noticed at once, and
//! the command line's answers and exit codes (issue 9).

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, run_cli, write_conf};
use support::{TempDir, WAIT, assert_never, message, wait_for_file, wait_queue_empty, wait_until};

/// The pid a pipe program wrote into `file`, once it is there.
#[track_caller]
fn pid_in(file: &Path) -> u32 {
    wait_until(&format!("{}", file.display()), WAIT, || {
        fs::read_to_string(file).is_ok_and(|t| t.trim().parse::<u32>().is_ok())
    });
    fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

fn running(pid: u32) -> bool {
    // A zombie is not running: its stat says Z.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
}

#[test]
fn a_second_daemon_on_the_same_spool_exits_at_once() {
    let dir = TempDir::new("twodaemons");
    let conf = write_conf(&dir, "route = * maildir:{dir}/maildir\n");
    let first = Daemon::start(&conf);
    let out = run_cli(&conf, &[]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("is in use by pid {}", first.pid())),
        "{err}"
    );
    // The first one's control socket still answers.
    let out = run_cli(&conf, &["flush"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("flushed 0 message(s)"));
    first.terminate();
}

#[test]
fn kill_9_of_detad_kills_its_pipe_programs() {
    let dir = TempDir::new("pdeathsig");
    let conf = write_conf(
        &dir,
        "route = * pipe:/bin/sh -c \"echo $$ > {dir}/out/pid.$PPID; cat >/dev/null; sleep 30\"\n",
    );
    let daemon = Daemon::start(&conf);
    let mut c = daemon.ehlo();
    c.mail_to_bob("runs long", "x");
    let program = pid_in(&dir.join(&format!("out/pid.{}", daemon.pid())));
    assert!(running(program));
    daemon.kill9();
    wait_until("the pipe program to die with detad", WAIT, || {
        !running(program)
    });
    // After a restart the job runs again, once: no old copy runs beside it.
    let daemon = Daemon::start(&conf);
    let again = pid_in(&dir.join(&format!("out/pid.{}", daemon.pid())));
    assert_ne!(again, program);
    daemon.kill9();
}

#[test]
fn an_rdlv_client_that_closes_is_noticed_before_any_120() {
    let dir = TempDir::new("rdlvclose");
    let conf = write_conf(
        &dir,
        "rdlv_mintimer = 30\n\
         route = one.test pipe:/bin/sh -c \"cat > {dir}/out/one\"\n\
         route = two.test pipe:/bin/sh -c \"touch {dir}/out/two-started; cat >/dev/null; sleep 20; touch {dir}/out/two\"\n\
         route = three.test pipe:/bin/sh -c \"cat > {dir}/out/three\"\n",
    );
    let daemon = Daemon::start(&conf);
    let mut c = daemon.ehlo();
    c.open_rdlv_data(
        "<alice@client.test>",
        &["<a@one.test>", "<b@two.test>", "<c@three.test>"],
        "RDLV maxtimer=30",
    );
    c.send_content(&message("goes away", "x"));
    wait_for_file(&dir.join("out/two-started"));
    let closed = Instant::now();
    c.vanish();
    // Aborted at once (not at the first 120, 27 s away): the running
    // program is killed, nothing more is delivered, the message is gone.
    wait_queue_empty(&dir.spool());
    assert!(
        closed.elapsed() < Duration::from_secs(5),
        "{:?}",
        closed.elapsed()
    );
    wait_until("the abort to be logged", WAIT, || {
        daemon
            .log()
            .contains("aborted: the client closed the connection (EOF)")
    });
    assert!(
        dir.join("out/one").exists(),
        "what was delivered before stands"
    );
    assert_never(
        "a delivery after the client went away",
        Instant::now() + Duration::from_secs(2),
        || dir.join("out/two").exists() || dir.join("out/three").exists(),
    );
    let log = daemon.log();
    assert!(
        log.contains("delivered before the abort: a@one.test"),
        "{log}"
    );
    daemon.terminate();
}

#[test]
fn queue_commands_say_what_they_did_with_sysexits_codes() {
    let dir = TempDir::new("cli");
    let conf = write_conf(
        &dir,
        "route = * pipe:/bin/sh -c \"cat >/dev/null; echo down >&2; exit 75\"\nretry_min = 1h\nretry_max = 2h\n",
    );
    let daemon = Daemon::start(&conf);
    let mut c = daemon.ehlo();
    let reply = c.mail_to_bob("kept", "x");
    let id = reply.text().rsplit(' ').next().unwrap().to_string();
    c.quit();
    let spool = detad::queue::spool::Spool::open(&dir.spool(), false).unwrap();
    support::wait_for_deferral(&spool);
    let run = |args: &[&str]| {
        let out = run_cli(&conf, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = run(&["queue", "retry", &id]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("retry {id}")), "{text}");
    let (code, text) = run(&["queue", "remove", "0000000000000001"]);
    assert_eq!(code, Some(66), "{text}");
    assert!(text.contains("no message 0000000000000001"), "{text}");
    let (code, text) = run(&["queue", "remove", "../x"]);
    assert_eq!(code, Some(64), "{text}");
    let (code, text) = run(&["queue", "--json"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("\"mode\":\"queued\""), "{text}");
    wait_until("the retry to settle", WAIT, || {
        spool.load(&id).is_ok_and(|e| e.attempts >= 2)
    });
    let (code, text) = run(&["queue", "remove", &id]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("removed {id}")), "{text}");
    daemon.terminate();
    // No daemon: flush says so; remove works on the spool itself.
    let (code, text) = run(&["flush"]);
    assert_eq!(code, Some(69), "{text}");
    let (code, _) = run(&["queue", "remove", &id]);
    assert_eq!(code, Some(66));
}

/// Whether this test process is root (least-privilege tests need to be).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// The `Uid:` or `Gid:` line of a process: real, effective, saved, fs.
fn ids(pid: u32, which: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(which))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn owner_and_mode(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.mode() & 0o777)
}

const NOBODY: u32 = 65534;

#[test]
fn started_as_root_with_a_user_it_keeps_no_root_privilege() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let dir = TempDir::new("user");
    let conf = write_conf(
        &dir,
        "user = nobody\n\
         route = pipe.test pipe:/bin/sh -c \"cat >/dev/null; id -u > {dir}/out/pipe-uid\"\n\
         route = * maildir:{dir}/maildir\n",
    );
    let daemon = Daemon::start(&conf);
    for which in ["Uid:", "Gid:"] {
        assert_eq!(
            ids(daemon.pid(), which),
            vec![NOBODY.to_string(); 4],
            "{which}"
        );
    }
    let mut c = daemon.ehlo();
    c.mail_to_bob("private", "x");
    let r = c.mail(
        "alice@client.test",
        &["x@pipe.test"],
        &message("to a program", "x"),
    );
    assert_eq!(r.code, 250, "{r}");
    c.quit();
    let mail = support::wait_for_mail(&dir.maildir(), "bob", 1);
    assert!(mail[0].contains("Subject: private"));
    let file = &support::delivered(&dir.maildir(), "bob")[0];
    assert_eq!(owner_and_mode(file), (NOBODY, 0o600));
    assert_eq!(
        owner_and_mode(&dir.maildir().join("bob/new")),
        (NOBODY, 0o700)
    );
    for d in ["", "queue", "tmp", "corrupt"] {
        assert_eq!(
            owner_and_mode(&dir.spool().join(d)),
            (NOBODY, 0o700),
            "spool/{d}"
        );
    }
    assert_eq!(
        owner_and_mode(&dir.spool().join("control")),
        (NOBODY, 0o600)
    );
    let uid = wait_for_file(&dir.join("out/pipe-uid"));
    assert_eq!(uid.trim(), NOBODY.to_string(), "the program ran as root");
    // Another unprivileged user gets a clear refusal, not a listing.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=1", "--regid=1", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_detad"))
        .arg("-c")
        .arg(&conf)
        .arg("queue")
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(77), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    wait_queue_empty(&dir.spool());
    daemon.terminate();
}

#[test]
fn root_without_a_user_warns_and_never_runs_a_program_as_root() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let dir = TempDir::new("rootpipe");
    let conf = write_conf(
        &dir,
        "route = * pipe:/bin/sh -c \"cat >/dev/null; id -u > {dir}/out/pipe-uid\"\n",
    );
    let daemon = Daemon::start(&conf);
    let mut c = daemon.ehlo();
    c.mail_to_bob("as whom", "x");
    c.quit();
    let uid = wait_for_file(&dir.join("out/pipe-uid"));
    assert_eq!(uid.trim(), NOBODY.to_string());
    assert!(
        daemon.log().contains("running as root: set `user`"),
        "{}",
        daemon.log()
    );
    daemon.terminate();
}
