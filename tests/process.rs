//! The built binary as a child process: signals, `kill -9` and restarts
//! against a spool on disk with fsync on, as on a gateway (issues 2 and 3).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use detad::queue::envelope::RcptState;
use detad::queue::spool::Spool;
use support::daemon::{Daemon, run_cli, write_conf};
use support::{
    Client, GATE_WAIT, TempDir, WAIT, assert_never, files_in, message, open_gate, queue,
    wait_for_file, wait_for_mail, wait_queue_empty,
};

const MAILDIR_ROUTE: &str = "route = * maildir:{dir}/maildir\n";
/// Defers everything and retries only in an hour.
const DEFER_ROUTE: &str = "route = * pipe:/bin/sh -c \"cat >/dev/null; echo uplink down >&2; exit 75\"\nretry_min = 1h\nretry_max = 2h\n";

/// A gated pipe (see `support::gated_pipe_route`) that names its output
/// after the detad process that ran it: `out/<recipient>.<pid>`.
fn gated_pid_route(domain: &str) -> String {
    format!(
        "route = {domain} pipe:/bin/sh -c \"{GATE_WAIT}; \
         cat > {{dir}}/out/.tmp.$$ && mv {{dir}}/out/.tmp.$$ {{dir}}/out/$RECIPIENT.$PPID\"\n"
    )
}

/// A detad whose `example.net` route is a [`gated_pid_route`] (the rest of
/// `example.com` goes to the Maildir), and a client that sent `subject`
/// from smith to jones@example.net under RDLV maxtimer=1 and got its first
/// 120: the job is held in processing. Returns the configuration too.
#[track_caller]
fn held_rdlv_job(dir: &TempDir, subject: &str, body: &str) -> (PathBuf, Daemon, Client) {
    let conf = write_conf(
        dir,
        &format!(
            "{}route = example.com maildir:{{dir}}/maildir\n",
            gated_pid_route("example.net")
        ),
    );
    let daemon = Daemon::start(&conf);
    let mut c = daemon.ehlo();
    c.open_rdlv_data(
        "<smith@example.com>",
        &["<jones@example.net>"],
        "RDLV maxtimer=1",
    );
    c.send_content(&message(subject, body));
    c.expect(120, "gw.test");
    (conf, daemon, c)
}

/// A detad with `routes` (see [`write_conf`]) that accepted a message to
/// bob with `subject`; the client stays connected.
#[track_caller]
fn daemon_with_mail(dir: &TempDir, routes: &str, subject: &str, body: &str) -> (Daemon, Client) {
    let daemon = Daemon::start(&write_conf(dir, routes));
    let mut c = daemon.ehlo();
    c.mail_to_bob(subject, body);
    (daemon, c)
}

#[test]
fn sigterm_answers_421_leaves_a_consistent_spool_and_exits_0() {
    let dir = TempDir::new("sigterm");
    let (daemon, mut c) = daemon_with_mail(&dir, DEFER_ROUTE, "before sigterm", "kept");
    let spool = Spool::open(&dir.spool(), false).unwrap();
    support::wait_for_deferral(&spool);
    // An idle session is told, then the process exits 0.
    daemon.terminate();
    c.expect(421, "4.3.2");
    c.expect_closed();
    // Consistent: one message file, a parsable envelope, no debris.
    let ids = spool.ids().unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let names: Vec<String> = queue(&dir.spool())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [ids[0].clone()]);
    assert_eq!(
        spool.load(&ids[0]).unwrap().recipients[0].state(),
        RcptState::Deferred
    );
    assert!(files_in(&dir.spool().join("tmp")).is_empty());
    assert!(files_in(&dir.spool().join("corrupt")).is_empty());
    assert!(!dir.spool().join("control").exists(), "control socket left");
    // The next start picks it up; `detad flush` retries it now.
    let conf = write_conf(&dir, MAILDIR_ROUTE);
    let daemon = Daemon::start(&conf);
    let out = run_cli(&conf, &["flush"]);
    assert!(out.status.success(), "detad flush: {out:?}");
    let mail = wait_for_mail(&dir.maildir(), "bob", 1);
    assert!(mail[0].contains("Subject: before sigterm"));
    wait_queue_empty(&dir.spool());
    daemon.terminate();
}

#[test]
fn kill_9_after_the_250_then_restart_still_delivers() {
    let dir = TempDir::new("kill250");
    // The first process is still running the (held) program when killed.
    let (daemon, c) = daemon_with_mail(&dir, &gated_pid_route("*"), "survives kill -9", "promised");
    daemon.kill9();
    drop(c);
    let conf = write_conf(&dir, MAILDIR_ROUTE);
    let daemon = Daemon::start(&conf);
    let mail = wait_for_mail(&dir.maildir(), "bob", 1);
    assert!(mail[0].contains("Subject: survives kill -9"));
    wait_queue_empty(&dir.spool());
    assert!(files_in(&dir.spool().join("corrupt")).is_empty());
    daemon.terminate();
}

#[test]
fn kill_9_right_after_deta_then_restart_finishes_the_detached_job() {
    let dir = TempDir::new("killdeta");
    let (conf, daemon, mut c) = held_rdlv_job(&dir, "detached then killed", "carry on");
    c.command("DETA", 221);
    daemon.kill9();
    c.expect_closed();
    // Same configuration, new process: the detached job is resumed.
    let daemon = Daemon::start(&conf);
    open_gate(&dir);
    let text = wait_for_file(&dir.join(&format!("out/jones@example.net.{}", daemon.pid())));
    assert!(text.contains("Subject: detached then killed"), "{text}");
    wait_queue_empty(&dir.spool());
    daemon.terminate();
}

#[test]
fn kill_9_before_the_final_reply_drops_the_rdlv_job() {
    let dir = TempDir::new("killrdlv");
    let (conf, daemon, mut c) = held_rdlv_job(&dir, "never answered", "the client will retry");
    daemon.kill9();
    c.expect_closed();
    // The client never had a final reply: the next process drops the job.
    let daemon = Daemon::start(&conf);
    assert!(queue(&dir.spool()).is_empty(), "{:?}", queue(&dir.spool()));
    open_gate(&dir);
    let pid = daemon.pid();
    assert_never(
        "the restarted server delivered an unanswered RDLV job",
        Instant::now() + Duration::from_millis(600),
        || dir.join(&format!("out/jones@example.net.{pid}")).exists(),
    );
    daemon.terminate();
}

#[test]
fn sighup_reloads_the_routes() {
    let dir = TempDir::new("sighup");
    let (daemon, c) = daemon_with_mail(&dir, DEFER_ROUTE, "rerouted", "after reload");
    c.quit();
    let spool = Spool::open(&dir.spool(), false).unwrap();
    support::wait_for_deferral(&spool);
    // Routes are resolved at delivery time: a reload applies to queued mail.
    write_conf(&dir, MAILDIR_ROUTE);
    daemon.signal("HUP");
    support::wait_until("the reload", WAIT, || {
        daemon.log().contains("configuration reloaded")
    });
    daemon.signal("USR1");
    wait_for_mail(&dir.maildir(), "bob", 1);
    wait_queue_empty(&dir.spool());
    daemon.terminate();
}

#[test]
fn sigterm_while_a_program_runs_exits_promptly_and_keeps_the_message() {
    let dir = TempDir::new("termpipe");
    // A program that says it started, then hangs until the gate opens
    // (10 s at most); pipe_timeout is left at its default (600 s).
    let route = format!(
        "route = * pipe:/bin/sh -c \": > {{dir}}/out/running; {GATE_WAIT}; cat >/dev/null\"\n"
    );
    let (mut daemon, c) = daemon_with_mail(&dir, &route, "hung program", "modem script stuck");
    c.quit();
    wait_for_file(&dir.join("out/running"));
    let signalled = Instant::now();
    daemon.signal("TERM");
    let exited = daemon.try_wait_exit(Duration::from_secs(3));
    let took = signalled.elapsed();
    open_gate(&dir);
    let Some(status) = exited else {
        panic!(
            "SIGTERM: detad still running after {took:?}: the shutdown waits for the \
             running pipe: program (up to pipe_timeout, 600 s by default)"
        );
    };
    assert!(status.success(), "exit {status:?}:\n{}", daemon.log());
    // The attempt was interrupted, not lost: the next start delivers it.
    let conf = write_conf(&dir, MAILDIR_ROUTE);
    let daemon = Daemon::start(&conf);
    wait_for_mail(&dir.maildir(), "bob", 1);
    wait_queue_empty(&dir.spool());
    daemon.terminate();
}
