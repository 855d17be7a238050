//! The blocking driver: runs a [`Conversation`] over any stream, streaming
//! the content into a sink, within one deadline for the whole fetch.
//!
//! Guarantees:
//! - the whole fetch, connect to last octet, ends by [`Limits::deadline`]:
//!   before each read and write the stream's timeout is set to the time
//!   left, so a server that drips one octet a minute cannot stretch it.
//!   Exceptions: the resolver in [`connect`] (std cannot bound it; give
//!   `burl_imap` as an address to avoid it), and the caller's TLS
//!   handshake, whose reads are each bounded by the time left when it
//!   starts;
//! - memory is one read buffer plus the parser's line: the content goes
//!   from the buffer to the sink;
//! - the stream is upgraded to TLS only right after the server's OK to
//!   STARTTLS, and only if the server sent nothing after that OK (so no
//!   plaintext can be injected into the TLS session);
//! - nothing secret is logged: not the credentials, not the URL's token.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, trace};

use super::error::{Failure, FetchError};
use super::fetch::{Conversation, Credentials, Security, Step};
use super::url::AuthorizedUrl;

/// A sensible fetch deadline: the SMTP client waits 10 minutes for the
/// reply after the content (RFC 5321 §4.5.3.2.6), and the BURL reply can
/// only come after the fetch, so the fetch must end well before.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How much is read from the server at a time.
const READ_BUFFER_SIZE: usize = 16 * 1024;

/// A byte stream whose blocking reads and writes can be bounded in time:
/// a `TcpStream`, or a TLS stream over one (implement it by setting the
/// socket's read and write timeouts).
pub trait TimedStream: Read + Write {
    /// Bounds each following blocking read and write to `timeout`, which
    /// is never zero.
    ///
    /// # Errors
    ///
    /// The socket's error, if the timeout cannot be set.
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl TimedStream for TcpStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl<S: TimedStream + ?Sized> TimedStream for &mut S {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        (**self).set_timeout(timeout)
    }
}

/// The bounds of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most octets the content may have: what the message may still
    /// grow by (the size limit minus what earlier BDAT or BURL chunks
    /// brought).
    pub max_size: u64,
    /// When the whole fetch must be over.
    pub deadline: Instant,
}

impl Limits {
    /// `max_size`, and a deadline `timeout` from now.
    pub fn new(max_size: u64, timeout: Duration) -> Limits {
        Limits {
            max_size,
            deadline: crate::clock::deadline_after(timeout),
        }
    }
}

/// Connects to the configured IMAP server (never to a host from a URL),
/// trying each address in turn until `deadline`.
///
/// # Errors
///
/// [`FetchError::Unreachable`] with the resolver's error or the last
/// connect error; [`FetchError::TimedOut`] when the deadline passed first.
pub fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, FetchError> {
    // `[2001:db8::1]`: the resolver wants the literal bare.
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs = (name, port)
        .to_socket_addrs()
        .map_err(FetchError::Unreachable)?;
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        let left = time_left(deadline)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                // One command at a time; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                debug!("burl: connected to {host}[{}]:{port}", addr.ip());
                return Ok(stream);
            }
            Err(e) => last_error = e,
        }
    }
    Err(FetchError::Unreachable(last_error))
}

/// Fetches `url` over `stream` as it is (already TLS, as for imaps, or a
/// trusted local connection): logs in as `credentials`, writes the content
/// to `sink` and returns its length.
///
/// # Errors
///
/// A [`FetchError`]; its [`reply`](FetchError::reply) is the SMTP reply to
/// send. The sink may hold part of the content: discard it.
pub fn fetch<S: TimedStream>(
    mut stream: S,
    credentials: &Credentials,
    url: &AuthorizedUrl<'_>,
    sink: &mut dyn Write,
    limits: &Limits,
) -> Result<u64, FetchError> {
    let mut conversation = Conversation::new(credentials, url, Security::AsIs, limits.max_size);
    let mut driver = Driver::new(sink, limits.deadline);
    let result = match driver.run(&mut conversation, &mut stream)? {
        Pause::Finished(result) => result.map_err(FetchError::Imap),
        Pause::StartTls => Err(FetchError::Imap(unexpected_starttls())),
    };
    log_result(url, &result);
    result
}

/// Like [`fetch`], but first negotiates STARTTLS (RFC 3501 §6.2.1, as RFC
/// 4468 §3.3 requires an implementation to offer): right after the
/// server's OK to STARTTLS, `upgrade` gets the stream and returns the TLS
/// stream over it (it runs the handshake and checks the certificate);
/// the conversation goes on over that.
///
/// # Errors
///
/// As [`fetch`]; a failed `upgrade` is [`FetchError::Tls`], a server
/// without STARTTLS a [`Failure::TlsUnavailable`].
pub fn fetch_with_starttls<S, T, F>(
    mut stream: S,
    upgrade: F,
    credentials: &Credentials,
    url: &AuthorizedUrl<'_>,
    sink: &mut dyn Write,
    limits: &Limits,
) -> Result<u64, FetchError>
where
    S: TimedStream,
    T: TimedStream,
    F: FnOnce(S) -> io::Result<T>,
{
    let mut conversation = Conversation::new(credentials, url, Security::StartTls, limits.max_size);
    let mut driver = Driver::new(sink, limits.deadline);
    let result = match driver.run(&mut conversation, &mut stream)? {
        Pause::Finished(result) => result.map_err(FetchError::Imap),
        Pause::StartTls => {
            if driver.start != driver.end {
                // Bytes sent before the handshake must not be read as if
                // they came through TLS (the STARTTLS injection attacks).
                let failure = Failure::Protocol {
                    detail: "data after the STARTTLS reply".into(),
                };
                return Err(FetchError::Imap(failure));
            }
            stream
                .set_timeout(time_left(limits.deadline)?)
                .map_err(FetchError::ConnectionLost)?;
            let mut tls = upgrade(stream).map_err(FetchError::Tls)?;
            debug!("burl: TLS started with the IMAP server");
            conversation.tls_started();
            match driver.run(&mut conversation, &mut tls)? {
                Pause::Finished(result) => result.map_err(FetchError::Imap),
                Pause::StartTls => Err(FetchError::Imap(unexpected_starttls())),
            }
        }
    };
    log_result(url, &result);
    result
}

fn unexpected_starttls() -> Failure {
    Failure::Protocol {
        detail: "STARTTLS where none was asked for".into(),
    }
}

fn log_result(url: &AuthorizedUrl<'_>, result: &Result<u64, FetchError>) {
    let host = url.url().host;
    match result {
        Ok(n) => debug!("burl: fetched {n} octets from {host}"),
        Err(e) => debug!("burl: fetch from {host} failed: {e}"),
    }
}

/// Why [`Driver::run`] returned.
enum Pause {
    StartTls,
    Finished(Result<u64, Failure>),
}

/// The I/O half: the read buffer, the sink and the deadline.
struct Driver<'s> {
    /// Received bytes; `buf[start..end]` is not yet fed.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    sink: &'s mut dyn Write,
    deadline: Instant,
}

impl<'s> Driver<'s> {
    fn new(sink: &'s mut dyn Write, deadline: Instant) -> Driver<'s> {
        Driver {
            buf: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            sink,
            deadline,
        }
    }

    /// Does what the conversation says until it asks for STARTTLS or is
    /// finished (csv's `read_byte_record_impl` loop).
    fn run<S: TimedStream>(
        &mut self,
        conversation: &mut Conversation<'_>,
        stream: &mut S,
    ) -> Result<Pause, FetchError> {
        loop {
            let (used, step) = conversation.feed(&self.buf[self.start..self.end]);
            self.start += used;
            match step {
                Step::Send(out) => {
                    trace!("burl: > {}", out.name());
                    write_all(stream, out.as_bytes(), self.deadline)?;
                }
                Step::Body(chunk) => self.sink.write_all(&chunk).map_err(FetchError::Sink)?,
                Step::NeedInput => self.fill(stream)?,
                Step::StartTls => return Ok(Pause::StartTls),
                Step::Finished(result) => {
                    if let Some(out) = conversation.farewell() {
                        // Best effort: the result is known already.
                        trace!("burl: > {}", out.name());
                        let _ = write_all(stream, out.as_bytes(), self.deadline);
                    }
                    return Ok(Pause::Finished(result));
                }
            }
        }
    }

    /// Reads more from the server into the (fully used) buffer.
    fn fill<S: TimedStream>(&mut self, stream: &mut S) -> Result<(), FetchError> {
        loop {
            stream
                .set_timeout(time_left(self.deadline)?)
                .map_err(FetchError::ConnectionLost)?;
            match stream.read(&mut self.buf) {
                Ok(0) => {
                    let closed = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the IMAP server",
                    );
                    return Err(FetchError::ConnectionLost(closed));
                }
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The timeout ran out: `time_left` says whether the
                // deadline did too.
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(FetchError::ConnectionLost(e)),
            }
        }
    }
}

/// Writes all of `bytes` and flushes, each write bounded by the time left.
fn write_all<S: TimedStream>(
    stream: &mut S,
    mut bytes: &[u8],
    deadline: Instant,
) -> Result<(), FetchError> {
    let lost = FetchError::ConnectionLost;
    while !bytes.is_empty() {
        stream.set_timeout(time_left(deadline)?).map_err(lost)?;
        match stream.write(bytes) {
            Ok(0) => return Err(lost(io::ErrorKind::WriteZero.into())),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(e) => return Err(lost(e)),
        }
    }
    loop {
        stream.set_timeout(time_left(deadline)?).map_err(lost)?;
        match stream.flush() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(e) => return Err(lost(e)),
        }
    }
}

/// The time left before `deadline`, never zero.
fn time_left(deadline: Instant) -> Result<Duration, FetchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(FetchError::TimedOut);
    }
    Ok(left)
}

/// std: an expired socket timeout is `WouldBlock` on Unix, `TimedOut`
/// elsewhere.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::burl::url::check;
    use std::cell::Cell;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::thread::{self, JoinHandle};

    /// How long the fake server waits for the client before giving up, so
    /// a broken test fails instead of hanging.
    const SERVER_PATIENCE: Duration = Duration::from_secs(10);

    const TOKEN: &str = "91354a473744909de610943775f92038";

    fn credentials() -> Credentials {
        Credentials {
            user: "submit".into(),
            password: "secret".into(),
        }
    }

    /// The URL of a message on the fake server at `port`.
    fn url_at(port: u16) -> String {
        format!("imap://joe@127.0.0.1:{port}/INBOX/;uid=20;urlauth=submit+fred:internal:{TOKEN}")
    }

    /// One move of the fake server.
    enum Move {
        /// Write these bytes.
        Say(Vec<u8>),
        /// Read one line; it must be this (without CRLF).
        Expect(String),
        /// Close the connection now.
        Close,
    }

    fn say(text: &str) -> Move {
        Move::Say(text.as_bytes().to_vec())
    }

    fn expect(line: &str) -> Move {
        Move::Expect(line.to_string())
    }

    /// A scripted IMAP server on 127.0.0.1 for one connection; the script
    /// is made from the port. After the script (unless it closed) it reads
    /// until the client closes, and returns those lines.
    fn serve(script: impl FnOnce(u16) -> Vec<Move>) -> (u16, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = script(port);
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(SERVER_PATIENCE)).unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            for step in script {
                match step {
                    // The client may be gone already (a refused fetch).
                    Move::Say(bytes) => drop(writer.write_all(&bytes)),
                    Move::Expect(expected) => {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        assert_eq!(line, format!("{expected}\r\n"));
                    }
                    Move::Close => return Vec::new(),
                }
            }
            let mut rest = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                rest.push(line.trim_end().to_string());
                line.clear();
            }
            rest
        });
        (port, server)
    }

    /// The moves up to and including the URLFETCH command.
    fn login_and_urlfetch(port: u16) -> Vec<Move> {
        vec![
            say("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR URLAUTH] hi\r\n"),
            expect("b1 AUTHENTICATE PLAIN AHN1Ym1pdABzZWNyZXQ="),
            say("b1 OK logged in\r\n"),
            expect(&format!("b2 URLFETCH \"{}\"", url_at(port))),
        ]
    }

    /// `* URLFETCH` with `body` as a literal, and the tagged OK.
    fn answer(body: &[u8]) -> Move {
        let mut answer = format!("* URLFETCH \"x\" {{{}}}\r\n", body.len()).into_bytes();
        answer.extend_from_slice(body);
        answer.extend_from_slice(b"\r\nb2 OK URLFETCH completed\r\n");
        Move::Say(answer)
    }

    /// Connects to the fake server and runs `fetch` with `limits`.
    fn fetch_from(port: u16, sink: &mut dyn Write, limits: &Limits) -> Result<u64, FetchError> {
        let url = url_at(port);
        let url = check(&url, "127.0.0.1", port, "fred").unwrap();
        let stream = connect("127.0.0.1", port, limits.deadline).unwrap();
        fetch(stream, &credentials(), &url, sink, limits)
    }

    fn limits() -> Limits {
        Limits::new(1 << 20, SERVER_PATIENCE)
    }

    #[test]
    fn fetch_streams_a_large_literal_into_the_sink() {
        // Many read buffers long, with CRLFs and a `{5}` inside.
        let body: Vec<u8> = (0..300_000u32)
            .flat_map(|i| match i % 100 {
                0 => b"\r\n".to_vec(),
                1 => b"{5}".to_vec(),
                _ => vec![b'a' + (i % 26) as u8],
            })
            .collect();
        let (port, server) = serve(|port| {
            let mut script = login_and_urlfetch(port);
            script.push(answer(&body));
            script
        });
        let mut sink = Vec::new();
        let n = fetch_from(port, &mut sink, &limits()).unwrap();
        assert_eq!(n, body.len() as u64);
        assert!(sink == body, "the sink got other octets");
        assert_eq!(server.join().unwrap(), ["b3 LOGOUT"]);
    }

    #[test]
    fn starttls_hands_the_stream_to_the_upgrade_after_the_ok() {
        let (port, server) = serve(|port| {
            vec![
                say("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n"),
                expect("b1 STARTTLS"),
                say("b1 OK Begin TLS negotiation now\r\n"),
                // "TLS" from here: the client asks for capabilities again.
                expect("b2 CAPABILITY"),
                say("* CAPABILITY IMAP4rev1 AUTH=PLAIN URLAUTH\r\nb2 OK\r\n"),
                expect("b3 AUTHENTICATE PLAIN"),
                say("+ \r\n"),
                expect("AHN1Ym1pdABzZWNyZXQ="),
                say("b3 OK\r\n"),
                expect(&format!("b4 URLFETCH \"{}\"", url_at(port))),
                say("* URLFETCH \"x\" {5}\r\nhello\r\nb4 OK\r\n"),
            ]
        });
        let url = url_at(port);
        let url = check(&url, "127.0.0.1", port, "fred").unwrap();
        let limits = limits();
        let stream = connect("127.0.0.1", port, limits.deadline).unwrap();
        let upgrades = Cell::new(0);
        let upgrade = |stream: TcpStream| {
            upgrades.set(upgrades.get() + 1);
            Ok(Wrapped(stream))
        };
        let mut sink = Vec::new();
        let result = fetch_with_starttls(stream, upgrade, &credentials(), &url, &mut sink, &limits);
        assert_eq!(result.unwrap(), 5);
        assert_eq!(sink, b"hello");
        assert_eq!(upgrades.get(), 1);
        assert_eq!(server.join().unwrap(), ["b5 LOGOUT"]);
    }

    /// Stands in for a TLS stream: another type over the socket.
    struct Wrapped(TcpStream);

    impl Read for Wrapped {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Wrapped {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl TimedStream for Wrapped {
        fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
            self.0.set_timeout(timeout)
        }
    }

    /// An in-memory server: reads come in the chunks given, writes are
    /// kept.
    struct Scripted {
        reads: Vec<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.reads.is_empty() {
                return Ok(0);
            }
            let chunk = self.reads.remove(0);
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl TimedStream for Scripted {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_after_the_starttls_ok_are_refused_before_any_handshake() {
        let stream = Scripted {
            reads: vec![
                b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n".to_vec(),
                b"b1 OK go\r\nb2 OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n".to_vec(),
            ],
            written: Vec::new(),
        };
        let url = url_at(143);
        let url = check(&url, "127.0.0.1", 143, "fred").unwrap();
        let upgrade = |_: &mut Scripted| -> io::Result<Wrapped> { panic!("no handshake expected") };
        let mut sink = Vec::new();
        let mut stream = stream;
        let result = fetch_with_starttls(
            &mut stream,
            upgrade,
            &credentials(),
            &url,
            &mut sink,
            &limits(),
        );
        let Err(FetchError::Imap(Failure::Protocol { detail })) = result else {
            panic!("expected a protocol failure, got {result:?}");
        };
        assert_eq!(detail, "data after the STARTTLS reply");
        assert_eq!(stream.written, b"b1 STARTTLS\r\n");
    }

    #[test]
    fn failed_upgrade_is_a_tls_error() {
        let mut stream = Scripted {
            reads: vec![b"* OK [CAPABILITY STARTTLS] hi\r\nb1 OK\r\n".to_vec()],
            written: Vec::new(),
        };
        let url = url_at(143);
        let url = check(&url, "127.0.0.1", 143, "fred").unwrap();
        let upgrade = |_: &mut Scripted| -> io::Result<Wrapped> {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad certificate",
            ))
        };
        let result = fetch_with_starttls(
            &mut stream,
            upgrade,
            &credentials(),
            &url,
            &mut Vec::new(),
            &limits(),
        );
        let error = result.unwrap_err();
        assert!(matches!(error, FetchError::Tls(_)));
        assert_eq!(
            error.reply().to_string(),
            "454 4.7.0 TLS with the IMAP server failed"
        );
    }

    #[test]
    fn a_silent_server_times_out_at_the_deadline() {
        let (port, server) = serve(|_| {
            vec![
                say("* OK hi\r\n"),
                expect("b1 CAPABILITY"),
                // ...and nothing more: the client must give up by itself.
            ]
        });
        let limits = Limits::new(1000, Duration::from_millis(300));
        let started = Instant::now();
        let error = fetch_from(port, &mut Vec::new(), &limits).unwrap_err();
        assert!(matches!(error, FetchError::TimedOut), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(error.reply().to_string(), "451 4.4.2 IMAP server timed out");
        assert!(error.is_temporary());
        server.join().unwrap();
    }

    #[test]
    fn a_dripping_server_cannot_stretch_the_deadline() {
        // A greeting, then untagged responses forever, one octet per read,
        // each read at once: no socket timeout ever fires, the deadline
        // must.
        struct Drip(usize);
        impl Read for Drip {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                const STREAM: &[u8] = b"* OK still here\r\n";
                buf[0] = STREAM[self.0 % STREAM.len()];
                self.0 += 1;
                Ok(1)
            }
        }
        impl Write for Drip {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl TimedStream for Drip {
            fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
                Ok(())
            }
        }
        let url = url_at(143);
        let url = check(&url, "127.0.0.1", 143, "fred").unwrap();
        let limits = Limits::new(1000, Duration::from_millis(100));
        let started = Instant::now();
        let result = fetch(Drip(0), &credentials(), &url, &mut Vec::new(), &limits);
        assert!(matches!(result, Err(FetchError::TimedOut)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_closed_connection_is_lost() {
        let (port, server) =
            serve(|_| vec![say("* OK hi\r\n"), expect("b1 CAPABILITY"), Move::Close]);
        let error = fetch_from(port, &mut Vec::new(), &limits()).unwrap_err();
        assert!(matches!(error, FetchError::ConnectionLost(_)), "{error:?}");
        assert_eq!(error.reply().code, 451);
        server.join().unwrap();
    }

    #[test]
    fn nil_is_a_permanent_resolution_failure() {
        let (port, server) = serve(|port| {
            let mut script = login_and_urlfetch(port);
            script.push(say("* URLFETCH \"x\" NIL\r\nb2 OK URLFETCH completed\r\n"));
            script
        });
        let error = fetch_from(port, &mut Vec::new(), &limits()).unwrap_err();
        assert_eq!(
            error.reply().to_string(),
            "554 5.6.6 IMAP URL resolution failed"
        );
        assert!(!error.is_temporary());
        assert_eq!(server.join().unwrap(), ["b3 LOGOUT"]);
    }

    #[test]
    fn refused_login_is_454() {
        let (port, server) = serve(|_| {
            vec![
                say("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n"),
                expect("b1 AUTHENTICATE PLAIN AHN1Ym1pdABzZWNyZXQ="),
                say("b1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            ]
        });
        let error = fetch_from(port, &mut Vec::new(), &limits()).unwrap_err();
        assert_eq!(
            error.reply().to_string(),
            "454 4.7.0 IMAP server refused the submit login"
        );
        assert_eq!(server.join().unwrap(), ["b2 LOGOUT"]);
    }

    #[test]
    fn too_large_content_is_refused_without_reading_it() {
        let (port, server) = serve(|port| {
            let mut script = login_and_urlfetch(port);
            script.push(say("* URLFETCH \"x\" {2000}\r\n"));
            script
        });
        let limits = Limits::new(1999, SERVER_PATIENCE);
        let mut sink = Vec::new();
        let error = fetch_from(port, &mut sink, &limits).unwrap_err();
        assert!(sink.is_empty());
        assert_eq!(
            error.reply().to_string(),
            "552 5.3.4 message size exceeds fixed maximum message size"
        );
        // No LOGOUT: the server is sending the literal.
        assert!(server.join().unwrap().is_empty());
    }

    #[test]
    fn sink_failure_is_a_local_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (port, server) = serve(|port| {
            let mut script = login_and_urlfetch(port);
            script.push(answer(b"some content"));
            script
        });
        let error = fetch_from(port, &mut Full, &limits()).unwrap_err();
        assert!(matches!(error, FetchError::Sink(_)));
        assert_eq!(
            error.reply().to_string(),
            "452 4.3.1 insufficient system storage"
        );
        server.join().unwrap();
        let other = FetchError::Sink(io::ErrorKind::PermissionDenied.into());
        assert_eq!(other.reply().code, 451);
    }

    #[test]
    fn connect_to_a_closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let deadline = Instant::now() + SERVER_PATIENCE;
        let error = connect("127.0.0.1", port, deadline).unwrap_err();
        assert!(matches!(error, FetchError::Unreachable(_)), "{error:?}");
        assert_eq!(
            error.reply().to_string(),
            "451 4.4.1 IMAP server unavailable"
        );
        let past = Instant::now();
        assert!(matches!(
            connect("[::1]", port, past),
            Err(FetchError::TimedOut)
        ));
    }
}
