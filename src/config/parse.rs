//! Value syntax of the configuration: numbers, sizes and durations within
//! ranges, addresses, networks, routes, and the quoting of `pipe:` words.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{Network, Route, Transport};

/// The part of a line before a comment: `#` at the start of the line or
/// after white space, outside single and double quotes.
pub fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if prev_space => return &line[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

pub(super) fn non_empty_path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(PathBuf::from(value))
    }
}

/// A host name: letters, digits, `-` and `.`, at most 255 octets.
pub(super) fn parse_hostname(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "`{value}` is not a host name (letters, digits, `-`, `.`)"
        ))
    }
}

/// A user name as /etc/passwd has them.
pub(super) fn parse_user_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("`{value}` is not a user name"))
    }
}

/// A mail address `local@domain` (no brackets), or a bare local part.
pub(super) fn parse_address(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 254
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "`{value}` is not a mail address (e.g. admin@example.com)"
        ))
    }
}

/// `host:port`, `[v6]:port`; `*:port` means all IPv4 addresses.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let value = value
        .strip_prefix("*:")
        .map(|p| format!("0.0.0.0:{p}"))
        .unwrap_or_else(|| value.to_string());
    value
        .parse()
        .map_err(|_| format!("`{value}` is not ADDRESS:PORT (e.g. 127.0.0.1:2525 or [::1]:25)"))
}

pub(super) fn parse_count(value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{value}` is not a whole number from {min} to {max}"
        )),
    }
}

pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("`{value}` is not yes or no")),
    }
}

/// Octets, with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let bad = || format!("`{value}` is not a size (e.g. 10485760, 512K, 10M, 1G)");
    let (digits, mult) = match value.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&value[..value.len() - 1], 1u64 << 10),
        Some(b'M') => (&value[..value.len() - 1], 1 << 20),
        Some(b'G') => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// A size within `min..=max` octets.
pub(super) fn size_in(value: &str, min: u64, max: u64) -> Result<u64, String> {
    let v = parse_size(value)?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "`{value}` is not between {} and {}",
            show_size(min),
            show_size(max)
        ))
    }
}

fn show_size(v: u64) -> String {
    match v {
        v if v >= 1 << 30 && v % (1 << 30) == 0 => format!("{}G", v >> 30),
        v if v >= 1 << 20 && v % (1 << 20) == 0 => format!("{}M", v >> 20),
        v if v >= 1 << 10 && v % (1 << 10) == 0 => format!("{}K", v >> 10),
        v => v.to_string(),
    }
}

/// Seconds, with an optional s, m, h or d suffix.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let bad = || format!("`{value}` is not a duration (e.g. 30, 30s, 5m, 4h, 5d)");
    let (digits, mult) = match value.as_bytes().last() {
        Some(b's') => (&value[..value.len() - 1], 1u64),
        Some(b'm') => (&value[..value.len() - 1], 60),
        Some(b'h') => (&value[..value.len() - 1], 3600),
        Some(b'd') => (&value[..value.len() - 1], 86400),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// A duration within `min..=max`.
pub(super) fn duration_in(value: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(value)?;
    if (min..=max).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "`{value}` is not between {} and {}",
            show_duration(min),
            show_duration(max)
        ))
    }
}

/// A duration the way the file writes it: `30s`, `5m`, `4h`, `5d`.
pub fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A list of CIDR networks separated by commas or spaces.
pub fn parse_networks(value: &str) -> Result<Vec<Network>, String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|item| {
            let bad = || format!("`{item}` is not a network (e.g. 192.168.1.0/24, ::1/128)");
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
                None => max,
            };
            Ok(Network { addr, prefix })
        })
        .collect()
}

/// `<domain|*> <transport>`.
pub fn parse_route(value: &str) -> Result<Route, String> {
    let (domain, transport) = value
        .split_once(char::is_whitespace)
        .ok_or("expected `<domain|*> <transport>`")?;
    let transport = transport.trim();
    let transport = if let Some(dir) = transport.strip_prefix("maildir:") {
        Transport::Maildir(non_empty_path(dir)?)
    } else if let Some(cmd) = transport.strip_prefix("pipe:") {
        let argv = split_words(cmd)?;
        if argv.is_empty() || !argv[0].starts_with('/') {
            return Err(
                "pipe: needs an absolute program path, e.g. pipe:/usr/bin/sms-send {recipient}"
                    .into(),
            );
        }
        Transport::Pipe(argv)
    } else if let Some(hop) = transport.strip_prefix("smtp:") {
        let (host, port) = hop.rsplit_once(':').ok_or("smtp: needs HOST:PORT")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port"))?;
        if host.is_empty() {
            return Err("smtp: needs HOST:PORT".into());
        }
        Transport::Smtp {
            host: host.to_string(),
            port,
        }
    } else {
        return Err(format!(
            "unknown transport `{transport}` (maildir:DIR, pipe:PROGRAM ARGS, smtp:HOST:PORT)"
        ));
    };
    Ok(Route {
        domain: domain.to_ascii_lowercase(),
        transport,
    })
}

/// Splits a command line into words with single and double quotes (no
/// expansion of any kind: the program is run without a shell).
pub(super) fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => match chars.next() {
                Some(n) => word.get_or_insert_with(String::new).push(n),
                None => return Err("unfinished escape".into()),
            },
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    words.extend(word);
    Ok(words)
}
