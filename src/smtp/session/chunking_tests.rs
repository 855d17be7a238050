//! BDAT (RFC 3030) and BURL (RFC 4468) in the session.

use super::tests::{TestPolicy, session_with, transcript};
use super::*;
use crate::smtp::data::Verdict;

const AUTH: AuthConfig = AuthConfig {
    enabled: true,
    plaintext: true,
    required: false,
};

fn ready() -> (Session, TestPolicy) {
    let (mut s, mut p) = (session_with(false, AUTH), TestPolicy::default());
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: MAIL FROM:<a@x.test>\nS: 250\nC: RCPT TO:<b@y.test>\nS: 250",
    );
    (s, p)
}

fn feed(s: &mut Session, p: &mut TestPolicy, line: &str) -> Step {
    s.feed(format!("{line}\r\n").as_bytes(), p)
}

#[test]
fn chunks_are_acknowledged_and_the_last_hands_over_the_transaction() {
    let (mut s, mut p) = ready();
    let step = feed(&mut s, &mut p, "BDAT 5");
    assert_eq!(
        (step.reply, step.action),
        (
            None,
            Action::ReceiveChunk {
                size: 5,
                last: false
            }
        )
    );
    let ChunkEnd::More(r) = s.chunk_end(5, false, Verdict::Ok, &mut p) else {
        panic!("not More");
    };
    assert_eq!(r.to_string(), "250 2.0.0 5 octets received");
    // RFC 3030 §3: no DATA inside a BDAT transaction.
    assert_eq!(
        feed(&mut s, &mut p, "DATA").reply.map(|r| r.code),
        Some(503)
    );
    let step = feed(&mut s, &mut p, "BDAT 0 LAST");
    assert_eq!(
        step.action,
        Action::ReceiveChunk {
            size: 0,
            last: true
        }
    );
    match s.chunk_end(0, true, Verdict::Ok, &mut p) {
        ChunkEnd::Last(txn) => assert_eq!(txn.recipients.len(), 1),
        other => panic!("{other:?}"),
    }
    assert!(!s.in_chunks());
}

#[test]
fn a_refused_bdat_still_has_its_octets_discarded() {
    let (mut s, mut p) = (session_with(false, AUTH), TestPolicy::default());
    // Before EHLO, before MAIL, without recipients: the octets follow anyway.
    let step = feed(&mut s, &mut p, "BDAT 7");
    assert_eq!(step.action, Action::DiscardChunk(7));
    transcript(&mut s, &mut p, "C: EHLO c.test\nS: 250 HELP");
    let step = feed(&mut s, &mut p, "BDAT 7 LAST");
    assert_eq!(
        (step.reply.map(|r| r.code), step.action),
        (Some(503), Action::DiscardChunk(7))
    );
    transcript(&mut s, &mut p, "C: MAIL FROM:<a@x.test>\nS: 250");
    let step = feed(&mut s, &mut p, "BDAT 3");
    assert_eq!(
        (step.reply.map(|r| r.code), step.action),
        (Some(554), Action::DiscardChunk(3))
    );
}

#[test]
fn a_bdat_without_a_size_closes_the_connection() {
    let (mut s, mut p) = ready();
    let step = feed(&mut s, &mut p, "BDAT lots");
    assert_eq!(
        (step.reply.map(|r| r.code), step.action),
        (Some(501), Action::Close)
    );
}

#[test]
fn a_bad_chunk_fails_the_transaction_and_its_successors_are_refused() {
    let (mut s, mut p) = ready();
    feed(&mut s, &mut p, "BDAT 4");
    match s.chunk_end(4, false, Verdict::BareNewline, &mut p) {
        ChunkEnd::Failed(r) => assert_eq!(r.code, 550),
        other => panic!("{other:?}"),
    }
    assert!(!s.in_chunks());
    assert_eq!(
        feed(&mut s, &mut p, "BDAT 2 LAST").action,
        Action::DiscardChunk(2)
    );
}

#[test]
fn rset_ends_a_chunked_transaction() {
    let (mut s, mut p) = ready();
    feed(&mut s, &mut p, "BDAT 4");
    assert!(matches!(
        s.chunk_end(4, false, Verdict::Ok, &mut p),
        ChunkEnd::More(_)
    ));
    transcript(&mut s, &mut p, "C: RSET\nS: 250");
    assert!(!s.in_chunks());
}

#[test]
fn rdlv_applies_to_the_last_chunk() {
    let (mut s, mut p) = ready();
    transcript(&mut s, &mut p, "C: RDLV maxtimer=30\nS: 200");
    feed(&mut s, &mut p, "BDAT 3 LAST");
    match s.chunk_end(3, true, Verdict::Ok, &mut p) {
        ChunkEnd::Last(txn) => assert_eq!(txn.rdlv, Some(30)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn burl_is_offered_bare_before_auth_and_needs_auth_and_a_recipient() {
    let (mut s, mut p) = (session_with(false, AUTH), TestPolicy::default());
    let ehlo = String::from_utf8(
        feed(&mut s, &mut p, "EHLO c.test")
            .reply
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert!(
        ehlo.contains("250-CHUNKING\r\n") && ehlo.contains("250-BURL\r\n"),
        "{ehlo}"
    );
    transcript(
        &mut s,
        &mut p,
        "C: MAIL FROM:<a@x.test>\nS: 250\nC: RCPT TO:<b@y.test>\nS: 250\n\
         C: BURL imap://a@h/x;urlauth=submit+alice:internal:00 LAST\nS: 530 5.7.0\n\
         C: RSET\nS: 250\nC: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 235",
    );
    let ehlo = String::from_utf8(
        feed(&mut s, &mut p, "EHLO c.test")
            .reply
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert!(ehlo.contains("250-BURL imap\r\n"), "{ehlo}");
    transcript(
        &mut s,
        &mut p,
        "C: MAIL FROM:<a@x.test>\nS: 250\nC: BURL imap://x LAST\nS: 554 5.5.0\nC: RCPT TO:<b@y.test>\nS: 250",
    );
    let step = feed(
        &mut s,
        &mut p,
        "BURL imap://a@h/x;urlauth=submit+alice:internal:00",
    );
    assert_eq!(step.action, Action::FetchUrl { last: false });
    assert_eq!(
        s.take_url().as_deref(),
        Some("imap://a@h/x;urlauth=submit+alice:internal:00")
    );
    // A failed fetch ends the transaction (RFC 4468 §3.2).
    let r = s.chunk_failed(
        Reply::new(554, "5.6.6", "IMAP URL resolution failed"),
        &mut p,
    );
    assert_eq!(r.code, 554);
    assert!(!s.in_chunks());
}
