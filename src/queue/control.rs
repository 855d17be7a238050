//! The control socket (`<spool>/control`, a Unix stream socket, mode 0600):
//! one request line in, one answer line out. The daemon's main loop
//! accepts; the queue manager answers; `detad queue` and `detad flush`
//! ask.
//!
//! ```text
//! C: remove 6618AE757C677000
//! S: ok removed 6618AE757C677000          (or: not-found, busy, refused)
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::manager::ControlAnswer;

/// The socket's name inside the spool.
pub const CONTROL_SOCKET: &str = "control";
/// The longest request line.
pub const MAX_REQUEST: usize = 256;

/// The socket's path for a spool.
pub fn socket_path(spool: &Path) -> PathBuf {
    spool.join(CONTROL_SOCKET)
}

/// The answer as one line (with LF).
pub fn encode_answer(answer: &ControlAnswer) -> String {
    let (word, text) = match answer {
        ControlAnswer::Done(t) => ("ok", t),
        ControlAnswer::NotFound(t) => ("not-found", t),
        ControlAnswer::Busy(t) => ("busy", t),
        ControlAnswer::Refused(t) => ("refused", t),
    };
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    format!("{word} {text}\n")
}

/// Parses an answer line.
pub fn decode_answer(line: &str) -> Option<ControlAnswer> {
    let line = line.trim_end();
    let (word, text) = line.split_once(' ').unwrap_or((line, ""));
    let text = text.to_string();
    Some(match word {
        "ok" => ControlAnswer::Done(text),
        "not-found" => ControlAnswer::NotFound(text),
        "busy" => ControlAnswer::Busy(text),
        "refused" => ControlAnswer::Refused(text),
        _ => return None,
    })
}

/// Sends `request` to the daemon of `spool` and waits up to `timeout` for
/// its answer.
///
/// # Errors
/// No daemon listens (`NotFound`, `ConnectionRefused`), no permission, or
/// no answer in time (`TimedOut`, `WouldBlock`).
pub fn request(spool: &Path, request: &str, timeout: Duration) -> io::Result<ControlAnswer> {
    let mut stream = UnixStream::connect(socket_path(spool))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(io::Read::take(stream, 4096)).read_line(&mut line)?;
    decode_answer(&line).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {line:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        for a in [
            ControlAnswer::Done("removed X".into()),
            ControlAnswer::NotFound("no message X".into()),
            ControlAnswer::Busy("parked".into()),
            ControlAnswer::Refused("bad".into()),
        ] {
            assert_eq!(decode_answer(&encode_answer(&a)), Some(a));
        }
        assert_eq!(decode_answer("what"), None);
    }
}
