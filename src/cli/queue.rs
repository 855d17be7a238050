//! `detad queue`: what the spool holds, for people and for scripts. Reads
//! the spool only; changes go through the running daemon's control socket
//! (or straight to the spool when no daemon runs).

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::envelope::{Envelope, Mode};
use crate::server::listener::CONTROL_SOCKET;
use crate::spool::{Spool, state_name};

/// One line per message for people.
pub fn format_text(env: &Envelope, now: i64) -> String {
    let mode = match env.mode {
        Mode::Queued => "queued",
        Mode::Reliable => "rdlv",
        Mode::Detached => "detached",
    };
    let next = if env.next_attempt > now {
        format!("in {}s", env.next_attempt - now)
    } else {
        "now".into()
    };
    let mut out = format!(
        "{}  age {}s  size {}  from <{}>  {mode}  attempts {}  next {next}\n",
        env.id,
        (now - env.arrival).max(0),
        env.size,
        env.reverse_path,
        env.attempts
    );
    for r in &env.recipients {
        let _ = write!(out, "    <{}>  {}", r.address, state_name(&r.state));
        if !r.diagnostic.is_empty() {
            let _ = write!(out, "  ({})", r.diagnostic);
        }
        out.push('\n');
    }
    out
}

/// RFC 8259 string escaping.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One JSON object per message (`detad queue --json`).
pub fn format_json(env: &Envelope, now: i64) -> String {
    let rcpts: Vec<String> = env
        .recipients
        .iter()
        .map(|r| {
            format!(
                "{{\"address\":{},\"state\":\"{}\",\"status\":{},\"diagnostic\":{},\"last_attempt\":{}}}",
                json_str(&r.address),
                state_name(&r.state),
                json_str(&r.status),
                json_str(&r.diagnostic),
                r.last_attempt
            )
        })
        .collect();
    format!(
        "{{\"id\":{},\"age\":{},\"size\":{},\"sender\":{},\"attempts\":{},\"next_attempt\":{},\"recipients\":[{}]}}",
        json_str(&env.id),
        (now - env.arrival).max(0),
        env.size,
        json_str(&env.reverse_path),
        env.attempts,
        env.next_attempt,
        rcpts.join(",")
    )
}

/// Sends a request to the running daemon's control socket.
///
/// # Errors
/// No daemon listens (`ConnectionRefused` / `NotFound`), or the send failed.
pub fn tell_daemon(spool_dir: &Path, request: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.send_to(request.as_bytes(), spool_dir.join(CONTROL_SOCKET))
        .map(|_| ())
}

/// Lists the queue to `out`; returns the number of messages.
///
/// # Errors
/// The spool could not be read.
pub fn list(spool: &Spool, json: bool, now: i64, out: &mut dyn io::Write) -> io::Result<usize> {
    let ids = spool.ids().map_err(io::Error::other)?;
    let mut n = 0;
    for id in ids {
        match spool.peek(&id) {
            Ok(env) => {
                n += 1;
                if json {
                    writeln!(out, "{}", format_json(&env, now))?;
                } else {
                    write!(out, "{}", format_text(&env, now))?;
                }
            }
            // Half-written (being committed right now) or corrupt: say so.
            Err(e) if !json => writeln!(out, "{id}  unreadable: {e}")?,
            Err(_) => {}
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{RcptState, Recipient};

    #[test]
    fn json_escapes_quotes_and_controls() {
        assert_eq!(json_str("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }

    #[test]
    fn json_line_has_every_field() {
        let mut r = Recipient::new("x@y".into(), None, None);
        r.state = RcptState::Deferred;
        r.diagnostic = "451 4.4.1 down".into();
        let env = Envelope {
            size: 10,
            attempts: 2,
            next_attempt: 160,
            ..Envelope::new("ID".into(), "a@b".into(), 100, vec![r])
        };
        let line = format_json(&env, 150);
        assert_eq!(
            line,
            "{\"id\":\"ID\",\"age\":50,\"size\":10,\"sender\":\"a@b\",\"attempts\":2,\"next_attempt\":160,\
             \"recipients\":[{\"address\":\"x@y\",\"state\":\"deferred\",\"status\":\"\",\
             \"diagnostic\":\"451 4.4.1 down\",\"last_attempt\":0}]}"
        );
        assert!(format_text(&env, 150).contains("next in 10s"));
    }
}
