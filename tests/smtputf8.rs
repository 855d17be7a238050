//! SMTPUTF8 (RFC 6531, with RFC 6533 DSNs) through the whole server: the
//! 553 5.6.7 without the parameter, delivery into a Maildir folder named by
//! the UTF-8 local part, and relaying to a fake upstream on 127.0.0.1 that
//! offers SMTPUTF8 (the parameter goes on MAIL, the content is intact) or
//! does not (the recipient fails with 5.6.7 and a global DSN comes back).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::{
    Server, TempDir, quit_and_stop, transcript, unfold, wait_for_mail, wait_queue_empty, wait_until,
};

/// The longest a fake upstream lives, whatever the test does.
const UPSTREAM_LIFETIME: Duration = Duration::from_secs(30);

/// The sender and recipient of these tests, and a message with UTF-8 in
/// its header fields and body (RFC 6532), CRLF line ends.
const SENDER: &str = "\u{e1}lvaro@client.test";
const LOCAL: &str = "j\u{f6}s\u{e9}";
const CONTENT: &str = "From: \u{c1}lvaro <\u{e1}lvaro@client.test>\r\n\
    To: Jos\u{e9} <j\u{f6}s\u{e9}@example.org>\r\n\
    Subject: Gr\u{fc}\u{df}e \u{7528}\u{6237}\r\n\
    \r\n\
    Sch\u{f6}ne Gr\u{fc}\u{df}e!\r\n";

/// A fake upstream: greets, answers EHLO with `keywords`, takes every MAIL,
/// RCPT and message (250), and records every line it is sent. It serves
/// connections one after the other until it is stopped (or after
/// [`UPSTREAM_LIFETIME`]).
struct Upstream {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(keywords: &'static [&'static str]) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, done) = (Arc::clone(&received), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let until = Instant::now() + UPSTREAM_LIFETIME;
            while !done.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, keywords, &log, &done, until),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Upstream {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// All that was sent to the upstream so far.
    fn received(&self) -> String {
        let bytes = self.received.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("the relay sent UTF-8")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection: a minimal SMTP server without PIPELINING.
fn serve(
    stream: TcpStream,
    keywords: &[&str],
    log: &Mutex<Vec<u8>>,
    stop: &AtomicBool,
    until: Instant,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut say = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    say("220 fake.test ESMTP");
    let (mut line, mut in_data) = (Vec::new(), false);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with(b"\n") => {}
            // A timeout: keep what came and read on.
            Ok(_) | Err(_) => continue,
        }
        log.lock().expect("lock").extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        line.clear();
        let verb = text.get(..4).unwrap_or("").to_ascii_uppercase();
        let ok = match (in_data, verb.as_str()) {
            (true, _) if text == "." => {
                in_data = false;
                say("250 2.0.0 queued as F1")
            }
            (true, _) => true,
            (false, "EHLO") => {
                let mut reply = String::from("250-fake.test");
                for k in keywords {
                    reply.push_str(&format!("\r\n250-{k}"));
                }
                reply.push_str("\r\n250 ENHANCEDSTATUSCODES");
                say(&reply)
            }
            (false, "MAIL") => say("250 2.1.0 ok"),
            (false, "RCPT") => say("250 2.1.5 ok"),
            (false, "DATA") => {
                in_data = true;
                say("354 go ahead")
            }
            (false, "RSET" | "NOOP") => say("250 2.0.0 ok"),
            (false, "QUIT") => {
                say("221 2.0.0 bye");
                return;
            }
            _ => say("500 5.5.2 what"),
        };
        if !ok {
            return;
        }
    }
}

/// A server whose `relay.test` goes to `upstream` and everything else
/// into `{dir}/maildir`.
fn relaying(name: &str, upstream: &Upstream) -> (TempDir, Server) {
    support::serve(
        name,
        &format!(
            "route = relay.test smtp:127.0.0.1:{}\nroute = * maildir:{{dir}}/maildir\n",
            upstream.port
        ),
    )
}

/// One SMTPUTF8 transaction of [`CONTENT`] from `from` to `to`, queued.
#[track_caller]
fn send_utf8(server: &Server, from: &str, to: &str) {
    let mut c = server.ehlo();
    c.command(&format!("MAIL FROM:<{from}> SMTPUTF8 BODY=8BITMIME"), 250);
    c.command(&format!("RCPT TO:<{to}>"), 250);
    c.command("DATA", 354);
    c.send_content(CONTENT);
    c.expect(250, "2.0.0 queued as");
    c.quit();
}

#[test]
fn ehlo_offers_smtputf8_and_a_utf8_address_without_it_gets_553_5_6_7() {
    let (dir, server) = support::serve("no-param", "");
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
         S: 250-CHUNKING
         S: 250-SMTPUTF8
         S: 250 HELP
         C: MAIL FROM:<\u{e1}lvaro@client.test>
         S: 553 5.6.7
         C: MAIL FROM:<alice@client.test>
         S: 250 2.1.0
         C: RCPT TO:<j\u{f6}s\u{e9}@example.org>
         S: 553 5.6.7
         C: RCPT TO:<bob@b\u{fc}cher.example>
         S: 553 5.6.7
         C: VRFY j\u{f6}s\u{e9}
         S: 500 5.5.2
         C: DATA
         S: 554 5.5.1",
    );
    quit_and_stop(c, server);
    assert!(!dir.maildir().join(LOCAL).exists(), "nothing delivered");
}

#[test]
fn with_smtputf8_a_utf8_recipient_is_delivered_into_its_utf8_maildir() {
    let (dir, server) = support::serve("maildir", "");
    send_utf8(&server, SENDER, &format!("{LOCAL}@example.org"));
    let mail = wait_for_mail(&dir.maildir(), LOCAL, 1);
    let text = &mail[0];
    assert!(
        text.starts_with(&format!(
            "Return-Path: <{SENDER}>\nDelivered-To: {LOCAL}@example.org\n"
        )),
        "{text}"
    );
    // RFC 6531 §3.7.3: the trace says UTF8SMTP.
    assert!(text.contains(" with UTF8SMTP id "), "{text}");
    assert!(text.ends_with(&CONTENT.replace("\r\n", "\n")), "{text}");
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn an_unsafe_utf8_local_part_is_refused_for_a_maildir_route() {
    let (dir, server) = support::serve("unsafe", "");
    let mut c = server.ehlo();
    c.command("MAIL FROM:<a@client.test> SMTPUTF8", 250);
    // Quoted, so the syntax allows them; the folder name would not be safe.
    for bad in [
        "\"..j\u{f6}s\u{e9}\"@example.org",
        "\"j\u{f6}/s\"@example.org",
    ] {
        let reply = c.command(&format!("RCPT TO:<{bad}>"), 550);
        assert!(reply.text().starts_with("5.1.3"), "{reply}");
    }
    quit_and_stop(c, server);
    assert!(!dir.maildir().exists() || std::fs::read_dir(dir.maildir()).unwrap().count() == 0);
}

#[test]
fn relay_to_a_hop_with_smtputf8_sends_the_parameter_and_the_content_intact() {
    let upstream = Upstream::start(&["8BITMIME", "SMTPUTF8"]);
    let (dir, server) = relaying("relay-yes", &upstream);
    send_utf8(&server, SENDER, &format!("{LOCAL}@relay.test"));
    wait_until("the upstream to get the message", support::WAIT, || {
        upstream.received().contains("\r\n.\r\n")
    });
    let sent = upstream.received();
    assert!(
        sent.contains(&format!(
            "\r\nMAIL FROM:<{SENDER}> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<{LOCAL}@relay.test>\r\nDATA\r\n"
        )),
        "{sent}"
    );
    assert!(sent.contains(&format!("{CONTENT}.\r\n")), "{sent}");
    wait_queue_empty(&dir.spool());
    server.stop();
}

/// Waits for the one report in `local`'s Maildir; returns it unfolded.
#[track_caller]
fn the_dsn(dir: &TempDir, local: &str) -> String {
    let mut mail = wait_for_mail(&dir.maildir(), local, 1);
    let dsn = unfold(&mail.remove(0));
    assert!(dsn.starts_with("Return-Path: <>\n"), "{dsn}");
    dsn
}

#[test]
fn relay_to_a_hop_without_smtputf8_fails_with_5_6_7_and_a_global_dsn() {
    let upstream = Upstream::start(&["8BITMIME"]);
    let (dir, server) = relaying("relay-no", &upstream);
    send_utf8(&server, SENDER, &format!("{LOCAL}@relay.test"));
    let dsn = the_dsn(&dir, "\u{e1}lvaro");
    for want in [
        &format!("\nTo: <{SENDER}>\n"),
        "Content-Type: multipart/report; report-type=global-delivery-status;",
        "Content-Type: message/global-delivery-status\n",
        &format!("\nFinal-Recipient: utf-8;{LOCAL}@relay.test\n"),
        "\nAction: failed\n",
        "\nStatus: 5.6.7\n",
        "does not offer it",
        "Content-Type: message/global-headers\n",
        "\nSubject: Gr\u{fc}\u{df}e \u{7528}\u{6237}\n",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    wait_queue_empty(&dir.spool());
    server.stop();
    // RFC 6531 §3.4: no downgrade; the hop never saw a transaction.
    let sent = upstream.received();
    assert!(!sent.contains("MAIL FROM"), "{sent}");
}

#[test]
fn an_ascii_sender_of_an_smtputf8_message_gets_the_global_dsn_too() {
    let upstream = Upstream::start(&["8BITMIME"]);
    let (dir, server) = relaying("relay-ascii", &upstream);
    send_utf8(&server, "alice@client.test", "bob@relay.test");
    let dsn = the_dsn(&dir, "alice");
    for want in [
        "\nTo: <alice@client.test>\n",
        "report-type=global-delivery-status;",
        "\nFinal-Recipient: rfc822;bob@relay.test\n",
        "\nStatus: 5.6.7\n",
        "\nSubject: Gr\u{fc}\u{df}e \u{7528}\u{6237}\n",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    wait_queue_empty(&dir.spool());
    server.stop();
}

#[test]
fn a_message_without_smtputf8_relays_as_before() {
    let upstream = Upstream::start(&["8BITMIME"]);
    let (dir, server) = relaying("relay-plain", &upstream);
    let mut c = server.ehlo();
    let reply = c.mail(
        "alice@client.test",
        &["bob@relay.test"],
        &support::message("plain", "ascii body"),
    );
    assert_eq!(reply.code, 250, "{reply}");
    c.quit();
    wait_until("the upstream to get the message", support::WAIT, || {
        upstream.received().contains("\r\n.\r\n")
    });
    let sent = upstream.received();
    assert!(
        sent.contains("\r\nMAIL FROM:<alice@client.test>\r\nRCPT TO:<bob@relay.test>\r\n"),
        "{sent}"
    );
    wait_queue_empty(&dir.spool());
    server.stop();
}
