//! Helpers for the integration tests: a temp directory per test, a real
//! server on 127.0.0.1:0, a line-oriented SMTP client, `transcript()` in
//! RFC 5321 Appendix D style, and bounded waits on the file system (the
//! only place the asynchronous delivery can be observed).
#![allow(dead_code)]

pub mod daemon;

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use detad::config::Config;
use detad::queue::envelope::RcptState;
use detad::queue::spool::Spool;
use detad::server::{self, Handle, Options};

/// How long a test waits for something the server does asynchronously.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(20);
/// How long the client waits for a reply before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The host name every test server uses.
pub const HOSTNAME: &str = "gw.test";

/// Sets up env_logger once per test binary (`RUST_LOG=debug cargo test`).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = env_logger::builder().is_test(true).try_init();
    });
}

/// A fresh directory for one test; removed on drop unless the test failed
/// (then it is kept for inspection and its path is printed).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new empty directory named after the test. Kept short: the control
    /// socket inside the spool must fit in `sun_path` (108 octets).
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let short: String = name.chars().take(20).collect();
        let path = std::env::temp_dir().join(format!(
            "detad-{}-{}-{short}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        // `out/` is where the test `pipe:` programs write; they never
        // create it, so a straggler cannot resurrect a removed directory.
        // Anyone may write there: a daemon started as root runs its pipe
        // programs as `nobody`.
        fs::create_dir_all(path.join("out")).expect("create the test directory");
        {
            use std::os::unix::fs::PermissionsExt;
            let open = fs::Permissions::from_mode(0o777);
            fs::set_permissions(path.join("out"), open).expect("chmod out/");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The spool directory the test configuration uses.
    pub fn spool(&self) -> PathBuf {
        self.join("spool")
    }

    /// The Maildir root the test routes use.
    pub fn maildir(&self) -> PathBuf {
        self.join("maildir")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A test configuration: listens on 127.0.0.1:0, spool in `dir/spool`, no
/// fsync (the tests are about protocol and state, not power cuts), then the
/// `key = value` lines of `text`, where `{dir}` stands for the directory.
#[track_caller]
pub fn config(dir: &TempDir, text: &str) -> Config {
    let mut config = Config {
        hostname: HOSTNAME.into(),
        listen: vec!["127.0.0.1:0".parse().expect("valid literal")],
        spool: dir.spool(),
        fsync: false,
        ..Config::default()
    };
    let text = text.replace("{dir}", &dir.path().display().to_string());
    config
        .apply_file_text("test config", &text)
        .unwrap_or_else(|e| panic!("bad test configuration: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("bad test configuration: {e}"));
    config
}

/// A fresh [`TempDir`] named `name` and a [`Server`] on it, configured by
/// [`config`] with `text`.
#[track_caller]
pub fn serve(name: &str, text: &str) -> (TempDir, Server) {
    let dir = TempDir::new(name);
    let server = Server::start(config(&dir, text));
    (dir, server)
}

/// [`serve`], and a client past EHLO.
#[track_caller]
pub fn session(name: &str, text: &str) -> (TempDir, Server, Client) {
    let (dir, server) = serve(name, text);
    let client = server.ehlo();
    (dir, server, client)
}

/// A `pipe:` route for `domain` that takes `secs` seconds, then writes the
/// message to `{dir}/out/<recipient>` (atomically: a file that exists is
/// complete). The program runs without a shell, hence `/bin/sh -c`.
pub fn slow_pipe_route(domain: &str, secs: &str) -> String {
    format!(
        "route = {domain} pipe:/bin/sh -c \"sleep {secs}; \
         cat > {{dir}}/out/.tmp.$RECIPIENT && mv {{dir}}/out/.tmp.$RECIPIENT {{dir}}/out/$RECIPIENT\"\n"
    )
}

/// How a gated pipe waits: 200 looks 50 ms apart, so a gate the test never
/// opens (it failed) still lets the program end after 10 s. `{dir}` stands
/// for the test directory, as in [`config`].
pub const GATE_WAIT: &str =
    "i=0; while [ ! -e {dir}/go ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done";

/// A `pipe:` route for `domain` whose program waits until the test calls
/// [`open_gate`], then writes the message to `{dir}/out/<recipient>`: the
/// test decides when processing ends, so no race on the clock.
pub fn gated_pipe_route(domain: &str) -> String {
    format!(
        "route = {domain} pipe:/bin/sh -c \"{GATE_WAIT}; \
         cat > {{dir}}/out/.tmp.$RECIPIENT && mv {{dir}}/out/.tmp.$RECIPIENT {{dir}}/out/$RECIPIENT\"\n"
    )
}

/// A `pipe:` route for `domain` that waits for [`open_gate`], then fails
/// permanently saying `diagnostic` on stderr.
pub fn gated_failing_pipe_route(domain: &str, diagnostic: &str) -> String {
    format!("route = {domain} pipe:/bin/sh -c \"{GATE_WAIT}; echo {diagnostic} >&2; exit 1\"\n")
}

/// Lets every gated pipe program of the test finish.
pub fn open_gate(dir: &TempDir) {
    fs::write(dir.join("go"), b"").expect("open the gate");
}

/// A `pipe:` route for `domain` that fails permanently after `secs`
/// seconds, saying `diagnostic` on stderr.
pub fn failing_pipe_route(domain: &str, secs: &str, diagnostic: &str) -> String {
    format!("route = {domain} pipe:/bin/sh -c \"sleep {secs}; echo {diagnostic} >&2; exit 1\"\n")
}

/// The options of an in-process test server: no signals, and the pipe
/// trampoline run by the real detad binary (the test binary is not one).
pub fn test_options() -> Options {
    Options {
        helper: PathBuf::from(env!("CARGO_BIN_EXE_detad")),
        settle_privileges: false,
        ..Options::default()
    }
}

/// A running in-process server; [`Server::stop`] shuts it down and joins
/// every thread. Dropped during a panic, it only asks for the shutdown.
#[derive(Debug)]
pub struct Server {
    handle: Option<Handle>,
    /// The bound address.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts a server (no signal handling: many run in one process).
    #[track_caller]
    pub fn start(config: Config) -> Server {
        Server::start_with(config, test_options())
    }

    /// Starts a server with these options.
    #[track_caller]
    pub fn start_with(config: Config, options: Options) -> Server {
        init();
        let handle =
            server::start(config, options).unwrap_or_else(|e| panic!("server did not start: {e}"));
        let addr = handle.addrs[0];
        Server {
            handle: Some(handle),
            addr,
        }
    }

    /// Connects and reads the 220 greeting.
    #[track_caller]
    pub fn client(&self) -> Client {
        let mut client = Client::connect(self.addr);
        client.expect(220, HOSTNAME);
        client
    }

    /// Connects, greets with EHLO and reads its reply.
    #[track_caller]
    pub fn ehlo(&self) -> Client {
        let mut client = self.client();
        client.command("EHLO client.test", 250);
        client
    }

    /// Asks for a flush, as SIGUSR1 does.
    pub fn flush(&self) {
        self.handle.as_ref().expect("server running").flush();
    }

    /// The server's queue handle.
    pub fn queue(&self) -> &detad::queue::manager::QueueHandle {
        self.handle.as_ref().expect("server running").queue()
    }

    /// Shuts down and waits for every thread.
    pub fn stop(mut self) {
        let handle = self.handle.take().expect("server running");
        handle.shutdown();
        handle.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
            // A failing test must not hang on a join as well.
            if !std::thread::panicking() {
                handle.join();
            }
        }
    }
}

/// One reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code.
    pub code: u16,
    /// The text of each line, after `code-` or `code `.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of all lines, joined with spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// A line-oriented SMTP client over a real socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects without reading anything.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set read timeout");
        let writer = stream.try_clone().expect("clone socket");
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Sends one command line; CRLF is appended.
    #[track_caller]
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Sends bytes as they are, in one write.
    #[track_caller]
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Closes the connection (both directions) without a QUIT.
    pub fn vanish(self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }

    /// Reads one whole reply; `Ok(None)` when the server closed the
    /// connection before a reply began.
    pub fn read_reply(&mut self) -> io::Result<Option<Reply>> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let n = self.reader.read_until(b'\n', &mut raw)?;
            if n == 0 {
                if lines.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a multi-line reply",
                ));
            }
            let line = String::from_utf8_lossy(&raw);
            let Some(line) = line.strip_suffix("\r\n") else {
                return Err(bad_reply(&line));
            };
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| bad_reply(line))?;
            let (more, text) = match line.as_bytes().get(3) {
                None => (false, ""),
                Some(b' ') => (false, &line[4..]),
                Some(b'-') => (true, &line[4..]),
                Some(_) => return Err(bad_reply(line)),
            };
            lines.push((code, text.to_string()));
            if !more {
                break;
            }
        }
        let code = lines[0].0;
        if lines.iter().any(|(c, _)| *c != code) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("mixed codes in one reply: {lines:?}"),
            ));
        }
        Ok(Some(Reply {
            code,
            lines: lines.into_iter().map(|(_, t)| t).collect(),
        }))
    }

    /// Reads one reply; fails the test on EOF, timeout or garbage.
    #[track_caller]
    pub fn reply(&mut self) -> Reply {
        match self.read_reply() {
            Ok(Some(reply)) => reply,
            Ok(None) => panic!("server closed the connection, a reply was expected"),
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    /// Reads one reply and checks its code and the start of its text.
    #[track_caller]
    pub fn expect(&mut self, code: u16, text_prefix: &str) -> Reply {
        let reply = self.reply();
        assert!(
            reply.code == code && reply.text().starts_with(text_prefix),
            "expected `{code} {text_prefix}...`, got `{reply}`"
        );
        reply
    }

    /// Sends a command and checks the reply code.
    #[track_caller]
    pub fn command(&mut self, line: &str, code: u16) -> Reply {
        self.send(line);
        let reply = self.reply();
        assert_eq!(reply.code, code, "`{line}` got `{reply}`");
        reply
    }

    /// Expects the server to close the connection with nothing more to say.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        match self.read_reply() {
            Ok(None) => {}
            // A reset after our unread data is a close as well.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Ok(Some(reply)) => panic!("expected the connection closed, got `{reply}`"),
            Err(e) => panic!("expected the connection closed, got error {e}"),
        }
    }

    /// Sends the content (already with CRLF line ends, dot-stuffed where
    /// needed) and the terminator, in one write.
    #[track_caller]
    pub fn send_content(&mut self, content: &str) {
        self.send_raw(format!("{content}.\r\n").as_bytes());
    }

    /// After the end of data of an RDLV transaction: answers every 120 with
    /// CONT until the final reply; returns how many 120s came, and the
    /// final reply.
    #[track_caller]
    pub fn cont_until_final(&mut self) -> (usize, Reply) {
        let mut keepalives = 0;
        loop {
            let reply = self.reply();
            if reply.code != 120 {
                return (keepalives, reply);
            }
            keepalives += 1;
            self.send("CONT");
        }
    }

    /// `MAIL FROM:mail`, then `RCPT TO:rcpt` for each of `rcpts`, each
    /// answered 250. The arguments are whole: `<address>` and any
    /// parameters (`<bob@example.com> NOTIFY=NEVER`).
    #[track_caller]
    pub fn mail_rcpt(&mut self, mail: &str, rcpts: &[&str]) {
        self.command(&format!("MAIL FROM:{mail}"), 250);
        for rcpt in rcpts {
            self.command(&format!("RCPT TO:{rcpt}"), 250);
        }
    }

    /// [`Client::mail_rcpt`], then DATA and its 354: the content is next.
    #[track_caller]
    pub fn open_data(&mut self, mail: &str, rcpts: &[&str]) {
        self.mail_rcpt(mail, rcpts);
        self.command("DATA", 354);
    }

    /// [`Client::mail_rcpt`], then `rdlv` (`RDLV`, `RDLV maxtimer=1`) and
    /// its 200, then DATA and its 354: the content is next.
    #[track_caller]
    pub fn open_rdlv_data(&mut self, mail: &str, rcpts: &[&str], rdlv: &str) {
        self.mail_rcpt(mail, rcpts);
        self.command(rdlv, 200);
        self.command("DATA", 354);
    }

    /// A whole plain transaction after EHLO: MAIL, RCPTs (each must get
    /// 250), DATA, content; returns the reply to the end of data.
    #[track_caller]
    pub fn mail(&mut self, from: &str, rcpts: &[&str], content: &str) -> Reply {
        let rcpts: Vec<String> = rcpts.iter().map(|r| format!("<{r}>")).collect();
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        self.open_data(&format!("<{from}>"), &rcpts);
        self.send_content(content);
        self.reply()
    }

    /// [`Client::mail`] of [`message`]`(subject, body)` from
    /// alice@client.test to bob@example.com, which must get 250.
    #[track_caller]
    pub fn mail_to_bob(&mut self, subject: &str, body: &str) -> Reply {
        let reply = self.mail(
            "alice@client.test",
            &["bob@example.com"],
            &message(subject, body),
        );
        assert_eq!(reply.code, 250, "{reply}");
        reply
    }

    /// QUIT, 221, and the close.
    #[track_caller]
    pub fn quit(mut self) {
        self.command("QUIT", 221);
        self.expect_closed();
    }
}

fn bad_reply(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not an SMTP reply line: {line:?}"),
    )
}

/// A small message with CRLF line ends.
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: <alice@client.test>\r\nTo: <bob@example.com>\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    )
}

/// The end of most sessions: the client QUITs (221, then the close), then
/// the server shuts down and joins every thread.
#[track_caller]
pub fn quit_and_stop(client: Client, server: Server) {
    client.quit();
    server.stop();
}

/// Plays a conversation in RFC 5321 Appendix D style against the client.
///
/// - `C: line` sends `line` CRLF (`C:` alone an empty line). Consecutive `C:` lines go out in one write
///   (that is how a test pipelines).
/// - `S: 250 text` reads one reply: the code must match and its first line
///   must start with `text` (a trailing `...` is only decoration). Several
///   `S:` lines in a row with `code-` continuation describe one multi-line
///   reply line by line.
/// - `S! closed` expects the server to close the connection.
#[track_caller]
pub fn transcript(client: &mut Client, script: &str) {
    let mut outgoing = String::new();
    let mut expected: Vec<(u16, String)> = Vec::new();
    for (n, raw) in script.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() {
            continue;
        }
        // `C:` alone is an empty line (the header/body separator).
        if let Some(cmd) = line.strip_prefix("C:") {
            let cmd = cmd.strip_prefix(' ').unwrap_or(cmd);
            outgoing.push_str(cmd);
            outgoing.push_str("\r\n");
            continue;
        }
        if !outgoing.is_empty() {
            client.send_raw(outgoing.as_bytes());
            outgoing.clear();
        }
        if line == "S! closed" {
            client.expect_closed();
            continue;
        }
        let Some(rest) = line.strip_prefix("S: ") else {
            panic!(
                "transcript line {}: not `C: `, `S: ` or `S! closed`: {line:?}",
                n + 1
            );
        };
        let code: u16 = rest
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("transcript line {}: no reply code: {line:?}", n + 1));
        let continued = rest.as_bytes().get(3) == Some(&b'-');
        let text = rest.get(4..).unwrap_or("").trim_end();
        let text = text.strip_suffix("...").unwrap_or(text).trim_end();
        expected.push((code, text.to_string()));
        if continued {
            continue;
        }
        let reply = client.reply();
        let ok = if expected.len() == 1 {
            reply.code == code && reply.lines[0].starts_with(&expected[0].1)
        } else {
            reply.lines.len() == expected.len()
                && expected
                    .iter()
                    .zip(&reply.lines)
                    .all(|((c, want), got)| *c == reply.code && got.starts_with(want.as_str()))
        };
        assert!(
            ok,
            "transcript line {}: expected {:?}, got `{reply}`",
            n + 1,
            expected
        );
        expected.clear();
    }
    if !outgoing.is_empty() {
        client.send_raw(outgoing.as_bytes());
    }
    assert!(
        expected.is_empty(),
        "transcript ends inside a multi-line reply"
    );
}

/// Waits until `ready` holds, checking every [`POLL`]; fails the test after
/// `timeout`, naming `what`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Checks, every [`POLL`] until `until`, that `bad` never holds.
#[track_caller]
pub fn assert_never(what: &str, until: Instant, mut bad: impl FnMut() -> bool) {
    loop {
        assert!(!bad(), "{what}");
        if Instant::now() >= until {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// The regular files in `dir`, sorted (none if it does not exist); names
/// starting with `.` (work in progress) are skipped.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The messages delivered into `maildir/<local>/new/`.
pub fn delivered(maildir: &Path, local: &str) -> Vec<PathBuf> {
    files_in(&maildir.join(local).join("new"))
}

/// Waits until `maildir/<local>/new/` holds `n` messages; returns their
/// contents.
#[track_caller]
pub fn wait_for_mail(maildir: &Path, local: &str, n: usize) -> Vec<String> {
    wait_until(
        &format!("{n} message(s) in {}/{local}/new", maildir.display()),
        WAIT,
        || delivered(maildir, local).len() >= n,
    );
    let files = delivered(maildir, local);
    assert_eq!(files.len(), n, "more messages than expected: {files:?}");
    files
        .iter()
        .map(|f| fs::read_to_string(f).expect("read a delivered message"))
        .collect()
}

/// Waits for a file to exist; returns its content.
#[track_caller]
pub fn wait_for_file(path: &Path) -> String {
    wait_until(&format!("{}", path.display()), WAIT, || path.exists());
    fs::read_to_string(path).expect("read the file")
}

/// The files in the spool's `queue/`.
pub fn queue(spool: &Path) -> Vec<PathBuf> {
    files_in(&spool.join("queue"))
}

/// Waits until the spool's `queue/` is empty: every message was delivered,
/// bounced or dropped (a DSN is committed before its original is removed,
/// so an empty queue also means every DSN was delivered).
#[track_caller]
pub fn wait_queue_empty(spool: &Path) {
    wait_until("the spool queue to empty", WAIT, || queue(spool).is_empty());
}

/// Whether the spool holds a message whose first recipient is deferred.
pub fn has_deferred(spool: &Spool) -> bool {
    spool.ids().unwrap_or_default().iter().any(|id| {
        spool
            .load(id)
            .is_ok_and(|env| env.recipients[0].state() == RcptState::Deferred)
    })
}

/// Waits until the spool records a deferral ([`has_deferred`]).
#[track_caller]
pub fn wait_for_deferral(spool: &Spool) {
    wait_until("the deferral", WAIT, || has_deferred(spool));
}

/// Joins folded header lines (RFC 5322 §2.2.3) so a test can search text
/// the DSN writer may have wrapped.
pub fn unfold(text: &str) -> String {
    text.replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .replace("\n ", " ")
        .replace("\n\t", " ")
}
