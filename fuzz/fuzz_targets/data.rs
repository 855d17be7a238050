//! The DATA decoder. Input: 2 octets of size limit, 2 octets choosing a
//! cut, then the bytes after the 354. Checks the module's guarantees:
//! the result does not depend on how the input was split; never more than
//! the limit is emitted; accepted content has only CRLF line ends, no NUL,
//! no line over 1000 octets; stuffing it again decodes to the same content.
#![no_main]

use detad::smtp::data::{DataDecoder, MAX_TEXT_LINE, Verdict};
use detad_fuzz::Tape;
use libfuzzer_sys::fuzz_target;

/// What one decode run saw: content, consumed, end found, verdict, size,
/// eight-bit.
type Run = (Vec<u8>, usize, bool, Verdict, u64, bool);

/// Decodes `input` in pieces ending at `cuts` (then the rest), stopping at
/// the end of data as a driver does.
fn run(input: &[u8], cuts: impl IntoIterator<Item = usize>, max: u64) -> Run {
    let mut decoder = DataDecoder::new(max);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut done = false;
    for end in cuts.into_iter().chain([input.len()]) {
        if done || end < pos {
            continue;
        }
        let (n, end_seen) = decoder.decode(&input[pos..end], &mut out);
        assert!(n <= end - pos, "consumed more than given");
        assert!(end_seen || n == end - pos, "stopped early without the end");
        pos += n;
        done = end_seen;
    }
    let (size, eight_bit) = (decoder.size(), decoder.eight_bit());
    (out, pos, done, decoder.verdict(), size, eight_bit)
}

fuzz_target!(|data: &[u8]| {
    let mut tape = Tape::new(data);
    // 0 means "no practical limit", so seeds need no header arithmetic.
    let max = match tape.u16() {
        0 => 1 << 20,
        n => u64::from(n),
    };
    let cut = usize::from(tape.u16());
    let input = tape.rest();

    let whole = run(input, [], max);
    let split = run(input, [cut % (input.len() + 1)], max);
    assert_eq!(whole, split, "split at {}", cut % (input.len() + 1));
    let bytewise = run(input, 0..input.len(), max);
    assert_eq!(whole, bytewise, "byte by byte");

    let (out, consumed, done, verdict, _, _) = &whole;
    assert!(out.len() as u64 <= max, "emitted {} > {max}", out.len());
    if *done {
        let head = &input[..*consumed];
        assert!(
            head == b".\r\n" || head.ends_with(b"\r\n.\r\n"),
            "end of data without CRLF . CRLF"
        );
    }
    if *verdict == Verdict::Ok {
        assert_clean_text(out);
        if *done {
            let again = run(&stuff(out), [], max);
            assert_eq!(&again.0, out, "stuffed again");
            assert_eq!((again.2, again.3), (true, Verdict::Ok));
        }
    }
});

/// Only CRLF line ends, no NUL, lines within RFC 5321 §4.5.3.1.6.
fn assert_clean_text(out: &[u8]) {
    let mut line_len = 0;
    for (i, &b) in out.iter().enumerate() {
        assert_ne!(b, 0, "NUL at {i} with verdict Ok");
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => {
                assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
                // line_len counts the CR: with the LF, at most 1000.
                assert!(line_len < MAX_TEXT_LINE, "line of {line_len}");
                line_len = 0;
                continue;
            }
            _ => {}
        }
        line_len += 1;
    }
    assert!(line_len + 2 <= MAX_TEXT_LINE, "last line of {line_len}");
}

/// RFC 5321 §4.5.2: a dot before every line that starts with one, then the
/// terminator (content that does not end in CRLF gets one first).
fn stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 8);
    let mut at_line_start = true;
    for &b in content {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
