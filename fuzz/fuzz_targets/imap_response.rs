//! The BURL client's IMAP response parser, and the BURL URL check. Input:
//! 2 octets of line limit (0: the default), 2 octets choosing a cut, then
//! what an IMAP server sent. Checks the module's guarantees: the events do
//! not depend on how the input was split; nothing lent out is longer than
//! the limit; URLFETCH data chunks add up to the announced length; after an
//! error the same error comes forever. Each echoed URL also goes through
//! `burl::url::check`, which must not panic.
#![no_main]

use detad::burl::imap::{Event, MAX_RESPONSE_LINE, ParseError, ResponseParser, UrlData};
use detad::burl::url;
use detad_fuzz::Tape;
use libfuzzer_sys::fuzz_target;

/// The events as owned text, consecutive data chunks joined, and the error.
type Parsed = (Vec<String>, Option<ParseError>);

fn run(input: &[u8], cuts: impl IntoIterator<Item = usize>, limit: usize) -> Parsed {
    let mut parser = ResponseParser::new(limit);
    let mut events: Vec<String> = Vec::new();
    // Octets of URLFETCH data still announced.
    let mut data_left: Option<u64> = None;
    let mut pos = 0;
    for end in cuts.into_iter().chain([input.len()]) {
        while pos < end {
            let (used, event) = match parser.feed(&input[pos..end]) {
                Ok(ok) => ok,
                Err(e) => {
                    assert_eq!(parser.feed(b"* OK\r\n").map(|_| ()), Err(e), "not sticky");
                    return (events, Some(e));
                }
            };
            assert!(used <= end - pos);
            pos += used;
            let text = match event {
                Event::Incomplete => {
                    assert_eq!(pos, end, "incomplete with input left");
                    break;
                }
                Event::Data(chunk) => {
                    let left = data_left.as_mut().expect("data without URLFETCH");
                    *left = left.checked_sub(chunk.len() as u64).expect("data overran");
                    match events.last_mut() {
                        Some(last) if last.starts_with("data ") => last.push_str(&hex(chunk)),
                        _ => events.push(format!("data {}", hex(chunk))),
                    }
                    continue;
                }
                other => {
                    assert!(
                        data_left.is_none_or(|n| n == 0),
                        "event before the data ended"
                    );
                    data_left = match other {
                        Event::UrlFetch {
                            data: UrlData::Literal(n),
                            ..
                        } => Some(n),
                        _ => None,
                    };
                    check_event(&other, limit);
                    format!("{other:?}")
                }
            };
            events.push(text);
        }
    }
    (events, None)
}

fn check_event(event: &Event<'_, '_>, limit: usize) {
    let lent: &[&[u8]] = match event {
        Event::Continuation { text } => &[text],
        Event::Status {
            tag, code, text, ..
        } => &[tag.unwrap_or(b""), code.unwrap_or(b""), text],
        Event::Capability { list } => &[list],
        Event::UrlFetch { url, data } => {
            if let Ok(url) = std::str::from_utf8(url) {
                let _ = url::check(url, "imap.example.net", 143, "fred");
            }
            match data {
                UrlData::Inline(bytes) => &[url, bytes],
                _ => &[url],
            }
        }
        Event::Other { line } => &[line],
        Event::Incomplete | Event::Data(_) => &[],
    };
    for part in lent {
        assert!(
            part.len() < limit,
            "lent {} octets, limit {limit}",
            part.len()
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut tape = Tape::new(data);
    let limit = match tape.u16() {
        0 => MAX_RESPONSE_LINE,
        n => usize::from(n),
    };
    let cut = usize::from(tape.u16());
    let input = tape.rest();

    let whole = run(input, [], limit);
    let cut = cut % (input.len() + 1);
    assert_eq!(whole, run(input, [cut], limit), "split at {cut}");
    assert_eq!(whole, run(input, 0..input.len(), limit), "byte by byte");
});
