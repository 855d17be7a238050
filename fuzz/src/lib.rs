//! Helpers shared by the fuzz targets: the wire checks every reply must
//! pass, and a reader that turns fuzz bytes into decisions.

use detad::smtp::reply::Reply;

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets, CRLF included.
pub const MAX_REPLY_LINE: usize = 512;

/// Asserts that `reply` goes on the wire as RFC 5321 §4.2 reply lines: each
/// ends in CRLF, starts with the three-digit code and SP or `-` (SP on the
/// last line only), has only `textstring` after it (HT and printable
/// US-ASCII: no CR, LF, NUL or 8-bit octet), and is at most 512 octets.
#[track_caller]
pub fn assert_wire_reply(reply: &Reply) {
    assert!((100..600).contains(&reply.code), "code {}", reply.code);
    let bytes = reply.to_bytes();
    assert!(bytes.ends_with(b"\r\n"), "{reply:?}");
    let lines: Vec<&[u8]> = bytes[..bytes.len() - 2].split(|&b| b == b'\n').collect();
    let code = reply.code.to_string();
    for (i, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            line.iter().all(|&b| b == b'\t' || (32..127).contains(&b)),
            "octet outside textstring in reply line {i}: {reply:?}"
        );
        assert!(
            line.len() + 2 <= MAX_REPLY_LINE,
            "reply line {i} is {} octets with CRLF: {:?}",
            line.len() + 2,
            String::from_utf8_lossy(line)
        );
        assert!(line.starts_with(code.as_bytes()), "{reply:?}");
        let sep = if i + 1 == lines.len() { b' ' } else { b'-' };
        assert_eq!(line[3], sep, "separator of line {i}: {reply:?}");
    }
}

/// Decisions drawn from fuzz bytes; an exhausted tape answers 0, so a
/// short input means "the usual case".
#[derive(Debug)]
pub struct Tape<'a> {
    bytes: &'a [u8],
}

impl<'a> Tape<'a> {
    /// A tape over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Tape<'a> {
        Tape { bytes }
    }

    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes as a little-endian number.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` of the next bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// Splits fuzz input into a header of `header_len` bytes (shorter when the
/// input is) and the rest.
pub fn split_header(data: &[u8], header_len: usize) -> (&[u8], &[u8]) {
    data.split_at(header_len.min(data.len()))
}
