//! The binary's log, through env_logger: to stderr in env_logger's own
//! format, or (`log = syslog`) to the syslog daemon's datagram socket
//! (`syslog_socket`, default `/dev/log`) as RFC 3164 lines with facility
//! mail and the tag `detad[PID]`, one datagram per record, as busybox
//! `syslogd` (and rsyslog, syslog-ng, journald) read them.
//!
//! The split: env_logger's format closure writes `<PRI>detad[PID]: text`,
//! where it knows the record's level; [`SyslogWriter`] (the env_logger
//! target) collects what one record writes and sends it as one datagram
//! when env_logger flushes, which it does after every record.
//!
//! Guarantees: logging never blocks the daemon. The socket is non-blocking;
//! a datagram the syslog daemon has no room for is dropped (and the number
//! dropped is logged once it takes datagrams again); a socket that went
//! away (syslogd restarted) is connected again once per record, without
//! waiting.
//!
//! The line carries no TIMESTAMP: RFC 3164 §4.3.2 has the receiver add its
//! own, which busybox syslogd, rsyslog and journald do (the latter two
//! ignore a sender's anyway). A sender's timestamp is local time without a
//! zone, and detad knows no time zone (it has no libc time zone code, and
//! its `Date:` lines are UTC): a UTC one would show up wrong in `logread`
//! on any board whose TZ is not UTC.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use log::Level;

use crate::config::{Config, LogTarget};

/// RFC 3164 §4.1.1: facility 2, mail system.
const FACILITY_MAIL: u8 = 2;

/// RFC 3164 §4.1: a datagram is at most 1024 octets; longer records are
/// cut (at a character boundary).
const MAX_DATAGRAM: usize = 1024;

/// RFC 3164 §4.1.1 severity of a log level.
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The PRI value of a record: facility mail, the level's severity
/// (`mail.info` is 22).
pub fn priority(level: Level) -> u8 {
    FACILITY_MAIL * 8 + severity(level)
}

/// One syslog line: `<PRI>TAG: text`, control characters (a record with a
/// line break) turned into spaces so that it stays one line.
pub fn format_line(level: Level, tag: &str, text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("<{}>{tag}: {text}", priority(level))
}

/// The env_logger target for `log = syslog`: one datagram per record.
#[derive(Debug)]
pub struct SyslogWriter {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    /// What the current record wrote so far.
    record: Vec<u8>,
    /// The tag, for the writer's own notice about dropped records.
    tag: String,
    /// Records dropped since the last one that went out.
    dropped: u64,
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

impl SyslogWriter {
    /// Connects to the syslog daemon's socket at `path`; `tag` is what
    /// records are tagged with (`detad[PID]`).
    ///
    /// # Errors
    /// No socket there, or no syslog daemon reads it.
    pub fn connect(path: &Path, tag: &str) -> io::Result<SyslogWriter> {
        Ok(SyslogWriter {
            path: path.to_path_buf(),
            socket: Some(connect(path)?),
            record: Vec::new(),
            tag: tag.to_string(),
            dropped: 0,
        })
    }

    /// Sends one datagram; false when it was dropped.
    fn send(&mut self, datagram: &[u8]) -> bool {
        // At most one new connection per datagram: a syslog daemon that
        // restarted made a new socket, and the old one refuses.
        for _ in 0..2 {
            let socket = match &self.socket {
                Some(s) => s,
                None => match connect(&self.path) {
                    Ok(s) => self.socket.insert(s),
                    Err(_) => return false,
                },
            };
            match socket.send(datagram) {
                Ok(_) => return true,
                // Its queue is full: drop rather than wait.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => self.socket = None,
            }
        }
        false
    }

    /// Sends the record collected so far.
    fn send_record(&mut self) {
        let mut end = self.record.len();
        while end > 0 && self.record[end - 1] == b'\n' {
            end -= 1;
        }
        if end == 0 {
            return;
        }
        let mut datagram = std::mem::take(&mut self.record);
        datagram.truncate(cut_at(&datagram[..end], MAX_DATAGRAM));
        if self.dropped > 0 {
            let notice = format_line(
                Level::Warn,
                &self.tag,
                &format!(
                    "{} log record(s) dropped: the syslog socket {} was full or gone",
                    self.dropped,
                    self.path.display()
                ),
            );
            if self.send(notice.as_bytes()) {
                self.dropped = 0;
            }
        }
        if !self.send(&datagram) {
            self.dropped += 1;
        }
        datagram.clear();
        self.record = datagram;
    }
}

/// The length of `bytes` cut to at most `max`, not inside a UTF-8 sequence.
fn cut_at(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let mut end = max;
    // A continuation octet (10xxxxxx) is inside a sequence.
    while end > 0 && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    end
}

impl Write for SyslogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Bounded: a record larger than a datagram is cut anyway.
        let room = (MAX_DATAGRAM + 4).saturating_sub(self.record.len());
        self.record.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    /// env_logger flushes after each record: the record goes out now.
    fn flush(&mut self) -> io::Result<()> {
        self.send_record();
        Ok(())
    }
}

/// How the log was set up.
#[derive(Debug)]
pub enum LogSetup {
    /// To stderr, as configured.
    Stderr,
    /// To the syslog socket.
    Syslog,
    /// `log = syslog`, but the socket could not be used: to stderr.
    Fallback(io::Error),
}

/// Installs the global logger for `config.log`; `default_filter` is the
/// level filter when `RUST_LOG` is not set. Call once.
pub fn init(config: &Config, default_filter: &str) -> LogSetup {
    let env = env_logger::Env::default().default_filter_or(default_filter);
    let mut builder = env_logger::Builder::from_env(env);
    let setup = match config.log {
        LogTarget::Stderr => LogSetup::Stderr,
        LogTarget::Syslog => {
            let tag = format!("detad[{}]", std::process::id());
            match SyslogWriter::connect(&config.syslog_socket, &tag) {
                Ok(writer) => {
                    builder
                        .format(move |buf, record| {
                            let text = record.args().to_string();
                            writeln!(buf, "{}", format_line(record.level(), &tag, &text))
                        })
                        .target(env_logger::Target::Pipe(Box::new(writer)));
                    LogSetup::Syslog
                }
                Err(e) => LogSetup::Fallback(e),
            }
        }
    };
    if !matches!(setup, LogSetup::Syslog) {
        builder.format_timestamp(None);
    }
    builder.init();
    setup
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn socket_path(name: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("detad-log-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn recv(receiver: &UnixDatagram) -> String {
        let mut buf = [0; 4096];
        let n = receiver.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn priorities_are_facility_mail_with_the_level_severity() {
        assert_eq!(priority(Level::Error), 19);
        assert_eq!(priority(Level::Warn), 20);
        assert_eq!(priority(Level::Info), 22);
        assert_eq!(priority(Level::Debug), 23);
        assert_eq!(priority(Level::Trace), 23);
        assert_eq!(
            format_line(Level::Info, "detad[7]", "id=1 status=delivered\nx"),
            "<22>detad[7]: id=1 status=delivered x"
        );
    }

    #[test]
    fn each_record_is_one_datagram_without_its_newline() {
        let path = socket_path("one");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut w = SyslogWriter::connect(&path, "detad[7]").unwrap();
        // env_logger writes a record in pieces, then flushes.
        w.write_all(b"<22>detad[7]: peer=127.0.0.1 ").unwrap();
        w.write_all(b"connected\n").unwrap();
        w.flush().unwrap();
        w.write_all(&[b'x'; 3000]).unwrap();
        w.flush().unwrap();
        assert_eq!(recv(&receiver), "<22>detad[7]: peer=127.0.0.1 connected");
        assert_eq!(recv(&receiver).len(), MAX_DATAGRAM);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_full_socket_drops_records_instead_of_blocking_and_says_so_later() {
        let path = socket_path("full");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut w = SyslogWriter::connect(&path, "detad[7]").unwrap();
        // Nobody reads: the queue fills, and the writer must not block.
        for _ in 0..5000 {
            w.write_all(b"<22>detad[7]: filler\n").unwrap();
            w.flush().unwrap();
        }
        assert!(w.dropped > 0);
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0; 4096];
        while receiver.recv(&mut buf).is_ok() {}
        receiver.set_nonblocking(false).unwrap();
        w.write_all(b"<22>detad[7]: after\n").unwrap();
        w.flush().unwrap();
        let notice = recv(&receiver);
        assert!(
            notice.starts_with("<20>detad[7]: ") && notice.contains("log record(s) dropped"),
            "{notice}"
        );
        assert_eq!(recv(&receiver), "<22>detad[7]: after");
        assert_eq!(w.dropped, 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_restarted_syslog_daemon_is_found_again() {
        let path = socket_path("restart");
        let first = UnixDatagram::bind(&path).unwrap();
        let mut w = SyslogWriter::connect(&path, "detad[7]").unwrap();
        drop(first);
        std::fs::remove_file(&path).unwrap();
        // Gone: the record is dropped at once.
        w.write_all(b"<22>detad[7]: lost\n").unwrap();
        w.flush().unwrap();
        assert_eq!(w.dropped, 1);
        let second = UnixDatagram::bind(&path).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        w.write_all(b"<22>detad[7]: back\n").unwrap();
        w.flush().unwrap();
        assert!(recv(&second).contains("1 log record(s) dropped"));
        assert_eq!(recv(&second), "<22>detad[7]: back");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn cuts_never_split_a_character() {
        assert_eq!(cut_at("aé".as_bytes(), 2), 1);
        assert_eq!(cut_at(b"abc", 2), 2);
        assert_eq!(cut_at(b"ab", 2), 2);
    }
}
