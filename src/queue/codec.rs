//! The envelope as spool text, and the self-checking record that frames it.
//! Pure: bytes in, values out.
//!
//! A record is the envelope text followed by a trailer line:
//!
//! ```text
//! detad-envelope 2        <- version line
//! id 6618AE757C677000
//! ...                     <- one field per line, free text xtext-encoded
//! rcpt ...                <- one line per recipient
//! end                     <- end marker
//! @1234 0a1b2c3d          <- offset of the version line, CRC-32 of the text
//! ```
//!
//! Addresses (reverse-path, recipients, ORCPT) may be UTF-8 (RFC 6531):
//! they are the xtext of their octets, so they come back exactly. Other
//! free text (diagnostics, the HELO name) is made printable ASCII first.
//! `smtputf8 1` is written only for an SMTPUTF8 message; a record without
//! it (every record written before SMTPUTF8 existed) means 0, and a spool
//! without SMTPUTF8 mail stays readable by an older detad.
//!
//! A message file is its content followed by one or more records, newest
//! last (see [`super::spool`]). A record that is torn (power cut while it
//! was appended) fails its CRC and the one before it stands.

use core::net::IpAddr;

use super::delivery::{Delivery, DeliveryKind, Diagnostic, RemoteMta};
use super::envelope::{BodyType, Envelope, Mode, Notify, Orcpt, Recipient, Ret};
use crate::smtp::reply::Reply;
use crate::smtp::status::EnhancedStatus;
use crate::smtp::xtext;

use super::crc32::crc32;
use super::spool::Spool;

const VERSION_LINE: &str = "detad-envelope 2";
const END_LINE: &str = "end";
/// Marks an absent value; xtext never produces `=`, so it cannot clash.
const NONE: &str = "=";
/// The longest trailer line: `@` 20 digits, a space, 8 hex digits, LF.
pub const MAX_TRAILER: usize = 31;

/// Spool text is printable ASCII: anything else in free text (a remote
/// reply in UTF-8, a tab) becomes `?` before it is xtext-encoded.
fn printable(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn text_field(v: &str) -> String {
    xtext::encode(&printable(v))
}

fn opt_text(v: Option<&str>) -> String {
    v.map(text_field).unwrap_or_else(|| NONE.into())
}

/// An address, UTF-8 or not: the xtext of its octets, lossless.
fn address_field(v: &str) -> String {
    xtext::encode(v)
}

fn encode_notify(n: Option<Notify>) -> String {
    match n {
        None => "-".into(),
        Some(n) if n == Notify::NEVER => "never".into(),
        Some(n) => {
            let mut parts = Vec::new();
            if n.success {
                parts.push("success");
            }
            if n.failure {
                parts.push("failure");
            }
            if n.delay {
                parts.push("delay");
            }
            parts.join(",")
        }
    }
}

fn encode_remote(r: Option<&RemoteMta>) -> String {
    match r {
        None => "-".into(),
        Some(RemoteMta::Name(n)) => format!("n:{}", text_field(n)),
        Some(RemoteMta::Address(ip)) => format!("a:{ip}"),
    }
}

fn encode_diagnostic(d: Option<&Diagnostic>) -> String {
    match d {
        None => "-".into(),
        Some(Diagnostic::Smtp(reply)) => {
            let status = reply.status.map(|s| s.to_string());
            format!(
                "smtp:{}:{}:{}",
                reply.code,
                status.as_deref().unwrap_or("-"),
                text_field(&reply.text())
            )
        }
        Some(Diagnostic::Local(text)) => format!("local:{}", text_field(text)),
    }
}

fn encode_recipient(r: &Recipient) -> String {
    let orcpt = r
        .orcpt
        .as_ref()
        .map(|o| format!("{};{}", text_field(&o.addr_type), address_field(&o.address)));
    let (status, remote, diag) = match &r.last {
        None => ("-".to_string(), "-".to_string(), "-".to_string()),
        Some(d) => (
            d.status.to_string(),
            encode_remote(d.remote_mta.as_ref()),
            encode_diagnostic(d.diagnostic.as_ref()),
        ),
    };
    [
        r.state().name().to_string(),
        if r.dsn_done { "1" } else { "0" }.to_string(),
        r.last_attempt.to_string(),
        encode_notify(r.notify),
        orcpt.unwrap_or_else(|| "-".into()),
        status,
        remote,
        diag,
        address_field(&r.address),
    ]
    .join(" ")
}

/// The envelope as spool text (without the trailer).
pub fn encode_envelope(env: &Envelope) -> String {
    let mut out = String::with_capacity(256 + 128 * env.recipients.len());
    let mut line = |k: &str, v: &str| {
        out.push_str(k);
        out.push(' ');
        out.push_str(v);
        out.push('\n');
    };
    line("id", &env.id);
    line("reverse-path", &address_field(&env.reverse_path));
    line(
        "ret",
        match env.ret {
            None => "-",
            Some(Ret::Full) => "full",
            Some(Ret::Hdrs) => "hdrs",
        },
    );
    line("envid", &opt_text(env.envid.as_deref()));
    line(
        "body",
        match env.body {
            BodyType::SevenBit => "7bit",
            BodyType::EightBitMime => "8bitmime",
        },
    );
    line("size", &env.size.to_string());
    line("content-crc", &format!("{:08x}", env.content_crc));
    line("eight-bit", if env.eight_bit { "1" } else { "0" });
    if env.smtputf8 {
        line("smtputf8", "1");
    }
    line("arrival", &env.arrival.to_string());
    line("client", &text_field(&env.client_ip));
    line("helo", &text_field(&env.helo));
    line("auth", &opt_text(env.auth.as_deref()));
    line("mode", env.mode.name());
    line("attempts", &env.attempts.to_string());
    line("next-attempt", &env.next_attempt.to_string());
    line("delay-warned", if env.delay_warned { "1" } else { "0" });
    line("is-dsn", if env.is_dsn { "1" } else { "0" });
    if let Some(url) = &env.fetch {
        line("fetch", &text_field(url));
    }
    for r in &env.recipients {
        line("rcpt", &encode_recipient(r));
    }
    format!("{VERSION_LINE}\n{out}{END_LINE}\n")
}

/// A whole record: the envelope text and its trailer, for appending at
/// file offset `at`.
pub fn encode_record(env: &Envelope, at: u64) -> Vec<u8> {
    let text = encode_envelope(env);
    let mut out = text.into_bytes();
    let crc = crc32(&out);
    out.extend_from_slice(format!("@{at} {crc:08x}\n").as_bytes());
    out
}

/// Parses a trailer line (without its LF): the record's offset and CRC.
pub fn parse_trailer(line: &[u8]) -> Option<(u64, u32)> {
    let line = std::str::from_utf8(line.strip_prefix(b"@")?).ok()?;
    let (at, crc) = line.split_once(' ')?;
    // Only what encode_record writes: no leading zero (so no trailer longer
    // than MAX_TRAILER), no sign (from_str_radix would take a `+`).
    let canonical_at = at == "0" || !at.starts_with('0');
    if at.is_empty() || !at.bytes().all(|b| b.is_ascii_digit()) || !canonical_at {
        return None;
    }
    if crc.len() != 8 || !crc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((at.parse().ok()?, u32::from_str_radix(crc, 16).ok()?))
}

/// Decodes the record text `body` if it matches `crc`.
///
/// # Errors
/// What is wrong: the checksum, then anything [`decode_envelope`] finds.
pub fn decode_record(body: &[u8], crc: u32) -> Result<Envelope, String> {
    if crc32(body) != crc {
        return Err("record checksum mismatch (torn write)".into());
    }
    let text = std::str::from_utf8(body).map_err(|_| "record is not UTF-8".to_string())?;
    decode_envelope(text)
}

fn dec(v: &str) -> Result<String, String> {
    xtext::decode(v).map_err(|e| format!("bad xtext `{v}`: {e}"))
}

fn dec_address(v: &str) -> Result<String, String> {
    xtext::decode_utf8(v).map_err(|e| format!("bad address `{v}`: {e}"))
}

fn opt_dec(v: &str) -> Result<Option<String>, String> {
    if v == NONE {
        Ok(None)
    } else {
        dec(v).map(Some)
    }
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("bad number in `{k}`"))
}

fn flag(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("bad flag in `{k}`")),
    }
}

fn decode_notify(v: &str) -> Result<Option<Notify>, String> {
    match v {
        "-" => Ok(None),
        "never" => Ok(Some(Notify::NEVER)),
        list => {
            let mut n = Notify::default();
            for item in list.split(',') {
                match item {
                    "success" => n.success = true,
                    "failure" => n.failure = true,
                    "delay" => n.delay = true,
                    _ => return Err(format!("bad notify `{item}`")),
                }
            }
            Ok(Some(n))
        }
    }
}

fn decode_remote(v: &str) -> Result<Option<RemoteMta>, String> {
    if v == "-" {
        return Ok(None);
    }
    if let Some(name) = v.strip_prefix("n:") {
        return Ok(Some(RemoteMta::Name(dec(name)?)));
    }
    if let Some(ip) = v.strip_prefix("a:") {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("bad remote address `{ip}`"))?;
        return Ok(Some(RemoteMta::Address(ip)));
    }
    Err(format!("bad remote MTA `{v}`"))
}

fn decode_diagnostic(v: &str) -> Result<Option<Diagnostic>, String> {
    if v == "-" {
        return Ok(None);
    }
    if let Some(text) = v.strip_prefix("local:") {
        return Ok(Some(Diagnostic::Local(dec(text)?)));
    }
    let bad = || format!("bad diagnostic `{v}`");
    let rest = v.strip_prefix("smtp:").ok_or_else(bad)?;
    let mut parts = rest.splitn(3, ':');
    let code: u16 = parts.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let status = match parts.next().ok_or_else(bad)? {
        "-" => None,
        s => Some(EnhancedStatus::parse(s).ok_or_else(bad)?),
    };
    let text = dec(parts.next().ok_or_else(bad)?)?;
    Ok(Some(Diagnostic::Smtp(Reply {
        code,
        status,
        lines: vec![text],
    })))
}

fn decode_kind(state: &str) -> Result<Option<DeliveryKind>, String> {
    Ok(Some(match state {
        "pending" => return Ok(None),
        "delivered" => DeliveryKind::Delivered,
        "relayed" => DeliveryKind::Relayed,
        "deferred" => DeliveryKind::Deferred,
        "failed" => DeliveryKind::Failed,
        _ => return Err(format!("bad recipient state `{state}`")),
    }))
}

fn decode_recipient(v: &str) -> Result<Recipient, String> {
    let f: Vec<&str> = v.split(' ').collect();
    let [
        state,
        dsn_done,
        last,
        notify,
        orcpt,
        status,
        remote,
        diag,
        address,
    ] = f[..]
    else {
        return Err("rcpt line needs 9 fields".into());
    };
    let orcpt = match orcpt {
        "-" => None,
        o => {
            let (t, a) = o.split_once(';').ok_or("bad orcpt")?;
            Some(Orcpt {
                addr_type: dec(t)?,
                address: dec_address(a)?,
            })
        }
    };
    let last_delivery = match decode_kind(state)? {
        None => None,
        Some(kind) => Some(Delivery {
            kind,
            status: EnhancedStatus::parse(status)
                .ok_or_else(|| format!("bad status `{status}`"))?,
            diagnostic: decode_diagnostic(diag)?,
            remote_mta: decode_remote(remote)?,
        }),
    };
    Ok(Recipient {
        address: dec_address(address)?,
        notify: decode_notify(notify)?,
        orcpt,
        last: last_delivery,
        last_attempt: num("rcpt", last)?,
        dsn_done: flag("rcpt", dsn_done)?,
    })
}

fn decode_field(env: &mut Envelope, k: &str, v: &str) -> Result<(), String> {
    match k {
        "id" if Spool::is_valid_id(v) => env.id = v.to_string(),
        "id" => return Err(format!("bad id `{}`", v.escape_debug())),
        "reverse-path" => env.reverse_path = dec_address(v)?,
        "ret" => {
            env.ret = match v {
                "-" => None,
                "full" => Some(Ret::Full),
                "hdrs" => Some(Ret::Hdrs),
                _ => return Err("bad ret".into()),
            }
        }
        "envid" => env.envid = opt_dec(v)?,
        "body" => {
            env.body = match v {
                "7bit" => BodyType::SevenBit,
                "8bitmime" => BodyType::EightBitMime,
                _ => return Err("bad body".into()),
            }
        }
        "size" => env.size = num(k, v)?,
        "content-crc" => {
            env.content_crc = u32::from_str_radix(v, 16).map_err(|_| "bad content-crc")?
        }
        "eight-bit" => env.eight_bit = flag(k, v)?,
        "smtputf8" => env.smtputf8 = flag(k, v)?,
        "arrival" => env.arrival = num(k, v)?,
        "client" => env.client_ip = dec(v)?,
        "helo" => env.helo = dec(v)?,
        "auth" => env.auth = opt_dec(v)?,
        "mode" => {
            env.mode = match v {
                "queued" => Mode::Queued,
                "reliable" => Mode::Reliable,
                "detached" => Mode::Detached,
                _ => return Err("bad mode".into()),
            }
        }
        "attempts" => env.attempts = num(k, v)?,
        "next-attempt" => env.next_attempt = num(k, v)?,
        "delay-warned" => env.delay_warned = flag(k, v)?,
        "is-dsn" => env.is_dsn = flag(k, v)?,
        "fetch" => env.fetch = Some(dec(v)?),
        "rcpt" => env.recipients.push(decode_recipient(v)?),
        _ => return Err(format!("unknown field `{k}`")),
    }
    Ok(())
}

/// Parses spool text into an envelope.
///
/// # Errors
/// What is wrong: version, a missing or malformed field, no end marker.
pub fn decode_envelope(text: &str) -> Result<Envelope, String> {
    // Lines end in LF alone, as `encode_envelope` writes them: `str::lines`
    // would also eat a CR before the LF, and a value ending in CR would
    // then read back different from what was written.
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = text.split('\n');
    if lines.next() != Some(VERSION_LINE) {
        return Err("missing or unknown version line".into());
    }
    let mut env = Envelope::new(String::new(), String::new(), 0, Vec::new());
    let mut ended = false;
    for line in lines {
        if ended {
            return Err("data after end marker".into());
        }
        if line == END_LINE {
            ended = true;
            continue;
        }
        let (k, v) = line
            .split_once(' ')
            .ok_or_else(|| format!("malformed line `{line}`"))?;
        decode_field(&mut env, k, v)?;
    }
    if !ended {
        return Err("no end marker (truncated)".into());
    }
    if env.id.is_empty() || env.recipients.is_empty() {
        return Err("no id or no recipients".into());
    }
    Ok(env)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Envelope {
        let mut r1 = Recipient::new(
            "jones@example.net".into(),
            Some(Notify {
                success: false,
                failure: true,
                delay: true,
            }),
            Some(Orcpt {
                addr_type: "rfc822".into(),
                address: "jones@example.com".into(),
            }),
        );
        r1.last = Some(Delivery::from_reply(
            Reply::new(550, "5.1.1", "no such user here"),
            RemoteMta::from_host("mx.example.net"),
            false,
        ));
        r1.last_attempt = 1_700_000_100;
        let mut r2 = Recipient::new("\"odd one\"@example.org".into(), Some(Notify::NEVER), None);
        r2.last = Some(Delivery::deferred(
            EnhancedStatus::of(4, 4, 1),
            "connect to 192.0.2.1: refused",
        ));
        let mut r3 = Recipient::new("c@example.org".into(), None, None);
        r3.last = Some(Delivery {
            remote_mta: Some(RemoteMta::from_host("192.0.2.7")),
            ..Delivery::delivered()
        });
        let r4 = Recipient::new("d@example.org".into(), None, None);
        Envelope {
            id: "0000000000001000".into(),
            reverse_path: "handset@example.com".into(),
            ret: Some(Ret::Hdrs),
            envid: Some("A123 bzq+".into()),
            body: BodyType::EightBitMime,
            size: 1234,
            content_crc: 0xdead_beef,
            eight_bit: true,
            smtputf8: false,
            arrival: 1_700_000_000,
            client_ip: "127.0.0.1".into(),
            helo: "client example".into(),
            auth: Some("handset".into()),
            mode: Mode::Detached,
            attempts: 2,
            next_attempt: 1_700_000_500,
            delay_warned: true,
            is_dsn: false,
            fetch: Some(
                "imap://handset@127.0.0.1:143/outbox;uid=7;urlauth=submit+handset:internal:00"
                    .into(),
            ),
            recipients: vec![r1, r2, r3, r4],
        }
    }

    #[test]
    fn envelope_round_trips() {
        let env = sample();
        assert_eq!(decode_envelope(&encode_envelope(&env)), Ok(env));
    }

    #[test]
    fn record_round_trips_and_a_torn_one_is_refused() {
        let env = sample();
        let record = encode_record(&env, 42);
        let at = record.iter().rposition(|&b| b == b'@').unwrap();
        let (body, trailer) = record.split_at(at);
        let (at, crc) = parse_trailer(trailer.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(at, 42);
        assert_eq!(decode_record(body, crc), Ok(env));
        let mut torn = body.to_vec();
        torn[10] ^= 1;
        assert!(decode_record(&torn, crc).is_err());
    }

    #[test]
    fn truncated_envelope_is_rejected() {
        let text = encode_envelope(&sample());
        for cut in 0..text.len() - 1 {
            assert!(
                decode_envelope(&text[..cut]).is_err(),
                "accepted a prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn an_id_that_is_not_a_spool_id_is_rejected() {
        let text = encode_envelope(&sample());
        let id_line = format!("id {}\n", sample().id);
        for bad in ["id ../../etc/passwd\n", "id 0000000000001000\r\n", "id x\n"] {
            let planted = text.replacen(&id_line, bad, 1);
            assert!(decode_envelope(&planted).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn a_cr_before_a_line_end_is_not_eaten() {
        // Found by the envelope fuzz target: `str::lines` took "\r\n" as a
        // line end, so a value ending in CR read back one CR shorter.
        let text = encode_envelope(&sample()).replacen("\nend\n", "\nend\r\n", 1);
        assert!(decode_envelope(&text).is_err());
    }

    #[test]
    fn free_text_is_made_printable_and_dash_is_a_value() {
        let mut env = sample();
        env.envid = Some("-".into());
        env.recipients[1].last = Some(Delivery::deferred(
            EnhancedStatus::of(4, 0, 0),
            "550-first\r\n550 caf\u{e9}\tend",
        ));
        let back = decode_envelope(&encode_envelope(&env)).unwrap();
        assert_eq!(back.envid.as_deref(), Some("-"));
        let diag = back.recipients[1].last.as_ref().unwrap().diagnostic.clone();
        assert_eq!(
            diag,
            Some(Diagnostic::Local("550-first??550 caf??end".into()))
        );
    }

    #[test]
    fn utf8_addresses_and_the_smtputf8_flag_round_trip_losslessly() {
        let mut env = sample();
        env.smtputf8 = true;
        env.reverse_path = "j\u{f6}s\u{e9}@b\u{fc}cher.example".into();
        env.recipients[0].address = "\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}".into();
        env.recipients[0].orcpt = Some(Orcpt {
            addr_type: "utf-8".into(),
            address: "J\u{f6}s\u{e9}+tag@B\u{fc}cher.example".into(),
        });
        env.recipients[1].address = "\"j\u{f6} s\"@example.org".into();
        let text = encode_envelope(&env);
        assert!(text.is_ascii(), "spool text is ASCII: {text}");
        assert!(text.contains("\nsmtputf8 1\n"), "{text}");
        assert!(text.contains("\nreverse-path j+C3+B6s+C3+A9@b+C3+BCcher.example\n"));
        assert_eq!(decode_envelope(&text), Ok(env));
    }

    #[test]
    fn a_record_without_the_smtputf8_line_is_not_smtputf8() {
        // Not SMTPUTF8: no line at all, so an older detad reads the file.
        let env = sample();
        let text = encode_envelope(&env);
        assert!(!text.contains("smtputf8"), "{text}");
        // A record as detad wrote it before SMTPUTF8 existed.
        let old = "detad-envelope 2\nid 0000000000002000\nreverse-path a@b.example\nret -\n\
            envid =\nbody 7bit\nsize 10\ncontent-crc 0000002a\neight-bit 0\narrival 1700000000\n\
            client 127.0.0.1\nhelo c.example\nauth =\nmode queued\nattempts 0\nnext-attempt 0\n\
            delay-warned 0\nis-dsn 0\nrcpt pending 0 0 - rfc822;x+2By@b.example - - - x+2By@b.example\nend\n";
        let back = decode_envelope(old).unwrap();
        assert!(!back.smtputf8);
        assert_eq!(back.reverse_path, "a@b.example");
        assert_eq!(back.recipients[0].address, "x+y@b.example");
        assert_eq!(
            back.recipients[0].orcpt.as_ref().unwrap().address,
            "x+y@b.example"
        );
        let mut bad = encode_envelope(&env);
        bad = bad.replace("is-dsn 0\n", "is-dsn 0\nsmtputf8 2\n");
        assert!(decode_envelope(&bad).is_err());
    }

    #[test]
    fn a_spooled_address_that_is_not_utf8_or_has_a_control_is_refused() {
        let text = encode_envelope(&sample());
        for bad in ["handset+FF@example.com", "handset+0A@example.com"] {
            let broken = text.replace("handset@example.com", bad);
            assert!(decode_envelope(&broken).is_err(), "{bad}");
        }
    }

    #[test]
    fn null_reverse_path_round_trips() {
        let mut env = sample();
        env.reverse_path.clear();
        env.auth = None;
        let back = decode_envelope(&encode_envelope(&env)).unwrap();
        assert_eq!((back.reverse_path.as_str(), back.auth), ("", None));
    }

    #[test]
    fn trailers_are_strict() {
        assert_eq!(parse_trailer(b"@0 0000000a"), Some((0, 10)));
        for bad in [
            &b"@ 0000000a"[..],
            b"@1 a",
            b"1 0000000a",
            b"@x 0000000a",
            b"@1 0000000g",
        ] {
            assert_eq!(parse_trailer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn trailer_with_a_leading_zero_or_a_sign_is_refused() {
        assert_eq!(parse_trailer(b"@9 327f3536"), Some((9, 0x327f_3536)));
        let padded = format!("@{} 327f3536", "0".repeat(30) + "9");
        for bad in [&b"@09 327F3536"[..], b"@1 +000000a", padded.as_bytes()] {
            assert_eq!(parse_trailer(bad), None, "{bad:?}");
        }
    }
}
