//! The DATA decoder (RFC 5321 §4.1.1.4, §4.5.2): finds the end of data,
//! removes dot-stuffing, and judges the content. In raw mode
//! ([`DataDecoder::raw`]) it judges content that comes counted, not
//! terminated: BDAT chunks (RFC 3030) and BURL fetches (RFC 4468), by the
//! same rules.
//!
//! Guarantees: end of data is recognised only at `CRLF "." CRLF` (or `"." CRLF`
//! as the very first line); bytes after it are never consumed, so pipelined
//! commands stay in the caller's buffer. Never holds more than one byte of
//! state between calls, never emits more than `max_size` octets, and stops
//! emitting at the first defect so a rejected message is never stored whole.

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF,
/// not counting a leading dot added for transparency.
pub const MAX_TEXT_LINE: usize = 1000;

/// What the content was found to be, once the end of data is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Acceptable.
    Ok,
    /// A CR not followed by LF, or an LF not preceded by CR (the SMTP
    /// smuggling vectors, RFC 5321 §2.3.8).
    BareNewline,
    /// A NUL octet: never valid in mail text (RFC 5322 §3.5, RFC 5321
    /// §4.5.2 data is lines of text), so it is refused, never relayed.
    Nul,
    /// A line over [`MAX_TEXT_LINE`] octets.
    LineTooLong,
    /// More than the configured maximum message size.
    TooBig,
}

impl Verdict {
    /// The refusal of content judged so, or `None` when it is acceptable.
    pub fn refusal(self) -> Option<super::reply::Reply> {
        use super::reply::Reply;
        Some(match self {
            Verdict::Ok => return None,
            // RFC 5321 §4.1.1.4 / CERT VU#302671: refuse, never normalise.
            Verdict::BareNewline => Reply::new(
                550,
                "5.6.0",
                "message contains bare CR or LF; only CRLF line ends are allowed",
            ),
            Verdict::Nul => Reply::new(554, "5.6.0", "message contains NUL octets"),
            Verdict::LineTooLong => {
                Reply::new(500, "5.5.2", "message line longer than 1000 octets")
            }
            Verdict::TooBig => Reply::new(
                552,
                "5.3.4",
                "message size exceeds fixed maximum message size",
            ),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
    /// Inside a line.
    Text,
    /// After a CR inside a line.
    Cr,
    /// The terminator was seen.
    Done,
}

/// Incremental DATA decoder; feed it the bytes after the 354 reply.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    line_len: usize,
    size: u64,
    max_size: u64,
    verdict: Verdict,
    eight_bit: bool,
    /// Counted content: no dot-stuffing, no terminator.
    raw: bool,
}

impl DataDecoder {
    /// A decoder that accepts at most `max_size` octets of content.
    pub fn new(max_size: u64) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            line_len: 0,
            size: 0,
            max_size,
            verdict: Verdict::Ok,
            eight_bit: false,
            raw: false,
        }
    }

    /// A decoder for counted content (BDAT chunks, BURL fetches): every
    /// input byte is content; a leading dot is text. Call
    /// [`DataDecoder::finish`] after the last chunk.
    pub fn raw(max_size: u64) -> DataDecoder {
        DataDecoder {
            raw: true,
            ..DataDecoder::new(max_size)
        }
    }

    /// The end of counted content: a last line without its CRLF gets one
    /// (the message is stored, and relayed, as lines; RFC 3030 lets a BDAT
    /// message end anywhere); a CR at the very end is a bare CR.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Text | State::Dot => {
                self.emit(b'\r', out);
                self.emit(b'\n', out);
                self.line_len = 0;
                self.state = State::LineStart;
            }
            State::Cr | State::DotCr => self.flag(Verdict::BareNewline),
            State::LineStart | State::Done => {}
        }
    }

    /// Decodes from `input`, appending content to `out`. Returns how many
    /// input bytes were consumed and whether the end of data was reached;
    /// when it was, the bytes after the consumed count belong to the next
    /// command.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        for (i, &b) in input.iter().enumerate() {
            self.step(b, out);
            if self.state == State::Done {
                return (i + 1, true);
            }
        }
        (input.len(), false)
    }

    /// The judgement of the content so far (final once the end is reached).
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Octets of content seen (after unstuffing), also past a defect.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the content had an octet above 127.
    pub fn eight_bit(&self) -> bool {
        self.eight_bit
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.raw {
            return match self.state {
                State::Cr => self.after_cr(b, out),
                _ => self.in_line(b, out),
            };
        }
        match (self.state, b) {
            (State::LineStart, b'.') => self.state = State::Dot,
            (State::Dot, b'\r') => self.state = State::DotCr,
            (State::DotCr, b'\n') => self.state = State::Done,
            (State::DotCr, _) => {
                // ".<CR>x": the dot was stuffing, the CR is bare.
                self.flag(Verdict::BareNewline);
                self.text(b'\r', out);
                self.after_cr(b, out);
            }
            (State::Cr, _) => self.after_cr(b, out),
            // A leading dot followed by more text is removed (§4.5.2).
            (State::LineStart | State::Dot | State::Text, _) => self.in_line(b, out),
            // decode() stops at the terminator: nothing follows it.
            (State::Done, _) => {}
        }
    }

    fn in_line(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                self.flag(Verdict::BareNewline);
                self.text(b, out);
            }
            _ => self.text(b, out),
        }
    }

    fn after_cr(&mut self, b: u8, out: &mut Vec<u8>) {
        if b == b'\n' {
            self.emit(b'\r', out);
            self.emit(b'\n', out);
            self.line_len = 0;
            self.state = State::LineStart;
        } else {
            self.flag(Verdict::BareNewline);
            self.text(b'\r', out);
            self.in_line(b, out);
        }
    }

    fn text(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = State::Text;
        self.eight_bit |= b > 127;
        if b == 0 {
            self.flag(Verdict::Nul);
        }
        self.emit(b, out);
        // The CRLF counts towards the limit: 998 octets of text plus CRLF.
        if self.line_len + 2 > MAX_TEXT_LINE {
            self.flag(Verdict::LineTooLong);
        }
    }

    fn emit(&mut self, b: u8, out: &mut Vec<u8>) {
        self.size += 1;
        self.line_len += 1;
        if self.size > self.max_size {
            self.flag(Verdict::TooBig);
        }
        if self.verdict == Verdict::Ok {
            out.push(b);
        }
    }

    fn flag(&mut self, v: Verdict) {
        if self.verdict == Verdict::Ok {
            self.verdict = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces cut at `cuts`; returns content, bytes
    /// consumed, end seen, verdict.
    fn run(input: &[u8], cuts: &[usize], max: u64) -> (Vec<u8>, usize, bool, Verdict) {
        let mut d = DataDecoder::new(max);
        let mut out = Vec::new();
        let (mut pos, mut bounds) = (0, cuts.to_vec());
        bounds.push(input.len());
        for end in bounds {
            if end < pos {
                continue;
            }
            let (n, done) = d.decode(&input[pos..end], &mut out);
            pos += n;
            if done {
                return (out, pos, true, d.verdict());
            }
        }
        (out, pos, false, d.verdict())
    }

    #[track_caller]
    fn every_split(input: &[u8], want: &[u8], consumed: usize, verdict: Verdict) {
        for cut in 0..=input.len() {
            let got = run(input, &[cut], 1 << 20);
            assert_eq!(got.1, consumed, "consumed, cut at {cut}");
            assert!(got.2, "end not found, cut at {cut}");
            assert_eq!(got.3, verdict, "verdict, cut at {cut}");
            if verdict == Verdict::Ok {
                assert_eq!(got.0, want, "content, cut at {cut}");
            }
        }
        // One byte at a time.
        let all: Vec<usize> = (0..input.len()).collect();
        assert_eq!(run(input, &all, 1 << 20).1, consumed);
    }

    #[test]
    fn end_of_data_is_found_at_every_split_point() {
        let input = b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
        every_split(
            input,
            b"Subject: x\r\n\r\nhello\r\n",
            input.len() - 6,
            Verdict::Ok,
        );
    }

    #[test]
    fn empty_message_is_just_the_dot() {
        every_split(b".\r\n", b"", 3, Verdict::Ok);
    }

    #[test]
    fn dot_stuffing_is_removed() {
        let input = b"..\r\n..x\r\n. \r\n.\r\n";
        every_split(input, b".\r\n.x\r\n \r\n", input.len(), Verdict::Ok);
    }

    #[test]
    fn bare_lf_dot_lf_is_not_the_end() {
        let input = b"a\n.\nb\r\n.\r\n";
        every_split(input, b"", input.len(), Verdict::BareNewline);
    }

    #[test]
    fn bare_cr_is_rejected_after_the_real_terminator() {
        let input = b"a\r.\rb\r\n.\r\nNOOP\r\n";
        every_split(input, b"", input.len() - 6, Verdict::BareNewline);
        let input = b"x\r\n.\rb\r\n.\r\n";
        every_split(input, b"", input.len(), Verdict::BareNewline);
    }

    #[test]
    fn nul_is_refused_after_the_real_terminator() {
        let input = b"a\x00.\r\nb\r\n.\r\nNOOP\r\n";
        every_split(input, b"", input.len() - 6, Verdict::Nul);
    }

    #[test]
    fn lf_dot_crlf_smuggling_is_not_the_end() {
        let input = b"a\n.\r\nMAIL FROM:<evil@x>\r\n.\r\n";
        every_split(input, b"", input.len(), Verdict::BareNewline);
    }

    #[test]
    fn text_line_limit_is_1000_with_crlf() {
        let mut ok = vec![b'a'; 998];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&ok, &[], 1 << 20).3, Verdict::Ok);
        let mut long = vec![b'a'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&long, &[], 1 << 20).3, Verdict::LineTooLong);
        // The stuffed dot does not count.
        let mut stuffed = vec![b'.'];
        stuffed.extend(vec![b'a'; 998]);
        stuffed.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&stuffed, &[], 1 << 20).3, Verdict::Ok);
    }

    #[test]
    fn over_size_content_is_counted_but_not_emitted() {
        let input = b"0123456789\r\n.\r\n";
        let (out, _, done, verdict) = run(input, &[], 5);
        assert!(done);
        assert_eq!(verdict, Verdict::TooBig);
        assert!(out.len() <= 5);
    }

    /// Raw mode over `chunks`; content and verdict after `finish`.
    fn raw(chunks: &[&[u8]], max: u64) -> (Vec<u8>, Verdict) {
        let mut d = DataDecoder::raw(max);
        let mut out = Vec::new();
        for c in chunks {
            assert_eq!(d.decode(c, &mut out), (c.len(), false));
        }
        d.finish(&mut out);
        (out, d.verdict())
    }

    #[test]
    fn counted_content_keeps_dots_and_ends_only_when_told() {
        let (out, v) = raw(&[b"a\r\n.\r\n", b"..b\r\n"], 100);
        assert_eq!(
            (out.as_slice(), v),
            (&b"a\r\n.\r\n..b\r\n"[..], Verdict::Ok)
        );
    }

    #[test]
    fn counted_content_gets_its_last_crlf_and_a_split_crlf_is_whole() {
        assert_eq!(raw(&[b"a\r", b"\nb"], 100).0, b"a\r\nb\r\n");
        assert_eq!(raw(&[b"a\r"], 100).1, Verdict::BareNewline);
        assert_eq!(raw(&[b"a\nb"], 100).1, Verdict::BareNewline);
        assert_eq!(raw(&[b"a\x00"], 100).1, Verdict::Nul);
        assert_eq!(raw(&[b"0123456789\r\n"], 5).1, Verdict::TooBig);
    }

    #[test]
    fn eight_bit_content_is_noticed() {
        let mut d = DataDecoder::new(100);
        d.decode("caf\u{e9}\r\n.\r\n".as_bytes(), &mut Vec::new());
        assert!(d.eight_bit());
    }

    #[test]
    fn random_inputs_never_lose_the_terminator() {
        // xorshift; the seed is in the assertion message on failure.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..300 {
            let mut body = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                body.push(b"a.\r\n"[(seed % 4) as usize]);
            }
            body.extend_from_slice(b"\r\n.\r\nNEXT");
            let whole = run(&body, &[], 1 << 20);
            let cut = (seed as usize) % body.len();
            let split = run(&body, &[cut], 1 << 20);
            assert_eq!(whole, split, "round {round} seed {seed:#x}");
            assert!(whole.2, "round {round}: no end found");
            assert!(body[whole.1..].ends_with(b"NEXT"));
        }
    }
}
