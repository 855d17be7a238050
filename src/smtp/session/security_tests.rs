//! STARTTLS and AUTH transcripts (RFC 3207, RFC 4954).

use super::tests::{TestPolicy, session_with, transcript};
use super::*;

const ALL: AuthConfig = AuthConfig {
    enabled: true,
    plaintext: false,
    required: false,
};

fn ehlo_text(s: &mut Session, p: &mut TestPolicy) -> String {
    let step = s.feed(b"EHLO c.test\r\n", p);
    String::from_utf8(step.reply.expect("a reply").to_bytes()).expect("ASCII")
}

#[test]
fn starttls_is_offered_until_tls_and_auth_only_inside_it() {
    let (mut s, mut p) = (session_with(true, ALL), TestPolicy::default());
    let before = ehlo_text(&mut s, &mut p);
    assert!(before.contains("250-STARTTLS\r\n"), "{before}");
    assert!(!before.contains("AUTH"), "{before}");
    transcript(
        &mut s,
        &mut p,
        "C: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 538 5.7.11\nC: STARTTLS\nS: 220 2.0.0",
    );
    s.tls_started(&mut p);
    // RFC 3207 §4.2: the client must greet again; STARTTLS is gone.
    transcript(&mut s, &mut p, "C: MAIL FROM:<a@x.test>\nS: 503 5.5.1");
    let after = ehlo_text(&mut s, &mut p);
    assert!(!after.contains("STARTTLS"), "{after}");
    assert!(after.contains("250-AUTH PLAIN LOGIN\r\n"), "{after}");
    transcript(
        &mut s,
        &mut p,
        "C: STARTTLS\nS: 503 5.5.1 TLS already active",
    );
}

#[test]
fn starttls_asks_the_driver_for_the_handshake_only_after_ehlo_and_outside_a_transaction() {
    let (mut s, mut p) = (session_with(true, ALL), TestPolicy::default());
    transcript(&mut s, &mut p, "C: STARTTLS\nS: 503 5.5.1 send EHLO first");
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: MAIL FROM:<a@x.test>\nS: 250\nC: STARTTLS\nS: 503 5.5.1",
    );
    let actions = transcript(&mut s, &mut p, "C: RSET\nS: 250\nC: STARTTLS\nS: 220");
    assert_eq!(actions.last(), Some(&Action::StartTls));
    let mut no_cert = session_with(false, ALL);
    transcript(
        &mut no_cert,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: STARTTLS\nS: 502 5.5.1",
    );
}

#[test]
fn auth_plain_and_login_succeed_and_the_identity_reaches_the_transaction() {
    for exchange in [
        "C: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 235 2.7.0",
        "C: AUTH PLAIN\nS: 334\nC: AGFsaWNlAHNlY3JldA==\nS: 235 2.7.0",
        "C: AUTH LOGIN\nS: 334 VXNlcm5hbWU6\nC: YWxpY2U=\nS: 334 UGFzc3dvcmQ6\nC: c2VjcmV0\nS: 235 2.7.0",
    ] {
        let (mut s, mut p) = (session_with(false, ALL), TestPolicy::default());
        s.set_tls();
        transcript(&mut s, &mut p, "C: EHLO c.test\nS: 250 HELP");
        transcript(&mut s, &mut p, exchange);
        assert_eq!(s.identity(), Some("alice"));
        transcript(
            &mut s,
            &mut p,
            "C: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 503 5.5.1 already authenticated\n\
             C: MAIL FROM:<a@x.test> AUTH=<>\nS: 250\nC: RCPT TO:<b@y.test>\nS: 250\nC: DATA\nS: 354",
        );
        let txn = s
            .data_end(crate::smtp::data::Verdict::Ok, &mut p)
            .expect("a transaction");
        assert_eq!(txn.auth.as_deref(), Some("alice"));
    }
}

#[test]
fn wrong_credentials_bad_base64_and_cancel_get_their_codes() {
    let (mut s, mut p) = (session_with(false, ALL), TestPolicy::default());
    s.set_tls();
    transcript(
        &mut s,
        &mut p,
        // alice / wrong
        "C: EHLO c.test\nS: 250 HELP\n\
         C: AUTH PLAIN AGFsaWNlAHdyb25n\nS: 535 5.7.8\n\
         C: AUTH LOGIN\nS: 334\nC: !!!\nS: 501 5.5.2\n\
         C: AUTH LOGIN\nS: 334\nC: *\nS: 501 5.0.0\n\
         C: AUTH CRAM-MD5\nS: 504 5.5.4",
    );
    assert_eq!(s.identity(), None);
    // The exchange is over: the next line is a command again.
    transcript(&mut s, &mut p, "C: NOOP\nS: 250");
}

#[test]
fn an_over_long_response_ends_the_exchange_with_500_5_5_6() {
    let (mut s, mut p) = (session_with(false, ALL), TestPolicy::default());
    s.set_tls();
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: AUTH LOGIN\nS: 334",
    );
    let step = s.line_too_long();
    assert_eq!(step.reply.map(|r| r.code), Some(500));
    transcript(&mut s, &mut p, "C: NOOP\nS: 250");
}

#[test]
fn plaintext_auth_is_offered_only_where_the_operator_allows() {
    let plain = AuthConfig {
        plaintext: true,
        ..ALL
    };
    let (mut s, mut p) = (session_with(true, plain), TestPolicy::default());
    let text = ehlo_text(&mut s, &mut p);
    assert!(text.contains("250-AUTH PLAIN LOGIN\r\n"), "{text}");
    transcript(&mut s, &mut p, "C: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 235");
    let (mut off, mut p) = (
        session_with(true, AuthConfig::default()),
        TestPolicy::default(),
    );
    let text = ehlo_text(&mut off, &mut p);
    assert!(!text.contains("AUTH"), "{text}");
    transcript(
        &mut off,
        &mut p,
        "C: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 503 5.5.1",
    );
}

#[test]
fn auth_required_refuses_everything_else_with_530_until_auth() {
    let required = AuthConfig {
        required: true,
        ..ALL
    };
    let (mut s, mut p) = (session_with(true, required), TestPolicy::default());
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: NOOP\nS: 250\nC: RSET\nS: 250\n\
         C: MAIL FROM:<a@x.test>\nS: 530 5.7.0 must issue a STARTTLS command first\n\
         C: VRFY bob\nS: 530 5.7.0\nC: HELP\nS: 530 5.7.0",
    );
    s.tls_started(&mut p);
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: MAIL FROM:<a@x.test>\nS: 530 5.7.0 authentication required\n\
         C: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 235\nC: MAIL FROM:<a@x.test>\nS: 250 2.1.0",
    );
}

#[test]
fn a_new_tls_layer_forgets_the_identity() {
    let plain = AuthConfig {
        plaintext: true,
        ..ALL
    };
    let (mut s, mut p) = (session_with(true, plain), TestPolicy::default());
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: AUTH PLAIN AGFsaWNlAHNlY3JldA==\nS: 235\nC: STARTTLS\nS: 220",
    );
    s.tls_started(&mut p);
    assert_eq!((s.identity(), p.identity.as_deref()), (None, None));
}

#[test]
fn credentials_never_appear_in_the_loggable_line() {
    let (mut s, mut p) = (session_with(false, ALL), TestPolicy::default());
    s.set_tls();
    let shown = s.loggable(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert!(!shown.contains("AGFsaWNl"), "{shown}");
    assert!(shown.starts_with("AUTH PLAIN"), "{shown}");
    transcript(
        &mut s,
        &mut p,
        "C: EHLO c.test\nS: 250 HELP\nC: AUTH LOGIN\nS: 334",
    );
    assert!(!s.loggable(b"YWxpY2U=\r\n").contains("YWxp"));
    transcript(&mut s, &mut p, "C: *\nS: 501 5.0.0");
    assert_eq!(s.loggable(b"NOOP\r\n"), "NOOP");
}
