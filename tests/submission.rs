//! Submission (issue 12): STARTTLS, implicit TLS and AUTH against the whole
//! server, through real sockets and a real TLS client (rustls, as the relay
//! uses it). The interop suite (`tests/interop/test_submission.py`) repeats
//! the important ones with swaks, smtplib, openssl and curl.

#![cfg(feature = "tls")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use detad::tls::{ClientTls, TlsStream};
use support::pki::Pki;
use support::{Client, READ_TIMEOUT, Server, TempDir, config, message, wait_for_mail};

/// alice's password is `secret` (SHA512-CRYPT, 5000 rounds, made with
/// `openssl passwd -6 -salt saltsalt secret`).
const USERS: &str = "alice:{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n";
/// `\0alice\0secret`, base64 (RFC 4616).
const PLAIN_ALICE: &str = "AGFsaWNlAHNlY3JldA==";

/// A server with STARTTLS, implicit TLS, and alice; loopback is not a
/// relay network, so only AUTH lets a client relay. Mail goes into a
/// Maildir unless `extra` has a route.
fn submission_server(dir: &TempDir, pki: &Pki, extra: &str) -> Server {
    std::fs::write(dir.join("users"), USERS).unwrap();
    let route = match extra.contains("route =") {
        true => "",
        false => "route = * maildir:{dir}/maildir\n",
    };
    Server::start(config(
        dir,
        &format!(
            "listen_tls = 127.0.0.1:0\ntls_cert = {}\ntls_key = {}\nauth_users = {{dir}}/users\n\
             relay_networks = 192.0.2.0/24\n{route}{extra}",
            pki.path("server.pem").display(),
            pki.path("server.key").display()
        ),
    ))
}

/// A line client over TLS.
struct TlsClient {
    stream: BufReader<TlsStream>,
}

impl TlsClient {
    fn handshake(pki: &Pki, sock: TcpStream) -> TlsClient {
        let tls = ClientTls::new(Some(&pki.path("ca.pem"))).expect("client config");
        sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let deadline = Instant::now() + READ_TIMEOUT;
        let stream = tls.connect(sock, "127.0.0.1", deadline).expect("handshake");
        TlsClient {
            stream: BufReader::new(stream),
        }
    }

    fn send(&mut self, line: &str) {
        let s = self.stream.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        s.flush().unwrap();
    }

    /// The next reply: its code and its last line.
    fn reply(&mut self) -> (u16, String) {
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("a reply line");
            assert!(line.len() >= 4, "short reply line {line:?}");
            if line.as_bytes()[3] == b' ' {
                return (line[..3].parse().unwrap(), line.trim_end().to_string());
            }
        }
    }

    #[track_caller]
    fn command(&mut self, line: &str, code: u16) -> String {
        self.send(line);
        let (got, text) = self.reply();
        assert_eq!(got, code, "{line}: {text}");
        text
    }

    fn mail_to_bob(&mut self, subject: &str) {
        self.command("MAIL FROM:<alice@client.test>", 250);
        self.command("RCPT TO:<bob@example.com>", 250);
        self.command("DATA", 354);
        let body = message(subject, "over TLS");
        self.stream.get_mut().write_all(body.as_bytes()).unwrap();
        self.command(".", 250);
    }
}

/// STARTTLS on a plain connection: greeting, EHLO, STARTTLS, handshake.
fn starttls(server: &Server, pki: &Pki) -> TlsClient {
    let mut c = server.ehlo();
    c.command("STARTTLS", 220);
    TlsClient::handshake(pki, c.into_stream())
}

#[test]
fn plaintext_pipelined_behind_starttls_is_never_executed() {
    let Some(pki) = Pki::new("starttls-inject") else {
        return;
    };
    let dir = TempDir::new("inject");
    let server = submission_server(&dir, &pki, "auth_plaintext = yes\n");
    let mut c = server.ehlo();
    // RFC 3207 §5 / CVE-2011-0411: the AUTH and MAIL ride in the same
    // segment as STARTTLS and must be thrown away, not run inside TLS.
    c.send_raw(
        format!("STARTTLS\r\nAUTH PLAIN {PLAIN_ALICE}\r\nMAIL FROM:<evil@x.test>\r\n").as_bytes(),
    );
    c.expect(220, "2.0.0");
    let mut tls = TlsClient::handshake(&pki, c.into_stream());
    let ehlo = tls.command("EHLO client.test", 250);
    assert!(ehlo.contains("HELP"), "{ehlo}");
    // Neither the AUTH nor the MAIL took effect.
    tls.command("RCPT TO:<bob@example.com>", 503);
    tls.command("MAIL FROM:<alice@client.test>", 250);
    tls.command("RCPT TO:<bob@example.com>", 554);
    tls.command("QUIT", 221);
    server.stop();
}

#[test]
fn an_authenticated_client_relays_over_starttls_and_the_trace_says_esmtpsa() {
    let Some(pki) = Pki::new("starttls-auth") else {
        return;
    };
    let dir = TempDir::new("esmtpsa");
    let server = submission_server(&dir, &pki, "");
    // Without AUTH loopback may not relay.
    let mut plain = server.ehlo();
    plain.command("MAIL FROM:<alice@client.test>", 250);
    plain.command("RCPT TO:<bob@example.com>", 554);
    plain.command(&format!("AUTH PLAIN {PLAIN_ALICE}"), 538);
    plain.quit();
    let mut tls = starttls(&server, &pki);
    let ehlo = tls.command("EHLO client.test", 250);
    assert!(!ehlo.contains("STARTTLS"));
    tls.command(&format!("AUTH PLAIN {PLAIN_ALICE}"), 235);
    tls.mail_to_bob("esmtpsa");
    tls.command("QUIT", 221);
    let mail = wait_for_mail(&dir.join("maildir"), "bob", 1).remove(0);
    assert!(
        mail.contains(")\n\tby gw.test (detad) with ESMTPSA id "),
        "{mail}"
    );
    assert!(mail.contains("\t(version=TLSv1."), "{mail}");
    server.stop();
}

#[test]
fn implicit_tls_serves_from_the_first_octet() {
    let Some(pki) = Pki::new("implicit-tls") else {
        return;
    };
    let dir = TempDir::new("implicit");
    let server = submission_server(&dir, &pki, "");
    let tls_addr: SocketAddr = server.addrs[1];
    let mut tls = TlsClient::handshake(&pki, TcpStream::connect(tls_addr).unwrap());
    assert_eq!(tls.reply().0, 220);
    let ehlo = tls.command("EHLO client.test", 250);
    // Already TLS: no STARTTLS, but AUTH.
    assert!(!ehlo.contains("STARTTLS") && ehlo.contains("HELP"));
    tls.command("STARTTLS", 503);
    tls.send("AUTH LOGIN");
    assert_eq!(tls.reply().0, 334);
    tls.command("YWxpY2U=", 334);
    tls.command("c2VjcmV0", 235);
    tls.mail_to_bob("implicit");
    tls.command("QUIT", 221);
    let mail = wait_for_mail(&dir.join("maildir"), "bob", 1).remove(0);
    assert!(mail.contains("with ESMTPSA id"), "{mail}");
    server.stop();
}

#[test]
fn wrong_passwords_get_535_after_a_delay_that_grows() {
    let Some(pki) = Pki::new("auth-delay") else {
        return;
    };
    let dir = TempDir::new("authdelay");
    let server = submission_server(&dir, &pki, "");
    let mut tls = starttls(&server, &pki);
    tls.command("EHLO client.test", 250);
    let wrong = "AGFsaWNlAHdyb25n"; // alice / wrong
    let mut waited = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let text = tls.command(&format!("AUTH PLAIN {wrong}"), 535);
        assert!(text.starts_with("535 5.7.8"), "{text}");
        waited.push(t.elapsed());
    }
    // 1 s, then 2 s (the throttle's policy); lower bounds only.
    assert!(waited[0] >= Duration::from_millis(900), "{waited:?}");
    assert!(waited[1] >= Duration::from_millis(1900), "{waited:?}");
    // The right password still works, at once, and resets the delay.
    tls.command(&format!("AUTH PLAIN {PLAIN_ALICE}"), 235);
    tls.command("QUIT", 221);
    server.stop();
}

#[test]
fn auth_required_answers_530_until_the_client_authenticates() {
    let Some(pki) = Pki::new("auth-required") else {
        return;
    };
    let dir = TempDir::new("authreq");
    let server = submission_server(&dir, &pki, "auth_required = yes\n");
    let mut c = server.ehlo();
    c.command("NOOP", 250);
    let r = c.command("MAIL FROM:<alice@client.test>", 530);
    assert!(
        r.text().contains("must issue a STARTTLS command first"),
        "{r}"
    );
    c.command("QUIT", 221);
    let mut tls = starttls(&server, &pki);
    tls.command("EHLO client.test", 250);
    tls.command("MAIL FROM:<alice@client.test>", 530);
    tls.command(&format!("AUTH PLAIN {PLAIN_ALICE}"), 235);
    tls.mail_to_bob("required");
    tls.command("QUIT", 221);
    server.stop();
    // Clients in relay_networks (here loopback: the gateway's own
    // programs, `sendmail`) need no AUTH.
    let dir = TempDir::new("authreq-local");
    let server = submission_server(
        &dir,
        &pki,
        "auth_required = yes\nrelay_networks = 127.0.0.0/8\n",
    );
    let mut c = server.ehlo();
    c.mail_to_bob("local", "from the gateway itself");
    c.quit();
    server.stop();
}

#[test]
fn the_per_sender_limit_counts_the_authenticated_identity() {
    let Some(pki) = Pki::new("auth-sender-key") else {
        return;
    };
    let dir = TempDir::new("authkey");
    let server = submission_server(
        &dir,
        &pki,
        &format!(
            "rdlv_mintimer = 1\nmax_inflight_per_sender = 1\nauth_plaintext = loopback\n{}",
            support::gated_pipe_route("*")
        ),
    );
    let authed = |from: &str| -> Client {
        let mut c = server.ehlo();
        c.command(&format!("AUTH PLAIN {PLAIN_ALICE}"), 235);
        c.open_rdlv_data(from, &["<bob@example.com>"], "RDLV maxtimer=1");
        c
    };
    // alice holds her one place with one reverse-path...
    let mut first = authed("<a1@client.test>");
    first.send_content(&message("first", "x"));
    first.expect(120, "gw.test");
    first.send("CONT");
    // ...and a different reverse-path does not give her a second one.
    let mut second = server.ehlo();
    second.command(&format!("AUTH PLAIN {PLAIN_ALICE}"), 235);
    second.command("MAIL FROM:<a2@client.test>", 452);
    second.command("QUIT", 221);
    support::open_gate(&dir);
    let (_, last) = first.cont_until_final();
    assert_eq!(last.code, 250, "{last}");
    first.quit();
    server.stop();
}

/// The identity is kept in the spool (the queue listing shows it).
#[test]
fn the_spool_keeps_the_authenticated_identity() {
    let Some(pki) = Pki::new("auth-spool") else {
        return;
    };
    let dir = TempDir::new("authspool");
    let server = submission_server(
        &dir,
        &pki,
        &format!(
            "auth_plaintext = loopback\n{}",
            support::gated_pipe_route("*")
        ),
    );
    let mut c = server.ehlo();
    c.command(&format!("AUTH PLAIN {PLAIN_ALICE}"), 235);
    c.mail_to_bob("kept", "in the spool");
    let files = support::queue(&dir.spool());
    assert_eq!(files.len(), 1);
    let spool = detad::queue::spool::Spool::open(&dir.spool(), false).unwrap();
    let id = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(spool.load(&id).unwrap().auth.as_deref(), Some("alice"));
    support::open_gate(&dir);
    support::wait_queue_empty(&dir.spool());
    c.quit();
    server.stop();
}
