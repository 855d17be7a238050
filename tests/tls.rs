//! The TLS layer over loopback sockets: handshakes through `ServerTls`,
//! `ClientTls` and `Stream`, protocol versions, deadlines, certificate
//! verification, STARTTLS read-ahead, and loading certificates and keys.
//!
//! Certificates are made at test time with the `openssl` command into a
//! temporary directory (no key is ever committed); without `openssl` the
//! tests that need them say so and pass.
#![cfg(feature = "tls")]

mod support;

use std::io::{self, BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use detad::tls::{
    ClientTls, FileRole, PeerCheck, PemProblem, ServerTls, Stream, TlsError, TlsStream,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ProtocolVersion};

use support::pki::Pki;

/// Long enough for any handshake on loopback, short enough to fail fast.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The server side of the test PKI: `server.pem` with `server.key`.
fn server(pki: &Pki) -> ServerTls {
    ServerTls::load(&pki.path("server.pem"), &pki.path("server.key")).unwrap()
}

/// A verifying client trusting `ca` (a file of the PKI).
fn client(pki: &Pki, ca: &str) -> ClientTls {
    ClientTls::new(Some(&pki.path(ca))).unwrap()
}

fn soon(d: Duration) -> Instant {
    Instant::now() + d
}

/// A listener on 127.0.0.1:0 and a connected client socket, with the
/// server's end.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

/// Runs `server` on the server end of a fresh connection in a thread, and
/// `client` on the client end here; returns both results.
fn converse<S, C, A, B>(server: S, client: C) -> (A, B)
where
    S: FnOnce(TcpStream) -> A + Send + 'static,
    C: FnOnce(TcpStream) -> B,
    A: Send + 'static,
{
    let (server_sock, client_sock) = tcp_pair();
    let server = thread::spawn(move || server(server_sock));
    let b = client(client_sock);
    (server.join().expect("server thread"), b)
}

#[track_caller]
fn read_line(stream: &mut impl BufRead) -> String {
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    line
}

#[test]
fn tls13_handshake_carries_lines_both_ways_and_reports_buffered_input() {
    let Some(pki) = Pki::new("tls13_lines") else {
        return;
    };
    let server_tls = server(&pki);
    let (server, client) = converse(
        move |sock| {
            let write_timeout = Some(Duration::from_secs(77));
            sock.set_write_timeout(write_timeout).unwrap();
            let mut stream = server_tls.accept(sock, soon(HANDSHAKE)).unwrap();
            // The handshake armed its own write timeouts, then restored this.
            assert_eq!(stream.tcp().write_timeout().unwrap(), write_timeout);
            let first = read_line(&mut stream);
            // The second pipelined line came in the same record.
            let buffered_after_first = stream.has_buffered_input();
            let second = read_line(&mut stream);
            let buffered_after_second = stream.has_buffered_input();
            stream.write_all(b"250 ok\r\n").unwrap();
            (
                stream.info(),
                first,
                second,
                buffered_after_first,
                buffered_after_second,
            )
        },
        |sock| {
            let mut stream = client(&pki, "ca.pem")
                .connect(sock, "localhost", soon(HANDSHAKE))
                .unwrap();
            stream.write_all(b"EHLO client.test\r\nNOOP\r\n").unwrap();
            (stream.info(), read_line(&mut stream))
        },
    );
    let (info, first, second, buffered_after_first, buffered_after_second) = server;
    assert_eq!(info.version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(client.0.version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("EHLO client.test\r\n", "NOOP\r\n")
    );
    assert!(
        buffered_after_first,
        "the second line was already decrypted"
    );
    assert!(
        !buffered_after_second,
        "nothing left: time to flush replies"
    );
    assert_eq!(client.1, "250 ok\r\n");
}

#[test]
fn tls12_negotiates_with_a_client_that_offers_only_tls12() {
    let Some(pki) = Pki::new("tls12_only") else {
        return;
    };
    let server_tls = server(&pki);
    // A rustls client restricted to TLS 1.2, with the same trust anchor.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (server, client) = converse(
        move |sock| {
            let mut stream = server_tls.accept(sock, soon(HANDSHAKE)).unwrap();
            let line = read_line(&mut stream);
            (stream.info(), line)
        },
        |sock| {
            let conn =
                rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap())
                    .unwrap();
            let mut stream = TlsStream::new(conn, sock, soon(HANDSHAKE)).unwrap();
            stream.write_all(b"QUIT\r\n").unwrap();
            stream.info()
        },
    );
    assert_eq!(server.0.version, Some(ProtocolVersion::TLSv1_2));
    assert_eq!(client.version, Some(ProtocolVersion::TLSv1_2));
    assert_eq!(server.1, "QUIT\r\n");
    assert!(
        server
            .0
            .to_string()
            .starts_with("version=TLSv1.2 cipher=TLS_ECDHE_ECDSA_"),
        "{}",
        server.0
    );
}

/// A TLS 1.1 ClientHello (record and client_version 0x0302, no
/// supported_versions extension), as an old client would send it.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session_id: empty
    // Suites: ECDHE-ECDSA-AES128-GCM-SHA256 (rustls has it for TLS 1.2),
    // ECDHE-RSA-AES128-SHA (CBC, the usual TLS 1.1 one).
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x13]);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    // signature_algorithms (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256):
    // without it rustls finds no usable certificate and refuses with
    // handshake_failure before it looks at the version.
    body.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04,
    ]);
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8]; // ClientHello
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x02, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn tls11_client_hello_is_refused_with_protocol_version_alert() {
    let Some(pki) = Pki::new("tls11_refused") else {
        return;
    };
    let server_tls = server(&pki);
    let (server, reply) = converse(
        move |sock| server_tls.accept(sock, soon(HANDSHAKE)).map(|_| ()),
        |mut sock| {
            sock.write_all(&tls11_client_hello()).unwrap();
            sock.set_read_timeout(Some(HANDSHAKE)).unwrap();
            let mut reply = Vec::new();
            let _ = sock.read_to_end(&mut reply);
            reply
        },
    );
    let err = server.unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Handshake {
                source: rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered),
                ..
            }
        ),
        "{err:?}"
    );
    // An alert record (21): level fatal (2), description protocol_version (70).
    assert_eq!(reply.first(), Some(&21), "{reply:?}");
    assert_eq!(&reply[reply.len() - 2..], &[2, 70], "{reply:?}");
}

#[test]
fn openssl_client_negotiates_tls13_and_tls12_and_is_refused_tls11() {
    let Some(pki) = Pki::new("openssl_versions") else {
        return;
    };
    for (flag, expect) in [
        ("-tls1_3", Some(ProtocolVersion::TLSv1_3)),
        ("-tls1_2", Some(ProtocolVersion::TLSv1_2)),
        ("-tls1_1", None),
    ] {
        let server_tls = server(&pki);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut stream = server_tls.accept(sock, soon(HANDSHAKE))?;
            let mut rest = Vec::new();
            // s_client sends nothing and closes at end of its stdin.
            let _ = stream.read_to_end(&mut rest);
            Ok::<_, TlsError>(stream.info())
        });
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                flag,
                "-brief",
            ])
            .args([
                "-CAfile",
                pki.path("ca.pem").to_str().unwrap(),
                "-verify_return_error",
            ])
            // TLS 1.1 needs security level 0 in OpenSSL 3 even to be offered.
            .args(if expect.is_none() {
                &["-cipher", "DEFAULT@SECLEVEL=0"][..]
            } else {
                &[][..]
            })
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let result = server.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match expect {
            Some(version) => {
                assert!(out.status.success(), "{flag}: {stderr}");
                assert_eq!(result.unwrap().version, Some(version), "{flag}");
            }
            None => {
                assert!(!out.status.success(), "{flag}: {stderr}");
                let err = result.unwrap_err();
                assert!(
                    matches!(
                        err,
                        TlsError::Handshake {
                            source: rustls::Error::PeerIncompatible(_),
                            ..
                        }
                    ),
                    "{flag}: {err:?}; openssl said: {stderr}"
                );
            }
        }
    }
}

#[test]
fn handshake_deadline_fires_for_a_client_that_sends_nothing() {
    let Some(pki) = Pki::new("silent_client") else {
        return;
    };
    let server_tls = server(&pki);
    let (server_sock, _client) = tcp_pair();
    let started = Instant::now();
    let err = server_tls
        .accept(server_sock, soon(Duration::from_millis(300)))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, TlsError::HandshakeTimeout { peer: Some(_) }),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn handshake_deadline_fires_for_a_client_that_trickles_bytes() {
    let Some(pki) = Pki::new("trickle_client") else {
        return;
    };
    let server_tls = server(&pki);
    let (server_sock, mut client) = tcp_pair();
    // One byte of a hello every 40 ms: each read succeeds well within any
    // per-read timeout, so only a deadline for the whole handshake stops it.
    let trickle = thread::spawn(move || {
        for byte in tls11_client_hello().iter().take(40) {
            if client.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(40));
        }
    });
    let started = Instant::now();
    let err = server_tls
        .accept(server_sock, soon(Duration::from_millis(300)))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, TlsError::HandshakeTimeout { .. }), "{err:?}");
    assert!(
        waited < Duration::from_millis(1000),
        "the trickle extended the handshake to {waited:?}"
    );
    trickle.join().unwrap();
}

#[test]
fn untrusted_ca_fails_verification_with_a_clear_error() {
    let Some(pki) = Pki::new("wrong_ca") else {
        return;
    };
    let server_tls = server(&pki);
    let (server, client) = converse(
        move |sock| server_tls.accept(sock, soon(HANDSHAKE)).map(|_| ()),
        |sock| {
            client(&pki, "other-ca.pem")
                .connect(sock, "localhost", soon(HANDSHAKE))
                .map(|_| ())
        },
    );
    let err = client.unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Handshake {
                source: rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("TLS handshake with 127.0.0.1:"), "{text}");
    assert!(
        text.contains("not issued by a trusted CA (check the CA file)"),
        "{text}"
    );
    // The client told the server why (alert unknown_ca).
    let server_err = server.unwrap_err();
    assert!(
        matches!(
            server_err,
            TlsError::Handshake {
                source: rustls::Error::AlertReceived(_),
                ..
            }
        ),
        "{server_err:?}"
    );
}

#[test]
fn certificate_for_another_name_fails_verification() {
    let Some(pki) = Pki::new("wrong_name") else {
        return;
    };
    let server_tls = server(&pki);
    let (_, client) = converse(
        move |sock| server_tls.accept(sock, soon(HANDSHAKE)).map(|_| ()),
        |sock| {
            client(&pki, "ca.pem")
                .connect(sock, "mail.example.org", soon(HANDSHAKE))
                .map(|_| ())
        },
    );
    let err = client.unwrap_err();
    assert!(
        err.to_string()
            .contains("does not name the host connected to"),
        "{err}"
    );
}

#[test]
fn opportunistic_mode_completes_and_reports_what_verification_said() {
    let Some(pki) = Pki::new("opportunistic") else {
        return;
    };
    for (ca, name, verified) in [
        ("ca.pem", "localhost", true),
        ("other-ca.pem", "localhost", false),
        ("ca.pem", "mail.example.org", false),
    ] {
        let server_tls = server(&pki);
        let (server, (check, reply)) = converse(
            move |sock| {
                let mut stream = server_tls.accept(sock, soon(HANDSHAKE)).unwrap();
                let line = read_line(&mut stream);
                stream.write_all(b"221 bye\r\n").unwrap();
                line
            },
            |sock| {
                let (mut stream, check) = client(&pki, ca)
                    .connect_opportunistic(sock, name, soon(HANDSHAKE))
                    .unwrap();
                stream.write_all(b"QUIT\r\n").unwrap();
                (check, read_line(&mut stream))
            },
        );
        assert_eq!(
            matches!(check, PeerCheck::Verified),
            verified,
            "{ca} {name}: {check:?}"
        );
        assert_eq!(
            (server.as_str(), reply.as_str()),
            ("QUIT\r\n", "221 bye\r\n")
        );
    }
}

#[test]
fn starttls_discards_plaintext_sent_ahead_of_the_handshake() {
    let Some(pki) = Pki::new("starttls_inject") else {
        return;
    };
    let server_tls = server(&pki);
    let client_tls = client(&pki, "ca.pem");
    let (server, client) = converse(
        move |sock| {
            let mut stream = Stream::plain(sock);
            stream.set_deadline(Some(soon(HANDSHAKE)));
            let command = read_line(&mut stream);
            let injected_buffered = stream.has_buffered_input();
            stream
                .write_all(b"220 2.0.0 ready to start TLS\r\n")
                .unwrap();
            let mut stream = stream
                .start_tls_server(&server_tls, soon(HANDSHAKE))
                .unwrap();
            let after = read_line(&mut stream);
            stream.write_all(b"250 ok\r\n").unwrap();
            (command, injected_buffered, after, stream.is_tls())
        },
        |sock| {
            let mut stream = Stream::plain(sock);
            // CVE-2011-0411: a command injected right behind STARTTLS.
            stream
                .write_all(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
                .unwrap();
            let ready = read_line(&mut stream);
            let mut stream = stream
                .start_tls_client(&client_tls, "localhost", soon(HANDSHAKE))
                .unwrap();
            stream.write_all(b"EHLO client.test\r\n").unwrap();
            (ready, read_line(&mut stream))
        },
    );
    let (command, injected_buffered, after, is_tls) = server;
    assert_eq!(command, "STARTTLS\r\n");
    assert!(
        injected_buffered,
        "the injected line was read ahead with STARTTLS"
    );
    assert_eq!(
        after, "EHLO client.test\r\n",
        "the injected command must not survive"
    );
    assert!(is_tls);
    assert_eq!(
        client,
        (
            "220 2.0.0 ready to start TLS\r\n".to_string(),
            "250 ok\r\n".to_string()
        )
    );
}

#[test]
fn starttls_on_a_tls_stream_is_refused() {
    let Some(pki) = Pki::new("starttls_twice") else {
        return;
    };
    let server_tls = server(&pki);
    let (_, result) = converse(
        move |sock| server_tls.accept(sock, soon(HANDSHAKE)).map(|_| ()),
        |sock| {
            let stream: Stream = client(&pki, "ca.pem")
                .connect(sock, "localhost", soon(HANDSHAKE))
                .unwrap()
                .into();
            stream
                .start_tls_server(&server(&pki), soon(HANDSHAKE))
                .map(|_| ())
        },
    );
    assert!(matches!(result, Err(TlsError::AlreadyTls)), "{result:?}");
}

#[test]
fn read_after_handshake_honours_the_deadline() {
    let Some(pki) = Pki::new("read_deadline") else {
        return;
    };
    let server_tls = server(&pki);
    let (server_sock, client_sock) = tcp_pair();
    let client_tls = client(&pki, "ca.pem");
    let client = thread::spawn(move || {
        let mut stream = client_tls
            .connect(client_sock, "localhost", soon(HANDSHAKE))
            .unwrap();
        // Stay silent until the server has given up, then go away.
        let mut buf = [0; 1];
        let _ = stream.read(&mut buf);
    });
    let mut stream = Stream::accept_tls(server_sock, &server_tls, soon(HANDSHAKE)).unwrap();
    stream.set_deadline(Some(soon(Duration::from_millis(200))));
    let started = Instant::now();
    let err = stream.fill_buf().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    stream.shutdown().unwrap();
    client.join().unwrap();
}

#[test]
fn close_notify_is_end_of_stream_and_a_bare_tcp_close_is_not() {
    let Some(pki) = Pki::new("close_notify") else {
        return;
    };
    for clean in [true, false] {
        let server_tls = server(&pki);
        let (server, ()) = converse(
            move |sock| {
                let mut stream = server_tls.accept(sock, soon(HANDSHAKE)).unwrap();
                stream.set_deadline(Some(soon(HANDSHAKE)));
                let line = read_line(&mut stream);
                let mut buf = [0; 16];
                (line, stream.read(&mut buf).map_err(|e| e.kind()))
            },
            |sock| {
                let mut stream = client(&pki, "ca.pem")
                    .connect(sock, "localhost", soon(HANDSHAKE))
                    .unwrap();
                stream.write_all(b"QUIT\r\n").unwrap();
                if clean {
                    stream.shutdown().unwrap();
                } else {
                    stream.tcp().shutdown(std::net::Shutdown::Both).unwrap();
                }
            },
        );
        assert_eq!(server.0, "QUIT\r\n");
        let expected = if clean {
            Ok(0)
        } else {
            Err(io::ErrorKind::UnexpectedEof)
        };
        assert_eq!(server.1, expected, "clean={clean}");
    }
}

#[test]
fn server_loads_pkcs8_rsa_and_ec_keys() {
    let Some(pki) = Pki::new("key_formats") else {
        return;
    };
    // server.key is PKCS#8 EC; add a PKCS#1 RSA and a SEC1 EC key.
    pki.openssl(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    pki.issue("rsa.key", "rsa.pem");
    pki.openssl(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        "sec1.key",
    ]);
    pki.issue("sec1.key", "sec1.pem");
    for (cert, key, marker) in [
        ("server.pem", "server.key", "BEGIN PRIVATE KEY"),
        ("rsa.pem", "rsa.key", "BEGIN RSA PRIVATE KEY"),
        ("sec1.pem", "sec1.key", "BEGIN EC PRIVATE KEY"),
    ] {
        let text = std::fs::read_to_string(pki.path(key)).unwrap();
        assert!(text.contains(marker), "{key} is not in the form under test");
        let server_tls = ServerTls::load(&pki.path(cert), &pki.path(key))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let (server, client) = converse(
            move |sock| server_tls.accept(sock, soon(HANDSHAKE)).map(|_| ()),
            |sock| {
                client(&pki, "ca.pem")
                    .connect(sock, "localhost", soon(HANDSHAKE))
                    .map(|_| ())
            },
        );
        server.unwrap();
        client.unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}

#[test]
fn key_of_another_certificate_is_refused_naming_both_files() {
    let Some(pki) = Pki::new("key_mismatch") else {
        return;
    };
    let err = ServerTls::load(&pki.path("server.pem"), &pki.path("ca.key")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TlsError::CertKey { .. }), "{err:?}");
    assert!(
        text.contains("server.pem") && text.contains("ca.key"),
        "{text}"
    );
    assert!(
        text.contains("does not belong to the first certificate"),
        "{text}"
    );
}

#[test]
fn unreadable_or_wrong_files_are_named_with_what_is_wrong() {
    let Some(pki) = Pki::new("bad_files") else {
        return;
    };
    let missing = pki.path("missing.pem");
    let err = ServerTls::load(&missing, &pki.path("server.key")).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Read {
                role: FileRole::Certificate,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    // Certificate and key swapped.
    let err = ServerTls::load(&pki.path("server.key"), &pki.path("server.pem")).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Pem {
                role: FileRole::Certificate,
                problem: PemProblem::NoCertificate,
                ..
            }
        ),
        "{err:?}"
    );

    pki.openssl(&[
        "pkey",
        "-in",
        "server.key",
        "-aes256",
        "-passout",
        "pass:secret",
        "-out",
        "locked.key",
    ]);
    let err = ServerTls::load(&pki.path("server.pem"), &pki.path("locked.key")).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Pem {
                problem: PemProblem::EncryptedKey,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("encrypted with a passphrase"),
        "{err}"
    );

    let err = ClientTls::new(Some(&pki.path("server.key"))).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Pem {
                role: FileRole::CaBundle,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn one_file_may_hold_both_certificate_and_key() {
    let Some(pki) = Pki::new("combined_pem") else {
        return;
    };
    let mut both = std::fs::read(pki.path("server.pem")).unwrap();
    both.extend(std::fs::read(pki.path("server.key")).unwrap());
    let path = pki.path("both.pem");
    std::fs::write(&path, both).unwrap();
    ServerTls::load(&path, &path).unwrap();
}

#[test]
fn client_without_ca_file_uses_the_system_bundle() {
    let Some(found) = detad::tls::SYSTEM_CA_BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        eprintln!("skipping: no system CA bundle (apt-get install ca-certificates)");
        return;
    };
    let client_tls = ClientTls::new(None).unwrap();
    assert_eq!(client_tls.ca_file(), found);
}
