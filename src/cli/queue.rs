//! `detad queue`: what the spool holds, for people and for scripts. Reads
//! the spool only (no side effects beside a running daemon).

use std::fmt::Write as _;
use std::io;

use crate::queue::envelope::{Envelope, Mode, Notify, Ret};
use crate::queue::spool::Spool;

/// One line per message for people.
pub fn format_text(env: &Envelope, now: i64) -> String {
    let mode = mode_name(env.mode);
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
        let _ = write!(out, "    <{}>  {}", r.address, r.state().name());
        if let Some(d) = r.last.as_ref().and_then(|d| d.diagnostic.as_ref()) {
            let _ = write!(out, "  ({d})");
        }
        out.push('\n');
    }
    out
}

/// The mode as the queue tools show it: `queued` (plain), `rdlv` (its
/// client waits for the final reply), `detached`.
fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Queued => "queued",
        Mode::Reliable => "rdlv",
        Mode::Detached => "detached",
    }
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

/// RFC 3461 `NOTIFY=` as the queue tools show it: `never`, a list such as
/// `success,failure`, or empty when absent.
fn notify_name(notify: Option<Notify>) -> String {
    let Some(n) = notify else {
        return String::new();
    };
    let words: Vec<&str> = [
        (n.success, "success"),
        (n.failure, "failure"),
        (n.delay, "delay"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|&(_, w)| w)
    .collect();
    if words.is_empty() {
        "never".into()
    } else {
        words.join(",")
    }
}

/// One JSON object per message (`detad queue --json`), with the RFC 3461
/// parameters (`ret`, `envid`, each recipient's `notify`; empty when
/// absent).
pub fn format_json(env: &Envelope, now: i64) -> String {
    let rcpts: Vec<String> = env
        .recipients
        .iter()
        .map(|r| {
            let last = r.last.as_ref();
            let status = last.map(|d| d.status.to_string()).unwrap_or_default();
            let diagnostic = last
                .and_then(|d| d.diagnostic.as_ref())
                .map(|d| d.to_string())
                .unwrap_or_default();
            format!(
                "{{\"address\":{},\"state\":\"{}\",\"notify\":\"{}\",\"status\":{},\"diagnostic\":{},\"last_attempt\":{}}}",
                json_str(&r.address),
                r.state().name(),
                notify_name(r.notify),
                json_str(&status),
                json_str(&diagnostic),
                r.last_attempt
            )
        })
        .collect();
    let ret = match env.ret {
        Some(Ret::Full) => "full",
        Some(Ret::Hdrs) => "hdrs",
        None => "",
    };
    format!(
        "{{\"id\":{},\"age\":{},\"size\":{},\"sender\":{},\"mode\":\"{}\",\"ret\":\"{ret}\",\"envid\":{},\"attempts\":{},\"next_attempt\":{},\"recipients\":[{}]}}",
        json_str(&env.id),
        (now - env.arrival).max(0),
        env.size,
        json_str(&env.reverse_path),
        mode_name(env.mode),
        json_str(env.envid.as_deref().unwrap_or("")),
        env.attempts,
        env.next_attempt,
        rcpts.join(",")
    )
}

/// Lists the queue to `out`; returns the number of messages.
///
/// # Errors
/// The spool could not be read.
pub fn list(spool: &Spool, json: bool, now: i64, out: &mut dyn io::Write) -> io::Result<usize> {
    let ids = spool.ids().map_err(io::Error::other)?;
    let mut n = 0;
    for id in ids {
        match spool.load(&id) {
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
    use crate::queue::delivery::{Delivery, Diagnostic};
    use crate::queue::envelope::Recipient;
    use crate::smtp::reply::Reply;
    use crate::smtp::status::EnhancedStatus;

    #[test]
    fn json_escapes_quotes_and_controls() {
        assert_eq!(json_str("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }

    #[test]
    fn json_line_has_every_field_and_the_mode() {
        let notify = Notify {
            failure: true,
            delay: true,
            ..Notify::NEVER
        };
        let mut r = Recipient::new("x@y".into(), Some(notify), None);
        r.last = Some(Delivery {
            diagnostic: Some(Diagnostic::Smtp(Reply::new(451, "4.4.1", "down"))),
            ..Delivery::deferred(EnhancedStatus::of(4, 4, 1), "")
        });
        let env = Envelope {
            size: 10,
            attempts: 2,
            next_attempt: 160,
            mode: Mode::Detached,
            ret: Some(Ret::Hdrs),
            envid: Some("e1".into()),
            ..Envelope::new("ID".into(), "a@b".into(), 100, vec![r])
        };
        let line = format_json(&env, 150);
        assert_eq!(
            line,
            "{\"id\":\"ID\",\"age\":50,\"size\":10,\"sender\":\"a@b\",\"mode\":\"detached\",\"ret\":\"hdrs\",\
             \"envid\":\"e1\",\"attempts\":2,\"next_attempt\":160,\
             \"recipients\":[{\"address\":\"x@y\",\"state\":\"deferred\",\"notify\":\"failure,delay\",\"status\":\"4.4.1\",\
             \"diagnostic\":\"451 4.4.1 down\",\"last_attempt\":0}]}"
        );
        let text = format_text(&env, 150);
        assert!(
            text.contains("next in 10s") && text.contains("detached"),
            "{text}"
        );
    }
}
