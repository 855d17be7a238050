//! RDLV (120 keep-alives, CONT) and DETA (detach) against a running server
//! (issue 3). `rdlv_mintimer = 1` puts a 120 about 0.9 s after the end of
//! data; the slow routes are gated `pipe:` programs that finish only when
//! the test opens the gate, so no test races the clock.

mod support;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use support::{
    Client, Server, TempDir, assert_never, delivered, failing_pipe_route, gated_pipe_route,
    message, open_gate, queue, quit_and_stop, slow_pipe_route, transcript, wait_for_file,
    wait_queue_empty, wait_until,
};

/// After the gate opens, a program that was not killed writes its file
/// within about 50 ms; watching this long proves it never will.
const AFTERWARDS: Duration = Duration::from_millis(600);
/// A 120 is due 0.9 s after the end of data; allow for a loaded machine.
const KEEPALIVE_BOUND: Duration = Duration::from_millis(2500);

/// Senders' domain (DSNs land here), a gated pipe for `example.net` (the
/// draft's jones), a fast pipe, and one that fails at once.
fn rdlv_config(extra: &str) -> String {
    format!(
        "rdlv_mintimer = 1\nroute = example.com maildir:{{dir}}/maildir\n{}{}{}{extra}",
        gated_pipe_route("example.net"),
        slow_pipe_route("fast.test", "0"),
        failing_pipe_route("fail.test", "0", "no such mailbox here"),
    )
}

/// A test directory named `name` and a server with [`rdlv_config`].
fn start(name: &str, extra: &str) -> (TempDir, Server) {
    support::serve(name, &rdlv_config(extra))
}

/// [`start`], and a client past EHLO.
fn session(name: &str, extra: &str) -> (TempDir, Server, Client) {
    support::session(name, &rdlv_config(extra))
}

/// Opens the gate, then checks that `rcpt` never gets the message.
#[track_caller]
fn assert_never_delivered(dir: &TempDir, rcpts: &[&str]) {
    open_gate(dir);
    assert_never(
        "an aborted job was delivered",
        Instant::now() + AFTERWARDS,
        || rcpts.iter().any(|r| out(dir, r).exists()),
    );
}

/// Where the slow pipe writes the message for `rcpt`.
fn out(dir: &TempDir, rcpt: &str) -> PathBuf {
    dir.join("out").join(rcpt)
}

/// Opens the gate; the held job then delivers the message with `subject`
/// to jones@example.net and leaves the queue. Returns what was delivered.
#[track_caller]
fn jones_gets_it_after_the_gate(dir: &TempDir, subject: &str) -> String {
    open_gate(dir);
    let text = wait_for_file(&out(dir, "jones@example.net"));
    assert!(text.contains(&format!("Subject: {subject}\r\n")), "{text}");
    wait_queue_empty(&dir.spool());
    text
}

/// MAIL, RCPT, RDLV maxtimer=1, DATA, each answered; then the content.
/// Returns when the end of data was sent.
#[track_caller]
fn rdlv_transaction(c: &mut Client, from: &str, rcpt: &str) -> Instant {
    c.open_rdlv_data(
        &format!("<{from}>"),
        &[&format!("<{rcpt}>")],
        "RDLV maxtimer=1",
    );
    c.send_content(&message("rdlv", "processing takes a while"));
    Instant::now()
}

/// [`rdlv_transaction`], then its first 120 within the keep-alive bound.
#[track_caller]
fn rdlv_to_first_keepalive(c: &mut Client, from: &str, rcpt: &str) {
    let end = rdlv_transaction(c, from, rcpt);
    expect_keepalive(c, end);
}

/// Reads the 120 that must come within the keep-alive interval.
#[track_caller]
fn expect_keepalive(c: &mut Client, since: Instant) {
    c.expect(120, "gw.test DATA processing in progress");
    let took = since.elapsed();
    assert!(
        took < KEEPALIVE_BOUND,
        "the 120 took {took:?} (interval 1 s)"
    );
}

#[test]
fn ehlo_advertises_rdlv_with_mintimer_deta_and_dsn() {
    let (_dir, server) = start("ehlo", "");
    let mut c = server.client();
    c.send("EHLO client.test");
    let reply = c.expect(250, "gw.test greets client.test");
    for keyword in [
        "RDLV mintimer=1",
        "DETA",
        "DSN",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(
            reply.lines.iter().any(|l| l == keyword),
            "EHLO lacks {keyword}: {reply}"
        );
    }
    quit_and_stop(c, server);
}

#[test]
fn rdlv_outside_a_transaction_before_rcpt_or_repeated_is_bad_sequence() {
    let (_dir, server, mut c) = session("rdlvseq", "");
    transcript(
        &mut c,
        "C: RDLV maxtimer=1
         S: 503 5.5.1
         C: MAIL FROM:<alice@example.com>
         S: 250
         C: RDLV maxtimer=1
         S: 503 5.5.1
         C: RCPT TO:<bob@fast.test>
         S: 250
         C: RDLV maxtimer=1
         S: 200 2.0.0 reliable delivery OK
         C: RDLV maxtimer=1
         S: 503 5.5.1
         C: RDLV
         S: 503 5.5.1
         C: RSET
         S: 250
         C: RDLV
         S: 503 5.5.1",
    );
    quit_and_stop(c, server);
}

#[test]
fn maxtimer_out_of_range_or_malformed_is_a_syntax_error() {
    let (_dir, server, mut c) = session("maxtimer", "rdlv_mintimer = 5\n");
    c.mail_rcpt("<alice@example.com>", &["<bob@fast.test>"]);
    for bad in [
        "RDLV maxtimer=4",
        "RDLV maxtimer=0",
        "RDLV maxtimer=601",
        "RDLV maxtimer=99999",
        "RDLV maxtimer=999999",
        "RDLV maxtimer=abc",
        "RDLV maxtimer=",
        "RDLV maxtimer=-1",
        "RDLV mintimer=5",
        "RDLV 5",
        "RDLV maxtimer=5 extra",
    ] {
        c.send(bad);
        c.expect(501, "5.5.4");
    }
    // A refused RDLV leaves the transaction as it was: a good one still works.
    c.command("RDLV maxtimer=600", 200);
    c.command("RSET", 250);
    c.mail_rcpt("<alice@example.com>", &["<bob@fast.test>"]);
    c.command("rdlv MAXTIMER=5", 200);
    quit_and_stop(c, server);
}

/// draft-burger-smtp-deta-00 §4.1, with DATA instead of BURL.
#[test]
fn detached_submit_example_4_1() {
    let (dir, server) = start("ex41", "");
    let mut c = server.client();
    transcript(
        &mut c,
        "C: EHLO example.com
         S: 250-gw.test greets example.com
         S: 250-PIPELINING
         S: 250-8BITMIME
         S: 250-SIZE
         S: 250-ENHANCEDSTATUSCODES
         S: 250-DSN
         S: 250-RDLV mintimer=1
         S: 250-DETA
         S: 250-CHUNKING
         S: 250-SMTPUTF8
         S: 250 HELP
         C: MAIL FROM:<smith@example.com>
         S: 250
         C: RCPT TO:<jones@example.net>
         S: 250
         C: RDLV maxtimer=1
         S: 200
         C: DATA
         S: 354 start mail input",
    );
    let lots = "lots and lots of data\r\n".repeat(2000);
    c.send_content(&message("example 4.1", &lots));
    let end = Instant::now();
    expect_keepalive(&mut c, end);
    transcript(
        &mut c,
        "C: DETA
         S: 221 2.0.0 gw.test closing transmission channel
         S! closed",
    );
    assert!(!out(&dir, "jones@example.net").exists());
    let text = jones_gets_it_after_the_gate(&dir, "example 4.1");
    assert!(text.contains(&lots), "content damaged");
    // No NOTIFY: a success is not reported.
    assert!(delivered(&dir.maildir(), "smith").is_empty());
    server.stop();
}

/// draft-burger-smtp-deta-00 §4.2: the submission pipelined, DATA for BURL.
#[test]
fn pipelined_submit_example_4_2() {
    let (dir, server, mut c) = session("ex42", "");
    transcript(
        &mut c,
        "C: MAIL FROM:<handset@example.com> RET=HDRS ENVID=A123bzq
         C: RCPT TO:<jones@example.net> NOTIFY=FAILURE ORCPT=rfc822;jones@example.com
         C: RDLV maxtimer=1
         C: DATA
         S: 250 2.1.0 sender <handset@example.com> OK
         S: 250 2.1.5 recipient <jones@example.net> OK
         S: 200 2.0.0 reliable delivery OK
         S: 354",
    );
    c.send_content(&message("example 4.2", "from the outbox"));
    expect_keepalive(&mut c, Instant::now());
    transcript(
        &mut c,
        "C: DETA
         S: 221 2.0.0
         S! closed",
    );
    jones_gets_it_after_the_gate(&dir, "example 4.2");
    // NOTIFY=FAILURE and it succeeded: no DSN.
    assert!(delivered(&dir.maildir(), "handset").is_empty());
    server.stop();
}

#[test]
fn cont_keeps_waiting_until_the_final_250() {
    let (dir, server, mut c) = session("contloop", "");
    let end = rdlv_transaction(&mut c, "alice@example.com", "jones@example.net");
    let mut keepalives = 0;
    let reply = loop {
        let reply = c.reply();
        if reply.code != 120 {
            break reply;
        }
        keepalives += 1;
        // Two intervals pass, then processing ends.
        if keepalives == 2 {
            open_gate(&dir);
        }
        c.send("CONT");
    };
    assert!(keepalives >= 2, "got {keepalives} 120s");
    assert!(
        end.elapsed() >= Duration::from_millis(1600),
        "120s too fast"
    );
    assert_eq!(reply.code, 250, "{reply}");
    assert!(
        reply.text().starts_with("2.0.0 ") && reply.text().contains("delivered to 1 recipient"),
        "{reply}"
    );
    // The 250 is the outcome: delivery happened before it.
    assert!(out(&dir, "jones@example.net").exists());
    wait_queue_empty(&dir.spool());
    // The session goes on after the final reply.
    c.command("NOOP", 250);
    quit_and_stop(c, server);
}

#[test]
fn fast_job_gets_its_final_reply_without_a_120() {
    let (dir, server, mut c) = session("fast", "");
    rdlv_transaction(&mut c, "alice@example.com", "bob@fast.test");
    c.expect(250, "2.0.0");
    assert!(out(&dir, "bob@fast.test").exists());
    wait_queue_empty(&dir.spool());
    quit_and_stop(c, server);
}

#[test]
fn client_vanishing_after_a_120_aborts_the_job() {
    let (dir, server, mut c) = session("vanish", "max_inflight_per_sender = 1\n");
    rdlv_to_first_keepalive(&mut c, "alice@example.com", "jones@example.net");
    c.vanish();
    wait_queue_empty(&dir.spool());
    assert_never_delivered(&dir, &["jones@example.net"]);
    assert!(queue(&dir.spool()).is_empty());
    assert!(
        delivered(&dir.maildir(), "alice").is_empty(),
        "no DSN after an abort"
    );
    // The aborted job no longer counts against its sender.
    let mut again = server.ehlo();
    again.command("MAIL FROM:<alice@example.com>", 250);
    quit_and_stop(again, server);
}

#[test]
fn silence_after_a_120_times_out_and_aborts_the_job() {
    let (dir, server, mut c) = session("silence", "");
    rdlv_to_first_keepalive(&mut c, "alice@example.com", "jones@example.net");
    // No CONT, no DETA: after the interval the server gives up.
    c.expect(421, "4.4.2");
    c.expect_closed();
    wait_queue_empty(&dir.spool());
    assert_never_delivered(&dir, &["jones@example.net"]);
    server.stop();
}

#[test]
fn any_command_but_cont_or_deta_after_a_120_aborts_the_job() {
    let (dir, server) = start("abortcmd", "");
    // Three clients at once, each answering its 120 with something else.
    let cases: [(&str, &str, u16); 3] = [
        ("bob@example.net", "RSET", 250),
        ("carol@example.net", "NOOP", 503),
        ("dave@example.net", "QUIT", 221),
    ];
    let mut clients = Vec::new();
    for (rcpt, _, _) in cases {
        let mut c = server.ehlo();
        rdlv_transaction(&mut c, "alice@example.com", rcpt);
        clients.push(c);
    }
    for (c, (_, answer, code)) in clients.iter_mut().zip(cases) {
        c.expect(120, "gw.test");
        c.command(answer, code);
    }
    for (mut c, (_, answer, _)) in clients.into_iter().zip(cases) {
        if answer == "QUIT" {
            c.expect_closed();
        } else {
            // The transaction is gone, the session is not.
            c.command("NOOP", 250);
            c.command("RCPT TO:<bob@fast.test>", 503);
            c.quit();
        }
    }
    wait_queue_empty(&dir.spool());
    let rcpts: Vec<&str> = cases.iter().map(|(rcpt, _, _)| *rcpt).collect();
    assert_never_delivered(&dir, &rcpts);
    assert!(
        delivered(&dir.maildir(), "alice").is_empty(),
        "no DSN after an abort"
    );
    server.stop();
}

#[test]
fn deta_or_cont_without_a_pending_120_is_bad_sequence() {
    let (dir, server, mut c) = session("no120", "");
    transcript(
        &mut c,
        "C: CONT
         S: 503 5.5.1
         C: DETA
         S: 503 5.5.1
         C: MAIL FROM:<alice@example.com>
         S: 250
         C: RCPT TO:<bob@fast.test>
         S: 250
         C: DETA
         S: 503 5.5.1
         C: RDLV
         S: 200
         C: CONT
         S: 503 5.5.1
         C: DATA
         S: 354",
    );
    // DETA pipelined right after the dot of a fast job: the final reply
    // comes first, then the DETA is refused; nothing detaches or closes.
    c.send_raw(b"Subject: fast\r\n\r\nbody\r\n.\r\nDETA\r\n");
    c.expect(250, "2.0.0");
    c.expect(503, "5.5.1");
    c.command("NOOP", 250);
    assert!(out(&dir, "bob@fast.test").exists());
    quit_and_stop(c, server);
}

#[test]
fn deta_pipelined_after_the_dot_does_not_answer_the_120() {
    let (dir, server, mut c) = session("earlydeta", "");
    c.open_rdlv_data(
        "<alice@example.com>",
        &["<jones@example.net>"],
        "RDLV maxtimer=1",
    );
    // The client cannot have seen a 120 when it sent this DETA.
    c.send_raw(b"Subject: early\r\n\r\nbody\r\n.\r\nDETA\r\n");
    let end = Instant::now();
    expect_keepalive(&mut c, end);
    c.expect(503, "5.5.1");
    // Still attached: the real answer to the 120 decides.
    open_gate(&dir);
    c.send("CONT");
    let (_, reply) = c.cont_until_final();
    assert_eq!(reply.code, 250, "{reply}");
    assert!(out(&dir, "jones@example.net").exists());
    c.command("NOOP", 250);
    quit_and_stop(c, server);
}

#[test]
fn plain_transaction_gets_250_at_once_even_with_a_slow_route() {
    let (dir, server, mut c) = session("plain", "");
    c.open_data("<alice@example.com>", &["<bob@example.net>"]);
    c.send_content(&message("plain", "no rdlv"));
    // Processing cannot end before the gate opens: this is store and forward.
    c.expect(250, "2.0.0 queued as");
    assert!(!out(&dir, "bob@example.net").exists());
    open_gate(&dir);
    wait_for_file(&out(&dir, "bob@example.net"));
    quit_and_stop(c, server);
}

#[test]
fn sender_limit_refuses_a_second_job_of_the_same_sender() {
    let (dir, server, mut first) = session("limit", "max_inflight_per_sender = 1\n");
    rdlv_to_first_keepalive(&mut first, "a@example.com", "bob@example.net");
    first.send("CONT");
    // The first session keeps answering its 120s on its own.
    let waiting = thread::spawn(move || {
        let result = first.cont_until_final();
        first.quit();
        result
    });
    let mut second = server.ehlo();
    transcript(
        &mut second,
        "C: MAIL FROM:<a@example.com>
         S: 452 4.7.1
         C: MAIL FROM:<A@EXAMPLE.COM>
         S: 452 4.7.1
         C: MAIL FROM:<b@example.com>
         S: 250
         C: RSET
         S: 250",
    );
    open_gate(&dir);
    let (_, reply) = waiting.join().expect("first session");
    assert_eq!(reply.code, 250, "{reply}");
    // The job is over: the sender may start another.
    second.command("MAIL FROM:<a@example.com>", 250);
    quit_and_stop(second, server);
}

#[test]
fn detached_job_still_counts_against_the_sender_limit() {
    let (dir, server, mut first) = session("limitdeta", "max_inflight_per_sender = 1\n");
    rdlv_to_first_keepalive(&mut first, "a@example.com", "bob@example.net");
    first.command("DETA", 221);
    first.expect_closed();
    let mut second = server.ehlo();
    second.command("MAIL FROM:<a@example.com>", 452);
    open_gate(&dir);
    wait_for_file(&out(&dir, "bob@example.net"));
    wait_queue_empty(&dir.spool());
    second.command("MAIL FROM:<a@example.com>", 250);
    quit_and_stop(second, server);
}

#[test]
fn deta_beyond_max_detached_keeps_the_client_waiting() {
    let (dir, server, mut c) = session("maxdetached", "max_detached = 0\n");
    rdlv_to_first_keepalive(&mut c, "alice@example.com", "jones@example.net");
    c.send("DETA");
    c.expect(452, "4.3.2");
    open_gate(&dir);
    // Treated as CONT: the outcome still comes on this connection.
    let (_, reply) = c.cont_until_final();
    assert_eq!(reply.code, 250, "{reply}");
    assert!(out(&dir, "jones@example.net").exists());
    quit_and_stop(c, server);
}

#[test]
fn all_recipients_failing_permanently_get_550_with_the_diagnostic_and_no_dsn() {
    let (dir, server, mut c) = session("allfail", "");
    c.open_rdlv_data(
        "<alice@example.com>",
        &["<bob@fail.test> NOTIFY=FAILURE", "<carol@fail.test>"],
        "RDLV maxtimer=1",
    );
    c.send_content(&message("doomed", "will fail"));
    let (_, reply) = c.cont_until_final();
    assert_eq!(reply.code, 550, "{reply}");
    assert!(
        reply.text().starts_with("5.") && reply.text().contains("no such mailbox here"),
        "{reply}"
    );
    // The client heard it: nothing kept, no DSN.
    wait_queue_empty(&dir.spool());
    assert!(
        delivered(&dir.maildir(), "alice").is_empty(),
        "a DSN was sent"
    );
    c.command("NOOP", 250);
    quit_and_stop(c, server);
}

#[test]
fn shutdown_while_a_job_is_held_answers_421_and_drops_it() {
    let (dir, server, mut c) = session("rdlvstop", "");
    rdlv_to_first_keepalive(&mut c, "alice@example.com", "bob@example.net");
    c.send("CONT");
    server.stop();
    c.expect(421, "4.3.2");
    c.expect_closed();
    // The client never heard a final reply: nothing is kept or delivered.
    assert!(queue(&dir.spool()).is_empty(), "{:?}", queue(&dir.spool()));
    assert_never_delivered(&dir, &["bob@example.net"]);
}

#[test]
fn two_detached_jobs_from_two_clients_both_finish() {
    let (dir, server) = start("twodeta", "");
    let mut clients = Vec::new();
    for rcpt in ["x@example.net", "y@example.net"] {
        let mut c = server.ehlo();
        rdlv_transaction(&mut c, "alice@example.com", rcpt);
        clients.push(c);
    }
    for mut c in clients {
        c.expect(120, "gw.test");
        c.command("DETA", 221);
        c.expect_closed();
    }
    open_gate(&dir);
    wait_until("both detached jobs", support::WAIT, || {
        out(&dir, "x@example.net").exists() && out(&dir, "y@example.net").exists()
    });
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn deferred_recipient_gets_250_and_stays_queued_for_retry() {
    let (dir, server, mut c) = session(
        "rdlvdefer",
        "route = defer.test pipe:/bin/sh -c \"echo later >&2; exit 75\"\nretry_min = 1h\nretry_max = 2h\n",
    );
    rdlv_transaction(&mut c, "alice@example.com", "bob@defer.test");
    let (_, reply) = c.cont_until_final();
    // The server now holds responsibility for it: 250, retried later.
    assert_eq!(reply.code, 250, "{reply}");
    assert!(reply.text().contains("queued for 1 recipient"), "{reply}");
    let spool = detad::queue::spool::Spool::open(&dir.spool(), false).unwrap();
    let ids = spool.ids().unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let env = spool.load(&ids[0]).unwrap();
    assert_eq!(env.mode, detad::queue::envelope::Mode::Queued);
    assert_eq!(
        env.recipients[0].state(),
        detad::queue::envelope::RcptState::Deferred
    );
    assert!(env.next_attempt > 0);
    quit_and_stop(c, server);
}

#[test]
fn deta_after_the_job_finished_still_reports_by_dsn() {
    let (dir, server, mut c) = session("latedeta", "");
    c.open_rdlv_data(
        "<alice@example.com>",
        &["<jones@example.net> NOTIFY=SUCCESS"],
        "RDLV maxtimer=1",
    );
    c.send_content(&message("late deta", "finished meanwhile"));
    c.expect(120, "gw.test");
    // Processing ends between the 120 and the client's DETA.
    open_gate(&dir);
    wait_for_file(&out(&dir, "jones@example.net"));
    c.command("DETA", 221);
    c.expect_closed();
    // Detached: the outcome goes out by DSN, as NOTIFY asked.
    let dsn = support::unfold(&support::wait_for_mail(&dir.maildir(), "alice", 1)[0]);
    assert!(dsn.contains("Action: delivered"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822;jones@example.net"),
        "{dsn}"
    );
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn operator_removing_a_held_job_gets_the_client_a_451() {
    let (dir, server, mut c) = session("opremove", "");
    rdlv_to_first_keepalive(&mut c, "alice@example.com", "jones@example.net");
    // Answer at once: a loaded machine must not turn this into a timeout.
    c.send("CONT");
    let queued = queue(&dir.spool());
    let id = queued
        .iter()
        .find_map(|p| p.file_name()?.to_str().map(str::to_string))
        .expect("the held job is in the spool");
    let answer = detad::queue::control::request(
        &dir.spool(),
        &format!("remove {id}"),
        std::time::Duration::from_secs(10),
    )
    .expect("control socket");
    assert_eq!(
        answer,
        detad::queue::manager::ControlAnswer::Done(format!("removed {id}"))
    );
    loop {
        let reply = c.reply();
        if reply.code == 120 {
            c.send("CONT");
            continue;
        }
        assert_eq!(reply.code, 451, "{reply:?}");
        assert!(
            reply.text().contains("removed by the operator"),
            "{reply:?}"
        );
        break;
    }
    wait_queue_empty(&dir.spool());
    assert_never_delivered(&dir, &["jones@example.net"]);
    quit_and_stop(c, server);
}

#[test]
fn per_sender_limit_holds_for_sessions_that_passed_mail_together() {
    let (dir, server, mut first) = session("limitrace", "max_inflight_per_sender = 1\n");
    let mut second = server.ehlo();
    // Both pass MAIL while nothing of this sender is in processing yet.
    first.command("MAIL FROM:<a@example.com>", 250);
    second.command("MAIL FROM:<a@example.com>", 250);
    first.command("RCPT TO:<jones@example.net>", 250);
    second.command("RCPT TO:<jones@example.net>", 250);
    // The place is a reservation taken at RDLV: one of the two gets it.
    first.command("RDLV maxtimer=1", 200);
    second.command("RDLV maxtimer=1", 452);
    // A later sender of the same address is refused at MAIL already.
    let mut third = server.ehlo();
    third.command("MAIL FROM:<A@example.com>", 452);
    first.command("DATA", 354);
    first.send_content(&message("first", "in processing"));
    first.expect(120, "gw.test DATA processing in progress");
    second.command("NOOP", 250);
    first.send("CONT");
    open_gate(&dir);
    let (_, reply) = first.cont_until_final();
    assert_eq!(reply.code, 250, "{reply}");
    wait_queue_empty(&dir.spool());
    // The place is free again.
    third.command("MAIL FROM:<a@example.com>", 250);
    third.command("RCPT TO:<jones@example.net>", 250);
    third.command("RDLV maxtimer=1", 200);
    third.quit();
    second.quit();
    quit_and_stop(first, server);
}
