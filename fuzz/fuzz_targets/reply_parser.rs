//! The relay client's reply parser. Input: 2 octets choosing a cut, then
//! what a next hop sent. Checks the module's guarantees: the replies and
//! the error do not depend on how the input was split; memory is bounded
//! (no reply without an error after more than the parser may hold); reply
//! text is printable ASCII; a parsed reply written back parses the same.
#![no_main]

use detad::smtp::reply_parser::{
    MAX_REPLY_LINES, REPLY_LINE_LIMIT, Reply, ReplyError, ReplyParser, Status,
};
use detad_fuzz::Tape;
use libfuzzer_sys::fuzz_target;

/// The most octets one reply may take: every line at the limit.
const MAX_REPLY_OCTETS: usize = MAX_REPLY_LINES * REPLY_LINE_LIMIT;

/// Replies found and the error that stopped parsing, if any.
type Parsed = (Vec<Reply>, Option<ReplyError>);

/// Feeds `input` in pieces ending at `cuts` (then the rest), as the relay
/// connection does: each piece until it is used up or an error.
fn run(input: &[u8], cuts: impl IntoIterator<Item = usize>) -> Parsed {
    let mut parser = ReplyParser::new();
    let mut replies = Vec::new();
    let mut pos = 0;
    // Octets taken since the last complete reply.
    let mut pending = 0;
    for end in cuts.into_iter().chain([input.len()]) {
        while pos < end {
            match parser.feed(&input[pos..end]) {
                Ok(Status::Complete(reply, n)) => {
                    assert!(n > 0 && n <= end - pos, "used {n} of {}", end - pos);
                    pending += n;
                    assert!(pending <= MAX_REPLY_OCTETS, "reply of {pending} octets");
                    pending = 0;
                    pos += n;
                    replies.push(reply);
                }
                Ok(Status::Partial) => {
                    pending += end - pos;
                    assert!(pending <= MAX_REPLY_OCTETS, "holding {pending} octets");
                    pos = end;
                }
                Err(e) => return (replies, Some(e)),
            }
        }
    }
    (replies, None)
}

fuzz_target!(|data: &[u8]| {
    let mut tape = Tape::new(data);
    let cut = usize::from(tape.u16());
    let input = tape.rest();

    let whole = run(input, []);
    let cut = cut % (input.len() + 1);
    assert_eq!(whole, run(input, [cut]), "split at {cut}");
    assert_eq!(whole, run(input, 0..input.len()), "byte by byte");

    for reply in &whole.0 {
        assert!((100..600).contains(&reply.code), "code {}", reply.code);
        assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
        for line in &reply.lines {
            assert!(line.len() < REPLY_LINE_LIMIT);
            assert!(
                line.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "unprintable text {line:?}"
            );
        }
        assert_reads_back(reply);
    }
});

/// Written back as we would send it on, a reply reads the same: code,
/// status and lines (the status written on every line is taken off again,
/// and with it any spaces the text started with).
fn assert_reads_back(reply: &Reply) {
    let bytes = reply.to_bytes();
    // The status added to a line that lacked it may push it over the limit.
    if bytes
        .split(|&b| b == b'\n')
        .any(|l| l.len() + 1 >= REPLY_LINE_LIMIT)
    {
        return;
    }
    let (again, err) = run(&bytes, []);
    assert_eq!((again.len(), err), (1, None), "written back: {bytes:?}");
    let again = &again[0];
    assert_eq!((again.code, again.status), (reply.code, reply.status));
    let trimmed = |r: &Reply| -> Vec<String> {
        let trim = |l: &String| match r.status {
            Some(_) => l.trim_start_matches(' ').to_string(),
            None => l.clone(),
        };
        r.lines.iter().map(trim).collect()
    };
    assert_eq!(trimmed(again), trimmed(reply), "written back: {bytes:?}");
}
