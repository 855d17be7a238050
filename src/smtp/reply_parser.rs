//! Replies as the relay client reads them from the next hop (RFC 5321
//! §4.2): a sans-IO, incremental parser, and the EHLO keywords we act on.
//!
//! Feed [`ReplyParser::feed`] whatever bytes arrived. It answers
//! [`Status::Partial`] (every byte taken, more needed) or hands back one
//! complete [`Reply`] with the number of bytes that reply used; feed the rest
//! again. Guarantees:
//! - the result never depends on how the input was split;
//! - memory is bounded: one line of at most [`REPLY_LINE_LIMIT`] octets plus
//!   at most [`MAX_REPLY_LINES`] lines of the reply in progress;
//! - reply text is printable ASCII: any other octet becomes `?`, so the text
//!   is safe in logs and in DSN fields;
//! - after an error the parser is reset, but the connection is out of step
//!   and should be closed.

use std::fmt;

pub use super::reply::Reply;
use super::status::EnhancedStatus;

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets, CRLF included.
pub const MAX_REPLY_LINE: usize = 512;

/// The longest reply line we accept, CRLF included. Four times
/// [`MAX_REPLY_LINE`]: some servers exceed the RFC limit, and refusing
/// their replies would only defer mail; beyond this it is not SMTP.
pub const REPLY_LINE_LIMIT: usize = 4 * MAX_REPLY_LINE;

/// The most lines one reply may have (an EHLO reply has one per keyword).
pub const MAX_REPLY_LINES: usize = 100;

/// Why the bytes received are not an SMTP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// A line does not start with a three-digit code `1yz`..`5yz`.
    BadCode,
    /// The code is followed by something other than SP, `-` or the line end.
    BadSeparator,
    /// A line of a multi-line reply has another code than the first
    /// (RFC 5321 §4.2.1: "the reply code on each of the lines MUST be the
    /// same").
    CodeMismatch,
    /// A line ends in a bare LF. RFC 5321 §2.3.8: nothing but CRLF is a line
    /// terminator.
    BareLf,
    /// A line is longer than [`REPLY_LINE_LIMIT`].
    LineTooLong,
    /// A reply has more than [`MAX_REPLY_LINES`] lines.
    TooManyLines,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::BadCode => "reply line without a valid reply code",
            ReplyError::BadSeparator => "reply code not followed by space or hyphen",
            ReplyError::CodeMismatch => "multi-line reply with differing codes",
            ReplyError::BareLf => "reply line ends in a bare LF",
            ReplyError::LineTooLong => "reply line too long",
            ReplyError::TooManyLines => "reply has too many lines",
        })
    }
}

impl std::error::Error for ReplyError {}

/// What [`ReplyParser::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No complete reply yet; all the input was taken.
    Partial,
    /// A complete reply, and how many input bytes were used up to and
    /// including its final CRLF. The bytes after it were not looked at.
    Complete(Reply, usize),
}

/// Incremental reply parser: bytes in, complete [`Reply`]s out.
#[derive(Debug, Default)]
pub struct ReplyParser {
    /// The line in progress, without its LF.
    line: Vec<u8>,
    /// The code of the reply in progress, once its first line is complete.
    code: Option<u16>,
    /// The completed lines of the reply in progress.
    lines: Vec<String>,
}

impl ReplyParser {
    /// A parser waiting for the first byte of a reply.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Takes bytes up to the end of the next complete reply.
    ///
    /// # Errors
    ///
    /// A [`ReplyError`] when the input is not a well-formed reply. The parser
    /// is reset, but the stream is out of step.
    pub fn feed(&mut self, input: &[u8]) -> Result<Status, ReplyError> {
        let result = self.feed_inner(input);
        if result.is_err() {
            *self = ReplyParser::default();
        }
        result
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<Status, ReplyError> {
        let mut used = 0;
        while let Some(i) = input[used..].iter().position(|&b| b == b'\n') {
            self.push(&input[used..used + i])?;
            used += i + 1;
            if let Some(reply) = self.end_line()? {
                return Ok(Status::Complete(reply, used));
            }
        }
        self.push(&input[used..])?;
        Ok(Status::Partial)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), ReplyError> {
        // The LF still to come makes the line one longer.
        if self.line.len() + bytes.len() >= REPLY_LINE_LIMIT {
            return Err(ReplyError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Handles the complete line in `self.line`; returns the reply if this
    /// line was its last.
    fn end_line(&mut self) -> Result<Option<Reply>, ReplyError> {
        let (code, last, text) = parse_line(&self.line)?;
        self.line.clear();
        if self.code.is_some_and(|first| first != code) {
            return Err(ReplyError::CodeMismatch);
        }
        if self.lines.len() == MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.code = Some(code);
        self.lines.push(text);
        if !last {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(typed(code, std::mem::take(&mut self.lines))))
    }
}

/// Splits one line (without its LF) into code, whether it is the last line
/// of its reply, and its text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let line = line.strip_suffix(b"\r").ok_or(ReplyError::BareLf)?;
    let code = match line {
        [a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', ..] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(ReplyError::BadCode),
    };
    // RFC 5321 §4.2: servers SHOULD send the SP even without text; a bare
    // code is still a last line.
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(ReplyError::BadSeparator),
    };
    let text = line.get(4..).unwrap_or_default();
    let text = text.iter().map(|&b| {
        if (0x20..0x7f).contains(&b) {
            char::from(b)
        } else {
            '?'
        }
    });
    Ok((code, last, text.collect()))
}

/// The reply as a value: RFC 2034 §4 puts the enhanced status code at the
/// start of every line; when the first line has one of the reply's class,
/// it becomes [`Reply::status`] and is taken off each line that repeats it.
fn typed(code: u16, mut lines: Vec<String>) -> Reply {
    let status = lines
        .first()
        .and_then(|l| EnhancedStatus::split_prefix(l))
        .map(|(s, _)| s)
        .filter(|s| u16::from(s.class_digit()) == code / 100);
    if let Some(status) = status {
        let token = status.to_string();
        for line in lines.iter_mut() {
            if let Some(rest) = line.strip_prefix(token.as_str())
                && (rest.is_empty() || rest.starts_with(' '))
            {
                *line = rest.trim_start_matches(' ').to_string();
            }
        }
    }
    Reply {
        code,
        status,
        lines,
    }
}

/// The service extensions of the next hop that the relay client acts on,
/// read from its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE` (RFC 1870): `Some(limit)` when offered; `Some(0)` means no
    /// fixed limit (RFC 1870 §4: a missing or zero value).
    pub size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `SMTPUTF8` (RFC 6531 §3.2).
    pub smtputf8: bool,
    /// The SASL mechanisms of `AUTH` (RFC 4954 §3), upper case, in the
    /// order offered; empty without AUTH.
    pub auth: Vec<String>,
}

impl Extensions {
    /// Reads the keywords of a `250` EHLO reply. Its first line is the
    /// greeting; every further line is `keyword [params]`, keywords being
    /// case-insensitive (RFC 5321 §4.1.1.1). Unknown keywords are ignored.
    pub fn parse_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => ext.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
                "8BITMIME" => ext.eight_bit_mime = true,
                "DSN" => ext.dsn = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "STARTTLS" => ext.starttls = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "AUTH" => ext.add_mechanisms(words),
                // The pre-RFC 4954 form some servers still add for old
                // clients: `AUTH=LOGIN PLAIN`.
                k if k.starts_with("AUTH=") => {
                    ext.add_mechanisms(std::iter::once(&keyword[5..]).chain(words));
                }
                _ => {}
            }
        }
        ext
    }

    fn add_mechanisms<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        for name in names.filter(|n| !n.is_empty()) {
            let name = name.to_ascii_uppercase();
            if !self.auth.contains(&name) {
                self.auth.push(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in one piece; returns the replies and the error, if any.
    fn parse_all(parser: &mut ReplyParser, mut input: &[u8]) -> (Vec<Reply>, Option<ReplyError>) {
        let mut replies = Vec::new();
        loop {
            match parser.feed(input) {
                Ok(Status::Complete(reply, n)) => {
                    replies.push(reply);
                    input = &input[n..];
                }
                Ok(Status::Partial) => return (replies, None),
                Err(e) => return (replies, Some(e)),
            }
        }
    }

    #[track_caller]
    fn parses_to(input: &[u8], expected: Result<Vec<Reply>, ReplyError>) {
        let mut parser = ReplyParser::new();
        let (replies, err) = parse_all(&mut parser, input);
        match (&expected, err) {
            (Ok(want), None) => assert_eq!(&replies, want),
            (Err(want), Some(got)) => assert_eq!(&got, want),
            (_, got) => panic!("expected {expected:?}, got {replies:?} / {got:?}"),
        }
        assert_split_invariant(input);
    }

    /// RFC-shaped inputs must give the same result whatever the cut.
    #[track_caller]
    fn assert_split_invariant(input: &[u8]) {
        let whole = parse_all(&mut ReplyParser::new(), input);
        for cut in 0..=input.len() {
            let mut parser = ReplyParser::new();
            let (mut replies, err) = parse_all(&mut parser, &input[..cut]);
            let split = match err {
                Some(e) => (replies, Some(e)),
                None => {
                    let (more, err) = parse_all(&mut parser, &input[cut..]);
                    replies.extend(more);
                    (replies, err)
                }
            };
            assert_eq!(split, whole, "cut at {cut}");
        }
        // One byte at a time.
        let mut parser = ReplyParser::new();
        let mut replies = Vec::new();
        let mut err = None;
        for b in input {
            let (more, e) = parse_all(&mut parser, std::slice::from_ref(b));
            replies.extend(more);
            if e.is_some() {
                err = e;
                break;
            }
        }
        assert_eq!((replies, err), whole, "byte by byte");
    }

    /// The reply the parser should make of these line texts.
    fn reply(code: u16, lines: &[&str]) -> Reply {
        typed(code, lines.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn single_line_reply() {
        parses_to(b"250 2.1.0 Ok\r\n", Ok(vec![reply(250, &["2.1.0 Ok"])]));
    }

    #[test]
    fn multi_line_reply() {
        parses_to(
            b"250-mx.example\r\n250-PIPELINING\r\n250 DSN\r\n",
            Ok(vec![reply(250, &["mx.example", "PIPELINING", "DSN"])]),
        );
    }

    #[test]
    fn pipelined_replies_come_out_one_by_one() {
        let input = b"250 2.1.0 Ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go ahead\r\n";
        let mut parser = ReplyParser::new();
        let Ok(Status::Complete(first, n)) = parser.feed(input) else {
            panic!()
        };
        assert_eq!(first, reply(250, &["2.1.0 Ok"]));
        assert_eq!(n, 14);
        parses_to(
            input,
            Ok(vec![
                reply(250, &["2.1.0 Ok"]),
                reply(550, &["5.1.1 no", "5.1.1 such user"]),
                reply(354, &["go ahead"]),
            ]),
        );
    }

    #[test]
    fn bare_code_is_a_last_line() {
        parses_to(b"250\r\n", Ok(vec![reply(250, &[""])]));
        parses_to(b"250-a\r\n250\r\n", Ok(vec![reply(250, &["a", ""])]));
    }

    #[test]
    fn incomplete_reply_is_partial() {
        parses_to(b"250-a\r\n250 b", Ok(vec![]));
        parses_to(b"250 ok\r", Ok(vec![]));
        assert_eq!(ReplyParser::new().feed(b""), Ok(Status::Partial));
    }

    #[test]
    fn malformed_replies_are_errors() {
        parses_to(b"25 ok\r\n", Err(ReplyError::BadCode));
        parses_to(b"abc ok\r\n", Err(ReplyError::BadCode));
        parses_to(b"650 ok\r\n", Err(ReplyError::BadCode));
        parses_to(b"\r\n", Err(ReplyError::BadCode));
        parses_to(b"250_ok\r\n", Err(ReplyError::BadSeparator));
        parses_to(b"250-a\r\n251 b\r\n", Err(ReplyError::CodeMismatch));
        parses_to(b"250 ok\n", Err(ReplyError::BareLf));
    }

    #[test]
    fn line_length_is_limited() {
        let mut ok = b"250 ".to_vec();
        ok.resize(REPLY_LINE_LIMIT - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        let (replies, err) = parse_all(&mut ReplyParser::new(), &ok);
        assert_eq!((replies.len(), err), (1, None));

        let mut long = b"250 ".to_vec();
        long.resize(REPLY_LINE_LIMIT - 1, b'x');
        long.extend_from_slice(b"\r\n");
        parses_to(&long, Err(ReplyError::LineTooLong));
        // Detected before the line end arrives: memory stays bounded.
        let endless = vec![b'x'; REPLY_LINE_LIMIT];
        assert_eq!(
            ReplyParser::new().feed(&endless),
            Err(ReplyError::LineTooLong)
        );
    }

    #[test]
    fn line_count_is_limited() {
        let mut input = b"250-x\r\n".repeat(MAX_REPLY_LINES - 1);
        input.extend_from_slice(b"250 x\r\n");
        let (replies, err) = parse_all(&mut ReplyParser::new(), &input);
        assert_eq!((replies.len(), err), (1, None));

        let input = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(
            parse_all(&mut ReplyParser::new(), &input).1,
            Some(ReplyError::TooManyLines)
        );
    }

    #[test]
    fn parser_is_reset_after_an_error() {
        let mut parser = ReplyParser::new();
        assert_eq!(parser.feed(b"250-a\r\nxyz\r\n"), Err(ReplyError::BadCode));
        assert_eq!(
            parser.feed(b"221 bye\r\n"),
            Ok(Status::Complete(reply(221, &["bye"]), 9))
        );
    }

    #[test]
    fn unprintable_octets_become_question_marks() {
        parses_to(
            b"550 5.7.1 caf\xc3\xa9\tbad\rx\x7f\r\n",
            Ok(vec![reply(550, &["5.7.1 caf???bad?x?"])]),
        );
    }

    #[test]
    fn enhanced_status_is_typed_when_its_class_matches() {
        let status = |input: &[u8]| {
            let mut p = ReplyParser::new();
            match p.feed(input) {
                Ok(Status::Complete(r, _)) => (r.status.map(|s| s.to_string()), r.text()),
                other => panic!("{other:?}"),
            }
        };
        let some = |s: &str, t: &str| (Some(s.to_string()), t.to_string());
        let none = |t: &str| (None, t.to_string());
        assert_eq!(
            status(b"550 5.1.1 user unknown\r\n"),
            some("5.1.1", "user unknown")
        );
        assert_eq!(
            status(b"550-5.1.1 a\r\n550 5.1.1 b\r\n"),
            some("5.1.1", "a b")
        );
        assert_eq!(status(b"250 2.0.0\r\n"), some("2.0.0", ""));
        assert_eq!(status(b"451 4.7.100 grey\r\n"), some("4.7.100", "grey"));
        assert_eq!(status(b"550 4.1.1 mismatch\r\n"), none("4.1.1 mismatch"));
        assert_eq!(status(b"550 5.1 short\r\n"), none("5.1 short"));
        assert_eq!(
            status(b"354 3.0.0 no class 3\r\n"),
            none("3.0.0 no class 3")
        );
        assert_eq!(status(b"550 user unknown\r\n"), none("user unknown"));
    }

    #[test]
    fn display_puts_a_multi_line_reply_on_one_line() {
        assert_eq!(
            reply(550, &["5.1.1 no", "5.1.1 such user"]).to_string(),
            "550 5.1.1 no such user"
        );
        assert_eq!(reply(250, &[""]).to_string(), "250");
    }

    #[test]
    fn ehlo_keywords_are_read_case_insensitively() {
        let r = reply(
            250,
            &[
                "mx.example greets you",
                "pipelining",
                "SIZE 10240000",
                "8BITMIME",
                "Dsn",
                "SmtpUtf8",
                "X-FOO bar",
            ],
        );
        let ext = Extensions::parse_ehlo(&r);
        assert_eq!(
            ext,
            Extensions {
                pipelining: true,
                size: Some(10_240_000),
                eight_bit_mime: true,
                dsn: true,
                enhanced_status_codes: false,
                starttls: false,
                smtputf8: true,
                auth: Vec::new(),
            }
        );
        let r = reply(250, &["mx.example", "SIZE", "ENHANCEDSTATUSCODES"]);
        let ext = Extensions::parse_ehlo(&r);
        assert_eq!(ext.size, Some(0));
        assert!(ext.enhanced_status_codes && !ext.pipelining && !ext.dsn && !ext.smtputf8);
        // RFC 3207 §4, RFC 4954 §3; the old `AUTH=` form adds to the list.
        let r = reply(
            250,
            &[
                "mx.example",
                "STARTTLS",
                "AUTH login Plain",
                "AUTH=LOGIN XOAUTH2",
            ],
        );
        let ext = Extensions::parse_ehlo(&r);
        assert!(ext.starttls);
        assert_eq!(ext.auth, ["LOGIN", "PLAIN", "XOAUTH2"]);
        // The greeting line is not a keyword.
        assert_eq!(
            Extensions::parse_ehlo(&reply(250, &["PIPELINING"])),
            Extensions::default()
        );
    }
}
