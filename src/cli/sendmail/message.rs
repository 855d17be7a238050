//! The message as `sendmail` gets it from a script, made into one SMTP
//! takes: line ends, the header section, the headers a submission needs,
//! and the recipients of `-t`. Pure: bytes in, bytes out.
//!
//! Guarantees: [`normalize`] returns CRLF line ends only (a bare LF or a
//! bare CR ends a line too, the last line is ended) and never a NUL;
//! [`Message::assemble`] returns a header section, an empty line and the
//! body, in that order, whatever the input looked like.

use std::fmt;

use crate::auth::base64;

/// Why the input cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// A NUL octet, never valid in mail text (RFC 5322 §2.3), on this line.
    Nul {
        /// The line number, from 1.
        line: usize,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Nul { line } => {
                write!(f, "line {line} of the message has a NUL octet")
            }
        }
    }
}

impl std::error::Error for InputError {}

/// The input with CRLF line ends: CRLF stays, a bare LF (what scripts
/// write) or a bare CR (progress bars in command output) becomes CRLF, and
/// a last line without an end gets one. Empty input stays empty.
///
/// # Errors
/// A NUL octet.
pub fn normalize(input: &[u8]) -> Result<Vec<u8>, InputError> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32 + 2);
    let mut line = 1;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            0 => return Err(InputError::Nul { line }),
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                // CRLF is one line end, not two.
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                line += 1;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                line += 1;
            }
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// One header field: its name and all its lines (each with its CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name as written.
    pub name: &'a str,
    raw: &'a [u8],
}

impl Field<'_> {
    /// The value after the colon, unfolded (RFC 5322 §2.2.3), as text
    /// (non-UTF-8 octets replaced).
    pub fn value(&self) -> String {
        let after = &self.raw[self.name.len() + 1..];
        let text = String::from_utf8_lossy(after);
        text.replace("\r\n", "").trim().to_string()
    }
}

/// A normalized message split into its header fields and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header fields, in order.
    pub fields: Vec<Field<'a>>,
    /// The body, after the empty line (or, when the input had no header
    /// section, everything).
    pub body: &'a [u8],
}

/// RFC 5322 §2.2: `field-name = 1*ftext`, printable ASCII but `:`.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let ok = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
    // Only ASCII was let through, so this cannot fail.
    ok.then(|| std::str::from_utf8(name).ok()).flatten()
}

impl<'a> Message<'a> {
    /// Splits normalized `content` (see [`normalize`]). The header section
    /// ends at the first empty line, or at the first line that is neither a
    /// field nor the continuation of one: that line starts the body (the
    /// input `hello` is all body).
    pub fn parse(content: &'a [u8]) -> Message<'a> {
        let mut fields: Vec<Field<'a>> = Vec::new();
        let mut at = 0;
        // Where the current field started.
        let mut field_start = None;
        while at < content.len() {
            let end = content[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(content.len(), |p| at + p + 2);
            let line = &content[at..end];
            if line == b"\r\n" {
                at = end;
                break;
            }
            let folded = matches!(line[0], b' ' | b'\t') && field_start.is_some();
            if !folded {
                let Some(name) = field_name(line) else { break };
                field_start = Some(at);
                fields.push(Field { name, raw: line });
            }
            let start = field_start.expect("a field is open");
            fields.last_mut().expect("a field is open").raw = &content[start..end];
            at = end;
        }
        Message {
            fields,
            body: &content[at..],
        }
    }

    /// Whether there is a field `name` (any case).
    pub fn has(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The values of every field named one of `names` (any case).
    pub fn values(&self, names: &[&str]) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| names.iter().any(|n| f.name.eq_ignore_ascii_case(n)))
            .map(Field::value)
            .collect()
    }

    /// The message to send: `trace` lines first (each a whole field, CRLF
    /// included), then the fields but those named in `drop`, then each of
    /// `missing` (name, value) whose name is not there yet, the empty line
    /// and the body.
    pub fn assemble(&self, trace: &str, missing: &[(&str, String)], drop: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 1024);
        out.extend_from_slice(trace.as_bytes());
        for f in &self.fields {
            if !drop.iter().any(|d| f.name.eq_ignore_ascii_case(d)) {
                out.extend_from_slice(f.raw);
            }
        }
        for (name, value) in missing {
            if !self.has(name) {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
        out
    }
}

/// The addresses of an RFC 5322 §3.4 `address-list` (a To, Cc or Bcc
/// value): display names, comments and group names are dropped, an
/// `angle-addr`'s source route too; a bare word (`root`) stays as it is,
/// for the caller to qualify.
///
/// # Errors
/// Text that holds no address: several words without an `@` and no `<>`.
pub fn address_list(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut angle: Option<String> = None;
    let mut tokens = Tokens::new(value);
    let finish = |words: &mut Vec<String>, angle: &mut Option<String>, out: &mut Vec<String>| {
        match angle.take() {
            Some(addr) => {
                // `<@a,@b:user@c>`: the obsolete source route goes.
                let addr = addr.rsplit(':').next().unwrap_or("").to_string();
                if !addr.is_empty() {
                    out.push(addr);
                }
            }
            None if words.len() > 1 && !words.iter().any(|w| w.contains('@')) => {
                return Err(format!("no address in `{}`", words.join(" ")));
            }
            None if !words.is_empty() => out.push(words.concat()),
            None => {}
        }
        words.clear();
        Ok(())
    };
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(w) => words.push(w),
            Token::Special('<') => {
                let mut addr = String::new();
                for t in tokens.by_ref() {
                    match t {
                        Token::Special('>') => break,
                        Token::Word(w) => addr.push_str(&w),
                        Token::Special(c) => addr.push(c),
                    }
                }
                angle = Some(addr);
            }
            // A group's name (`undisclosed-recipients:;`) is no address.
            Token::Special(':') => words.clear(),
            Token::Special(',' | ';') => finish(&mut words, &mut angle, &mut out)?,
            Token::Special(_) => {}
        }
    }
    finish(&mut words, &mut angle, &mut out)?;
    Ok(out)
}

/// A lexical unit of an address list: a run of atom text, a quoted string
/// (quotes kept) or a domain literal, or one special character; comments
/// and white space are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Special(char),
}

struct Tokens<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Tokens<'a> {
        Tokens {
            chars: text.chars().peekable(),
        }
    }

    /// Skips a comment (the `(` is read), nested ones included.
    fn skip_comment(&mut self) {
        let mut depth = 1;
        while let Some(c) = self.chars.next() {
            match c {
                '\\' => {
                    self.chars.next();
                }
                '(' => depth += 1,
                ')' if depth == 1 => return,
                ')' => depth -= 1,
                _ => {}
            }
        }
    }

    /// Reads up to and including the `close` that ends a quoted string or
    /// a domain literal (the opener is read and pushed already).
    fn read_until(&mut self, close: char, word: &mut String) {
        while let Some(c) = self.chars.next() {
            word.push(c);
            if c == '\\' {
                if let Some(n) = self.chars.next() {
                    word.push(n);
                }
            } else if c == close {
                return;
            }
        }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        loop {
            let c = *self.chars.peek()?;
            match c {
                c if c.is_whitespace() => {
                    self.chars.next();
                }
                '(' => {
                    self.chars.next();
                    self.skip_comment();
                }
                ',' | ';' | ':' | '<' | '>' => {
                    self.chars.next();
                    return Some(Token::Special(c));
                }
                _ => break,
            }
        }
        let mut word = String::new();
        while let Some(&c) = self.chars.peek() {
            match c {
                '"' | '[' => {
                    self.chars.next();
                    word.push(c);
                    self.read_until(if c == '"' { '"' } else { ']' }, &mut word);
                }
                c if c.is_whitespace() || "(),;:<>".contains(c) => break,
                c => {
                    self.chars.next();
                    word.push(c);
                }
            }
        }
        Some(Token::Word(word))
    }
}

/// RFC 5322 §3.2.3 `atext`.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A display name as a `phrase`: as it is when it is atoms and spaces, a
/// quoted string when it has specials, RFC 2047 encoded words (UTF-8,
/// base64) when it is not ASCII.
pub fn display_name(name: &str) -> String {
    let name = name.trim();
    if name.chars().all(|c| is_atext(c) || c == ' ') {
        return name.to_string();
    }
    if name.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        return format!("\"{escaped}\"");
    }
    // RFC 2047 §2: an encoded word is at most 75 characters, so the name
    // goes in pieces of up to 45 octets (60 in base64), each whole
    // characters.
    let mut words = Vec::new();
    let mut piece = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if piece.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64::encode(piece.as_bytes())));
            piece.clear();
        }
        piece.push(c);
    }
    if !piece.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64::encode(piece.as_bytes())));
    }
    words.join(" ")
}

/// A `From:` value: `Name <address>`, or the address alone.
pub fn mailbox(name: Option<&str>, address: &str) -> String {
    match name.map(display_name).filter(|n| !n.is_empty()) {
        Some(n) => format!("{n} <{address}>"),
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_become_crlf_and_nul_is_refused() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"hello", b"hello\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\r\nb\nc", b"a\r\nb\r\nc\r\n"),
            (b"50%\r100%\n", b"50%\r\n100%\r\n"),
            (b"\n\n", b"\r\n\r\n"),
            (b".\n..\n", b".\r\n..\r\n"),
            (b"caf\xc3\xa9\n", b"caf\xc3\xa9\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).unwrap(), *want, "{input:?}");
        }
        assert_eq!(normalize(b"a\nb\0c\n"), Err(InputError::Nul { line: 2 }));
    }

    fn parsed(text: &str) -> (Vec<(String, String)>, String) {
        let content = normalize(text.as_bytes()).unwrap();
        let m = Message::parse(&content);
        let fields = m
            .fields
            .iter()
            .map(|f| (f.name.to_string(), f.value()))
            .collect();
        (fields, String::from_utf8_lossy(m.body).into_owned())
    }

    #[test]
    fn the_header_section_ends_at_an_empty_line_or_a_non_field_line() {
        let (f, body) = parsed("Subject: hi\nTo: a,\n b\n\nbody\n");
        assert_eq!(
            f,
            vec![
                ("Subject".into(), "hi".into()),
                ("To".into(), "a, b".into())
            ]
        );
        assert_eq!(body, "body\r\n");
        let (f, body) = parsed("hello world\nSubject: not a header\n");
        assert!(f.is_empty());
        assert_eq!(body, "hello world\r\nSubject: not a header\r\n");
        let (f, body) = parsed("Subject: only headers");
        assert_eq!(f.len(), 1);
        assert_eq!(body, "");
        let (f, body) = parsed(" folded first\n");
        assert!(f.is_empty());
        assert_eq!(body, " folded first\r\n");
        let (f, body) = parsed("\nbody after an empty first line\n");
        assert!(f.is_empty());
        assert_eq!(body, "body after an empty first line\r\n");
    }

    #[test]
    fn assembly_adds_what_is_missing_drops_bcc_and_always_separates() {
        let content = normalize(b"Subject: s\nBcc: hidden@x\nFrom: me@x\n").unwrap();
        let m = Message::parse(&content);
        let missing = [("From", "other@x".to_string()), ("Date", "D".to_string())];
        let out = m.assemble("Received: r\r\n", &missing, &["bcc"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: r\r\nSubject: s\r\nFrom: me@x\r\nDate: D\r\n\r\n"
        );
        let content = normalize(b"hello\n").unwrap();
        let out = Message::parse(&content).assemble("", &missing, &[]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: other@x\r\nDate: D\r\n\r\nhello\r\n"
        );
    }

    #[test]
    fn address_lists_yield_the_addresses() {
        let cases: &[(&str, &[&str])] = &[
            ("root", &["root"]),
            ("a@x, b@y", &["a@x", "b@y"]),
            ("Joe <joe@x>, \"Doe, Jane\" <jane@y>", &["joe@x", "jane@y"]),
            ("joe@x (Joe, the admin)", &["joe@x"]),
            ("undisclosed-recipients:;", &[]),
            ("team: a@x, B <b@y>; c@z", &["a@x", "b@y", "c@z"]),
            ("<@relay.x:joe@y>", &["joe@y"]),
            ("\"joe smith\"@x", &["\"joe smith\"@x"]),
            ("joe@[IPv6:2001:db8::1]", &["joe@[IPv6:2001:db8::1]"]),
            ("", &[]),
            (" , ,", &[]),
        ];
        for (value, want) in cases {
            assert_eq!(address_list(value).unwrap(), *want, "{value}");
        }
        assert!(address_list("Joe Bloggs").is_err());
    }

    #[test]
    fn display_names_are_atoms_quoted_or_encoded() {
        assert_eq!(
            mailbox(Some("Cron Daemon"), "root@gw"),
            "Cron Daemon <root@gw>"
        );
        assert_eq!(
            mailbox(Some("Smith, J. \"JJ\""), "j@gw"),
            "\"Smith, J. \\\"JJ\\\"\" <j@gw>"
        );
        assert_eq!(
            mailbox(Some("Jos\u{e9}"), "j@gw"),
            "=?UTF-8?B?Sm9zw6k=?= <j@gw>"
        );
        assert_eq!(mailbox(None, "j@gw"), "j@gw");
        assert_eq!(mailbox(Some("  "), "j@gw"), "j@gw");
        let long = display_name(&"\u{e9}".repeat(40));
        assert!(long.split(' ').all(|w| w.len() <= 75), "{long}");
        assert_eq!(long.split(' ').count(), 2);
    }
}
