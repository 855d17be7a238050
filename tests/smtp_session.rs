//! Whole SMTP conversations against a running server over loopback, with a
//! temp spool and a Maildir route (issue 2).

mod support;

use std::time::Instant;

use support::{
    Client, Server, TempDir, delivered, message, queue, quit_and_stop, transcript, wait_for_mail,
    wait_queue_empty,
};

/// A Maildir route for every domain, then `extra`.
fn maildir_config(extra: &str) -> String {
    format!("route = * maildir:{{dir}}/maildir\n{extra}")
}

/// A test directory named `name` and a server with [`maildir_config`].
fn start(name: &str, extra: &str) -> (TempDir, Server) {
    support::serve(name, &maildir_config(extra))
}

/// [`start`], and a client past EHLO.
fn session(name: &str, extra: &str) -> (TempDir, Server, Client) {
    support::session(name, &maildir_config(extra))
}

/// [`Client::mail_to_bob`], then waits for it in bob's Maildir; returns
/// the delivered message.
#[track_caller]
fn mail_reaches_bob(c: &mut Client, dir: &TempDir, subject: &str, body: &str) -> String {
    c.mail_to_bob(subject, body);
    wait_for_mail(&dir.maildir(), "bob", 1).remove(0)
}

/// MAIL from alice, RCPT to bob, DATA: the content is next.
#[track_caller]
fn open_data_to_bob(c: &mut Client) {
    c.open_data("<alice@client.test>", &["<bob@example.com>"]);
}

/// Nothing of a rejected message is kept: no spool entry, no temp file,
/// no delivery.
#[track_caller]
fn assert_nothing_stored(dir: &TempDir) {
    assert!(queue(&dir.spool()).is_empty(), "spool queue not empty");
    assert!(
        support::files_in(&dir.spool().join("tmp")).is_empty(),
        "spool tmp/ not empty"
    );
    assert!(
        support::files_in(&dir.maildir()).is_empty()
            && std::fs::read_dir(dir.maildir()).map_or(true, |mut d| d.next().is_none()),
        "something was delivered"
    );
}

#[test]
fn full_transaction_is_delivered_to_the_maildir() {
    let (dir, server) = start("full", "");
    let mut c = server.client();
    transcript(
        &mut c,
        "C: EHLO client.test
         S: 250-gw.test greets client.test
         S: 250-PIPELINING
         S: 250-8BITMIME
         S: 250-SIZE
         S: 250-ENHANCEDSTATUSCODES
         S: 250-DSN
         S: 250-RDLV mintimer=
         S: 250-DETA
         S: 250 HELP
         C: MAIL FROM:<alice@client.test>
         S: 250 2.1.0
         C: RCPT TO:<bob@example.com>
         S: 250 2.1.5
         C: DATA
         S: 354
         C: Subject: hello
         C:
         C: first line
         C: ..leading dot
         C: .
         S: 250 2.0.0 queued as
         C: QUIT
         S: 221 2.0.0
         S! closed",
    );
    let mail = wait_for_mail(&dir.maildir(), "bob", 1);
    let text = &mail[0];
    assert!(
        text.starts_with("Return-Path: <alice@client.test>\n"),
        "{text}"
    );
    assert!(text.contains("\nDelivered-To: bob@example.com\n"), "{text}");
    assert!(
        text.contains(
            "\nReceived: from client.test ([127.0.0.1])\n\tby gw.test (detad) with ESMTP id "
        ),
        "{text}"
    );
    assert!(
        text.ends_with("Subject: hello\n\nfirst line\n.leading dot\n"),
        "{text}"
    );
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn pipelined_transaction_in_one_write_gets_every_reply_in_order() {
    let (dir, server) = start("pipelined", "");
    let mut c = server.client();
    // Everything, body and QUIT included, in a single write.
    transcript(
        &mut c,
        "C: EHLO client.test
         C: MAIL FROM:<alice@client.test>
         C: RCPT TO:<bob@example.com>
         C: RCPT TO:<carol@example.com>
         C: DATA
         C: Subject: pipelined
         C:
         C: body
         C: .
         C: QUIT
         S: 250-gw.test greets client.test
         S: 250-PIPELINING
         S: 250-8BITMIME
         S: 250-SIZE
         S: 250-ENHANCEDSTATUSCODES
         S: 250-DSN
         S: 250-RDLV
         S: 250-DETA
         S: 250 HELP
         S: 250 2.1.0 sender <alice@client.test> OK
         S: 250 2.1.5 recipient <bob@example.com> OK
         S: 250 2.1.5 recipient <carol@example.com> OK
         S: 354
         S: 250 2.0.0 queued as
         S: 221 2.0.0
         S! closed",
    );
    for local in ["bob", "carol"] {
        let mail = wait_for_mail(&dir.maildir(), local, 1);
        assert!(mail[0].ends_with("Subject: pipelined\n\nbody\n"));
    }
    server.stop();
}

#[test]
fn null_reverse_path_is_accepted_and_delivered() {
    let (dir, server, mut c) = session("nullpath", "");
    transcript(
        &mut c,
        "C: MAIL FROM:<>
         S: 250 2.1.0 sender <> OK
         C: RCPT TO:<bob@example.com>
         S: 250
         C: DATA
         S: 354
         C: Subject: bounce
         C:
         C: x
         C: .
         S: 250 2.0.0 queued as",
    );
    let mail = wait_for_mail(&dir.maildir(), "bob", 1);
    assert!(mail[0].starts_with("Return-Path: <>\n"), "{}", mail[0]);
    quit_and_stop(c, server);
}

#[test]
fn bare_lf_in_the_body_is_refused_after_the_real_terminator_and_nothing_stored() {
    let (dir, server, mut c) = session("barelf", "");
    open_data_to_bob(&mut c);
    // The NOOP rides in the same write: if the bare LF ended the data or
    // were taken as a line end, the replies would differ.
    c.send_raw(b"Subject: smuggle\r\n\r\nline one\nline two\r\n.\r\nNOOP\r\n");
    c.expect(550, "5.6.0");
    c.expect(250, "2.0.0");
    assert_nothing_stored(&dir);
    // The session goes on normally.
    mail_reaches_bob(&mut c, &dir, "ok", "fine");
    quit_and_stop(c, server);
}

#[test]
fn lf_dot_lf_is_not_the_end_of_data() {
    let (dir, server, mut c) = session("lfdotlf", "");
    for smuggle in [
        &b"Subject: s\r\n\r\nbefore\n.\nMAIL FROM:<evil@x.test>\r\n"[..],
        &b"Subject: s\r\n\r\nbefore\r\n.\nRCPT TO:<evil@x.test>\r\n"[..],
        &b"Subject: s\r\n\r\nbefore\n.\r\nDATA\r\n"[..],
    ] {
        open_data_to_bob(&mut c);
        let mut bytes = smuggle.to_vec();
        bytes.extend_from_slice(b".\r\nNOOP\r\n");
        c.send_raw(&bytes);
        // Exactly one reply to the content (after the real terminator),
        // then the NOOP's: the smuggled "commands" were content.
        c.expect(550, "5.6.0");
        c.expect(250, "2.0.0 OK");
    }
    assert_nothing_stored(&dir);
    quit_and_stop(c, server);
}

#[test]
fn command_line_of_513_octets_is_refused_and_the_session_goes_on() {
    let (_dir, server, mut c) = session("longline", "");
    // 512 octets with the CRLF is the RFC 5321 §4.5.3.1.4 limit.
    let ok = format!("NOOP {}", "x".repeat(512 - 2 - 5));
    assert_eq!(ok.len() + 2, 512);
    c.command(&ok, 250);
    let long = format!("NOOP {}", "x".repeat(513 - 2 - 5));
    assert_eq!(long.len() + 2, 513);
    c.send(&long);
    c.expect(500, "5.5.2");
    // Far beyond the driver's buffer: read to the end and refused, once.
    c.send(&format!("NOOP {}", "y".repeat(5000)));
    c.expect(500, "5.5.2");
    c.command("NOOP", 250);
    c.mail_to_bob("after", "long lines");
    quit_and_stop(c, server);
}

#[test]
fn text_line_over_1000_octets_is_refused() {
    let (dir, server, mut c) = session("longtext", "");
    let fits = "a".repeat(998);
    let reply = c.mail(
        "alice@client.test",
        &["bob@example.com"],
        &message("fits", &fits),
    );
    assert_eq!(
        reply.code, 250,
        "a 1000-octet line must be accepted: {reply}"
    );
    wait_for_mail(&dir.maildir(), "bob", 1);
    let reply = c.mail(
        "alice@client.test",
        &["bob@example.com"],
        &message("too long", &format!("{fits}a")),
    );
    assert_eq!(reply.code, 500, "{reply}");
    wait_queue_empty(&dir.spool());
    assert_eq!(delivered(&dir.maildir(), "bob").len(), 1);
    quit_and_stop(c, server);
}

#[test]
fn the_101st_recipient_gets_452() {
    let (dir, server, mut c) = session("rcpt101", "max_recipients = 100\n");
    let mut batch = String::from("MAIL FROM:<alice@client.test>\r\n");
    for i in 1..=101 {
        batch.push_str(&format!("RCPT TO:<user{i}@example.com>\r\n"));
    }
    c.send_raw(batch.as_bytes());
    c.expect(250, "2.1.0");
    for i in 1..=100 {
        let reply = c.reply();
        assert_eq!(reply.code, 250, "recipient {i}: {reply}");
    }
    c.expect(452, "4.5.3");
    c.command("DATA", 354);
    c.send_content(&message("many", "hello all"));
    c.expect(250, "2.0.0");
    wait_for_mail(&dir.maildir(), "user100", 1);
    assert!(delivered(&dir.maildir(), "user101").is_empty());
    quit_and_stop(c, server);
}

#[test]
fn message_over_the_size_limit_is_refused_after_the_terminator_and_nothing_stored() {
    // RFC 5321 §4.5.3.1.7: 64K is the smallest limit allowed.
    let (dir, server, mut c) = session("toobig", "max_message_size = 64K\n");
    open_data_to_bob(&mut c);
    let line = format!("{}\r\n", "z".repeat(98));
    c.send_content(&message("big", &line.repeat(700)));
    c.expect(552, "5.3.4");
    assert_nothing_stored(&dir);
    c.command("NOOP", 250);
    quit_and_stop(c, server);
}

#[test]
fn declared_size_over_the_limit_is_refused_at_mail() {
    let (_dir, server, mut c) = session("sizeparam", "max_message_size = 64K\n");
    transcript(
        &mut c,
        "C: MAIL FROM:<alice@client.test> SIZE=65537
         S: 552 5.3.4
         C: MAIL FROM:<alice@client.test> SIZE=65536
         S: 250 2.1.0",
    );
    quit_and_stop(c, server);
}

#[test]
fn sequence_and_syntax_errors_get_their_codes_and_the_session_goes_on() {
    let (_dir, server) = start("errors", "");
    let mut c = server.client();
    transcript(
        &mut c,
        "C: MAIL FROM:<alice@client.test>
         S: 503 5.5.1
         C: EHLO client.test
         S: 250-gw.test
         S: 250-PIPELINING
         S: 250-8BITMIME
         S: 250-SIZE
         S: 250-ENHANCEDSTATUSCODES
         S: 250-DSN
         S: 250-RDLV
         S: 250-DETA
         S: 250 HELP
         C: XYZZY plugh
         S: 500 5.5.2
         C: RCPT TO:<bob@example.com>
         S: 503 5.5.1
         C: DATA
         S: 503 5.5.1
         C: MAIL FROM:<alice@client.test> FOO=BAR
         S: 555 5.5.4
         C: MAIL FROM:<alice@client.test> BODY=9BIT
         S: 501 5.5.4
         C: MAIL FROM:alice@client.test
         S: 501 5.5.4
         C: MAIL FROM:<alice@client.test>
         S: 250 2.1.0
         C: MAIL FROM:<alice@client.test>
         S: 503 5.5.1
         C: RCPT TO:<bob@example.com> FOO=BAR
         S: 555 5.5.4
         C: DATA
         S: 554 5.5.1
         C: RCPT TO:<bob@example.com>
         S: 250 2.1.5
         C: RSET
         S: 250 2.0.0
         C: DATA
         S: 503 5.5.1
         C: VRFY bob
         S: 252 2.5.0
         C: HELP
         S: 214 2.0.0
         C: NOOP
         S: 250 2.0.0",
    );
    quit_and_stop(c, server);
}

#[test]
fn relay_is_denied_outside_the_relay_networks() {
    let (_dir, server, mut c) = session("relay", "relay_networks = 10.0.0.0/8\n");
    transcript(
        &mut c,
        "C: MAIL FROM:<alice@client.test>
         S: 250
         C: RCPT TO:<bob@example.com>
         S: 554 5.7.1 <bob@example.com>: relay access denied
         C: DATA
         S: 554 5.5.1",
    );
    quit_and_stop(c, server);
}

#[test]
fn unsafe_local_parts_are_refused_for_maildir_routes() {
    let (dir, server, mut c) = session("unsafe", "");
    c.command("MAIL FROM:<alice@client.test>", 250);
    // Valid RFC 5321 syntax, unsafe as a folder name: the policy refuses.
    for rcpt in [
        "a/b@example.com",
        "\"../../etc\"@example.com",
        "\"..\"@example.com",
    ] {
        c.send(&format!("RCPT TO:<{rcpt}>"));
        c.expect(550, "5.1.3");
    }
    // Not even valid syntax (a dot-string cannot start with a dot).
    c.send("RCPT TO:<.x@example.com>");
    let reply = c.reply();
    assert!(
        reply.code == 501 || (reply.code == 550 && reply.text().starts_with("5.1.3")),
        "{reply}"
    );
    c.command("RCPT TO:<ok@example.com>", 250);
    c.quit();
    // Nothing outside the Maildir root was created.
    assert!(!dir.join("etc").exists());
    server.stop();
}

#[test]
fn domain_without_a_route_is_refused() {
    let (_dir, server, mut c) =
        support::session("noroute", "route = example.com maildir:{dir}/maildir\n");
    transcript(
        &mut c,
        "C: MAIL FROM:<alice@client.test>
         S: 250
         C: RCPT TO:<bob@other.org>
         S: 550 5.1.2
         C: RCPT TO:<bob@EXAMPLE.com>
         S: 250 2.1.5",
    );
    quit_and_stop(c, server);
}

#[test]
fn full_session_pool_answers_421_too_busy() {
    let (_dir, server) = start("busy", "sessions = 1\nmax_sessions_per_ip = 3\n");
    // The only session thread serves the first connection...
    let first = server.client();
    // ...the second waits in the hand-off queue (capacity = sessions)...
    let mut second = Client::connect(server.addr);
    // ...and the third finds both full.
    let mut third = Client::connect(server.addr);
    third.expect(421, "4.3.2 gw.test too busy");
    third.expect_closed();
    // Once the first leaves, the waiting one is served.
    first.quit();
    second.expect(220, "gw.test");
    second.command("EHLO client.test", 250);
    quit_and_stop(second, server);
}

#[test]
fn idle_session_gets_421_at_shutdown() {
    let (_dir, server, mut c) = session("shutdown", "");
    let started = Instant::now();
    server.stop();
    c.expect(421, "4.3.2");
    c.expect_closed();
    assert!(started.elapsed() < support::WAIT);
}

#[test]
fn helo_session_and_received_line_say_smtp() {
    let (dir, server) = start("helo", "");
    let mut c = server.client();
    c.command("HELO old.client.test", 250);
    let mail = mail_reaches_bob(&mut c, &dir, "helo", "old school");
    assert!(
        mail.contains(
            "Received: from old.client.test ([127.0.0.1])\n\tby gw.test (detad) with SMTP id"
        ),
        "{mail}"
    );
    quit_and_stop(c, server);
}

#[test]
fn full_spool_refuses_with_452() {
    let (dir, server, mut c) = session("spoolfull", "spool_max_bytes = 64K\n");
    // Declared too big for what is left: refused at MAIL.
    c.command("MAIL FROM:<alice@client.test> SIZE=70000", 452);
    // Undeclared, found out during DATA: refused after the terminator.
    open_data_to_bob(&mut c);
    let line = format!("{}\r\n", "s".repeat(98));
    c.send_content(&message("huge", &line.repeat(700)));
    c.expect(452, "4.3.1");
    assert_nothing_stored(&dir);
    // A message that fits still goes through.
    mail_reaches_bob(&mut c, &dir, "small", "fits");
    quit_and_stop(c, server);
}

#[test]
fn client_that_stops_talking_gets_421_after_the_command_timeout() {
    let (_dir, server, mut c) = session("cmdtimeout", "command_timeout = 1\n");
    c.command("MAIL FROM:<alice@client.test>", 250);
    let silent = Instant::now();
    c.expect(421, "4.4.2");
    c.expect_closed();
    assert!(silent.elapsed() >= std::time::Duration::from_millis(900));
    server.stop();
}

#[test]
fn client_that_stops_during_data_gets_421_and_nothing_is_stored() {
    let (dir, server, mut c) = session("datatimeout", "data_timeout = 1\n");
    open_data_to_bob(&mut c);
    c.send_raw(b"Subject: half\r\n\r\nand then nothing");
    c.expect(421, "4.4.2");
    c.expect_closed();
    assert_nothing_stored(&dir);
    server.stop();
}

#[test]
fn client_closing_during_data_leaves_nothing() {
    let (dir, server, mut c) = session("dataeof", "");
    open_data_to_bob(&mut c);
    c.send_raw(b"Subject: cut\r\n\r\nthe line drops here\r\n");
    c.vanish();
    // The session thread ends; then the server stops cleanly.
    server.stop();
    assert_nothing_stored(&dir);
}

#[test]
fn too_many_errors_close_the_connection() {
    let (_dir, server, mut c) = session("errlimit", "");
    let mut batch = String::new();
    for _ in 0..25 {
        batch.push_str("BOGUS\r\n");
    }
    c.send_raw(batch.as_bytes());
    for _ in 0..19 {
        c.expect(500, "5.5.2");
    }
    c.expect(421, "4.7.0");
    c.expect_closed();
    server.stop();
}

#[test]
fn postmaster_without_a_domain_is_accepted() {
    let (dir, server, mut c) = session("postmaster", "");
    // RFC 5321 §4.5.1: "postmaster" with no domain must be accepted.
    let reply = c.mail(
        "alice@client.test",
        &["postmaster"],
        &message("abuse", "to the postmaster"),
    );
    assert_eq!(reply.code, 250, "{reply}");
    wait_for_mail(&dir.maildir(), "postmaster", 1);
    quit_and_stop(c, server);
}

#[test]
fn shutdown_during_data_answers_421_and_stores_nothing() {
    let (dir, server, mut c) = session("stopdata", "");
    open_data_to_bob(&mut c);
    c.send_raw(b"Subject: interrupted\r\n\r\nhalf a message\r\n");
    server.stop();
    c.expect(421, "4.3.2");
    c.expect_closed();
    assert_nothing_stored(&dir);
}

#[test]
fn postmaster_without_a_domain_goes_to_our_own_domain_route() {
    // Only the gateway's own domain is routed: RCPT and delivery must agree
    // that <postmaster> is postmaster@gw.test.
    let (dir, server, mut c) =
        support::session("pmroute", "route = gw.test maildir:{dir}/maildir\n");
    let reply = c.mail(
        "",
        &["postmaster"],
        &message("bounce", "to the local postmaster"),
    );
    assert_eq!(reply.code, 250, "{reply}");
    let got = wait_for_mail(&dir.maildir(), "postmaster", 1);
    assert!(
        got[0].contains("Delivered-To: postmaster@gw.test"),
        "{}",
        got[0]
    );
    quit_and_stop(c, server);
}
