//! Hostile clients and a failing spool (issue 10): tricklers cannot take
//! the server, NUL never travels, postmaster is always ours, and every
//! spool failure path answers as promised (fault injection).

mod support;

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use detad::queue::spool::{FaultInjector, SpoolOp};
use support::{
    Client, READ_TIMEOUT, Server, TempDir, config, message, open_gate, test_options, wait_for_mail,
    wait_queue_empty,
};

/// A connection from `source` (any 127.0.0.0/8 address is ours on Linux).
fn connect_from(source: &str, to: SocketAddr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd: OwnedFd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    let from: SocketAddr = format!("{source}:0").parse().expect("address");
    bind(&fd, &from)?;
    connect(&fd, &to)?;
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

/// Sends `bytes` one octet every `pace` until the server closes the
/// connection or `limit` passes; returns how long it stayed open.
fn trickle(mut stream: TcpStream, bytes: &[u8], pace: Duration, limit: Duration) -> Duration {
    let start = Instant::now();
    for b in bytes.iter().cycle() {
        if start.elapsed() > limit || stream.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(pace);
        // A closed connection shows on the next writes (EPIPE/reset).
    }
    start.elapsed()
}

#[test]
fn tricklers_cannot_take_the_server() {
    let dir = TempDir::new("trickle");
    let server = Server::start(config(
        &dir,
        "sessions = 2\ncommand_timeout = 2\ndata_timeout = 2\ndata_min_rate = 1000\n\
         route = * maildir:{dir}/maildir\n",
    ));
    let addr = server.addr;
    let started = Instant::now();
    let limit = Duration::from_secs(20);
    // 2 x sessions tricklers from other addresses: two inside DATA (their
    // commands pipelined), then two inside a command line.
    let mut tricklers = Vec::new();
    for (i, inside_data) in [(2, true), (3, true), (4, false), (5, false)] {
        let mut stream = connect_from(&format!("127.0.0.{i}"), addr).unwrap();
        if inside_data {
            stream
                .write_all(
                    b"EHLO t\r\nMAIL FROM:<t@x.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n",
                )
                .unwrap();
        }
        let body: &[u8] = if inside_data {
            b"Subject: slow\r\n"
        } else {
            b"MAIL FROM:<slow"
        };
        let pace = Duration::from_millis(300);
        tricklers.push(std::thread::spawn(move || {
            trickle(stream, body, pace, limit)
        }));
        std::thread::sleep(Duration::from_millis(50));
    }
    // A legitimate client keeps trying; it must be served within
    // command_timeout + 1 s of the start.
    let served = loop {
        let mut c = Client::connect(addr);
        match c.read_reply() {
            Ok(Some(r)) if r.code == 220 => break started.elapsed(),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
        assert!(started.elapsed() < limit, "never served");
    };
    assert!(served <= Duration::from_secs(3), "served after {served:?}");
    for t in tricklers {
        let open = t.join().unwrap();
        assert!(open < Duration::from_secs(6), "a trickler stayed {open:?}");
    }
    server.stop();
}

#[test]
fn a_message_with_nul_is_refused_after_its_terminator_and_never_stored() {
    let dir = TempDir::new("nul");
    let server = Server::start(config(&dir, "route = * maildir:{dir}/maildir\n"));
    let mut c = server.ehlo();
    c.open_data("<a@client.test>", &["<bob@example.com>"]);
    c.send_raw(b"Subject: nul\r\n\r\nbefore\x00.\r\nafter\r\n.\r\n");
    c.expect(554, "5.6.0");
    c.command("NOOP", 250);
    assert!(support::queue(&dir.spool()).is_empty());
    c.quit();
    server.stop();
}

#[test]
fn postmaster_is_always_accepted_and_reaches_the_postmaster() {
    let dir = TempDir::new("postmaster");
    // Nobody may relay and no route covers our own name: postmaster still.
    let server = Server::start(config(
        &dir,
        "relay_networks = 192.0.2.0/24\nroute = example.com maildir:{dir}/other\n",
    ));
    let mut c = server.ehlo();
    c.command("MAIL FROM:<a@client.test>", 250);
    c.command("RCPT TO:<bob@example.com>", 554);
    c.command("RCPT TO:<PostMaster>", 250);
    c.command("RCPT TO:<postmaster@GW.TEST>", 250);
    c.command("DATA", 354);
    c.send_content(&message("to the postmaster", "x"));
    c.expect(250, "2.0.0");
    let mail = wait_for_mail(&dir.join("maildir"), "postmaster", 2);
    assert!(mail[0].contains("Subject: to the postmaster"));
    c.quit();
    server.stop();
    // With `postmaster = ADDRESS` it goes there.
    let dir = TempDir::new("postmaster2");
    let server = Server::start(config(
        &dir,
        "postmaster = admin@example.com\nroute = example.com maildir:{dir}/maildir\n",
    ));
    let mut c = server.ehlo();
    let r = c.mail(
        "a@client.test",
        &["postmaster"],
        &message("to the admin", "x"),
    );
    assert_eq!(r.code, 250, "{r}");
    wait_for_mail(&dir.maildir(), "admin", 1);
    c.quit();
    server.stop();
}

/// Fails the chosen spool operations while they are in the set.
#[derive(Debug, Default)]
struct Faults(Mutex<HashSet<SpoolOpKey>>);

/// `SpoolOp` as a set key.
type SpoolOpKey = u8;

fn key(op: SpoolOp) -> SpoolOpKey {
    match op {
        SpoolOp::WriteContent => 0,
        SpoolOp::Commit => 1,
        SpoolOp::Append => 2,
        SpoolOp::Barrier => 3,
        SpoolOp::Remove => 4,
    }
}

impl Faults {
    fn fail(&self, op: SpoolOp) {
        self.0.lock().unwrap().insert(key(op));
    }
    fn heal(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl FaultInjector for Faults {
    fn check(&self, op: SpoolOp) -> io::Result<()> {
        if self.0.lock().unwrap().contains(&key(op)) {
            return Err(io::Error::other("injected: I/O error"));
        }
        Ok(())
    }
}

fn faulty_server(dir: &TempDir, text: &str) -> (Server, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let options = detad::server::Options {
        faults: Some(faults.clone()),
        ..test_options()
    };
    (Server::start_with(config(dir, text), options), faults)
}

#[test]
fn spool_failures_while_receiving_answer_451_and_keep_nothing() {
    let dir = TempDir::new("faultdata");
    let (server, faults) = faulty_server(&dir, "route = * maildir:{dir}/maildir\n");
    let mut c = server.ehlo();
    for op in [SpoolOp::WriteContent, SpoolOp::Commit, SpoolOp::Barrier] {
        faults.fail(op);
        let r = c.mail("a@client.test", &["bob@example.com"], &message("lost", "x"));
        assert_eq!(
            (r.code, r.text().starts_with("4.3.0")),
            (451, true),
            "{op:?}: {r}"
        );
        faults.heal();
        assert!(support::queue(&dir.spool()).is_empty(), "{op:?}");
        assert!(
            support::files_in(&dir.spool().join("tmp")).is_empty(),
            "{op:?}"
        );
    }
    c.mail_to_bob("kept", "after the disk came back");
    wait_for_mail(&dir.maildir(), "bob", 1);
    c.quit();
    server.stop();
}

#[test]
fn an_rdlv_conclusion_that_cannot_be_written_answers_451() {
    let dir = TempDir::new("faultrdlv");
    let (server, faults) = faulty_server(
        &dir,
        "rdlv_mintimer = 1\nroute = defer.test pipe:/bin/sh -c \"echo later >&2; exit 75\"\n",
    );
    let mut c = server.ehlo();
    c.open_rdlv_data("<a@client.test>", &["<b@defer.test>"], "RDLV maxtimer=1");
    // The deferred recipient must be kept after the 250: that write fails.
    faults.fail(SpoolOp::Append);
    c.send_content(&message("rdlv", "x"));
    let (_, reply) = c.cont_until_final();
    assert_eq!(reply.code, 451, "{reply}");
    assert!(reply.text().contains("nothing kept"), "{reply}");
    faults.heal();
    wait_queue_empty(&dir.spool());
    c.quit();
    server.stop();
}

#[test]
fn deta_that_cannot_be_marked_gets_452_and_the_client_keeps_waiting() {
    let dir = TempDir::new("faultdeta");
    let (server, faults) = faulty_server(
        &dir,
        &format!("rdlv_mintimer = 1\n{}", support::gated_pipe_route("*")),
    );
    let mut c = server.ehlo();
    c.open_rdlv_data("<a@client.test>", &["<bob@example.com>"], "RDLV maxtimer=1");
    c.send_content(&message("deta", "x"));
    c.expect(120, "gw.test");
    faults.fail(SpoolOp::Append);
    c.send("DETA");
    c.expect(452, "4.3.2");
    faults.heal();
    // Still held: the next 120 comes, and DETA works now.
    c.expect(120, "gw.test");
    c.send("DETA");
    c.expect(221, "2.0.0");
    open_gate(&dir);
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn a_dsn_that_cannot_be_written_is_sent_once_the_spool_recovers() {
    let dir = TempDir::new("faultdsn");
    let (server, faults) = faulty_server(
        &dir,
        &format!(
            "retry_min = 1\nretry_max = 1\nroute = client.test maildir:{{dir}}/maildir\n{}",
            support::gated_failing_pipe_route("fail.test", "no such user")
        ),
    );
    let mut c = server.ehlo();
    let r = c.mail(
        "alice@client.test",
        &["bob@fail.test"],
        &message("doomed", "x"),
    );
    assert_eq!(r.code, 250, "{r}");
    c.quit();
    // The delivery fails once the gate opens; its report cannot be written.
    faults.fail(SpoolOp::WriteContent);
    open_gate(&dir);
    support::assert_never(
        "a DSN while the spool takes no new files",
        Instant::now() + Duration::from_secs(2),
        || !support::delivered(&dir.maildir(), "alice").is_empty(),
    );
    assert_eq!(
        support::queue(&dir.spool()).len(),
        1,
        "the original keeps owing it"
    );
    faults.heal();
    let dsn = wait_for_mail(&dir.maildir(), "alice", 1);
    assert!(dsn[0].contains("Action: failed"), "{}", dsn[0]);
    wait_queue_empty(&dir.spool());
    server.stop();
}
