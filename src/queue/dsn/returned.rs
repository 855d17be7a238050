//! The third part of a DSN, what is returned of the original message
//! (RFC 6522 §3, RFC 3461 §4.3): the whole message when it is 7-bit data,
//! otherwise its header section, with non-printable octets replaced and
//! over-long lines folded so that the report stays 7-bit.
//!
//! In an RFC 6533 report (about an SMTPUTF8 message) the whole message is
//! returned as `message/global` when it is 8-bit data in UTF-8, and the
//! header section as `message/global-headers` with its UTF-8 kept (RFC
//! 6532 header fields); only control characters and octets that are not
//! UTF-8 are replaced.

use super::ReturnContent;
use super::mime::MAX_LINE;

/// The returned part, already made 7-bit.
#[derive(Debug)]
pub(super) enum Returned<'a> {
    /// The whole message, which is 7-bit data.
    Message(&'a str),
    /// The header section of the message.
    Headers {
        /// The header lines, CRLF-terminated, 7-bit.
        section: String,
        /// The full message was asked for but is not 7-bit data.
        downgraded: bool,
        /// Octets outside printable ASCII were replaced with `?`.
        replaced: bool,
        /// Lines over 998 octets were split.
        split: bool,
    },
}

impl<'a> Returned<'a> {
    /// What to return of `original`; `global`: in an RFC 6533 report.
    pub(super) fn new(original: &'a [u8], ret: ReturnContent, global: bool) -> Returned<'a> {
        if ret == ReturnContent::Full && is_mime_data(original, global) {
            // 7-bit data is ASCII; 8-bit data must be UTF-8 to be returned.
            if let Ok(text) = std::str::from_utf8(original) {
                return Returned::Message(text);
            }
        }
        let mut section = String::new();
        let (mut replaced, mut split) = (false, false);
        for line in header_section(original).split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut clean = clean_line(line, global, &mut replaced);
            // The split above leaves an empty piece after the last LF.
            if clean.is_empty() {
                continue;
            }
            while clean.len() > MAX_LINE {
                // RFC 5322 §2.2.3: a line break before a space is a fold.
                let rest = clean.split_off(clean.floor_char_boundary(MAX_LINE));
                section.push_str(&clean);
                section.push_str("\r\n");
                clean = format!(" {rest}");
                split = true;
            }
            section.push_str(&clean);
            section.push_str("\r\n");
        }
        let downgraded = ret == ReturnContent::Full;
        Returned::Headers {
            section,
            downgraded,
            replaced,
            split,
        }
    }

    /// RFC 6533 §4 (and §6.3) gives the global types for a report about
    /// an SMTPUTF8 message.
    pub(super) fn content_type(&self, global: bool) -> &'static str {
        match (self, global) {
            (Returned::Message(_), false) => "message/rfc822",
            (Returned::Message(_), true) => "message/global",
            (Returned::Headers { .. }, false) => "text/rfc822-headers",
            (Returned::Headers { .. }, true) => "message/global-headers",
        }
    }

    pub(super) fn description(&self) -> &'static str {
        match self {
            Returned::Message(_) => "Returned message",
            Returned::Headers { .. } => "Returned message header",
        }
    }

    pub(super) fn body(&self) -> &str {
        match self {
            Returned::Message(text) => text,
            Returned::Headers { section, .. } => section,
        }
    }

    /// What the text part says about the returned content.
    pub(super) fn explanation(&self, global: bool) -> String {
        match self {
            Returned::Message(_) => "The original message is attached.".to_owned(),
            Returned::Headers {
                downgraded,
                replaced,
                split,
                ..
            } => {
                let mut text = match (*downgraded, global) {
                    (true, false) => {
                        "The original message contains 8-bit data or lines longer \
                         than 998 octets, so it cannot be returned in this 7-bit report; only \
                         its header section is attached."
                    }
                    (true, true) => {
                        "The original message contains text that is not UTF-8, \
                         NUL, a bare CR or LF, or lines longer than 998 octets, so it cannot \
                         be returned as 8-bit data; only its header section is attached."
                    }
                    (false, _) => "The header section of the original message is attached.",
                }
                .to_owned();
                if *replaced && global {
                    text.push_str(
                        " Control characters and octets that are not UTF-8 in it were \
                         replaced with \"?\".",
                    );
                } else if *replaced {
                    text.push_str(
                        " Octets outside printable US-ASCII in it were replaced with \"?\".",
                    );
                }
                if *split {
                    text.push_str(" Lines longer than 998 octets in it were split.");
                }
                text
            }
        }
    }
}

/// A header line as it is returned: tabs and printable ASCII stay, and in
/// a global report UTF-8 characters that are not controls; anything else
/// becomes `?` (one per octet in a 7-bit report) and sets `replaced`.
fn clean_line(line: &[u8], global: bool, replaced: &mut bool) -> String {
    if !global {
        return line
            .iter()
            .map(|&b| match b {
                b'\t' | b' '..=b'~' => char::from(b),
                _ => {
                    *replaced = true;
                    '?'
                }
            })
            .collect();
    }
    let mut clean = String::with_capacity(line.len());
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\t' || (' '..='~').contains(&c) || (!c.is_ascii() && !c.is_control()) {
                clean.push(c);
            } else {
                clean.push('?');
                *replaced = true;
            }
        }
        for _ in chunk.invalid() {
            clean.push('?');
            *replaced = true;
        }
    }
    clean
}

/// RFC 2045 §2.7 "7bit data": octets 1..=127, CR and LF only as CRLF, lines
/// of at most 998 octets; with `eight_bit`, §2.8 "8bit data", where octets
/// above 127 may occur too. Only such a message can be returned as it is.
fn is_mime_data(bytes: &[u8], eight_bit: bool) -> bool {
    let mut line_len = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            b'\n' if i > 0 && bytes[i - 1] == b'\r' => line_len = 0,
            128..=255 if eight_bit => {
                line_len += 1;
                if line_len > MAX_LINE {
                    return false;
                }
            }
            b'\r' | b'\n' | 0 | 128..=255 => return false,
            _ => {
                line_len += 1;
                if line_len > MAX_LINE {
                    return false;
                }
            }
        }
    }
    true
}

/// The header section of a message (RFC 5322 §2.1): everything before the
/// first empty line, including the last header line's line end. A message
/// without an empty line is all header.
fn header_section(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = message[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |n| start + n);
        let line = &message[start..end];
        if line.is_empty() || line == b"\r" {
            return &message[..start];
        }
        start = end + 1;
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_bit_data_is_recognised() {
        let max_line = [b"a".repeat(MAX_LINE), b"\r\n".to_vec()].concat();
        let long_line = [b"a".repeat(MAX_LINE + 1), b"\r\n".to_vec()].concat();
        let cases: [(&[u8], bool); 11] = [
            (b"", true),
            (b"Subject: x\r\n\r\nbody\r\n", true),
            (b"no final line end", true),
            (b"tab\there\r\n", true),
            (&max_line, true),
            (&long_line, false),
            (b"bare\nlf\r\n", false),
            (b"bare\rcr\r\n", false),
            (b"trailing cr\r", false),
            (b"nul\0\r\n", false),
            ("caf\u{e9}\r\n".as_bytes(), false),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                is_mime_data(bytes, false),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn header_section_ends_at_the_first_empty_line() {
        let cases: [(&[u8], &[u8]); 6] = [
            (
                b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n",
                b"A: 1\r\nB: 2\r\n",
            ),
            (b"A: 1\r\n\r\n", b"A: 1\r\n"),
            (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),
            (b"A: 1", b"A: 1"),
            (b"\r\nbody only\r\n", b""),
            (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n"),
        ];
        for (message, expected) in cases {
            assert_eq!(
                header_section(message),
                expected,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn over_long_returned_header_lines_are_folded_and_reported() {
        let long = format!("X-Long: {}\r\n", "y".repeat(2500));
        let original = format!("Subject: hi\r\n{long}\r\nbody\r\n");
        let returned = Returned::new(original.as_bytes(), ReturnContent::Full, false);
        let Returned::Headers {
            section,
            downgraded: true,
            replaced: false,
            split: true,
        } = &returned
        else {
            panic!("{returned:?}");
        };
        assert!(section.split("\r\n").all(|line| line.len() <= MAX_LINE));
        // Unfolding gives back the line with one space per fold.
        let unfolded = section.replace("\r\n ", " ");
        assert_eq!(unfolded.len(), "Subject: hi\r\n".len() + long.len() + 2);
        assert!(returned.explanation(false).contains("were split"));
    }

    #[test]
    fn eight_bit_data_is_recognised_for_global_reports() {
        let long_line = [
            "\u{e9}".repeat(MAX_LINE / 2).into_bytes(),
            b"a\r\n".to_vec(),
        ]
        .concat();
        let cases: [(&[u8], bool); 5] = [
            ("caf\u{e9}\r\n".as_bytes(), true),
            (b"latin-1 \xe9\r\n", true),
            (&long_line, false),
            (b"nul\0\r\n", false),
            ("bare\n\u{e9}\r\n".as_bytes(), false),
        ];
        for (bytes, expected) in cases {
            assert_eq!(is_mime_data(bytes, true), expected, "{bytes:?}");
        }
    }

    #[test]
    fn a_global_report_returns_utf8_as_it_is_and_replaces_the_rest() {
        let original = "Subject: Gr\u{fc}\u{df}e\r\nTo: j\u{f6}rg@x\r\n\r\nbody \u{e9}\r\n";
        let full = Returned::new(original.as_bytes(), ReturnContent::Full, true);
        assert!(matches!(full, Returned::Message(text) if text == original));
        assert_eq!(full.content_type(true), "message/global");
        let headers = Returned::new(original.as_bytes(), ReturnContent::Headers, true);
        assert_eq!(headers.content_type(true), "message/global-headers");
        assert_eq!(
            headers.body(),
            "Subject: Gr\u{fc}\u{df}e\r\nTo: j\u{f6}rg@x\r\n"
        );
        // Latin-1 is not UTF-8: headers only, the octet replaced.
        let latin1 = b"Subject: caf\xe9\x85\r\n\r\nbody\r\n";
        let returned = Returned::new(latin1, ReturnContent::Full, true);
        assert_eq!(returned.body(), "Subject: caf??\r\n");
        assert!(returned.explanation(true).contains("not UTF-8"));
        // A C1 control in UTF-8 is replaced too.
        let c1 = Returned::new("X: a\u{85}b\r\n".as_bytes(), ReturnContent::Headers, true);
        assert_eq!(c1.body(), "X: a?b\r\n");
        // Folding a long UTF-8 line never cuts a character.
        let long = format!("X: {}\r\n", "\u{7528}".repeat(700));
        let folded = Returned::new(long.as_bytes(), ReturnContent::Headers, true);
        assert!(folded.body().split("\r\n").all(|l| l.len() <= MAX_LINE));
        assert_eq!(folded.body().replace("\r\n ", ""), long);
    }
}
