//! The spool record codec. The input is read three ways: as a record
//! (text, then a trailer line), as envelope text, and as a trailer line.
//! Checks: no panic; whatever decodes re-encodes to text that decodes to
//! the same envelope (and encoding that again changes nothing); a trailer
//! that parses is written back the same; a record that decodes is framed
//! again by `encode_record` into one that decodes the same.
#![no_main]

use detad::queue::codec::{
    MAX_TRAILER, decode_envelope, decode_record, encode_envelope, encode_record, parse_trailer,
};
use detad::queue::crc32::crc32;
use detad::queue::envelope::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As the spool reader sees a record: text up to the last line, then the
    // trailer. The CRC is made to match so the fuzzer reaches the text.
    let body_end = data[..data.len().saturating_sub(1)]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let (body, trailer) = data.split_at(body_end);
    let trailer = trailer.strip_suffix(b"\n").unwrap_or(trailer);
    if let Some((at, crc)) = parse_trailer(trailer) {
        // Strict: only the form the writer produces (the reader looks for
        // it in the last MAX_TRAILER octets).
        let canonical = format!("@{at} {crc:08x}");
        assert!(
            trailer.eq_ignore_ascii_case(canonical.as_bytes()),
            "trailer {:?} read as {canonical:?}",
            String::from_utf8_lossy(trailer)
        );
        assert!(trailer.len() < MAX_TRAILER, "trailer of {}", trailer.len());
        if let Ok(env) = decode_record(body, crc) {
            round_trip(&env);
        }
    }
    if let Ok(env) = decode_record(body, crc32(body)) {
        round_trip(&env);
        assert_record(&env, body_end as u64);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(env) = decode_envelope(text)
    {
        round_trip(&env);
    }
});

#[track_caller]
fn round_trip(env: &Envelope) {
    let text = encode_envelope(env);
    let back = decode_envelope(&text);
    assert_eq!(back.as_ref(), Ok(env), "encoded as {text:?}");
    assert_eq!(encode_envelope(&back.unwrap()), text, "not a fixed point");
}

/// `encode_record` frames the envelope so the reader finds it again.
fn assert_record(env: &Envelope, at: u64) {
    let record = encode_record(env, at);
    let body_end = record[..record.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let (body, trailer) = record.split_at(body_end);
    assert!(trailer.len() <= MAX_TRAILER, "trailer of {}", trailer.len());
    let trailer = trailer.strip_suffix(b"\n").expect("trailer ends in LF");
    let (got_at, crc) = parse_trailer(trailer).expect("trailer parses");
    assert_eq!(got_at, at);
    assert_eq!(decode_record(body, crc).as_ref(), Ok(env));
}
