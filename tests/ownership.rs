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
