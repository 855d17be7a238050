//! Delivery Status Notifications end to end (issue 4): a failing `pipe:`
//! route, a Maildir route for the senders' domain where the reports land,
//! and the RFC 3461 NOTIFY / RET / ENVID / ORCPT parameters.

mod support;

use std::fs;
use std::time::Instant;

use support::{
    Client, Server, TempDir, delivered, failing_pipe_route, files_in, gated_failing_pipe_route,
    message, open_gate, quit_and_stop, transcript, unfold, wait_for_mail, wait_queue_empty,
};

/// The senders' and `ok.test` Maildirs, pipes that fail (`fail.test`,
/// `bounce.test`, gated `slowfail.test`) or defer (`defer.test`), then
/// `extra`.
fn dsn_config(extra: &str) -> String {
    format!(
        "rdlv_mintimer = 1\n\
         route = sender.test maildir:{{dir}}/maildir\n\
         route = ok.test maildir:{{dir}}/maildir\n\
         route = bounce.test pipe:/bin/sh -c \"echo x >> {{dir}}/bounce-calls; echo no thanks >&2; exit 1\"\n\
         route = defer.test pipe:/bin/sh -c \"echo try later >&2; exit 75\"\n\
         double_bounce = {{dir}}/double\n\
         {}{}{extra}",
        failing_pipe_route("fail.test", "0", "mailbox full"),
        gated_failing_pipe_route("slowfail.test", "boom"),
    )
}

/// A test directory named `name`, a server with [`dsn_config`], and a
/// client past EHLO.
fn session(name: &str, extra: &str) -> (TempDir, Server, Client) {
    support::session(name, &dsn_config(extra))
}

/// A plain transaction; `rcpts` are full RCPT arguments (with parameters).
#[track_caller]
fn send(c: &mut Client, mail: &str, rcpts: &[&str], subject: &str) {
    c.open_data(mail, rcpts);
    c.send_content(&message(subject, "the body text"));
    c.expect(250, "2.0.0 queued as");
}

/// Waits for the one report in alice's Maildir; returns it unfolded.
#[track_caller]
fn the_dsn(dir: &TempDir) -> String {
    let mut mail = wait_for_mail(&dir.maildir(), "alice", 1);
    let dsn = unfold(&mail.remove(0));
    assert!(dsn.starts_with("Return-Path: <>\n"), "{dsn}");
    assert!(
        dsn.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{dsn}"
    );
    assert!(dsn.contains("\nTo: <alice@sender.test>\n"), "{dsn}");
    assert!(
        dsn.contains("Content-Type: message/delivery-status\n"),
        "{dsn}"
    );
    dsn
}

/// After everything was processed, alice has no report.
#[track_caller]
fn assert_no_dsn(dir: &TempDir) {
    wait_queue_empty(&dir.spool());
    assert!(
        delivered(&dir.maildir(), "alice").is_empty(),
        "a DSN was sent: {:?}",
        delivered(&dir.maildir(), "alice")
    );
}

#[test]
fn notify_failure_sends_a_failed_dsn_with_the_diagnostic() {
    let (dir, server, mut c) = session("failure", "");
    send(
        &mut c,
        "<alice@sender.test>",
        &["<bob@fail.test> NOTIFY=FAILURE"],
        "doomed",
    );
    let dsn = the_dsn(&dir);
    for want in [
        "Subject: Delivery Status Notification (Failure)",
        "Reporting-MTA: dns; gw.test",
        "Final-Recipient: rfc822;bob@fail.test",
        "Action: failed",
        "Status: 5.",
        "mailbox full",
        // RET absent: the header section comes back (RFC 3461 §4.3 leaves
        // the choice to the MTA).
        "Content-Type: text/rfc822-headers",
        "Subject: doomed",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    wait_queue_empty(&dir.spool());
    quit_and_stop(c, server);
}

#[test]
fn absent_notify_means_failure() {
    let (dir, server, mut c) = session("nonotify", "");
    send(
        &mut c,
        "<alice@sender.test>",
        &["<bob@fail.test>"],
        "doomed",
    );
    let dsn = the_dsn(&dir);
    assert!(dsn.contains("Action: failed"), "{dsn}");
    quit_and_stop(c, server);
}

#[test]
fn notify_success_sends_a_delivered_dsn() {
    let (dir, server, mut c) = session("success", "");
    send(
        &mut c,
        "<alice@sender.test>",
        &["<bob@ok.test> NOTIFY=SUCCESS"],
        "good news",
    );
    wait_for_mail(&dir.maildir(), "bob", 1);
    let dsn = the_dsn(&dir);
    for want in [
        "Subject: Delivery Status Notification (Success)",
        "Final-Recipient: rfc822;bob@ok.test",
        "Action: delivered",
        "Status: 2.",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    assert!(!dsn.contains("Action: failed"), "{dsn}");
    quit_and_stop(c, server);
}

#[test]
fn success_without_notify_success_sends_nothing() {
    let (dir, server, mut c) = session("quietok", "");
    send(
        &mut c,
        "<alice@sender.test>",
        &["<bob@ok.test> NOTIFY=FAILURE,DELAY", "<carol@ok.test>"],
        "fine",
    );
    wait_for_mail(&dir.maildir(), "bob", 1);
    wait_for_mail(&dir.maildir(), "carol", 1);
    assert_no_dsn(&dir);
    quit_and_stop(c, server);
}

#[test]
fn notify_never_sends_no_dsn() {
    let (dir, server, mut c) = session("never", "");
    send(
        &mut c,
        "<alice@sender.test>",
        &["<bob@fail.test> NOTIFY=NEVER"],
        "silent",
    );
    assert_no_dsn(&dir);
    quit_and_stop(c, server);
}

#[test]
fn null_reverse_path_failure_sends_no_dsn() {
    let (dir, server, mut c) = session("nullfail", "");
    send(&mut c, "<>", &["<bob@fail.test>"], "from nobody");
    wait_queue_empty(&dir.spool());
    // A report would have nowhere to go but the double-bounce folder.
    assert!(files_in(&dir.join("double/new")).is_empty());
    assert!(!dir.maildir().exists() || fs::read_dir(dir.maildir()).unwrap().count() == 0);
    quit_and_stop(c, server);
}

#[test]
fn detached_job_that_fails_sends_a_dsn() {
    let (dir, server, mut c) = session("detfail", "");
    transcript(
        &mut c,
        "C: MAIL FROM:<alice@sender.test>
         C: RCPT TO:<bob@slowfail.test> NOTIFY=FAILURE
         C: RDLV maxtimer=1
         C: DATA
         S: 250
         S: 250
         S: 200
         S: 354
         C: Subject: detached
         C:
         C: body
         C: .
         S: 120
         C: DETA
         S: 221
         S! closed",
    );
    open_gate(&dir);
    let dsn = the_dsn(&dir);
    for want in [
        "Final-Recipient: rfc822;bob@slowfail.test",
        "Action: failed",
        "boom",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn envid_and_orcpt_come_back_decoded() {
    let (dir, server, mut c) = session("envid", "");
    send(
        &mut c,
        "<alice@sender.test> ENVID=QQ+2B314",
        &["<bob@fail.test> NOTIFY=FAILURE ORCPT=rfc822;x+2By@example.com"],
        "ids",
    );
    let dsn = the_dsn(&dir);
    assert!(dsn.contains("\nOriginal-Envelope-Id: QQ+314\n"), "{dsn}");
    assert!(
        dsn.contains("\nOriginal-Recipient: rfc822;x+y@example.com\n"),
        "{dsn}"
    );
    quit_and_stop(c, server);
}

#[test]
fn ret_hdrs_returns_only_the_header() {
    let (dir, server, mut c) = session("rethdrs", "");
    send(
        &mut c,
        "<alice@sender.test> RET=HDRS",
        &["<bob@fail.test>"],
        "headers only",
    );
    let dsn = the_dsn(&dir);
    assert!(dsn.contains("Content-Type: text/rfc822-headers"), "{dsn}");
    assert!(dsn.contains("Subject: headers only"), "{dsn}");
    assert!(!dsn.contains("the body text"), "{dsn}");
    quit_and_stop(c, server);
}

#[test]
fn ret_full_returns_the_whole_message() {
    let (dir, server, mut c) = session("retfull", "");
    send(
        &mut c,
        "<alice@sender.test> RET=FULL",
        &["<bob@fail.test>"],
        "everything",
    );
    let dsn = the_dsn(&dir);
    assert!(dsn.contains("Content-Type: message/rfc822"), "{dsn}");
    assert!(dsn.contains("Subject: everything"), "{dsn}");
    assert!(dsn.contains("the body text"), "{dsn}");
    quit_and_stop(c, server);
}

#[test]
fn a_dsn_is_never_sent_about_a_dsn() {
    let (dir, server, mut c) = session("dsnloop", "");
    // carol's own domain refuses everything, the report about bob too.
    send(&mut c, "<carol@bounce.test>", &["<bob@fail.test>"], "loop?");
    wait_queue_empty(&dir.spool());
    // The report was tried once, failed, and was kept, not reported on.
    let calls = fs::read_to_string(dir.join("bounce-calls")).expect("the report was attempted");
    assert_eq!(calls, "x\n", "the report was attempted more than once");
    let kept = files_in(&dir.join("double/new"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    let report = unfold(&fs::read_to_string(&kept[0]).unwrap());
    assert!(report.contains("\nTo: <carol@bounce.test>\n"), "{report}");
    assert!(
        report.contains("Final-Recipient: rfc822;bob@fail.test"),
        "{report}"
    );
    assert!(!dir.maildir().exists(), "something else was delivered");
    quit_and_stop(c, server);
}

#[test]
fn rdlv_partial_failure_gets_250_and_a_dsn_for_the_failed_recipient_only() {
    let (dir, server, mut c) = session("partial", "");
    c.open_rdlv_data(
        "<alice@sender.test>",
        &[
            "<bob@ok.test> NOTIFY=SUCCESS,FAILURE",
            "<carol@fail.test> NOTIFY=FAILURE",
        ],
        "RDLV",
    );
    c.send_content(&message("half", "half works"));
    let (_, reply) = c.cont_until_final();
    assert_eq!(reply.code, 250, "{reply}");
    assert!(
        reply.text().contains("delivered to 1") && reply.text().contains("DSN"),
        "{reply}"
    );
    wait_for_mail(&dir.maildir(), "bob", 1);
    // bob's success was in the 250 itself: only carol's failure is reported.
    let dsn = the_dsn(&dir);
    assert!(
        dsn.contains("Final-Recipient: rfc822;carol@fail.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(!dsn.contains("bob@ok.test"), "{dsn}");
    wait_queue_empty(&dir.spool());
    assert_eq!(delivered(&dir.maildir(), "alice").len(), 1);
    quit_and_stop(c, server);
}

#[test]
fn notify_delay_sends_a_delayed_dsn_after_delay_warning() {
    let (dir, server, mut c) =
        session("delay", "retry_min = 1\nretry_max = 2\ndelay_warning = 2\n");
    let sent = Instant::now();
    send(
        &mut c,
        "<alice@sender.test>",
        &["<bob@defer.test> NOTIFY=DELAY,FAILURE"],
        "slow uplink",
    );
    let dsn = the_dsn(&dir);
    // The spool keeps whole seconds: "2 s in the queue" may be 1.x s.
    assert!(
        sent.elapsed().as_secs_f32() >= 1.0,
        "warned before delay_warning"
    );
    for want in [
        "Subject: Delivery Status Notification (Delay)",
        "Action: delayed",
        "Status: 4.",
        "try later",
        "Will-Retry-Until:",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    quit_and_stop(c, server);
}

#[test]
fn deferred_past_the_queue_lifetime_fails_with_a_dsn() {
    let (dir, server, mut c) = session(
        "expire",
        "retry_min = 1\nretry_max = 1\nmax_queue_lifetime = 1\n",
    );
    send(
        &mut c,
        "<alice@sender.test>",
        &["<bob@defer.test>"],
        "expires",
    );
    let dsn = the_dsn(&dir);
    for want in ["Action: failed", "Status: 5.4.7", "try later"] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    wait_queue_empty(&dir.spool());
    quit_and_stop(c, server);
}

#[test]
fn reports_per_sender_are_capped_per_hour() {
    let (dir, server, mut c) = session("dsncap", "dsn_per_sender_per_hour = 1\n");
    send(&mut c, "<alice@sender.test>", &["<bob@fail.test>"], "first");
    send(
        &mut c,
        "<alice@sender.test>",
        &["<carol@fail.test>"],
        "second",
    );
    wait_queue_empty(&dir.spool());
    assert_eq!(delivered(&dir.maildir(), "alice").len(), 1);
    quit_and_stop(c, server);
}
