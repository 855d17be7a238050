//! The grammar of one complete response (RFC 3501 §9, RFC 4467 §9), as
//! ranges of the parser's line: pure functions over a byte slice, no
//! state. A literal inside the line has been captured as `{n}` CRLF and
//! its n octets (see `response.rs`).

use std::ops::Range;

use super::response::{ParseError, Status};

/// A response as ranges of the parser's line.
pub(super) enum Parsed {
    Continuation(Range<usize>),
    Status {
        tag: Option<Range<usize>>,
        status: Status,
        code: Option<Range<usize>>,
        text: Range<usize>,
    },
    Capability(Range<usize>),
    UrlFetch {
        url: Range<usize>,
        data: ParsedData,
    },
    Other,
}

pub(super) enum ParsedData {
    Nil,
    Inline(Range<usize>),
    Literal(u64),
}

/// RFC 3501 §9 `response`, from a complete line without its CRLF.
pub(super) fn parse_response(line: &mut [u8]) -> Result<Parsed, ParseError> {
    let len = line.len();
    if line.first() == Some(&b'+') {
        let start = if line.get(1) == Some(&b' ') { 2 } else { 1 };
        return Ok(Parsed::Continuation(start..len));
    }
    let (tag, word_start) = if line.starts_with(b"* ") {
        (None, 2)
    } else {
        let end = word_end(line, 0);
        (Some(0..end), (end + 1).min(len))
    };
    let word_stop = word_end(line, word_start);
    let rest = (word_stop + 1).min(len);
    let word = &line[word_start..word_stop];
    if let Some(status) = status_named(word) {
        // RFC 3501 §7.1: a tagged response is OK, NO or BAD.
        let bad_tag = tag
            .as_ref()
            .is_some_and(|t| t.is_empty() || matches!(status, Status::Preauth | Status::Bye));
        if bad_tag {
            return Err(ParseError::Syntax);
        }
        let (code, text) = resp_text(line, rest);
        return Ok(Parsed::Status {
            tag,
            status,
            code,
            text,
        });
    }
    if tag.is_some() {
        return Err(ParseError::Syntax);
    }
    if word.eq_ignore_ascii_case(b"CAPABILITY") {
        return Ok(Parsed::Capability(rest..len));
    }
    if !word.eq_ignore_ascii_case(b"URLFETCH") {
        return Ok(Parsed::Other);
    }
    // RFC 4467 §9: "*" SP "URLFETCH" 1*(SP url-full SP nstring); only the
    // first pair is read.
    let url = astring_at(line, rest).ok_or(ParseError::Syntax)?;
    if line.get(url.end) != Some(&b' ') {
        return Err(ParseError::Syntax);
    }
    let data = nstring_at(line, url.end + 1).ok_or(ParseError::Syntax)?;
    Ok(Parsed::UrlFetch {
        url: unescape(line, url),
        data: match data {
            None => ParsedData::Nil,
            Some(data) => ParsedData::Inline(unescape(line, data)),
        },
    })
}

/// Where the word starting at `from` ends (at SP or the end).
fn word_end(line: &[u8], from: usize) -> usize {
    let len = line[from..].iter().position(|&b| b == b' ');
    from + len.unwrap_or(line.len() - from)
}

/// `[code] text` (RFC 3501 §9 `resp-text`) from `from`; a `[` without `]`
/// is text.
fn resp_text(line: &[u8], from: usize) -> (Option<Range<usize>>, Range<usize>) {
    if line.get(from) == Some(&b'[')
        && let Some(close) = line[from..].iter().position(|&b| b == b']')
    {
        let close = from + close;
        let text = if line.get(close + 1) == Some(&b' ') {
            close + 2
        } else {
            close + 1
        };
        return (Some(from + 1..close), text..line.len());
    }
    (None, from..line.len())
}

fn status_named(word: &[u8]) -> Option<Status> {
    [
        (&b"OK"[..], Status::Ok),
        (b"NO", Status::No),
        (b"BAD", Status::Bad),
        (b"PREAUTH", Status::Preauth),
        (b"BYE", Status::Bye),
    ]
    .into_iter()
    .find(|(name, _)| word.eq_ignore_ascii_case(name))
    .map(|(_, status)| status)
}

/// If `segment` ends with a literal's `{n}` (or RFC 3516 `~{n}`): where the
/// marker starts and `n`.
pub(super) fn literal_marker(segment: &[u8]) -> Result<Option<(usize, u64)>, ParseError> {
    let Some(body) = segment.strip_suffix(b"}") else {
        return Ok(None);
    };
    let digits = body.len() - body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == body.len() || digits == 0 || body[digits - 1] != b'{' {
        return Ok(None);
    }
    let len = std::str::from_utf8(&body[digits..])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(ParseError::BadLiteral)?;
    let open = digits - 1;
    let start = if open > 0 && body[open - 1] == b'~' {
        open - 1
    } else {
        open
    };
    Ok(Some((start, len)))
}

/// Whether the literal whose marker starts at `marker` is the data of a
/// `* URLFETCH url {n}` response; if so, the URL.
pub(super) fn urlfetch_data_at(line: &[u8], marker: usize) -> Option<Token> {
    let head = line.get(..11)?;
    if !head.eq_ignore_ascii_case(b"* URLFETCH ") {
        return None;
    }
    let url = astring_at(line, 11)?;
    (url.end + 1 == marker && line[url.end] == b' ').then_some(url)
}

/// A string in the parser's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    /// The content; a quoted string's still escaped.
    pub(super) content: Range<usize>,
    /// Whether it is a quoted string.
    pub(super) quoted: bool,
    /// Where it ends in the line (after the closing quote).
    pub(super) end: usize,
}

/// RFC 3501 §9 `astring` at `pos`.
fn astring_at(line: &[u8], pos: usize) -> Option<Token> {
    if let Some(found) = string_at(line, pos) {
        return Some(found);
    }
    let len = line
        .get(pos..)?
        .iter()
        .take_while(|&&b| is_astring_char(b))
        .count();
    (len > 0).then_some(Token {
        content: pos..pos + len,
        quoted: false,
        end: pos + len,
    })
}

/// RFC 3501 §9 `nstring` at `pos`: `Some(None)` for NIL.
fn nstring_at(line: &[u8], pos: usize) -> Option<Option<Token>> {
    let nil = line
        .get(pos..pos + 3)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"NIL"));
    if nil && !line.get(pos + 3).is_some_and(|&b| is_astring_char(b)) {
        return Some(None);
    }
    string_at(line, pos).map(Some)
}

/// RFC 3501 §9 `string` (quoted or literal) at `pos`.
fn string_at(line: &[u8], pos: usize) -> Option<Token> {
    match line.get(pos)? {
        b'"' => {
            let mut i = pos + 1;
            loop {
                match line.get(i)? {
                    b'"' => {
                        return Some(Token {
                            content: pos + 1..i,
                            quoted: true,
                            end: i + 1,
                        });
                    }
                    b'\\' => i += 2,
                    _ => i += 1,
                }
            }
        }
        b'{' | b'~' => {
            // A captured literal: `{n}` CRLF and n octets (`end_segment`).
            let open = pos + usize::from(line[pos] == b'~');
            if line.get(open) != Some(&b'{') {
                return None;
            }
            let close = open + line[open..].iter().position(|&b| b == b'}')?;
            let len: usize = std::str::from_utf8(&line[open + 1..close])
                .ok()?
                .parse()
                .ok()?;
            if line.get(close + 1..close + 3) != Some(b"\r\n") {
                return None;
            }
            let start = close + 3;
            let end = start.checked_add(len).filter(|&e| e <= line.len())?;
            Some(Token {
                content: start..end,
                quoted: false,
                end,
            })
        }
        _ => None,
    }
}

/// RFC 3501 §9 `ASTRING-CHAR`: an atom char or `]`.
fn is_astring_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
}

/// The content of `token`, with a quoted string's escapes removed in
/// place; returns its new range.
pub(super) fn unescape(line: &mut [u8], token: Token) -> Range<usize> {
    let range = token.content;
    if !token.quoted {
        return range;
    }
    let (mut read, mut write) = (range.start, range.start);
    while read < range.end {
        if line[read] == b'\\' && read + 1 < range.end {
            read += 1;
        }
        line[write] = line[read];
        read += 1;
        write += 1;
    }
    range.start..write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_marker_is_braced_digits_at_the_end() {
        assert_eq!(literal_marker(b"* X {12}"), Ok(Some((4, 12))));
        assert_eq!(literal_marker(b"* X ~{0}"), Ok(Some((4, 0))));
        assert_eq!(literal_marker(b"{7}"), Ok(Some((0, 7))));
        for text in [
            &b"* OK {x}"[..],
            b"* OK {}",
            b"* OK }",
            b"* OK 12}",
            b"* OK {1} ",
        ] {
            assert_eq!(literal_marker(text), Ok(None), "{text:?}");
        }
        assert_eq!(
            literal_marker(b"{18446744073709551616}"),
            Err(ParseError::BadLiteral)
        );
    }

    #[test]
    fn strings_are_quoted_literal_or_atom() {
        let line = b"\"a\\\"b\" {3}\r\nxyz atom] NIL";
        let quoted = astring_at(line, 0).unwrap();
        assert_eq!(
            (quoted.content.clone(), quoted.quoted, quoted.end),
            (1..5, true, 6)
        );
        let literal = string_at(line, 7).unwrap();
        assert_eq!(&line[literal.content.clone()], b"xyz");
        let atom = astring_at(line, literal.end + 1).unwrap();
        assert_eq!(&line[atom.content], b"atom]");
        assert_eq!(nstring_at(line, atom.end + 1), Some(None));
        let mut owned = line.to_vec();
        let range = unescape(&mut owned, quoted);
        assert_eq!(&owned[range], b"a\"b");
    }

    #[test]
    fn braces_without_crlf_after_them_are_no_literal() {
        assert_eq!(string_at(b"{3}xyz", 0), None);
        assert_eq!(string_at(b"~x", 0), None);
        assert_eq!(string_at(b"{3}\r\nxy", 0), None);
        assert_eq!(string_at(b"\"open", 0), None);
    }

    #[test]
    fn nil_is_a_whole_word() {
        assert_eq!(nstring_at(b"NIL", 0), Some(None));
        assert_eq!(nstring_at(b"nil ", 0), Some(None));
        assert_eq!(nstring_at(b"NILS", 0), None);
        assert_eq!(nstring_at(b"NI", 0), None);
    }
}
