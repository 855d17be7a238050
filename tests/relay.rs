//! The relay client against a scripted fake upstream on 127.0.0.1.
//!
//! Each test writes the conversation RFC 5321 Appendix D style: `S:` lines
//! are what the fake upstream sends, `C:` lines what the client must send,
//! exactly. The upstream checks every `C:` line, and that the client waited
//! for each reply before sending more (unless the script lets it send on,
//! as with PIPELINING), and that the client sends nothing after the script.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use detad::delivery::relay::{
    Connection, Hop, OpenError, Timeouts, TransferError, TransferOutcome,
};
use detad::queue::delivery::{Delivery, DeliveryKind, Diagnostic, RemoteMta};
use detad::queue::envelope::{BodyType, Envelope, Notify, Orcpt, Recipient, Ret};
use detad::smtp::reply_parser::{ReplyParser, Status};

/// How long the fake upstream waits for the client before giving up.
const UPSTREAM_PATIENCE: Duration = Duration::from_secs(5);

/// A fake upstream playing one script on one connection.
struct Upstream {
    port: u16,
    thread: JoinHandle<Result<Vec<u8>, String>>,
}

impl Upstream {
    /// Starts the upstream. Script steps, one a line:
    /// - `S: text` sends `text` CRLF;
    /// - `C: text` reads one line that must be `text` CRLF;
    /// - `S! sleep MS` waits; `S! close` closes the connection and ends;
    /// - `C! eof` expects the client to close now;
    /// - `C! rest` takes whatever comes until the client closes.
    ///
    /// After the last step the client must close without sending more.
    fn start(script: &str) -> Upstream {
        let _ = env_logger::builder().is_test(true).try_init();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let steps: Vec<String> = script
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let thread = thread::spawn(move || play(listener, &steps));
        Upstream { port, thread }
    }

    fn hop(&self) -> Hop {
        Hop {
            host: "127.0.0.1".to_string(),
            port: self.port,
            implicit_tls: false,
        }
    }

    /// Waits for the script to end; returns all the client sent.
    #[track_caller]
    fn finish(self) -> Vec<u8> {
        match self.thread.join().expect("upstream thread panicked") {
            Ok(received) => received,
            Err(e) => panic!("upstream: {e}"),
        }
    }
}

fn play(listener: TcpListener, steps: &[String]) -> Result<Vec<u8>, String> {
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    stream
        .set_read_timeout(Some(UPSTREAM_PATIENCE))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut received = Vec::new();
    let fail = |received: &[u8], what: String| {
        Err(format!(
            "{what}\n--- received so far:\n{}",
            String::from_utf8_lossy(received)
        ))
    };
    for (i, step) in steps.iter().enumerate() {
        let next_is_server = steps.get(i + 1).is_none_or(|s| s.starts_with('S'));
        if let Some(text) = step.strip_prefix("S:") {
            let line = format!("{}\r\n", text.strip_prefix(' ').unwrap_or(text));
            if let Err(e) = writer.write_all(line.as_bytes()) {
                return fail(&received, format!("step {i} `{step}`: write: {e}"));
            }
        } else if let Some(text) = step.strip_prefix("C:") {
            let want = format!("{}\r\n", text.strip_prefix(' ').unwrap_or(text));
            let mut line = Vec::new();
            if let Err(e) = reader.read_until(b'\n', &mut line) {
                return fail(&received, format!("step {i} `{step}`: read: {e}"));
            }
            received.extend_from_slice(&line);
            if line != want.as_bytes() {
                let got = String::from_utf8_lossy(&line);
                return fail(&received, format!("step {i}: want {want:?}, got {got:?}"));
            }
            if next_is_server && !reader.buffer().is_empty() {
                let ahead = String::from_utf8_lossy(reader.buffer()).into_owned();
                return fail(
                    &received,
                    format!("step {i}: client did not wait for the reply: {ahead:?}"),
                );
            }
        } else if let Some(ms) = step.strip_prefix("S! sleep ") {
            thread::sleep(Duration::from_millis(
                ms.parse().expect("sleep milliseconds"),
            ));
        } else if step == "S! close" {
            return Ok(received);
        } else if step == "C! eof" || step == "C! rest" {
            let mut rest = Vec::new();
            let result = reader.read_to_end(&mut rest);
            received.extend_from_slice(&rest);
            if let Err(e) = result {
                return fail(&received, format!("step {i}: client did not close: {e}"));
            }
            if step == "C! eof" && !rest.is_empty() {
                let got = String::from_utf8_lossy(&rest);
                return fail(&received, format!("step {i}: want EOF, got {got:?}"));
            }
        } else {
            panic!("bad script step {step:?}");
        }
    }
    let mut rest = Vec::new();
    let result = reader.read_to_end(&mut rest);
    received.extend_from_slice(&rest);
    match result {
        Ok(_) if rest.is_empty() => Ok(received),
        Ok(_) => fail(
            &received,
            format!(
                "client sent after the script: {:?}",
                String::from_utf8_lossy(&rest)
            ),
        ),
        Err(e) => fail(
            &received,
            format!("client did not close after the script: {e}"),
        ),
    }
}

fn timeouts() -> Timeouts {
    let t = Duration::from_secs(2);
    Timeouts {
        connect: t,
        command: t,
        data_block: t,
        data_end: t,
    }
}

/// [`timeouts`], but a reply to a command must come within 300 ms.
fn impatient() -> Timeouts {
    Timeouts {
        command: Duration::from_millis(300),
        ..timeouts()
    }
}

fn open(upstream: &Upstream) -> Connection {
    Connection::open(&upstream.hop(), "gw.test", &timeouts()).expect("open")
}

/// An upstream playing the script made of `parts` (joined by newlines),
/// and a connection to it.
fn connect(parts: &[&str]) -> (Upstream, Connection) {
    let up = Upstream::start(&parts.join("\n"));
    let conn = open(&up);
    (up, conn)
}

fn envelope() -> Envelope {
    Envelope {
        size: 100,
        client_ip: "192.0.2.9".to_string(),
        helo: "client.test".to_string(),
        ..Envelope::new(
            "q1".to_string(),
            "alice@example.org".to_string(),
            0,
            Vec::new(),
        )
    }
}

fn rcpt(address: &str) -> Recipient {
    Recipient::new(address.to_string(), None, None)
}

const NEVER: &dyn Fn() -> bool = &|| false;

const CONTENT: &[u8] = b"Subject: hi\r\n\r\nbody\r\n";

/// The script lines for [`CONTENT`], as sent.
const CONTENT_LINES: &str = "C: Subject: hi\nC:\nC: body\n";

#[track_caller]
fn send(
    conn: &mut Connection,
    env: &Envelope,
    rcpts: &[Recipient],
    content: &[u8],
) -> TransferOutcome {
    let rcpts: Vec<&Recipient> = rcpts.iter().collect();
    conn.send(env, &rcpts, &mut &content[..], NEVER)
        .expect("not cancelled")
}

/// Sends [`CONTENT`] in the plain [`envelope`] to `rcpts`.
#[track_caller]
fn send_to(conn: &mut Connection, rcpts: &[&str]) -> TransferOutcome {
    let rcpts: Vec<Recipient> = rcpts.iter().map(|r| rcpt(r)).collect();
    send(conn, &envelope(), &rcpts, CONTENT)
}

/// The hop's reply `wire` (one line, without CRLF) as the relay types it.
fn remote(wire: &str, relayed: bool) -> Delivery {
    let mut parser = ReplyParser::new();
    let reply = match parser.feed(format!("{wire}\r\n").as_bytes()) {
        Ok(Status::Complete(reply, _)) => reply,
        other => panic!("bad reply in test: {wire:?}: {other:?}"),
    };
    Delivery::from_reply(reply, RemoteMta::from_host("127.0.0.1"), relayed)
}

fn accepted(relayed: bool, reply: &str) -> Delivery {
    remote(reply, relayed)
}

fn temporary(reply: &str) -> Delivery {
    remote(reply, false)
}

fn permanent(reply: &str) -> Delivery {
    remote(reply, false)
}

/// A result of our own (no remote MTA, an `x-unix` diagnostic) of the
/// given class whose `status text` starts with `prefix`.
#[track_caller]
fn assert_local(result: &Delivery, permanent: bool, prefix: &str) {
    let kind = if permanent {
        DeliveryKind::Failed
    } else {
        DeliveryKind::Deferred
    };
    let local = matches!(result.diagnostic, Some(Diagnostic::Local(_)));
    let summary = summary(result);
    assert!(
        local && result.remote_mta.is_none() && result.kind == kind && summary.starts_with(prefix),
        "{result:?} is not {prefix}..."
    );
}

/// `status diagnostic`, as a log line shows a result.
fn summary(result: &Delivery) -> String {
    let diag = result
        .diagnostic
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    format!("{} {diag}", result.status)
}

/// A reader that hands out `step` bytes at a time, to cut the content at
/// awkward places.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

const GREETING_PLAIN: &str = "
    S: 220 fake.test ESMTP
    C: EHLO gw.test
    S: 250-fake.test
    S: 250 ENHANCEDSTATUSCODES
";

const GREETING_PIPELINING: &str = "
    S: 220 fake.test ESMTP
    C: EHLO gw.test
    S: 250-fake.test
    S: 250-PIPELINING
    S: 250 ENHANCEDSTATUSCODES
";

const QUIT: &str = "
    C: QUIT
    S: 221 2.0.0 bye
";

/// The upstream's reply to an accepted RCPT.
const OK: &str = "250 2.1.5 ok";
/// The upstream's reply to a RCPT for an unknown mailbox.
const NO_SUCH_USER: &str = "550 5.1.1 no such user";

/// Two recipients the upstream accepts.
const BOB_AND_CAROL: &[(&str, &str)] = &[("bob@example.com", OK), ("carol@example.com", OK)];

/// Script: MAIL from alice and its 250, then each RCPT with its reply
/// from `rcpts` (address, reply), one command at a time.
fn one_by_one(rcpts: &[(&str, &str)]) -> String {
    let mut script = String::from("C: MAIL FROM:<alice@example.org>\nS: 250 2.1.0 ok");
    for (address, reply) in rcpts {
        script.push_str(&format!("\nC: RCPT TO:<{address}>\nS: {reply}"));
    }
    script
}

/// Script: MAIL from alice, the RCPTs of `rcpts` (address, reply) and DATA
/// in one group, then the 250 to MAIL, each RCPT's reply and a 354.
fn pipelined(rcpts: &[(&str, &str)]) -> String {
    let mut script = String::from("C: MAIL FROM:<alice@example.org>");
    for (address, _) in rcpts {
        script.push_str(&format!("\nC: RCPT TO:<{address}>"));
    }
    script.push_str("\nC: DATA\nS: 250 2.1.0 ok");
    for (_, reply) in rcpts {
        script.push_str(&format!("\nS: {reply}"));
    }
    script.push_str("\nS: 354 go ahead");
    script
}

/// Script: DATA, one command at a time, accepted.
const DATA: &str = "C: DATA\nS: 354 go ahead";

/// Script: [`CONTENT`] and the final dot, then `step`.
fn content_then(step: &str) -> String {
    format!("{CONTENT_LINES}C: .\n{step}")
}

#[test]
fn without_pipelining_commands_go_one_by_one() {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        &one_by_one(BOB_AND_CAROL),
        DATA,
        &content_then("S: 250 2.0.0 queued as 1"),
        QUIT,
    ]);
    assert!(!conn.extensions().pipelining);
    let out = send_to(&mut conn, &["bob@example.com", "carol@example.com"]);
    assert_eq!(
        out.results,
        vec![accepted(true, "250 2.0.0 queued as 1"); 2]
    );
    assert!(
        out.results
            .iter()
            .all(|d| d.remote_mta == Some(RemoteMta::from_host("127.0.0.1")))
    );
    assert!(conn.is_usable());
    conn.quit();
    up.finish();
}

#[test]
fn with_pipelining_mail_rcpts_and_data_go_in_one_group() {
    // No reply before DATA arrives: a client waiting for the MAIL reply
    // would time out here.
    let (up, mut conn) = connect(&[
        GREETING_PIPELINING,
        &pipelined(BOB_AND_CAROL),
        &content_then("S: 250 2.0.0 queued as 1"),
        QUIT,
    ]);
    assert!(conn.extensions().pipelining);
    let out = send_to(&mut conn, &["bob@example.com", "carol@example.com"]);
    assert_eq!(
        out.results,
        vec![accepted(true, "250 2.0.0 queued as 1"); 2]
    );
    conn.quit();
    up.finish();
}

#[test]
fn rcpt_replies_decide_per_recipient() {
    let (up, mut conn) = connect(&[
        GREETING_PIPELINING,
        "C: MAIL FROM:<alice@example.org>
         C: RCPT TO:<ok@example.com>
         C: RCPT TO:<busy@example.com>
         C: RCPT TO:<gone@example.com>
         C: DATA
         S: 250 2.1.0 ok
         S: 250 2.1.5 ok
         S: 451 4.2.1 mailbox busy
         S: 550-5.1.1 no such
         S: 550 5.1.1 user
         S: 354 go ahead",
        &content_then("S: 250 2.0.0 queued as 7"),
    ]);
    let out = send_to(
        &mut conn,
        &["ok@example.com", "busy@example.com", "gone@example.com"],
    );
    assert_eq!(
        out.results,
        vec![
            accepted(true, "250 2.0.0 queued as 7"),
            temporary("451 4.2.1 mailbox busy"),
            permanent("550-5.1.1 no such\r\n550 5.1.1 user"),
        ]
    );
    assert_eq!(out.results[2].status.to_string(), "5.1.1");
    drop(conn);
    up.finish();
}

#[test]
fn reply_421_mid_transaction_is_temporary_for_the_rest() {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        &one_by_one(&[
            ("gone@example.com", NO_SUCH_USER),
            ("ok@example.com", OK),
            ("later@example.com", "421 4.3.2 shutting down"),
        ]),
    ]);
    let rcpts = ["gone@example.com", "ok@example.com", "later@example.com"];
    let out = send_to(&mut conn, &rcpts);
    assert_eq!(
        out.results,
        vec![
            permanent("550 5.1.1 no such user"),
            temporary("421 4.3.2 shutting down"),
            temporary("421 4.3.2 shutting down"),
        ]
    );
    assert!(!conn.is_usable());
    // Nothing more goes out on that connection.
    let out = send_to(&mut conn, &rcpts[..1]);
    assert_local(&out.results[0], false, "4.4.2 ");
    conn.quit();
    up.finish();
}

#[test]
fn connection_dropped_after_data_is_temporary() {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        &one_by_one(&[("gone@example.com", NO_SUCH_USER), ("ok@example.com", OK)]),
        "C: DATA
         S! close",
    ]);
    let out = send_to(&mut conn, &["gone@example.com", "ok@example.com"]);
    assert_eq!(out.results[0], permanent("550 5.1.1 no such user"));
    assert_local(
        &out.results[1],
        false,
        "4.4.2 lost connection with 127.0.0.1[127.0.0.1]",
    );
    assert!(!conn.is_usable());
    up.finish();
}

#[test]
fn connection_dropped_after_final_dot_is_temporary() {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        &one_by_one(&[("ok@example.com", OK)]),
        DATA,
        &content_then("S! close"),
    ]);
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert_local(&out.results[0], false, "4.4.2 lost connection");
    assert!(
        summary(&out.results[0]).contains("end of data"),
        "{:?}",
        out.results[0]
    );
    up.finish();
}

#[test]
fn slow_reply_times_out_as_temporary() {
    let script = [
        GREETING_PLAIN,
        "C: MAIL FROM:<alice@example.org>
         S! sleep 1500",
    ];
    let up = Upstream::start(&script.join("\n"));
    let mut conn = Connection::open(&up.hop(), "gw.test", &impatient()).expect("open");
    let started = Instant::now();
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "took {:?}",
        started.elapsed()
    );
    assert_local(
        &out.results[0],
        false,
        "4.4.2 conversation with 127.0.0.1[127.0.0.1] timed out",
    );
    assert!(!conn.is_usable());
    drop(conn);
    up.finish();
}

#[test]
fn shutdown_interrupts_a_reply_wait_as_temporary() {
    let script = [
        GREETING_PLAIN,
        "C: MAIL FROM:<alice@example.org>
         S! sleep 3000",
    ];
    let up = Upstream::start(&script.join("\n"));
    // Patient timeouts: only the interrupt can end the wait early.
    let mut conn = open(&up);
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    conn.set_interrupt(std::sync::Arc::clone(&flag));
    let setter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        flag.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        out.results[0].kind == DeliveryKind::Deferred && out.results[0].remote_mta.is_none(),
        "{:?}",
        out.results[0]
    );
    assert!(!conn.is_usable());
    setter.join().unwrap();
    drop(conn);
    up.finish();
}

#[test]
fn slow_greeting_is_an_open_error() {
    let up = Upstream::start("S! sleep 1000\nC! eof");
    let e = Connection::open(&up.hop(), "gw.test", &impatient()).expect_err("timeout");
    assert!(matches!(e, OpenError::Lost { .. }), "{e:?}");
    assert!(
        summary(&e.delivery())
            .starts_with("4.4.2 conversation with 127.0.0.1[127.0.0.1] timed out"),
        "{}",
        summary(&e.delivery())
    );
    up.finish();
}

fn dsn_envelope() -> (Envelope, Vec<Recipient>) {
    let env = Envelope {
        ret: Some(Ret::Hdrs),
        envid: Some("q1+x=y".to_string()),
        ..envelope()
    };
    let notify = Notify {
        success: true,
        failure: true,
        delay: false,
    };
    let orcpt = Orcpt {
        addr_type: "rfc822".to_string(),
        address: "bob+tag@example.com".to_string(),
    };
    let rcpts = vec![
        Recipient::new("bob@example.com".to_string(), Some(notify), Some(orcpt)),
        Recipient::new("carol@example.com".to_string(), Some(Notify::NEVER), None),
    ];
    (env, rcpts)
}

/// Sends the [`dsn_envelope`] through an upstream playing `script`: both
/// recipients are accepted, as `relayed` or not.
#[track_caller]
fn assert_dsn_envelope_accepted(script: &[&str], relayed: bool) {
    let (up, mut conn) = connect(script);
    let (env, rcpts) = dsn_envelope();
    let out = send(&mut conn, &env, &rcpts, CONTENT);
    assert_eq!(out.results, vec![accepted(relayed, "250 2.0.0 queued"); 2]);
    drop(conn);
    up.finish();
}

#[test]
fn hop_without_dsn_gets_no_dsn_parameters_and_success_is_relayed() {
    assert_dsn_envelope_accepted(
        &[
            GREETING_PIPELINING,
            &pipelined(BOB_AND_CAROL),
            &content_then("S: 250 2.0.0 queued"),
        ],
        true,
    );
}

#[test]
fn hop_with_dsn_gets_dsn_parameters_verbatim() {
    assert_dsn_envelope_accepted(
        &[
            "S: 220 fake.test ESMTP
             C: EHLO gw.test
             S: 250-fake.test
             S: 250-PIPELINING
             S: 250 DSN
             C: MAIL FROM:<alice@example.org> RET=HDRS ENVID=q1+2Bx+3Dy
             C: RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@example.com
             C: RCPT TO:<carol@example.com> NOTIFY=NEVER
             C: DATA
             S: 250 2.1.0 ok
             S: 250 2.1.5 ok
             S: 250 2.1.5 ok
             S: 354 go ahead",
            &content_then("S: 250 2.0.0 queued"),
        ],
        false,
    );
}

#[test]
fn content_is_dot_stuffed_and_the_terminator_sent_once() {
    let content = b".hidden\r\n..two\r\n.\r\nmiddle\r\n\r\n.\r\nno final CRLF";
    let script = [
        GREETING_PLAIN,
        &one_by_one(&[("ok@example.com", OK)]),
        DATA,
        "C: ..hidden
         C: ...two
         C: ..
         C: middle
         C:
         C: ..
         C: no final CRLF
         C: .
         S: 250 2.0.0 queued",
    ];
    // Every way of cutting the content into reads gives the same wire bytes.
    for step in [1, 2, 3, 7, content.len()] {
        let (up, mut conn) = connect(&script);
        let rcpts = [rcpt("ok@example.com")];
        let rcpts: Vec<&Recipient> = rcpts.iter().collect();
        let mut reader = Trickle {
            data: content,
            step,
        };
        let out = conn
            .send(&envelope(), &rcpts, &mut reader, NEVER)
            .expect("not cancelled");
        assert_eq!(
            out.results,
            vec![accepted(true, "250 2.0.0 queued")],
            "step {step}"
        );
        drop(conn);
        let received = up.finish();
        let data = &received[find(&received, b"DATA\r\n").expect("DATA sent") + 6..];
        assert_eq!(count(data, b"\r\n.\r\n"), 1, "step {step}");
        assert!(data.ends_with(b"\r\n.\r\n"));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[test]
fn several_messages_share_one_connection() {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        // A completed transaction: the next MAIL needs no RSET.
        &one_by_one(&[("ok@example.com", OK)]),
        DATA,
        &content_then("S: 250 2.0.0 queued as 1"),
        // All recipients refused: no DATA, and the transaction stays open ...
        "C: MAIL FROM:<>
         S: 250 2.1.0 ok
         C: RCPT TO:<gone@example.com>
         S: 550 5.1.1 no such user",
        // ... so RSET before the next MAIL.
        "C: RSET
         S: 250 2.0.0 ok",
        &one_by_one(&[("ok@example.com", OK)]),
        DATA,
        &content_then("S: 250 2.0.0 queued as 3"),
        QUIT,
    ]);
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert_eq!(out.results, vec![accepted(true, "250 2.0.0 queued as 1")]);
    let bounce = Envelope {
        reverse_path: String::new(),
        ..envelope()
    };
    let out = send(&mut conn, &bounce, &[rcpt("gone@example.com")], CONTENT);
    assert_eq!(out.results, vec![permanent("550 5.1.1 no such user")]);
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert_eq!(out.results, vec![accepted(true, "250 2.0.0 queued as 3")]);
    conn.quit();
    up.finish();
}

#[test]
fn pipelined_mail_rejection_applies_to_all_and_replies_are_drained() {
    let (up, mut conn) = connect(&[
        GREETING_PIPELINING,
        "C: MAIL FROM:<alice@example.org>
         C: RCPT TO:<a@example.com>
         C: RCPT TO:<b@example.com>
         C: DATA
         S: 550 5.7.1 sender rejected
         S: 503 5.5.1 no sender
         S: 503 5.5.1 no sender
         S: 503 5.5.1 no sender
         C: RSET
         S: 250 2.0.0 ok
         C: MAIL FROM:<alice@example.org>
         C: RCPT TO:<a@example.com>
         C: DATA
         S: 451 4.3.0 try later
         S: 503 5.5.1 no sender
         S: 503 5.5.1 no sender",
        QUIT,
    ]);
    let out = send_to(&mut conn, &["a@example.com", "b@example.com"]);
    assert_eq!(out.results, vec![permanent("550 5.7.1 sender rejected"); 2]);
    assert!(conn.is_usable());
    let out = send_to(&mut conn, &["a@example.com"]);
    assert_eq!(out.results, vec![temporary("451 4.3.0 try later")]);
    conn.quit();
    up.finish();
}

#[test]
fn pipelined_data_accepted_without_recipients_gets_a_lone_dot() {
    // RFC 2920 §3.1: the server should not, but if it says 354 anyway the
    // client ends the empty data; with no recipients nothing is delivered.
    let (up, mut conn) = connect(&[
        GREETING_PIPELINING,
        &pipelined(&[("gone@example.com", NO_SUCH_USER)]),
        "C: .
         S: 554 5.5.1 no valid recipients",
        &pipelined(&[("ok@example.com", OK)]),
        &content_then("S: 250 2.0.0 queued"),
    ]);
    let out = send_to(&mut conn, &["gone@example.com"]);
    assert_eq!(out.results, vec![permanent("550 5.1.1 no such user")]);
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert_eq!(out.results, vec![accepted(true, "250 2.0.0 queued")]);
    drop(conn);
    up.finish();
}

#[test]
fn data_rejection_applies_to_accepted_recipients_only() {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        &one_by_one(&[("ok@example.com", OK), ("gone@example.com", NO_SUCH_USER)]),
        "C: DATA
         S: 451 4.3.0 queue full
         C: RSET
         S: 250 2.0.0 ok",
        &one_by_one(&[("ok@example.com", OK)]),
        DATA,
        &content_then("S: 554 5.7.1 spam"),
        // A rejected final dot still ends the transaction: no RSET.
        &one_by_one(&[("ok@example.com", OK)]),
        DATA,
        &content_then("S: 250 2.0.0 queued"),
        QUIT,
    ]);
    let rcpts = ["ok@example.com", "gone@example.com"];
    let out = send_to(&mut conn, &rcpts);
    assert_eq!(
        out.results,
        vec![
            temporary("451 4.3.0 queue full"),
            permanent("550 5.1.1 no such user")
        ]
    );
    let out = send_to(&mut conn, &rcpts[..1]);
    assert_eq!(out.results, vec![permanent("554 5.7.1 spam")]);
    let out = send_to(&mut conn, &rcpts[..1]);
    assert_eq!(out.results, vec![accepted(true, "250 2.0.0 queued")]);
    conn.quit();
    up.finish();
}

/// The plain [`envelope`] of an 8-bit message.
fn eight_bit_envelope() -> Envelope {
    Envelope {
        eight_bit: true,
        body: BodyType::EightBitMime,
        ..envelope()
    }
}

#[test]
fn eight_bit_message_to_seven_bit_hop_fails_without_mail() {
    let (up, mut conn) = connect(&[GREETING_PLAIN, QUIT]);
    let out = send(
        &mut conn,
        &eight_bit_envelope(),
        &[rcpt("a@example.com"), rcpt("b@example.com")],
        b"caf\xc3\xa9\r\n",
    );
    assert_local(&out.results[0], true, "5.6.3 ");
    assert_eq!(out.results[0], out.results[1]);
    assert_eq!(out.results[0].status.to_string(), "5.6.3");
    assert!(conn.is_usable());
    conn.quit();
    up.finish();
}

#[test]
fn eight_bit_and_size_parameters_when_offered() {
    let (up, mut conn) = connect(&[
        "S: 220 fake.test ESMTP
         C: EHLO gw.test
         S: 250-fake.test
         S: 250-8BITMIME
         S: 250 SIZE 1000000
         C: MAIL FROM:<alice@example.org> SIZE=100 BODY=8BITMIME
         S: 250 2.1.0 ok
         C: RCPT TO:<ok@example.com>
         S: 250 2.1.5 ok
         C: DATA
         S: 354 go ahead
         C: caf\u{e9}
         C: .
         S: 250 2.0.0 queued
         C: MAIL FROM:<alice@example.org> SIZE=100
         S: 250 2.1.0 ok
         C: RCPT TO:<ok@example.com>
         S: 250 2.1.5 ok",
        DATA,
        &content_then("S: 250 2.0.0 queued"),
    ]);
    let out = send(
        &mut conn,
        &eight_bit_envelope(),
        &[rcpt("ok@example.com")],
        "caf\u{e9}\r\n".as_bytes(),
    );
    assert_eq!(out.results, vec![accepted(true, "250 2.0.0 queued")]);
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert_eq!(out.results, vec![accepted(true, "250 2.0.0 queued")]);
    drop(conn);
    up.finish();
}

#[test]
fn message_over_the_size_limit_fails_without_mail() {
    let (up, mut conn) = connect(&["
        S: 220 fake.test ESMTP
        C: EHLO gw.test
        S: 250-fake.test
        S: 250 SIZE 50
    "]);
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert_local(&out.results[0], true, "5.3.4 ");
    drop(conn);
    up.finish();
}

/// Content that raises a flag once all of it was read.
struct FlagAtEnd<'a> {
    data: &'a [u8],
    done: &'a AtomicBool,
}

impl Read for FlagAtEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 {
            self.done.store(true, Ordering::SeqCst);
        }
        Ok(n)
    }
}

#[test]
fn cancel_before_the_final_dot_sends_no_dot() {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        &one_by_one(&[("ok@example.com", OK)]),
        DATA,
        CONTENT_LINES,
        "C! eof",
    ]);
    let done = AtomicBool::new(false);
    let cancel = || done.load(Ordering::SeqCst);
    let rcpts = [rcpt("ok@example.com")];
    let rcpts: Vec<&Recipient> = rcpts.iter().collect();
    let mut content = FlagAtEnd {
        data: CONTENT,
        done: &done,
    };
    assert_eq!(
        conn.send(&envelope(), &rcpts, &mut content, &cancel),
        Err(TransferError::Cancelled)
    );
    assert!(!conn.is_usable());
    conn.quit();
    let received = up.finish();
    assert!(received.ends_with(b"body\r\n"));
}

#[test]
fn cancel_before_mail_sends_nothing() {
    let (up, mut conn) = connect(&[GREETING_PLAIN, QUIT]);
    let rcpts = [rcpt("ok@example.com")];
    let rcpts: Vec<&Recipient> = rcpts.iter().collect();
    let result = conn.send(&envelope(), &rcpts, &mut &CONTENT[..], &|| true);
    assert_eq!(result, Err(TransferError::Cancelled));
    assert!(conn.is_usable());
    conn.quit();
    up.finish();
}

fn assert_never_sent_bare(content: &[u8], prefix: &str) {
    let (up, mut conn) = connect(&[
        GREETING_PLAIN,
        &one_by_one(&[("ok@example.com", OK), ("gone@example.com", NO_SUCH_USER)]),
        DATA,
        "C! rest",
    ]);
    let out = send(
        &mut conn,
        &envelope(),
        &[rcpt("ok@example.com"), rcpt("gone@example.com")],
        content,
    );
    assert_local(&out.results[0], true, prefix);
    assert_eq!(out.results[1], permanent("550 5.1.1 no such user"));
    assert!(!conn.is_usable());
    drop(conn);
    let received = up.finish();
    let data = &received[find(&received, b"DATA\r\n").expect("DATA sent") + 6..];
    let bare = data.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && data.get(i + 1) != Some(&b'\n'))
            || (b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
    });
    assert!(!bare, "bare CR or LF sent: {data:?}");
    assert!(!data.ends_with(b"\r\n.\r\n"), "final dot sent: {data:?}");
}

#[test]
fn bare_cr_in_content_is_never_sent() {
    assert_never_sent_bare(b"fine\r\nbad\rline\r\n.\r\n", "5.6.0 ");
    assert_never_sent_bare(b"fine\r\nends in CR\r", "5.6.0 ");
}

#[test]
fn bare_lf_in_content_is_never_sent() {
    assert_never_sent_bare(b"fine\r\nbad\nline\r\n", "5.6.0 ");
    assert_never_sent_bare(b"fine\r\n\n.\n", "5.6.0 ");
}

#[test]
fn refused_ehlo_falls_back_to_helo() {
    let (up, mut conn) = connect(&["
        S: 220 old.test SMTP
        C: EHLO gw.test
        S: 502 command not implemented
        C: HELO gw.test
        S: 250 old.test
        C: MAIL FROM:<alice@example.org>
        S: 250 ok
        C: RCPT TO:<ok@example.com>
        S: 250 ok
        C: DATA
        S: 354 go ahead
        C: Subject: hi
        C:
        C: body
        C: .
        S: 250 queued
        C: QUIT
        S: 221 bye
    "]);
    let out = send_to(&mut conn, &["ok@example.com"]);
    assert_eq!(out.results, vec![accepted(true, "250 queued")]);
    assert_eq!(out.results[0].status.to_string(), "2.0.0");
    conn.quit();
    up.finish();
}

#[test]
fn greeting_refusals_are_temporary_open_errors() {
    let up = Upstream::start("S: 554 5.7.1 not you\nC: QUIT");
    let e = Connection::open(&up.hop(), "gw.test", &timeouts()).expect_err("refused");
    assert!(matches!(e, OpenError::Refused { .. }), "{e:?}");
    assert_eq!(
        summary(&e.delivery()),
        "4.7.1 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.7.1 not you"
    );
    up.finish();

    let up = Upstream::start("S: 421 4.3.2 busy\nC! rest");
    let e = Connection::open(&up.hop(), "gw.test", &timeouts()).expect_err("refused");
    assert!(
        summary(&e.delivery()).starts_with("4.3.2 "),
        "{}",
        summary(&e.delivery())
    );
    up.finish();
}

#[test]
fn connect_failure_is_a_temporary_open_error() {
    // A port nobody listens on: bind, note, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hop = Hop {
        host: "127.0.0.1".to_string(),
        port,
        implicit_tls: false,
    };
    let e = Connection::open(&hop, "gw.test", &timeouts()).expect_err("refused");
    assert!(matches!(e, OpenError::Connect { .. }), "{e:?}");
    assert!(
        summary(&e.delivery()).starts_with("4.4.1 connect to 127.0.0.1[127.0.0.1]"),
        "{}",
        summary(&e.delivery())
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn unresolvable_host_is_a_temporary_open_error() {
    let hop = Hop {
        host: "no-such-host.invalid".to_string(),
        port: 25,
        implicit_tls: false,
    };
    let e = Connection::open(&hop, "gw.test", &timeouts()).expect_err("unresolvable");
    assert!(matches!(e, OpenError::Resolve { .. }), "{e:?}");
    assert!(
        summary(&e.delivery()).starts_with("4.4.3 cannot resolve no-such-host.invalid"),
        "{}",
        summary(&e.delivery())
    );
}

#[test]
fn bracketed_ipv6_literal_is_connected_to() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        return;
    }; // no IPv6 here
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"220 v6\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        stream.write_all(b"250 v6\r\n").unwrap();
        line
    });
    let hop = Hop {
        host: "[::1]".to_string(),
        port,
        implicit_tls: false,
    };
    // The upstream listens on [::1] only: an open session is an IPv6 one.
    let conn = Connection::open(&hop, "gw.test", &timeouts()).expect("open");
    drop(conn);
    assert_eq!(server.join().unwrap(), "EHLO gw.test\r\n");
}
