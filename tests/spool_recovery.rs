//! Restart from the spool alone (issue 2, design "The spool is the truth"):
//! spool states are crafted with the library's own `Spool` API while no
//! server runs (as a crash would leave them), then a server starts on them.

mod support;

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use detad::queue::codec::encode_record;
use detad::queue::delivery::Delivery;
use detad::queue::envelope::{Envelope, Mode, Notify, RcptState, Recipient};
use detad::queue::offline;
use detad::queue::spool::Spool;
use detad::smtp::status::EnhancedStatus;
use support::{
    Server, TempDir, config, delivered, files_in, message, queue, quit_and_stop, wait_for_mail,
    wait_queue_empty,
};

const MAILDIR_ROUTE: &str = "route = * maildir:{dir}/maildir\n";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros()
}

fn open_spool(dir: &TempDir) -> Spool {
    Spool::open(&dir.spool(), false).expect("open the spool")
}

/// A new envelope in `spool`, as the session would have committed it.
fn envelope(spool: &Spool, mode: Mode, rcpts: &[&str]) -> Envelope {
    let recipients = rcpts
        .iter()
        .map(|r| Recipient::new(r.to_string(), None, None))
        .collect();
    Envelope {
        client_ip: "127.0.0.1".into(),
        helo: "client.test".into(),
        mode,
        ..Envelope::new(
            spool.new_id(micros()),
            "alice@client.test".into(),
            now(),
            recipients,
        )
    }
}

/// A server on `dir` that delivers everything to the Maildir.
fn maildir_server(dir: &TempDir) -> Server {
    Server::start(config(dir, MAILDIR_ROUTE))
}

/// Writes the content and commits the envelope (in whatever state it is
/// in), as a crash would leave it.
fn commit(spool: &Spool, env: Envelope, subject: &str) -> String {
    let mut writer = spool.create_content(&env.id).expect("create content");
    writer
        .write(message(subject, "from the spool").as_bytes())
        .expect("write content");
    let content = writer.finish().expect("finish content");
    let id = env.id.clone();
    offline::commit(spool.root(), false, content, env).expect("commit");
    id
}

/// Commits `env` with `subject` to `spool`, the spool of `dir`, as a
/// crash would have left it, closes it, and starts a [`maildir_server`].
fn restart_with(dir: &TempDir, spool: Spool, env: Envelope, subject: &str) -> Server {
    commit(&spool, env, subject);
    drop(spool);
    maildir_server(dir)
}

#[test]
fn message_in_the_spool_at_startup_is_delivered() {
    let dir = TempDir::new("startup");
    let spool = open_spool(&dir);
    let env = envelope(&spool, Mode::Queued, &["bob@example.com"]);
    let server = restart_with(&dir, spool, env, "left over");
    let mail = wait_for_mail(&dir.maildir(), "bob", 1);
    assert!(mail[0].contains("Subject: left over\n"), "{}", mail[0]);
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn deferred_message_is_delivered_by_the_next_server() {
    // The first server's route defers everything (EX_TEMPFAIL).
    let (dir, first, mut c) = support::session(
        "deferred",
        "route = * pipe:/bin/sh -c \"cat >/dev/null; echo uplink down >&2; exit 75\"\n\
         retry_min = 1\nretry_max = 1\n",
    );
    c.mail_to_bob("deferred", "try again");
    c.quit();
    let spool = open_spool(&dir);
    support::wait_for_deferral(&spool);
    first.stop();
    // Stopped cleanly: the message and its state are in the spool, nothing
    // half-written anywhere.
    let ids = spool.ids().unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let env = spool.load(&ids[0]).unwrap();
    assert_eq!(env.recipients[0].state(), RcptState::Deferred);
    let diag = env.recipients[0]
        .last
        .as_ref()
        .unwrap()
        .diagnostic
        .as_ref()
        .unwrap();
    assert!(diag.to_string().contains("uplink down"), "{diag}");
    assert!(env.next_attempt > 0);
    assert!(files_in(&dir.spool().join("tmp")).is_empty());
    // The uplink is back: the persisted schedule brings it out, no flush.
    let second = Server::start(config(&dir, &format!("{MAILDIR_ROUTE}retry_min = 1\n")));
    let mail = wait_for_mail(&dir.maildir(), "bob", 1);
    assert!(mail[0].contains("Subject: deferred\n"));
    wait_queue_empty(&dir.spool());
    second.stop();
}

#[test]
fn flush_retries_a_deferred_message_now() {
    let dir = TempDir::new("flush");
    let spool = open_spool(&dir);
    let mut env = envelope(&spool, Mode::Queued, &["bob@example.com"]);
    env.attempts = 1;
    env.next_attempt = now() + 3600;
    env.recipients[0].last = Some(Delivery::deferred(
        EnhancedStatus::of(4, 3, 0),
        "uplink down",
    ));
    commit(&spool, env, "flushed");
    let server = maildir_server(&dir);
    // Not due for an hour; the flush (SIGUSR1, `detad flush`) says now.
    assert!(delivered(&dir.maildir(), "bob").is_empty());
    server.flush();
    wait_for_mail(&dir.maildir(), "bob", 1);
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn startup_purges_tmp_and_quarantines_what_was_never_committed() {
    let dir = TempDir::new("purge");
    let spool = open_spool(&dir);
    // Crashes in the middle of receiving content.
    fs::write(dir.spool().join("tmp/0000000000000001"), b"Subject: half").unwrap();
    // A crash in the middle of the commit: content, no envelope record.
    let torn = spool.new_id(micros());
    fs::write(
        dir.spool().join("queue").join(&torn),
        b"Subject: torn\r\n\r\nx\r\n",
    )
    .unwrap();
    drop(spool);
    let server = maildir_server(&dir);
    // Recovery runs before start returns.
    assert!(queue(&dir.spool()).is_empty(), "{:?}", queue(&dir.spool()));
    assert!(files_in(&dir.spool().join("tmp")).is_empty());
    assert!(dir.spool().join("corrupt").join(&torn).exists());
    server.stop();
    assert!(
        !dir.maildir().exists(),
        "an uncommitted message was delivered"
    );
}

#[test]
fn corrupt_records_and_torn_content_are_quarantined_and_the_rest_delivered() {
    let dir = TempDir::new("corrupt");
    let spool = open_spool(&dir);
    let good = commit(
        &spool,
        envelope(&spool, Mode::Queued, &["bob@example.com"]),
        "good",
    );
    // A record cut short (no trailer), and a file that is not one at all.
    let env = envelope(&spool, Mode::Queued, &["carol@example.com"]);
    let truncated = env.id.clone();
    let mut bytes = b"x\r\n".to_vec();
    let record = encode_record(&env, bytes.len() as u64);
    bytes.extend_from_slice(&record[..record.len() - 5]);
    fs::write(dir.spool().join("queue").join(&truncated), bytes).unwrap();
    let garbage = spool.new_id(micros());
    fs::write(
        dir.spool().join("queue").join(&garbage),
        b"\xff\xfe not a message",
    )
    .unwrap();
    // A record that checks out over content that does not (a power cut
    // before the commit was durable).
    let torn = commit(
        &spool,
        envelope(&spool, Mode::Queued, &["dave@example.com"]),
        "torn",
    );
    let path = dir.spool().join("queue").join(&torn);
    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    drop(spool);
    let server = maildir_server(&dir);
    let mail = wait_for_mail(&dir.maildir(), "bob", 1);
    assert!(mail[0].contains("Subject: good"));
    wait_queue_empty(&dir.spool());
    let corrupt: Vec<String> = files_in(&dir.spool().join("corrupt"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for id in [&truncated, &garbage, &torn] {
        assert!(corrupt.contains(id), "{id} not in corrupt/: {corrupt:?}");
    }
    assert!(!corrupt.contains(&good));
    assert!(delivered(&dir.maildir(), "carol").is_empty());
    assert!(delivered(&dir.maildir(), "dave").is_empty());
    server.stop();
}

#[test]
fn rdlv_job_without_its_session_is_dropped_at_startup() {
    let dir = TempDir::new("reliable");
    let spool = open_spool(&dir);
    // A crash before the final reply: the client never heard a 250.
    let env = envelope(&spool, Mode::Reliable, &["bob@example.com"]);
    let server = restart_with(&dir, spool, env, "unanswered");
    assert!(queue(&dir.spool()).is_empty(), "{:?}", queue(&dir.spool()));
    server.stop();
    assert!(delivered(&dir.maildir(), "bob").is_empty());
}

#[test]
fn detached_job_is_resumed_at_startup() {
    let dir = TempDir::new("detached");
    let spool = open_spool(&dir);
    let mut env = envelope(
        &spool,
        Mode::Detached,
        &["bob@example.com", "carol@example.com"],
    );
    env.recipients[1].notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    let server = restart_with(&dir, spool, env, "detached");
    wait_for_mail(&dir.maildir(), "bob", 1);
    wait_for_mail(&dir.maildir(), "carol", 1);
    // Its outcome goes out by DSN as for any detached job.
    let dsn = support::unfold(&wait_for_mail(&dir.maildir(), "alice", 1)[0]);
    assert!(
        dsn.contains("Final-Recipient: rfc822;carol@example.com"),
        "{dsn}"
    );
    assert!(dsn.contains("Action: delivered"), "{dsn}");
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn restart_neither_repeats_a_delivery_nor_forgets_one() {
    let dir = TempDir::new("nodup");
    let spool = open_spool(&dir);
    // A crash after bob's delivery was recorded, before carol's.
    let mut env = envelope(
        &spool,
        Mode::Queued,
        &["bob@example.com", "carol@example.com"],
    );
    env.attempts = 1;
    env.recipients[0].last = Some(Delivery::delivered());
    env.recipients[0].dsn_done = true;
    env.recipients[0].last_attempt = now();
    let server = restart_with(&dir, spool, env, "half done");
    wait_for_mail(&dir.maildir(), "carol", 1);
    wait_queue_empty(&dir.spool());
    assert!(
        delivered(&dir.maildir(), "bob").is_empty(),
        "bob got it twice"
    );
    server.stop();
}

#[test]
fn accepted_message_is_in_the_spool_before_the_250() {
    // A route that holds delivery for a while (gated), so the spool entry
    // can be looked at after the 250.
    let (dir, server, mut c) = support::session("durable", &support::gated_pipe_route("*"));
    let reply = c.mail_to_bob("durable", "kept");
    let id = reply
        .text()
        .rsplit(' ')
        .next()
        .expect("queue id in the 250")
        .to_string();
    let spool = open_spool(&dir);
    let env = spool.load(&id).expect("the envelope is committed");
    assert_eq!(env.reverse_path, "alice@client.test");
    assert_eq!(env.recipients[0].address, "bob@example.com");
    let content = fs::read_to_string(dir.spool().join("queue").join(&id)).unwrap();
    assert!(content.contains("Subject: durable\r\n"));
    support::open_gate(&dir);
    support::wait_for_file(&dir.join("out/bob@example.com"));
    wait_queue_empty(&dir.spool());
    quit_and_stop(c, server);
    // Nothing is left behind once delivered.
    assert!(spool.ids().unwrap().is_empty());
}
