//! Session transcripts in RFC 5321 Appendix D style, and the properties
//! that must hold for any input.

use super::*;
use crate::smtp::data::{DataDecoder, Verdict};

/// A policy with fixed answers; counts reservations.
#[derive(Default)]
pub(super) struct TestPolicy {
    pub(super) busy_sender: Option<&'static str>,
    pub(super) refuse_rcpt: Option<&'static str>,
    pub(super) spool_full: bool,
    pub(super) no_rdlv: bool,
    pub(super) reserved: usize,
    /// AUTH succeeds for `alice` with password `secret`.
    pub(super) identity: Option<String>,
}

impl Policy for TestPolicy {
    fn check_sender(&mut self, path: &Path, _size: Option<u64>) -> Result<(), Reply> {
        match (path, self.busy_sender) {
            (Path::Mailbox(m), Some(b)) if m == b => Err(Reply::new(452, "4.7.1", "too many")),
            _ if self.spool_full => Err(Reply::new(452, "4.3.1", "full")),
            _ => Ok(()),
        }
    }
    fn check_recipient(&mut self, address: &str) -> Result<(), Reply> {
        match self.refuse_rcpt {
            Some(r) if r == address => Err(Reply::new(550, "5.1.2", "no route")),
            _ => Ok(()),
        }
    }
    fn check_data(&mut self) -> Result<(), Reply> {
        if self.spool_full {
            Err(Reply::new(452, "4.3.1", "full"))
        } else {
            Ok(())
        }
    }
    fn reserve_reliable(&mut self, _reverse_path: &str) -> Result<(), Reply> {
        if self.no_rdlv {
            return Err(Reply::new(452, "4.7.1", "busy"));
        }
        self.reserved += 1;
        Ok(())
    }
    fn end_transaction(&mut self) {
        self.reserved = 0;
    }
    fn authenticate(&mut self, c: &Credentials) -> Result<(), Reply> {
        if c.authcid == "alice" && c.password == b"secret" {
            self.identity = Some(c.authcid.clone());
            Ok(())
        } else {
            Err(Reply::new(
                535,
                "5.7.8",
                "authentication credentials invalid",
            ))
        }
    }
    fn forget_identity(&mut self) {
        self.identity = None;
    }
}

pub(super) fn session() -> Session {
    session_with(false, AuthConfig::default())
}

pub(super) fn session_with(starttls: bool, auth: AuthConfig) -> Session {
    Session::new(SessionConfig {
        hostname: "gw.test".into(),
        max_message_size: 1000,
        max_recipients: 100,
        rdlv_mintimer: 30,
        starttls,
        auth,
        burl: true,
    })
}

/// Runs an RFC 5321 Appendix D style transcript: `C:` lines are fed,
/// each `S:` line is a reply expected in order (code, then an optional
/// text prefix after the code). `D:` feeds a message body (`\n` becomes
/// CRLF, `\l` a bare LF) through the DATA decoder and spools it as `ID1`; `W:` is the
/// interval passing (a 120 is expected next); `O:` delivers an outcome
/// (`ok`, `fail`).
#[track_caller]
pub(super) fn transcript(s: &mut Session, p: &mut TestPolicy, script: &str) -> Vec<Action> {
    let mut replies: Vec<Reply> = Vec::new();
    let mut actions = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (tag, rest) = (&line[..2], line[2..].trim_start());
        match tag {
            "C:" => {
                let step = s.feed(format!("{rest}\r\n").as_bytes(), p);
                replies.extend(step.reply);
                if step.action == Action::Detach {
                    replies.push(s.detached());
                }
                actions.push(step.action);
            }
            "E:" => {
                let step = s.feed_early(format!("{rest}\r\n").as_bytes(), p);
                replies.extend(step.reply);
                actions.push(step.action);
            }
            "D:" => {
                let body = format!(
                    "{}\r\n.\r\n",
                    rest.replace("\\n", "\r\n").replace("\\l", "\n")
                );
                let mut d = DataDecoder::new(1000);
                let (_, done) = d.decode(body.as_bytes(), &mut Vec::new());
                assert!(done, "no end of data in {body:?}");
                match s.data_end(d.verdict(), p) {
                    Ok(txn) => {
                        let step = s.spooled("ID1", txn.rdlv);
                        replies.extend(step.reply);
                        actions.push(step.action);
                    }
                    Err(r) => replies.push(r),
                }
            }
            "W:" => replies.push(s.keepalive()),
            "O:" => {
                let outcome = match rest {
                    "ok" => Outcome::Done {
                        delivered: 1,
                        deferred: 0,
                        first_failure: None,
                    },
                    "deferred" => Outcome::Done {
                        delivered: 0,
                        deferred: 1,
                        first_failure: None,
                    },
                    _ => Outcome::Done {
                        delivered: 0,
                        deferred: 0,
                        first_failure: Some(Reply::new(550, "5.1.1", "no such user")),
                    },
                };
                replies.push(s.outcome(&outcome, "ID1"));
            }
            "S:" => {
                let want = rest;
                assert!(!replies.is_empty(), "expected {want:?}, no reply left");
                let got = replies.remove(0).to_bytes();
                let got = String::from_utf8_lossy(&got);
                let got = got.lines().last().unwrap_or("");
                assert!(got.starts_with(want), "expected {want:?}, got {got:?}");
            }
            _ => panic!("bad transcript line {line:?}"),
        }
    }
    assert!(replies.is_empty(), "unexpected replies left: {replies:?}");
    actions
}

#[track_caller]
fn run(script: &str) -> Vec<Action> {
    transcript(&mut session(), &mut TestPolicy::default(), script)
}

const START: &str = "C: EHLO c.test\nS: 250 HELP\nC: MAIL FROM:<a@x.test>\nS: 250 2.1.0\nC: RCPT TO:<b@y.test>\nS: 250 2.1.5\n";

#[test]
fn plain_transaction_is_queued() {
    run(&format!(
        "{START}C: DATA\nS: 354\nD: Subject: t\\n\\nhi\nS: 250 2.0.0 queued as ID1\nC: QUIT\nS: 221 2.0.0"
    ));
}

#[test]
fn ehlo_advertises_the_extensions() {
    let mut s = session();
    let step = s.feed(b"EHLO c\r\n", &mut TestPolicy::default());
    let text = String::from_utf8(step.reply.unwrap().to_bytes()).unwrap();
    for kw in [
        "PIPELINING",
        "8BITMIME",
        "SIZE 1000",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "RDLV mintimer=30",
        "DETA",
        "SMTPUTF8",
    ] {
        assert!(
            text.contains(&format!("250-{kw}\r\n")),
            "{kw} missing in {text}"
        );
    }
}

#[test]
fn non_ascii_addresses_without_smtputf8_get_553_5_6_7() {
    run("C: EHLO c\nS: 250\n\
         C: MAIL FROM:<j\u{f6}rg@x.test>\nS: 553 5.6.7\n\
         C: MAIL FROM:<a@x.test>\nS: 250 2.1.0\n\
         C: RCPT TO:<j\u{f6}s\u{e9}@y.test>\nS: 553 5.6.7\n\
         C: RCPT TO:<b@b\u{fc}cher.example>\nS: 553 5.6.7\n\
         C: RCPT TO:<b@y.test>\nS: 250 2.1.5\n\
         C: DATA\nS: 354");
    // After HELO too: the address is what is refused, not the parameter.
    run("C: HELO c\nS: 250\nC: MAIL FROM:<j\u{f6}rg@x.test>\nS: 553 5.6.7");
}

#[test]
fn the_553_does_not_echo_the_utf8_address() {
    let mut s = session();
    let mut p = TestPolicy::default();
    s.feed(b"EHLO c\r\n", &mut p);
    let step = s.feed("MAIL FROM:<j\u{f6}rg@x.test>\r\n".as_bytes(), &mut p);
    let reply = step.reply.unwrap().to_bytes();
    assert!(reply.is_ascii(), "{}", String::from_utf8_lossy(&reply));
}

#[test]
fn smtputf8_transaction_takes_utf8_addresses_and_keeps_the_flag() {
    let mut s = session();
    let mut p = TestPolicy::default();
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c\nS: 250\n\
         C: MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8\nS: 250 2.1.0 sender <j\u{f6}rg@b\u{fc}cher.example> OK\n\
         C: RCPT TO:<\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}>\nS: 250 2.1.5\n\
         C: RCPT TO:<bob@y.test>\nS: 250 2.1.5",
    );
    assert!(s.is_smtputf8());
    assert_eq!(s.feed(b"DATA\r\n", &mut p).action, Action::ReceiveData);
    assert!(s.is_smtputf8(), "still during the content");
    let txn = s.data_end(Verdict::Ok, &mut p).unwrap();
    assert!(txn.params.smtputf8);
    assert_eq!(txn.reverse_path, "j\u{f6}rg@b\u{fc}cher.example");
    assert_eq!(
        txn.recipients[0].address,
        "\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}"
    );
    assert!(!s.is_smtputf8(), "the transaction is over");
}

#[test]
fn smtputf8_lasts_one_transaction_and_needs_ehlo() {
    run("C: EHLO c\nS: 250\n\
         C: MAIL FROM:<a@x.test> SMTPUTF8\nS: 250\n\
         C: RCPT TO:<j\u{f6}s\u{e9}@y.test>\nS: 250\n\
         C: RSET\nS: 250\n\
         C: MAIL FROM:<a@x.test>\nS: 250\n\
         C: RCPT TO:<j\u{f6}s\u{e9}@y.test>\nS: 553 5.6.7");
    run("C: HELO c\nS: 250\nC: MAIL FROM:<a@x.test> SMTPUTF8\nS: 555 5.5.4");
}

#[test]
fn non_ascii_outside_mail_and_rcpt_is_500() {
    run("C: EHLO b\u{fc}cher.example\nS: 500 5.5.2\n\
         C: EHLO c\nS: 250\n\
         C: VRFY j\u{f6}rg\nS: 500 5.5.2\n\
         C: NOOP \u{e9}\nS: 500 5.5.2\n\
         C: MAIL FROM:<a@x.test> SMTPUTF8\nS: 250");
    let mut s = session();
    let step = s.feed(b"RCPT TO:<j\xf6rg@x>\r\n", &mut TestPolicy::default());
    assert_eq!(step.reply.unwrap().code, 500, "Latin-1 is not UTF-8");
}

#[test]
fn a_utf8_line_is_measured_in_octets() {
    // 32 two-octet characters are the 64-octet limit of a local part; one
    // more is over it (the limits stay in octets).
    let mut s = session();
    let mut p = TestPolicy::default();
    s.feed(b"EHLO c\r\n", &mut p);
    s.feed(b"MAIL FROM:<a@x.test> SMTPUTF8\r\n", &mut p);
    let local = "\u{e9}".repeat(32);
    let rcpt = format!("RCPT TO:<{local}@y.test>\r\n");
    assert_eq!(rcpt.len(), 10 + 64 + 9);
    assert_eq!(s.feed(rcpt.as_bytes(), &mut p).reply.unwrap().code, 250);
    let over = format!("RCPT TO:<{local}\u{e9}@y.test>\r\n");
    let reply = s.feed(over.as_bytes(), &mut p).reply.unwrap();
    assert_eq!(
        (reply.code, reply.status.map(|st| st.to_string())),
        (501, Some("5.1.3".into()))
    );
}

#[test]
fn null_reverse_path_is_accepted() {
    run("C: HELO c\nS: 250\nC: MAIL FROM:<>\nS: 250 2.1.0");
}

#[test]
fn sequence_errors_are_503() {
    run(
        "C: MAIL FROM:<a@b>\nS: 503 5.5.1\nC: EHLO c\nS: 250\nC: RCPT TO:<a@b>\nS: 503 5.5.1\nC: DATA\nS: 503 5.5.1",
    );
    run(&format!("{START}C: MAIL FROM:<a@b>\nS: 503 5.5.1"));
    run("C: EHLO c\nS: 250\nC: MAIL FROM:<a@b>\nS: 250\nC: DATA\nS: 554 5.5.1");
}

#[test]
fn unknown_command_gets_500_and_the_session_goes_on() {
    run(
        "C: FROB\nS: 500 5.5.2\nC: NOOP\nS: 250 2.0.0\nC: VRFY x\nS: 252 2.5.0\nC: HELP\nS: 214 2.0.0",
    );
}

#[test]
fn rset_and_ehlo_clear_the_transaction() {
    run(&format!(
        "{START}C: RSET\nS: 250\nC: RCPT TO:<b@y>\nS: 503\nC: MAIL FROM:<a@x>\nS: 250"
    ));
    run(&format!(
        "{START}C: EHLO again\nS: 250 HELP\nC: RCPT TO:<b@y>\nS: 503"
    ));
}

#[test]
fn command_line_limits() {
    let mut s = session();
    let mut p = TestPolicy::default();
    let ok = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(ok.len(), 512);
    assert_eq!(s.feed(ok.as_bytes(), &mut p).reply.unwrap().code, 250);
    let long = format!("NOOP {}\r\n", "x".repeat(513 - 7));
    assert_eq!(s.feed(long.as_bytes(), &mut p).reply.unwrap().code, 500);
    assert_eq!(s.line_too_long().reply.unwrap().code, 500);
    assert_eq!(
        s.feed(b"NOOP\n", &mut p).reply.unwrap().code,
        500,
        "bare LF line end"
    );
}

#[test]
fn long_client_name_is_cut_in_the_greeting_reply() {
    let mut s = session();
    let mut p = TestPolicy::default();
    let name = "a".repeat(512 - "EHLO \r\n".len());
    for verb in ["EHLO", "HELO"] {
        let step = s.feed(format!("{verb} {name}\r\n").as_bytes(), &mut p);
        let reply = step.reply.unwrap();
        assert_eq!(reply.code, 250);
        let wire = reply.to_bytes();
        assert!(
            wire.split(|&b| b == b'\n').all(|l| l.len() < 512),
            "{reply}"
        );
        assert_eq!(s.helo(), name, "the name itself is kept whole");
    }
}

#[test]
fn dsn_parameters_may_exceed_512_octets() {
    let orcpt = "x".repeat(480);
    let mut s = session();
    let mut p = TestPolicy::default();
    s.feed(b"EHLO c\r\n", &mut p);
    s.feed(b"MAIL FROM:<a@b>\r\n", &mut p);
    let line = format!("RCPT TO:<b@c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{orcpt}@example.com\r\n");
    assert!(line.len() > 512);
    assert_eq!(s.feed(line.as_bytes(), &mut p).reply.unwrap().code, 250);
}

#[test]
fn recipient_limit_is_452() {
    let mut script = String::from("C: EHLO c\nS: 250\nC: MAIL FROM:<a@b>\nS: 250\n");
    for i in 0..100 {
        script.push_str(&format!("C: RCPT TO:<r{i}@c>\nS: 250\n"));
    }
    script.push_str("C: RCPT TO:<r100@c>\nS: 452 4.5.3\nC: DATA\nS: 354");
    run(&script);
}

#[test]
fn declared_size_over_the_limit_is_552_at_mail() {
    run(
        "C: EHLO c\nS: 250\nC: MAIL FROM:<a@b> SIZE=1001\nS: 552 5.3.4\nC: MAIL FROM:<a@b> SIZE=1000\nS: 250",
    );
}

#[test]
fn content_defects_are_refused_after_the_terminator() {
    run(&format!(
        "{START}C: DATA\nS: 354\nD: a\\lb\nS: 550 5.6.0\nC: NOOP\nS: 250"
    ));
    let long = "x".repeat(1001);
    run(&format!("{START}C: DATA\nS: 354\nD: {long}\nS: 500 5.5.2"));
}

#[test]
fn policy_refusals_are_passed_on() {
    let mut p = TestPolicy {
        busy_sender: Some("a@x.test"),
        refuse_rcpt: Some("b@y.test"),
        ..Default::default()
    };
    transcript(
        &mut session(),
        &mut p,
        "C: EHLO c\nS: 250\nC: MAIL FROM:<a@x.test>\nS: 452 4.7.1\nC: MAIL FROM:<c@x.test>\nS: 250\nC: RCPT TO:<b@y.test>\nS: 550 5.1.2",
    );
    let mut full = TestPolicy {
        spool_full: true,
        ..Default::default()
    };
    transcript(
        &mut session(),
        &mut full,
        "C: EHLO c\nS: 250\nC: MAIL FROM:<a@b>\nS: 452 4.3.1",
    );
}

#[test]
fn rdlv_needs_a_recipient_and_comes_once() {
    run(
        "C: EHLO c\nS: 250\nC: RDLV\nS: 503 5.5.1\nC: MAIL FROM:<a@b>\nS: 250\nC: RDLV\nS: 503 5.5.1",
    );
    run(&format!(
        "{START}C: RDLV\nS: 200 2.0.0 reliable delivery OK\nC: RDLV\nS: 503 5.5.1"
    ));
}

#[test]
fn rdlv_maxtimer_is_checked_against_mintimer_and_600() {
    run(&format!(
        "{START}C: RDLV maxtimer=29\nS: 501 5.5.4\nC: RDLV maxtimer=601\nS: 501 5.5.4\nC: RDLV maxtimer=x\nS: 501 5.5.4\nC: RDLV maxtimer=600\nS: 200"
    ));
    let mut s = session();
    transcript(
        &mut s,
        &mut TestPolicy::default(),
        &format!("{START}C: RDLV\nS: 200"),
    );
    assert_eq!(s.answer_window(), None, "no hold yet");
    let step = s.feed(b"DATA\r\n", &mut TestPolicy::default());
    assert_eq!(step.action, Action::ReceiveData);
    let txn = s.data_end(Verdict::Ok, &mut TestPolicy::default()).unwrap();
    assert_eq!(txn.rdlv, Some(30), "no maxtimer means mintimer");
}

#[test]
fn rdlv_final_reply_when_processing_finishes_in_time() {
    let actions = run(&format!(
        "{START}C: RDLV maxtimer=60\nS: 200\nC: DATA\nS: 354\nD: hi\nO: ok\nS: 250 2.0.0 ID1 delivered"
    ));
    assert_eq!(actions.last(), Some(&Action::Wait));
}

#[test]
fn draft_example_4_1_detached_submit() {
    let actions = run(&format!(
        "{START}C: RDLV maxtimer=30\nS: 200 2.0.0 reliable delivery OK\nC: DATA\nS: 354\nD: lots of data\n\
         W: \nS: 120 gw.test DATA processing in progress\nC: DETA\nS: 221 2.0.0 gw.test closing"
    ));
    assert_eq!(actions.last(), Some(&Action::Detach));
}

#[test]
fn keepalive_has_no_enhanced_status_code() {
    let mut s = session();
    assert_eq!(
        s.keepalive().to_bytes(),
        b"120 gw.test DATA processing in progress\r\n"
    );
}

#[test]
fn cont_keeps_waiting_until_the_outcome() {
    let actions = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: CONT\nW: \nS: 120\nC: CONT\nO: deferred\nS: 250 2.0.0 ID1 queued"
    ));
    assert_eq!(actions.iter().filter(|a| **a == Action::Wait).count(), 3);
}

#[test]
fn all_recipients_failing_gives_the_first_diagnostic() {
    run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nO: fail\nS: 550 5.1.1 no such user"
    ));
}

#[test]
fn anything_but_cont_or_deta_after_120_aborts() {
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: RSET\nS: 250\nC: MAIL FROM:<a@b>\nS: 250"
    ));
    assert_eq!(a[a.len() - 2], Action::Abort { close: false });
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: QUIT\nS: 221"
    ));
    assert_eq!(a.last(), Some(&Action::Abort { close: true }));
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: NOOP\nS: 503 5.5.1"
    ));
    assert_eq!(a.last(), Some(&Action::Abort { close: false }));
}

#[test]
fn a_garbage_line_after_120_aborts_with_500() {
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: BLAH\nS: 500 5.5.2"
    ));
    assert_eq!(a.last(), Some(&Action::Abort { close: false }));
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nE: BLAH\nS: 500 5.5.2\nC: CONT"
    ));
    assert_eq!(a.last(), Some(&Action::Wait));
}

#[test]
fn deta_or_cont_without_a_pending_120_is_503() {
    run("C: EHLO c\nS: 250\nC: DETA\nS: 503 5.5.1\nC: CONT\nS: 503 5.5.1");
    // Pipelined early, before the 120 went out: not an answer to it.
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nE: DETA\nS: 503 5.5.1\nC: CONT"
    ));
    assert_eq!(a[a.len() - 2], Action::Continue);
    assert_eq!(a.last(), Some(&Action::Wait));
}

#[test]
fn deta_that_cannot_be_recorded_keeps_waiting() {
    let mut s = session();
    let mut p = TestPolicy::default();
    transcript(
        &mut s,
        &mut p,
        &format!("{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120"),
    );
    let step = s.feed(b"DETA\r\n", &mut p);
    assert_eq!((step.reply, step.action), (None, Action::Detach));
    assert_eq!(s.detach_refused(DetachRefusal::Spool).code, 452);
    assert!(s.is_processing());
    assert_eq!(s.keepalive().code, 120);
}

#[test]
fn bare_postmaster_is_qualified_with_our_hostname() {
    let mut s = session();
    let mut p = TestPolicy {
        refuse_rcpt: Some("postmaster@gw.test"),
        ..Default::default()
    };
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c\nS: 250\nC: MAIL FROM:<>\nS: 250\nC: RCPT TO:<Postmaster>\nS: 550 5.1.2",
    );
}

#[test]
fn long_upstream_failure_is_cut_to_a_legal_reply_line() {
    let mut s = session();
    let failure = Reply::new(550, "5.1.1", "x".repeat(2000));
    let reply = s.outcome(
        &Outcome::Done {
            delivered: 0,
            deferred: 0,
            first_failure: Some(failure),
        },
        "ID",
    );
    assert!(reply.to_bytes().len() <= 512, "{}", reply.to_bytes().len());
}

#[test]
fn final_reply_text_from_elsewhere_is_made_printable() {
    let mut s = session();
    let failure = Reply::new(
        550,
        "5.2.0",
        "<b@y>: cannot write /m\u{e9}l/new\r\n250 ok\0",
    );
    let reply = s.outcome(
        &Outcome::Done {
            delivered: 0,
            deferred: 0,
            first_failure: Some(failure),
        },
        "ID",
    );
    assert_eq!(
        reply.to_bytes(),
        b"550 5.2.0 <b@y>: cannot write /m?l/new??250 ok?\r\n"
    );
    let reply = s.outcome(&Outcome::Failed("disk\nfull".into()), "ID");
    assert_eq!(reply.text(), "processing failed, nothing kept: disk?full");
}

#[test]
fn deta_over_max_detached_keeps_waiting() {
    let mut s = session();
    let mut p = TestPolicy::default();
    transcript(
        &mut s,
        &mut p,
        &format!("{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120"),
    );
    assert_eq!(s.feed(b"DETA\r\n", &mut p).action, Action::Detach);
    assert_eq!(s.detach_refused(DetachRefusal::Limit).code, 452);
    // As after CONT: a DETA now is early (no 120 pending).
    assert_eq!(s.feed(b"DETA\r\n", &mut p).reply.unwrap().code, 503);
    let ok = Outcome::Done {
        delivered: 1,
        deferred: 0,
        first_failure: None,
    };
    assert_eq!(s.outcome(&ok, "ID").code, 250);
}

#[test]
fn random_lines_never_panic_and_always_get_a_reply() {
    // xorshift over command fragments and odd bytes; the seed is in the
    // assertion message on failure.
    const PIECES: &[&str] = &[
        "EHLO x",
        "MAIL FROM:<a@b>",
        "MAIL FROM:<>",
        "RCPT TO:<c@d>",
        "DATA",
        "RSET",
        "RDLV",
        "RDLV maxtimer=",
        "CONT",
        "DETA",
        "QUIT",
        " SIZE=",
        "NOTIFY=NEVER",
        "ORCPT=rfc822;",
        "+2B",
        "\u{e9}",
        "<",
        ">",
        "\t",
        "\r",
        "\n",
        "0",
        "99999999999999999999",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2000 {
        let mut s = session();
        let mut p = TestPolicy::default();
        for _ in 0..(next() % 8) {
            let mut line = String::new();
            for _ in 0..(next() % 4 + 1) {
                line.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            line.push_str("\r\n");
            let step = if next() % 2 == 0 {
                s.feed(line.as_bytes(), &mut p)
            } else {
                s.feed_early(line.as_bytes(), &mut p)
            };
            let needs_reply = !matches!(step.action, Action::Wait | Action::Detach);
            if step.action == Action::Detach {
                let _ = if next() % 2 == 0 {
                    s.detached()
                } else {
                    s.detach_refused(DetachRefusal::Limit)
                };
            }
            assert!(
                step.reply.is_some() || !needs_reply,
                "round {round}: no reply to {line:?}"
            );
            if step.action == Action::ReceiveData
                && let Ok(txn) = s.data_end(Verdict::Ok, &mut p)
            {
                let _ = s.spooled("ID", txn.rdlv);
            }
            if s.is_processing() && next() % 2 == 0 {
                let _ = s.keepalive();
            }
        }
    }
}

#[test]
fn many_errors_close_the_session() {
    let mut s = session();
    let mut p = TestPolicy::default();
    let mut last = None;
    for _ in 0..MAX_ERRORS {
        last = Some(s.feed(b"FROB\r\n", &mut p));
    }
    let step = last.unwrap();
    assert_eq!(step.reply.unwrap().code, 421);
    assert_eq!(step.action, Action::Close);
}

#[test]
fn extensions_are_refused_after_helo() {
    run(
        "C: HELO c\nS: 250\nC: MAIL FROM:<a@b> SIZE=10\nS: 555 5.5.4\nC: MAIL FROM:<a@b> BODY=7BIT\nS: 555\n\
         C: MAIL FROM:<a@b>\nS: 250\nC: RCPT TO:<c@d> NOTIFY=NEVER\nS: 555 5.5.4\nC: RCPT TO:<c@d>\nS: 250\n\
         C: RDLV\nS: 503 5.5.1\nC: DATA\nS: 354",
    );
}

#[test]
fn cont_or_deta_with_arguments_is_501_and_the_120_stays_pending() {
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: CONT now\nS: 501 5.5.4\n\
         C: DETA please\nS: 501 5.5.4\nC: DETA\nS: 221"
    ));
    assert_eq!(a.last(), Some(&Action::Detach));
    let a = run(&format!(
        "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: DETA x\nS: 501\nC: CONT"
    ));
    assert_eq!(a.last(), Some(&Action::Wait));
}

#[test]
fn no_120_sooner_than_mintimer() {
    let mut s = session();
    let mut p = TestPolicy::default();
    transcript(
        &mut s,
        &mut p,
        &format!("{START}C: RDLV maxtimer=30\nS: 200\nC: DATA\nS: 354\nD: x"),
    );
    assert_eq!(
        s.keepalive_after(),
        Some(std::time::Duration::from_secs(30))
    );
    let mut s = session();
    transcript(
        &mut s,
        &mut p,
        &format!("{START}C: RDLV maxtimer=100\nS: 200\nC: DATA\nS: 354\nD: x"),
    );
    assert_eq!(
        s.keepalive_after(),
        Some(std::time::Duration::from_secs(90))
    );
    assert_eq!(s.answer_window(), Some(std::time::Duration::from_secs(100)));
}

#[test]
fn final_reply_codes_are_ones_rfc_5321_allows_after_data() {
    let mut s = session();
    let failed = |code| Outcome::Done {
        delivered: 0,
        deferred: 0,
        first_failure: Some(Reply::new(
            code,
            "5.5.2",
            "<b@y>: 500 5.5.2 syntax error upstream",
        )),
    };
    let reply = s.outcome(&failed(500), "ID");
    assert_eq!(reply.code, 554);
    assert!(
        reply.text().contains("500 5.5.2 syntax error upstream"),
        "{reply}"
    );
    assert_eq!(s.outcome(&failed(550), "ID").code, 550);
    assert_eq!(s.outcome(&failed(553), "ID").code, 554);
}

#[test]
fn postmaster_in_any_case_is_qualified() {
    let mut p = TestPolicy {
        refuse_rcpt: Some("postmaster@gw.test"),
        ..Default::default()
    };
    transcript(
        &mut session(),
        &mut p,
        "C: EHLO c\nS: 250\nC: MAIL FROM:<>\nS: 250\nC: RCPT TO:<POSTMASTER>\nS: 550 5.1.2",
    );
}

#[test]
fn rdlv_takes_a_reservation_that_rset_releases() {
    let mut s = session();
    let mut p = TestPolicy::default();
    transcript(&mut s, &mut p, &format!("{START}C: RDLV\nS: 200"));
    assert_eq!(p.reserved, 1);
    transcript(&mut s, &mut p, "C: RSET\nS: 250");
    assert_eq!(p.reserved, 0);
    let mut busy = TestPolicy {
        no_rdlv: true,
        ..Default::default()
    };
    transcript(
        &mut session(),
        &mut busy,
        &format!("{START}C: RDLV\nS: 452 4.7.1\nC: DATA\nS: 354"),
    );
}
