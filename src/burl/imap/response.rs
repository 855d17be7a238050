//! The incremental, sans-IO parser for the server's responses (RFC 3501
//! §7, RFC 4467 §8).
//!
//! Feed [`ResponseParser::feed`] whatever bytes arrived; it answers with how
//! many it used and one [`Event`]. Guarantees:
//! - the events never depend on how the input was split (the data of a
//!   streamed literal may come in different chunks, the same octets);
//! - memory is bounded: one response of at most the parser's line limit
//!   ([`MAX_RESPONSE_LINE`] by default), literals inside it included;
//! - the data literal of a `* URLFETCH` response is never buffered: it is
//!   passed through as [`Event::Data`] chunks that borrow the input, so a
//!   100 MB message costs no memory here. A server-supplied length is
//!   never used to allocate;
//! - after an error the parser returns that error forever: the connection
//!   is out of step and must be closed.

use std::fmt;
use std::ops::Range;

use super::syntax::{
    Parsed, ParsedData, Token, literal_marker, parse_response, unescape, urlfetch_data_at,
};

/// The longest response accepted, literals other than URLFETCH data
/// included. RFC 3501 sets no limit; RFC 7162 §4 suggests clients accept
/// lines of at least 8192 octets.
pub const MAX_RESPONSE_LINE: usize = 64 * 1024;

/// The condition of a status response (RFC 3501 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`.
    Ok,
    /// `NO`: the command failed.
    No,
    /// `BAD`: the command was not understood.
    Bad,
    /// `PREAUTH`: a greeting for a connection that is already logged in.
    Preauth,
    /// `BYE`: the server is closing the connection.
    Bye,
}

/// What a `* URLFETCH` response carries for its URL (RFC 4467 §9
/// `urlfetch-data`: an `nstring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlData<'r> {
    /// `NIL`: the URL is invalid for any reason (RFC 4467 §8).
    Nil,
    /// A quoted string, unescaped.
    Inline(&'r [u8]),
    /// A literal of this many octets; they follow as [`Event::Data`].
    Literal(u64),
}

/// One thing the parser found. `'r` borrows the parser (a response it
/// holds), `'i` borrows the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'r, 'i> {
    /// No complete event yet; all the input was used.
    Incomplete,
    /// `+ text`: a continuation request (RFC 3501 §7.5).
    Continuation {
        /// The text after `+ `.
        text: &'r [u8],
    },
    /// A status response (RFC 3501 §7.1), tagged or untagged.
    Status {
        /// The tag; `None` for `*`.
        tag: Option<&'r [u8]>,
        /// The condition.
        status: Status,
        /// The response code between `[` and `]`, if any.
        code: Option<&'r [u8]>,
        /// The human-readable text.
        text: &'r [u8],
    },
    /// `* CAPABILITY ...` (RFC 3501 §7.2.1).
    Capability {
        /// The space-separated capability names.
        list: &'r [u8],
    },
    /// `* URLFETCH url data` (RFC 4467 §8); only the first URL/data pair.
    UrlFetch {
        /// The URL as the server echoed it, unescaped.
        url: &'r [u8],
        /// The data, or that it follows.
        data: UrlData<'r>,
    },
    /// The next chunk of the URLFETCH literal announced by
    /// [`UrlData::Literal`]; the chunks add up to its length.
    Data(&'i [u8]),
    /// Any other untagged response, as received (without CRLF; any literal
    /// in it inline, as `{n}` CRLF and the octets).
    Other {
        /// The response.
        line: &'r [u8],
    },
}

/// Why the server's bytes are not IMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// A response longer than the parser's limit.
    LineTooLong,
    /// A line ended with LF alone (RFC 3501 §2.2: CRLF).
    BareLf,
    /// A literal length that does not fit in 64 bits.
    BadLiteral,
    /// Not a response: no `*`, `+` or tag, a tagged response that is not
    /// OK/NO/BAD, a malformed URLFETCH, or text after URLFETCH data.
    Syntax,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::LineTooLong => "response line too long",
            ParseError::BareLf => "line ends with a bare LF",
            ParseError::BadLiteral => "literal length out of range",
            ParseError::Syntax => "malformed response",
        })
    }
}

impl std::error::Error for ParseError {}

/// Where the parser is within a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the text of a line into `line`.
    Text,
    /// Copying this many octets of a literal into `line`.
    Capture(usize),
    /// Passing this many octets of URLFETCH data through.
    Stream(u64),
    /// After the URLFETCH data: only CRLF may end the response.
    Tail,
}

/// Incremental response parser: bytes in, [`Event`]s out.
pub struct ResponseParser {
    /// The response so far: text segments, and captured literals after
    /// their `{n}` CRLF.
    line: Vec<u8>,
    /// Where the segment being read starts in `line`.
    segment_start: usize,
    state: State,
    limit: usize,
    /// `line` was lent out in the last event; clear it before going on.
    lent: bool,
    error: Option<ParseError>,
}

impl fmt::Debug for ResponseParser {
    /// Not the response text: an echoed URL carries its token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseParser")
            .field("state", &self.state)
            .field("line_len", &self.line.len())
            .field("limit", &self.limit)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Default for ResponseParser {
    fn default() -> ResponseParser {
        ResponseParser::new(MAX_RESPONSE_LINE)
    }
}

impl ResponseParser {
    /// A parser that accepts responses of at most `limit` octets.
    pub fn new(limit: usize) -> ResponseParser {
        ResponseParser {
            line: Vec::new(),
            segment_start: 0,
            state: State::Text,
            limit,
            lent: false,
            error: None,
        }
    }

    /// Takes input up to the end of the next event; returns how many
    /// octets it used and the event. Feed the rest again.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] when the input is not IMAP; from then on every call
    /// returns it.
    pub fn feed<'r, 'i>(
        &'r mut self,
        input: &'i [u8],
    ) -> Result<(usize, Event<'r, 'i>), ParseError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.lent {
            self.line.clear();
            self.segment_start = 0;
            self.lent = false;
        }
        if let State::Stream(left) = self.state {
            if input.is_empty() {
                return Ok((0, Event::Incomplete));
            }
            let n = left.min(input.len() as u64);
            self.state = if n == left {
                State::Tail
            } else {
                State::Stream(left - n)
            };
            let n = n as usize;
            return Ok((n, Event::Data(&input[..n])));
        }
        let parsed = self
            .read(input)
            .and_then(|(used, complete)| match complete {
                None => Ok((used, None)),
                Some(complete) => Ok((used, Some(self.parse(complete)?))),
            });
        match parsed {
            Ok((used, None)) => Ok((used, Event::Incomplete)),
            Ok((used, Some(parsed))) => {
                self.lent = true;
                Ok((used, self.event(parsed)))
            }
            Err(e) => {
                self.error = Some(e);
                Err(e)
            }
        }
    }

    /// Reads until a response (or the head of URLFETCH data) is complete
    /// in `line`: returns the octets used and what is complete, if any.
    fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Complete>), ParseError> {
        let mut used = 0;
        loop {
            match self.state {
                State::Stream(_) => return Ok((used, None)),
                State::Capture(left) => {
                    let n = left.min(input.len() - used);
                    self.line.extend_from_slice(&input[used..used + n]);
                    used += n;
                    if n < left {
                        self.state = State::Capture(left - n);
                        return Ok((used, None));
                    }
                    self.state = State::Text;
                    self.segment_start = self.line.len();
                }
                State::Text | State::Tail => {
                    let rest = &input[used..];
                    let lf = rest.iter().position(|&b| b == b'\n');
                    let chunk = &rest[..lf.unwrap_or(rest.len())];
                    // The LF still to come makes the response one longer.
                    if self.line.len() + chunk.len() >= self.limit {
                        return Err(ParseError::LineTooLong);
                    }
                    self.line.extend_from_slice(chunk);
                    let Some(lf) = lf else {
                        return Ok((input.len(), None));
                    };
                    used += lf + 1;
                    if self.line.len() == self.segment_start || self.line.pop() != Some(b'\r') {
                        return Err(ParseError::BareLf);
                    }
                    if let Some(complete) = self.end_segment()? {
                        return Ok((used, Some(complete)));
                    }
                }
            }
        }
    }

    /// Handles the end of a line segment: the response ends, a literal
    /// starts, or (after URLFETCH data) the response ends empty.
    fn end_segment(&mut self) -> Result<Option<Complete>, ParseError> {
        if self.state == State::Tail {
            // RFC 4467 §9: one URL was asked for, so CRLF follows the data.
            if !self.line.is_empty() {
                return Err(ParseError::Syntax);
            }
            self.state = State::Text;
            return Ok(None);
        }
        let Some((marker, len)) = literal_marker(&self.line[self.segment_start..])? else {
            return Ok(Some(Complete::Response));
        };
        let marker = self.segment_start + marker;
        if let Some(url) = urlfetch_data_at(&self.line, marker) {
            self.state = if len == 0 {
                State::Tail
            } else {
                State::Stream(len)
            };
            return Ok(Some(Complete::UrlFetchHead { url, len }));
        }
        // Any other literal is small or an error: keep it in the response.
        let len = usize::try_from(len).map_err(|_| ParseError::LineTooLong)?;
        if self.line.len().saturating_add(len).saturating_add(2) >= self.limit {
            return Err(ParseError::LineTooLong);
        }
        self.line.extend_from_slice(b"\r\n");
        self.state = State::Capture(len);
        Ok(None)
    }

    /// Where the parts of the complete response are in `line`.
    fn parse(&mut self, complete: Complete) -> Result<Parsed, ParseError> {
        match complete {
            Complete::Response => parse_response(&mut self.line),
            Complete::UrlFetchHead { url, len } => Ok(Parsed::UrlFetch {
                url: unescape(&mut self.line, url),
                data: ParsedData::Literal(len),
            }),
        }
    }

    /// The event for a parsed response; it borrows `line`.
    fn event(&self, parsed: Parsed) -> Event<'_, 'static> {
        let at = |range: Range<usize>| &self.line[range];
        match parsed {
            Parsed::Continuation(text) => Event::Continuation { text: at(text) },
            Parsed::Status {
                tag,
                status,
                code,
                text,
            } => Event::Status {
                tag: tag.map(at),
                status,
                code: code.map(at),
                text: at(text),
            },
            Parsed::Capability(list) => Event::Capability { list: at(list) },
            Parsed::UrlFetch { url, data } => Event::UrlFetch {
                url: at(url),
                data: match data {
                    ParsedData::Nil => UrlData::Nil,
                    ParsedData::Inline(range) => UrlData::Inline(at(range)),
                    ParsedData::Literal(len) => UrlData::Literal(len),
                },
            },
            Parsed::Other => Event::Other { line: &self.line },
        }
    }
}

/// What [`ResponseParser::read`] completed.
enum Complete {
    /// A whole response.
    Response,
    /// `* URLFETCH url {len}`: the data follows.
    UrlFetchHead { url: Token, len: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's side of a whole fetch: greeting with capabilities, an
    /// untagged response with a (captured) literal, a continuation, the
    /// RFC 4467 §7 URLFETCH answer (its data holds CRLF, LF and a `{5}`),
    /// a NIL answer, tagged results.
    const TRANSCRIPT: &[u8] = b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\r\n\
        * CAPABILITY IMAP4rev1 SASL-IR\r\n\
        b1 OK done\r\n\
        + \r\n\
        * 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n\
        b2 NO [AUTHENTICATIONFAILED] nope\r\n\
        * URLFETCH \"imap://joe@example.com/INBOX/;uid=20;urlauth=submit+fred:internal:00\" {37}\r\n\
        Si vis pacem, para bellum.\r\n{5}\r\n\n.\r\n\r\n\
        * urlfetch \"imap://x\\\"y\" NIL\r\n\
        * URLFETCH {8}\r\nimap://z {3}\r\nabc\r\n\
        * BYE going away\r\n\
        b3 OK URLFETCH completed\r\n";

    /// The events as text, consecutive data chunks joined.
    fn events(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = ResponseParser::default();
        let mut out: Vec<String> = Vec::new();
        for chunk in chunks {
            let mut used = 0;
            loop {
                let (n, event) = parser.feed(&chunk[used..]).expect("valid input");
                used += n;
                let text = match event {
                    Event::Incomplete => break,
                    Event::Data(data) => {
                        let data = format!("data {}", String::from_utf8_lossy(data));
                        match out.last_mut() {
                            Some(last) if last.starts_with("data ") => {
                                last.push_str(&data[5..]);
                            }
                            _ => out.push(data),
                        }
                        continue;
                    }
                    other => show(&other),
                };
                out.push(text);
            }
            assert_eq!(used, chunk.len());
        }
        out
    }

    fn show(event: &Event<'_, '_>) -> String {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match event {
            Event::Continuation { text } => format!("+ {}", s(text)),
            Event::Status {
                tag,
                status,
                code,
                text,
            } => format!(
                "{} {status:?} [{}] {}",
                tag.map_or("*".into(), s),
                code.map_or(String::new(), s),
                s(text)
            ),
            Event::Capability { list } => format!("CAPABILITY {}", s(list)),
            Event::UrlFetch { url, data } => {
                let data = match data {
                    UrlData::Nil => "NIL".into(),
                    UrlData::Inline(d) => format!("inline {}", s(d)),
                    UrlData::Literal(n) => format!("literal {n}"),
                };
                format!("URLFETCH {} {data}", s(url))
            }
            Event::Other { line } => format!("other {}", s(line)),
            Event::Incomplete | Event::Data(_) => unreachable!(),
        }
    }

    #[test]
    fn transcript_gives_these_events() {
        let expected = [
            "* Ok [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready",
            "CAPABILITY IMAP4rev1 SASL-IR",
            "b1 Ok [] done",
            "+ ",
            "other * 1 FETCH (BODY[] {5}\r\nab\r\nc)",
            "b2 No [AUTHENTICATIONFAILED] nope",
            "URLFETCH imap://joe@example.com/INBOX/;uid=20;urlauth=submit+fred:internal:00 literal 37",
            "data Si vis pacem, para bellum.\r\n{5}\r\n\n.\r\n",
            "URLFETCH imap://x\"y NIL",
            "URLFETCH imap://z literal 3",
            "data abc",
            "* Bye [] going away",
            "b3 Ok [] URLFETCH completed",
        ];
        assert_eq!(events(&[TRANSCRIPT]), expected);
    }

    #[test]
    fn events_do_not_depend_on_where_the_input_is_cut() {
        let whole = events(&[TRANSCRIPT]);
        for i in 0..=TRANSCRIPT.len() {
            let (a, b) = TRANSCRIPT.split_at(i);
            assert_eq!(events(&[a, b]), whole, "cut at {i}");
        }
        let bytes: Vec<&[u8]> = TRANSCRIPT.chunks(1).collect();
        assert_eq!(events(&bytes), whole);
        let sevens: Vec<&[u8]> = TRANSCRIPT.chunks(7).collect();
        assert_eq!(events(&sevens), whole);
    }

    #[test]
    fn urlfetch_data_is_streamed_from_the_input_not_buffered() {
        let mut parser = ResponseParser::default();
        // 100 MB announced: nothing is allocated for it.
        let head = b"* URLFETCH \"imap://x\" {100000000}\r\n";
        let (n, event) = parser.feed(head).unwrap();
        assert_eq!(n, head.len());
        assert!(matches!(
            event,
            Event::UrlFetch {
                data: UrlData::Literal(100_000_000),
                ..
            }
        ));
        let chunk = [b'x'; 4096];
        let (n, event) = parser.feed(&chunk).unwrap();
        assert_eq!(n, chunk.len());
        assert_eq!(event, Event::Data(&chunk[..]));
        assert!(parser.line.capacity() < 100);
    }

    #[test]
    fn data_stops_at_the_literal_length() {
        let mut parser = ResponseParser::default();
        let input = b"* URLFETCH x {3}\r\nabc\r\nb1 OK\r\n";
        let (n, _) = parser.feed(input).unwrap();
        let (m, event) = parser.feed(&input[n..]).unwrap();
        assert_eq!(event, Event::Data(b"abc"));
        let (k, event) = parser.feed(&input[n + m..]).unwrap();
        assert_eq!(n + m + k, input.len());
        assert!(matches!(
            event,
            Event::Status {
                tag: Some(b"b1"),
                status: Status::Ok,
                ..
            }
        ));
    }

    #[test]
    fn empty_literal_and_empty_string_are_data_of_length_zero() {
        assert_eq!(
            events(&[b"* URLFETCH u {0}\r\n\r\n* URLFETCH u \"\"\r\n"]),
            ["URLFETCH u literal 0", "URLFETCH u inline "]
        );
    }

    #[test]
    fn binary_literal_marker_is_a_literal() {
        // RFC 3516 literal8, as URLAUTH=BINARY (RFC 5524) servers may send.
        assert_eq!(
            events(&[b"* URLFETCH u ~{2}\r\nhi\r\n"]),
            ["URLFETCH u literal 2", "data hi"]
        );
    }

    #[test]
    fn text_after_urlfetch_data_is_a_syntax_error() {
        let mut parser = ResponseParser::default();
        let input = b"* URLFETCH u {1}\r\nx \"v\" NIL\r\n";
        let (n, _) = parser.feed(input).unwrap();
        let (m, _) = parser.feed(&input[n..]).unwrap();
        assert_eq!(parser.feed(&input[n + m..]), Err(ParseError::Syntax));
    }

    #[test]
    fn response_over_the_limit_is_refused() {
        let mut parser = ResponseParser::new(16);
        assert_eq!(parser.feed(b"* OK 0123456789"), Ok((15, Event::Incomplete)));
        assert_eq!(parser.feed(b"X"), Err(ParseError::LineTooLong));
        // The error sticks: the stream is out of step.
        assert_eq!(parser.feed(b"\r\n"), Err(ParseError::LineTooLong));
    }

    #[test]
    fn large_literal_outside_urlfetch_is_refused_before_reading_it() {
        let mut parser = ResponseParser::default();
        let head = b"* 1 FETCH (BODY[] {100000000}\r\n";
        assert_eq!(parser.feed(head), Err(ParseError::LineTooLong));
        let mut parser = ResponseParser::default();
        let head = b"* 1 FETCH (BODY[] {99999999999999999999}\r\n";
        assert_eq!(parser.feed(head), Err(ParseError::BadLiteral));
    }

    #[test]
    fn bare_lf_is_refused() {
        let mut parser = ResponseParser::default();
        assert_eq!(parser.feed(b"* OK hi\n"), Err(ParseError::BareLf));
        let mut parser = ResponseParser::default();
        assert_eq!(parser.feed(b"\n"), Err(ParseError::BareLf));
    }

    #[test]
    fn tagged_responses_must_be_ok_no_or_bad() {
        for line in [
            &b"b1 BYE x\r\n"[..],
            b"b1 PREAUTH x\r\n",
            b"b1 FOO x\r\n",
            b" OK x\r\n",
        ] {
            let mut parser = ResponseParser::default();
            assert_eq!(parser.feed(line), Err(ParseError::Syntax), "{line:?}");
        }
    }

    #[test]
    fn status_responses_split_code_and_text() {
        assert_eq!(
            events(&[b"* OK [ALERT] hi there\r\nb9 bad\r\n* NO [x\r\n+\r\n"]),
            ["* Ok [ALERT] hi there", "b9 Bad [] ", "* No [] [x", "+ "]
        );
    }

    #[test]
    fn malformed_urlfetch_is_a_syntax_error() {
        let lines = [
            &b"* URLFETCH\r\n"[..],
            b"* URLFETCH u\r\n",
            b"* URLFETCH u x\r\n",
            // `{3}` not at the end of a line is no literal.
            b"* URLFETCH u {3}xyz\r\n",
        ];
        for line in lines {
            let mut parser = ResponseParser::default();
            assert_eq!(parser.feed(line), Err(ParseError::Syntax), "{line:?}");
        }
    }
}
