//! The relay client's uplink: STARTTLS as `relay_tls` says, `smtps:`, and
//! AUTH with the `relay_auth` credentials, against a scripted fake upstream
//! on 127.0.0.1 that can switch to TLS (`detad::tls::ServerTls`).
//!
//! Scripts are written as in `tests/relay.rs` (RFC 5321 Appendix D style):
//! `S:` lines are what the upstream sends, `C:` lines what the client must
//! send, exactly; `S! tls` runs the server handshake; the client must send
//! nothing beyond the script, so a script that ends before AUTH proves
//! that AUTH was not sent. Certificates come from a throwaway CA made with
//! `openssl` at test time; without openssl each test says so and passes.
#![cfg(feature = "tls")]

mod support;

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use detad::config::{Config, RelayAuth, RelayTls};
use detad::delivery::relay::{
    Connection, Hop, Insecurity, OpenError, Security, Timeouts, TransferOutcome,
};
use detad::queue::delivery::{Delivery, DeliveryKind, Diagnostic};
use detad::queue::envelope::{Envelope, Recipient};
use detad::tls::{ClientTls, ServerTls, Stream};

use support::TempDir;
use support::pki::Pki;

/// How long the fake upstream waits for the client before giving up.
const UPSTREAM_PATIENCE: Duration = Duration::from_secs(5);

/// The `relay_auth` credentials of these tests (the password has a colon).
const USER: &str = "relay-user";
const PASSWORD: &str = "s3cret:pw";
/// `AUTH PLAIN` of them: base64 of "\0relay-user\0s3cret:pw" (RFC 4616 §2).
const PLAIN: &str = "AHJlbGF5LXVzZXIAczNjcmV0OnB3";

/// A fake upstream playing one script on one connection.
struct Upstream {
    port: u16,
    thread: JoinHandle<Result<(), String>>,
}

impl Upstream {
    /// Starts the upstream with `server` as its certificate. Steps:
    /// `S: text` sends a line; `C: text` reads one that must be `text`;
    /// `S! tls` runs the server handshake (for STARTTLS, or first for
    /// `smtps:`); `S! tls-refused` expects the client to refuse it;
    /// `S! raw TEXT` sends TEXT in one write, `<CRLF>` standing for CR LF.
    fn start(server: ServerTls, script: &str) -> Upstream {
        let _ = env_logger::builder().is_test(true).try_init();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let steps: Vec<String> = script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let thread = thread::spawn(move || play(listener, server, &steps));
        Upstream { port, thread }
    }

    fn hop(&self, implicit_tls: bool) -> Hop {
        Hop {
            host: "127.0.0.1".to_string(),
            port: self.port,
            implicit_tls,
        }
    }

    #[track_caller]
    fn finish(self) {
        if let Err(e) = self.thread.join().expect("upstream thread panicked") {
            panic!("upstream: {e}");
        }
    }
}

fn play(listener: TcpListener, server: ServerTls, steps: &[String]) -> Result<(), String> {
    let (sock, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut stream = Stream::plain(sock);
    let patience = || Some(Instant::now() + UPSTREAM_PATIENCE);
    for (i, step) in steps.iter().enumerate() {
        let next_is_server = steps.get(i + 1).is_none_or(|s| s.starts_with('S'));
        stream.set_deadline(patience());
        if let Some(text) = step.strip_prefix("S:") {
            let line = format!("{}\r\n", text.trim_start());
            stream
                .write_all(line.as_bytes())
                .and_then(|()| stream.flush())
                .map_err(|e| format!("step {i} `{step}`: write: {e}"))?;
        } else if let Some(text) = step.strip_prefix("C:") {
            let want = format!("{}\r\n", text.trim_start());
            let mut line = Vec::new();
            stream
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("step {i} `{step}`: read: {e}"))?;
            if line != want.as_bytes() {
                let got = String::from_utf8_lossy(&line);
                return Err(format!("step {i}: want {want:?}, got {got:?}"));
            }
            if next_is_server && stream.has_buffered_input() {
                return Err(format!("step {i}: client did not wait for the reply"));
            }
        } else if let Some(raw) = step.strip_prefix("S! raw ") {
            // Several lines in one write, `<CRLF>` standing for CR LF.
            stream
                .write_all(raw.replace("<CRLF>", "\r\n").as_bytes())
                .and_then(|()| stream.flush())
                .map_err(|e| format!("step {i} `{step}`: write: {e}"))?;
        } else if step == "S! tls" || step == "S! tls-refused" {
            let deadline = Instant::now() + UPSTREAM_PATIENCE;
            match (stream.start_tls_server(&server, deadline), step.as_str()) {
                (Ok(tls), "S! tls") => stream = tls,
                (Err(e), "S! tls") => return Err(format!("step {i}: handshake: {e}")),
                (Ok(_), _) => return Err(format!("step {i}: the client took the handshake")),
                (Err(_), _) => return Ok(()),
            }
        } else {
            panic!("bad script step {step:?}");
        }
    }
    // Nothing more: the client closes without another byte.
    stream.set_deadline(patience());
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "client sent after the script: {:?}",
            String::from_utf8_lossy(&rest)
        )),
        // A client that drops a TLS session without close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
        Err(e) => Err(format!("client did not close after the script: {e}")),
    }
}

fn timeouts() -> Timeouts {
    let t = Duration::from_secs(3);
    Timeouts {
        connect: t,
        command: t,
        data_block: t,
        data_end: t,
    }
}

/// Settings with `policy`, trust anchors from `ca` of `pki`, and the test
/// credentials when `auth`.
fn security(pki: &Pki, policy: RelayTls, ca: &str, auth: bool) -> Security {
    let client = ClientTls::new(Some(&pki.path(ca))).expect("client TLS");
    Security {
        tls: policy,
        client: Some(Arc::new(client)),
        unavailable: None,
        auth: auth.then(|| RelayAuth::new(USER, PASSWORD)),
    }
}

fn server(pki: &Pki) -> ServerTls {
    ServerTls::load(&pki.path("server.pem"), &pki.path("server.key")).expect("server TLS")
}

fn open(up: &Upstream, security: &Security) -> Result<Connection, OpenError> {
    Connection::open_secured(&up.hop(false), "gw.test", &timeouts(), security)
}

const GREETING: &str = "
    S: 220 fake.test ESMTP
    C: EHLO gw.test
";

/// EHLO offering STARTTLS and AUTH, STARTTLS accepted, the handshake.
const STARTTLS: &str = "
    S: 250-fake.test
    S: 250-STARTTLS
    S: 250 AUTH PLAIN LOGIN
    C: STARTTLS
    S: 220 2.0.0 go ahead
    S! tls
";

/// One message to bob, accepted (`relayed`: the hop has no DSN).
const TRANSACTION: &str = "
    C: MAIL FROM:<alice@example.org>
    S: 250 2.1.0 ok
    C: RCPT TO:<bob@example.com>
    S: 250 2.1.5 ok
    C: DATA
    S: 354 go on
    C: Subject: hi
    C:
    C: body
    C: .
    S: 250 2.0.0 queued
";

const QUIT: &str = "
    C: QUIT
    S: 221 2.0.0 bye
";

fn send_one(conn: &mut Connection) -> TransferOutcome {
    let env = Envelope {
        size: 22,
        ..Envelope::new("q1".into(), "alice@example.org".into(), 0, Vec::new())
    };
    let bob = Recipient::new("bob@example.com".to_string(), None, None);
    conn.send(
        &env,
        &[&bob],
        &mut &b"Subject: hi\r\n\r\nbody\r\n"[..],
        &|| false,
    )
    .expect("not cancelled")
}

/// `status diagnostic`, as the log shows a result.
fn summary(d: &Delivery) -> String {
    let diag = d.diagnostic.as_ref().map(|x| x.to_string());
    format!("{} {}", d.status, diag.unwrap_or_default())
}

#[track_caller]
fn assert_deferred(e: &OpenError, prefix: &str) {
    let d = e.delivery();
    assert_eq!(d.kind, DeliveryKind::Deferred, "{d:?}");
    assert!(summary(&d).starts_with(prefix), "{}", summary(&d));
}

#[test]
fn none_never_starts_tls_even_when_offered() {
    let Some(pki) = Pki::new("uplink_none") else {
        return;
    };
    let script = [GREETING, STARTTLS.split("C: STARTTLS").next().unwrap()];
    let script = format!("{}{}{TRANSACTION}{QUIT}", script[0], script[1]);
    let up = Upstream::start(server(&pki), &script);
    let mut conn = open(&up, &security(&pki, RelayTls::None, "ca.pem", false)).expect("open");
    assert!(!conn.is_tls());
    assert_eq!(send_one(&mut conn).results[0].kind, DeliveryKind::Relayed);
    conn.quit();
    up.finish();
}

#[test]
fn require_without_starttls_offered_is_temporary_and_sends_nothing() {
    let Some(pki) = Pki::new("uplink_notoffered") else {
        return;
    };
    let script = format!("{GREETING} S: 250-fake.test\n S: 250 AUTH PLAIN\n C: QUIT");
    let up = Upstream::start(server(&pki), &script);
    let e = open(&up, &security(&pki, RelayTls::Require, "ca.pem", true)).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Insecure {
                problem: Insecurity::NotOffered,
                ..
            }
        ),
        "{e:?}"
    );
    assert_deferred(
        &e,
        "4.7.4 TLS is required (relay_tls = require), but was not offered",
    );
    up.finish();
}

#[test]
fn auth_is_never_sent_when_tls_is_not_up() {
    let Some(pki) = Pki::new("uplink_noclear") else {
        return;
    };
    // Opportunistic, no STARTTLS offered, AUTH offered in plaintext: the
    // script ends at QUIT, so an AUTH line would fail it.
    let script = format!("{GREETING} S: 250-fake.test\n S: 250 AUTH PLAIN LOGIN\n C: QUIT");
    let up = Upstream::start(server(&pki), &script);
    let e = open(
        &up,
        &security(&pki, RelayTls::Opportunistic, "ca.pem", true),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Insecure {
                problem: Insecurity::CredentialsInClear,
                ..
            }
        ),
        "{e:?}"
    );
    assert_deferred(
        &e,
        "4.7.10 127.0.0.1[127.0.0.1] offers AUTH, but the session is not encrypted",
    );
    up.finish();
}

#[test]
fn starttls_then_ehlo_again_then_auth_plain_carries_messages() {
    let Some(pki) = Pki::new("uplink_plain") else {
        return;
    };
    // RFC 3207 §4.2: EHLO again over TLS; what it offers now counts.
    let script = format!(
        "{GREETING}{STARTTLS}
         C: EHLO gw.test
         S: 250-fake.test
         S: 250 AUTH LOGIN PLAIN
         C: AUTH PLAIN {PLAIN}
         S: 235 2.7.0 Authentication successful
         {TRANSACTION}{TRANSACTION}{QUIT}"
    );
    let up = Upstream::start(server(&pki), &script);
    let mut conn = open(&up, &security(&pki, RelayTls::Require, "ca.pem", true)).expect("open");
    assert!(conn.is_tls());
    assert!(conn.extensions().auth.contains(&"PLAIN".to_string()));
    // Two messages on the one TLS session: the kept connection is reused.
    for _ in 0..2 {
        assert_eq!(send_one(&mut conn).results[0].kind, DeliveryKind::Relayed);
    }
    conn.quit();
    up.finish();
}

#[test]
fn auth_login_when_plain_is_not_offered() {
    let Some(pki) = Pki::new("uplink_login") else {
        return;
    };
    let script = format!(
        "{GREETING}{STARTTLS}
         C: EHLO gw.test
         S: 250-fake.test
         S: 250 AUTH LOGIN CRAM-MD5
         C: AUTH LOGIN
         S: 334 VXNlcm5hbWU6
         C: cmVsYXktdXNlcg==
         S: 334 UGFzc3dvcmQ6
         C: czNjcmV0OnB3
         S: 235 2.7.0 ok
         {TRANSACTION}{QUIT}"
    );
    let up = Upstream::start(server(&pki), &script);
    let mut conn = open(&up, &security(&pki, RelayTls::Require, "ca.pem", true)).expect("open");
    assert_eq!(send_one(&mut conn).results[0].kind, DeliveryKind::Relayed);
    conn.quit();
    up.finish();
}

/// Opens with the test credentials against an upstream that answers
/// AUTH PLAIN with `reply`.
fn auth_answered(test: &str, reply: &str) -> Option<OpenError> {
    let pki = Pki::new(test)?;
    let script = format!(
        "{GREETING}{STARTTLS}
         C: EHLO gw.test
         S: 250-fake.test
         S: 250 AUTH PLAIN
         C: AUTH PLAIN {PLAIN}
         S: {reply}
         C: QUIT"
    );
    let up = Upstream::start(server(&pki), &script);
    let e = open(
        &up,
        &security(&pki, RelayTls::Opportunistic, "ca.pem", true),
    )
    .unwrap_err();
    up.finish();
    Some(e)
}

#[test]
fn auth_535_fails_every_recipient_permanently() {
    let Some(e) = auth_answered("uplink_535", "535 5.7.8 Authentication credentials invalid")
    else {
        return;
    };
    let d = e.delivery();
    assert_eq!(d.kind, DeliveryKind::Failed, "{d:?}");
    assert_eq!(d.status.to_string(), "5.7.8");
    // The hop's own words go into the DSN, as any remote reply does.
    assert!(matches!(d.diagnostic, Some(Diagnostic::Smtp(ref r)) if r.code == 535));
}

#[test]
fn auth_4xx_is_temporary() {
    let Some(e) = auth_answered("uplink_454", "454 4.7.0 Temporary authentication failure") else {
        return;
    };
    let d = e.delivery();
    assert_eq!(d.kind, DeliveryKind::Deferred, "{d:?}");
    assert_eq!(d.status.to_string(), "4.7.0");
}

#[test]
fn require_with_a_certificate_from_another_ca_is_temporary_and_names_the_error() {
    let Some(pki) = Pki::new("uplink_wrongca") else {
        return;
    };
    let script = format!("{GREETING}{}", STARTTLS.replace("S! tls", "S! tls-refused"));
    let up = Upstream::start(server(&pki), &script);
    let e = open(
        &up,
        &security(&pki, RelayTls::Require, "other-ca.pem", true),
    )
    .unwrap_err();
    assert!(matches!(e, OpenError::Handshake { .. }), "{e:?}");
    assert_deferred(&e, "4.7.5 127.0.0.1: TLS handshake with 127.0.0.1:");
    let text = summary(&e.delivery());
    assert!(text.contains("UnknownIssuer"), "{text}");
    up.finish();
}

#[test]
fn opportunistic_encrypts_over_an_unverified_certificate() {
    let Some(pki) = Pki::new("uplink_unverified") else {
        return;
    };
    let script = format!(
        "{GREETING}{STARTTLS}
         C: EHLO gw.test
         S: 250 fake.test
         {TRANSACTION}{QUIT}"
    );
    let up = Upstream::start(server(&pki), &script);
    let security = security(&pki, RelayTls::Opportunistic, "other-ca.pem", false);
    let mut conn = open(&up, &security).expect("open");
    assert!(conn.is_tls());
    assert_eq!(send_one(&mut conn).results[0].kind, DeliveryKind::Relayed);
    conn.quit();
    up.finish();
}

#[test]
fn refused_starttls_is_plaintext_when_opportunistic_and_temporary_when_required() {
    let Some(pki) = Pki::new("uplink_454tls") else {
        return;
    };
    let refused = "
        S: 250-fake.test
        S: 250 STARTTLS
        C: STARTTLS
        S: 454 4.7.0 TLS not available due to temporary reason
    ";
    let up = Upstream::start(
        server(&pki),
        &format!("{GREETING}{refused}{TRANSACTION}{QUIT}"),
    );
    let mut conn = open(
        &up,
        &security(&pki, RelayTls::Opportunistic, "ca.pem", false),
    )
    .expect("open");
    assert!(!conn.is_tls());
    assert_eq!(send_one(&mut conn).results[0].kind, DeliveryKind::Relayed);
    conn.quit();
    up.finish();
    let up = Upstream::start(server(&pki), &format!("{GREETING}{refused} C: QUIT"));
    let e = open(&up, &security(&pki, RelayTls::Require, "ca.pem", false)).unwrap_err();
    assert_deferred(
        &e,
        "4.7.4 TLS is required (relay_tls = require), but 127.0.0.1[127.0.0.1] refused STARTTLS: 454",
    );
    up.finish();
}

#[test]
fn plaintext_sent_after_the_220_to_starttls_is_never_read_as_a_reply() {
    let Some(pki) = Pki::new("uplink_inject") else {
        return;
    };
    // CVE-2011-0411, mirrored: an injected "250" before the handshake must
    // not answer the EHLO sent after it.
    let script = format!(
        "{GREETING}{}
         C: EHLO gw.test
         S: 250 fake.test
         {QUIT}",
        STARTTLS.replace(
            "S: 220 2.0.0 go ahead",
            "S! raw 220 2.0.0 go ahead<CRLF>250 injected<CRLF>"
        )
    );
    let up = Upstream::start(server(&pki), &script);
    let conn = open(&up, &security(&pki, RelayTls::Require, "ca.pem", false)).expect("open");
    assert!(conn.is_tls());
    conn.quit();
    up.finish();
}

#[test]
fn smtps_is_tls_before_the_greeting() {
    let Some(pki) = Pki::new("uplink_smtps") else {
        return;
    };
    let script = format!(
        "S! tls
         S: 220 fake.test ESMTP
         C: EHLO gw.test
         S: 250-fake.test
         S: 250 AUTH PLAIN
         C: AUTH PLAIN {PLAIN}
         S: 235 2.7.0 ok
         {TRANSACTION}{QUIT}"
    );
    let up = Upstream::start(server(&pki), &script);
    // `relay_tls = none` turns STARTTLS off, not the TLS of an smtps: hop.
    let security = security(&pki, RelayTls::None, "ca.pem", true);
    let mut conn =
        Connection::open_secured(&up.hop(true), "gw.test", &timeouts(), &security).expect("open");
    assert!(conn.is_tls());
    assert_eq!(send_one(&mut conn).results[0].kind, DeliveryKind::Relayed);
    conn.quit();
    up.finish();
}

/// Writes `text` into `name` in `dir` with `mode`; returns the path.
fn file_with_mode(dir: &TempDir, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn credentials_file_readable_by_everyone_is_refused_with_chmod_600() {
    let dir = TempDir::new("uplink_authfile");
    let open = file_with_mode(&dir, "open", "relay-user:hunter2\n", 0o644);
    let mut config = Config::default();
    let e = config
        .set("relay_auth", open.to_str().unwrap())
        .unwrap_err();
    assert!(e.contains("chmod 600") && e.contains("0644"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let private = file_with_mode(&dir, "private", "relay-user:hunter2\n", 0o640);
    config.set("relay_auth", private.to_str().unwrap()).unwrap();
    let auth = config.relay_auth.as_ref().expect("loaded");
    assert_eq!(
        (auth.user.as_str(), auth.password()),
        ("relay-user", "hunter2")
    );
    assert!(
        config
            .describe()
            .contains(&format!("relay_auth = {}\n", private.display()))
    );
    // Credentials need TLS: with STARTTLS off, an smtp: route is an error.
    config.set("route", "* smtp:127.0.0.1:25").unwrap();
    config.set("relay_tls", "none").unwrap();
    let e = config.validate().unwrap_err();
    assert_eq!(e.key, "relay_auth");
}
