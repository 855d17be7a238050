//! The queue manager's promises (issue 9): one schedule entry per message,
//! no repeat delivery when an outcome cannot be recorded, limits that are
//! reservations, and a control socket that says what it did.

mod support;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use detad::queue::control;
use detad::queue::delivery::Delivery;
use detad::queue::envelope::{Envelope, Recipient};
use detad::queue::manager::{ControlAnswer, Finish, Manager};
use detad::queue::offline;
use detad::queue::spool::{FaultInjector, Spool, SpoolOp};
use detad::smtp::status::EnhancedStatus;
use support::{
    Client, Server, TempDir, WAIT, assert_never, config, message, test_options, wait_queue_empty,
    wait_until,
};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Commits a message to bob whose delivery was deferred and is due at
/// `next`, as a crash would leave it; returns its id.
fn deferred_message(spool: &Spool, next: i64) -> String {
    let id = spool.new_id(now() as u128 * 1_000_000);
    let mut r = Recipient::new("bob@example.com".into(), None, None);
    r.last = Some(Delivery::deferred(
        EnhancedStatus::of(4, 4, 1),
        "uplink down",
    ));
    let env = Envelope {
        attempts: 1,
        next_attempt: next,
        ..Envelope::new(id.clone(), "alice@client.test".into(), now(), vec![r])
    };
    let mut w = spool.create_content(&id).unwrap();
    w.write(message("deferred", "x").as_bytes()).unwrap();
    offline::commit(spool.root(), false, w.finish().unwrap(), env).unwrap();
    id
}

/// Asks the manager through `handle` and waits for its answer.
fn ask(handle: &detad::queue::manager::QueueHandle, line: &str) -> ControlAnswer {
    let (tx, rx) = crossbeam_channel::bounded(1);
    handle.control(
        line,
        Box::new(move |a| {
            let _ = tx.send(a);
        }),
    );
    rx.recv_timeout(WAIT).expect("an answer")
}

#[test]
fn retry_twice_leaves_one_schedule_entry() {
    let dir = TempDir::new("retry2");
    let spool = Spool::open(&dir.spool(), false).unwrap();
    let busy = deferred_message(&spool, 0);
    let id = deferred_message(&spool, now() + 3600);
    let cfg = Arc::new(config(&dir, "workers = 1\n"));
    let (manager, handle, attempts) =
        Manager::start(Spool::open(&dir.spool(), false).unwrap(), cfg).expect("start the manager");
    let thread = std::thread::spawn(move || manager.run());
    // The only worker is busy with the other message: nothing else goes out.
    let first = attempts.recv_timeout(WAIT).expect("the due message");
    assert_eq!(first.env.id, busy);
    for _ in 0..2 {
        let answer = ask(&handle, &format!("retry {id}"));
        assert_eq!(
            answer,
            ControlAnswer::Done(format!("retry {id}: scheduled now"))
        );
    }
    assert_eq!(handle.attempt_done(&busy), Finish::Done);
    let a = attempts.recv_timeout(WAIT).expect("the retried message");
    assert_eq!(
        (a.env.id.as_str(), a.due.as_slice()),
        (id.as_str(), &[0][..])
    );
    assert_eq!(handle.attempt_done(&id), Finish::Done);
    // Two retries, one entry: no second attempt follows.
    match attempts.recv_timeout(Duration::from_millis(1500)) {
        Err(_) => {}
        Ok(again) => panic!("a second attempt of {} came", again.env.id),
    }
    handle.shutdown();
    drop(attempts);
    thread.join().unwrap();
}

/// Fails appends to message files while armed.
#[derive(Debug, Default)]
struct FailAppends(AtomicBool);

impl FaultInjector for FailAppends {
    fn check(&self, op: SpoolOp) -> io::Result<()> {
        if op == SpoolOp::Append && self.0.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected: no space left on device"));
        }
        Ok(())
    }
}

/// A pipe route that notes each call in `{dir}/calls` and delivers.
const COUNTING_PIPE: &str =
    "route = * pipe:/bin/sh -c \"cat >/dev/null; echo $RECIPIENT >> {dir}/calls\"\n";

fn calls(dir: &TempDir) -> Vec<String> {
    fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_outcome_that_cannot_be_recorded_parks_the_message_and_nothing_repeats() {
    let dir = TempDir::new("parked");
    let faults = Arc::new(FailAppends::default());
    let options = detad::server::Options {
        faults: Some(faults.clone()),
        ..test_options()
    };
    let server = Server::start_with(config(&dir, COUNTING_PIPE), options);
    faults.0.store(true, Ordering::SeqCst);
    let mut c = server.ehlo();
    let reply = c.mail(
        "alice@client.test",
        &["one@example.com", "two@example.com"],
        &message("parked", "x"),
    );
    assert_eq!(reply.code, 250, "{reply}");
    wait_until("the first delivery", WAIT, || calls(&dir).len() == 1);
    // The first outcome could not be written: no further attempt, no repeat.
    assert_never(
        "a delivery while the spool takes no writes",
        Instant::now() + Duration::from_secs(3),
        || calls(&dir).len() != 1,
    );
    faults.0.store(false, Ordering::SeqCst);
    wait_until("the second recipient", WAIT, || calls(&dir).len() == 2);
    wait_queue_empty(&dir.spool());
    assert_eq!(calls(&dir), ["one@example.com", "two@example.com"]);
    c.quit();
    server.stop();
}

#[test]
fn control_socket_says_what_was_done_and_is_private() {
    let dir = TempDir::new("control");
    let spool = Spool::open(&dir.spool(), false).unwrap();
    let id = deferred_message(&spool, now() + 3600);
    let server = Server::start(config(&dir, "route = * maildir:{dir}/maildir\n"));
    let sock = control::socket_path(&dir.spool());
    let mode = fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let ask = |line: &str| control::request(&dir.spool(), line, WAIT).expect("an answer");
    assert_eq!(
        ask("remove 0000000000000001"),
        ControlAnswer::NotFound("no message 0000000000000001".into())
    );
    assert!(matches!(ask("remove ../x"), ControlAnswer::Refused(_)));
    assert!(matches!(ask("frobnicate"), ControlAnswer::Refused(_)));
    assert_eq!(
        ask("flush"),
        ControlAnswer::Done("flushed 1 message(s)".into())
    );
    support::wait_for_mail(&dir.maildir(), "bob", 1);
    wait_queue_empty(&dir.spool());
    assert_eq!(
        ask(&format!("remove {id}")),
        ControlAnswer::NotFound(format!("no message {id}"))
    );
    server.stop();
}

#[test]
fn removing_a_running_delivery_waits_for_it_to_stop() {
    let dir = TempDir::new("rmrun");
    let server = Server::start(config(&dir, &support::gated_pipe_route("*")));
    let mut c = server.ehlo();
    let reply = c.mail_to_bob("held", "x");
    let id = reply.text().rsplit(' ').next().unwrap().to_string();
    // The program runs (gated): the removal stops it and answers then.
    std::thread::sleep(Duration::from_millis(300));
    let answer = control::request(&dir.spool(), &format!("remove {id}"), WAIT).unwrap();
    assert_eq!(answer, ControlAnswer::Done(format!("removed {id}")));
    wait_queue_empty(&dir.spool());
    support::open_gate(&dir);
    assert_never(
        "a removed message was delivered",
        Instant::now() + Duration::from_millis(800),
        || dir.join("out/bob@example.com").exists(),
    );
    c.quit();
    server.stop();
}

/// `n` clients at once, each after EHLO, each running `f`; their results.
fn concurrently<T: Send>(
    server: &Server,
    n: usize,
    f: impl Fn(usize, Client) -> T + Sync,
) -> Vec<T> {
    let start = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let c = server.ehlo();
                let (start, f) = (&start, &f);
                s.spawn(move || {
                    start.wait();
                    f(i, c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_deta_never_overshoots_max_detached() {
    let dir = TempDir::new("maxdet");
    let server = Server::start(config(
        &dir,
        &format!(
            "rdlv_mintimer = 1\nmax_detached = 2\nsessions = 8\nmax_sessions_per_ip = 8\n{}",
            support::gated_pipe_route("*")
        ),
    ));
    let codes = concurrently(&server, 6, |i, mut c| {
        let from = format!("<a{i}@client.test>");
        c.open_rdlv_data(&from, &["<bob@example.com>"], "RDLV maxtimer=1");
        c.send_content(&message("detach", "x"));
        c.expect(120, "gw.test");
        c.send("DETA");
        let code = c.reply().code;
        if code != 221 {
            // Refused: the client keeps waiting, then goes away.
            c.send("QUIT");
        }
        code
    });
    let detached = codes.iter().filter(|&&c| c == 221).count();
    assert_eq!(detached, 2, "{codes:?}");
    assert!(codes.iter().all(|&c| c == 221 || c == 452), "{codes:?}");
    support::open_gate(&dir);
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn concurrent_messages_never_overshoot_spool_max_bytes() {
    let dir = TempDir::new("maxbytes");
    let cap = 100_000u64;
    let server = Server::start(config(
        &dir,
        &format!(
            "spool_max_bytes = {cap}\nsessions = 8\nmax_sessions_per_ip = 8\n{}",
            support::gated_pipe_route("*")
        ),
    ));
    let body = "y".repeat(70) + "\r\n";
    let body = body.repeat(400);
    let codes = concurrently(&server, 8, |_, mut c| {
        c.open_data("<a@client.test>", &["<bob@example.com>"]);
        c.send_content(&message("big", &body));
        c.reply().code
    });
    let accepted = codes.iter().filter(|&&c| c == 250).count();
    assert!((1..8).contains(&accepted), "{codes:?}");
    assert!(codes.iter().all(|&c| c == 250 || c == 452), "{codes:?}");
    let used: u64 = support::queue(&dir.spool())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(used <= cap, "{used} octets spooled over a cap of {cap}");
    support::open_gate(&dir);
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn stale_maildir_tmp_files_are_removed_at_startup() {
    let dir = TempDir::new("staletmp");
    let tmp = dir.maildir().join("bob/tmp");
    fs::create_dir_all(&tmp).unwrap();
    let host = detad::config::kernel_hostname().replace(['/', ':'], "_");
    let stale = tmp.join(format!("1.M1P2147483646Q0.{host}"));
    fs::write(&stale, b"half a message").unwrap();
    let server = Server::start(config(&dir, "route = * maildir:{dir}/maildir\n"));
    assert!(!stale.exists(), "a crash's leftover stayed in tmp/");
    server.stop();
}

/// Counts commits and notes how many there were when each barrier
/// started; the first barrier waits (at most 10 s) until
/// `commits_to_wait` messages have been committed behind it.
#[derive(Debug, Default)]
struct SlowFirstBarrier {
    commits: std::sync::atomic::AtomicUsize,
    barriers: std::sync::atomic::AtomicUsize,
    commits_at_barrier: std::sync::Mutex<Vec<usize>>,
    commits_to_wait: usize,
    waited_out: AtomicBool,
}

impl FaultInjector for SlowFirstBarrier {
    fn check(&self, op: SpoolOp) -> io::Result<()> {
        match op {
            SpoolOp::Commit => {
                self.commits.fetch_add(1, Ordering::SeqCst);
            }
            SpoolOp::Barrier
                if {
                    let commits = self.commits.load(Ordering::SeqCst);
                    self.commits_at_barrier.lock().unwrap().push(commits);
                    self.barriers.fetch_add(1, Ordering::SeqCst) == 0
                } =>
            {
                let ok = wait_until_or(Duration::from_secs(10), || {
                    self.commits.load(Ordering::SeqCst) >= self.commits_to_wait
                });
                self.waited_out.store(!ok, Ordering::SeqCst);
            }
            _ => {}
        }
        Ok(())
    }
}

fn wait_until_or(limit: Duration, f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

#[test]
fn commits_that_arrive_during_a_barrier_share_the_next_one() {
    let dir = TempDir::new("groupcommit");
    let n = 6;
    let faults = Arc::new(SlowFirstBarrier {
        commits_to_wait: n,
        ..SlowFirstBarrier::default()
    });
    let options = detad::server::Options {
        faults: Some(faults.clone()),
        ..test_options()
    };
    let server = Server::start_with(
        config(
            &dir,
            &format!(
                // fsync on, as a gateway runs: each barrier is a real
                // `syncfs` on the syncer thread.
                "fsync = yes\nsessions = 8\nmax_sessions_per_ip = 8\n{}",
                support::gated_pipe_route("*")
            ),
        ),
        options,
    );
    let send = |i: usize, mut c: Client| {
        c.mail(
            &format!("a{i}@client.test"),
            &["bob@example.com"],
            &message("group", "x"),
        )
        .code
    };
    // The first message alone: its barrier starts, and waits in the syncer
    // until the others are committed behind it.
    let first = {
        let c = server.ehlo();
        std::thread::spawn(move || send(0, c))
    };
    wait_until("the first commit", WAIT, || {
        faults.barriers.load(Ordering::SeqCst) == 1
    });
    let mut codes = concurrently(&server, n - 1, |i, c| send(i + 1, c));
    codes.push(first.join().unwrap());
    assert_eq!(codes, vec![250; n]);
    // The manager went on committing while the first barrier ran (an
    // inline barrier would have held every other commit behind it), and
    // the commits that came meanwhile were answered by one more barrier.
    assert!(
        !faults.waited_out.load(Ordering::SeqCst),
        "the other commits never came while the first barrier ran"
    );
    // (Later barriers, for removals or deliveries, do not count.)
    let at = faults.commits_at_barrier.lock().unwrap().clone();
    assert_eq!(&at[..2], &[1, n], "commits when each barrier started");
    support::open_gate(&dir);
    wait_queue_empty(&dir.spool());
    server.stop();
}
