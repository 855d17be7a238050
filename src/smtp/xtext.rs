//! RFC 3461 §4 `xtext`: the encoding of the DSN parameters `ENVID=` and
//! `ORCPT=` on the wire.
//!
//! ```text
//! xtext   = *( xchar / hexchar )
//! xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
//!           except for "+" and "="
//! hexchar = ASCII "+" immediately followed by two upper case
//!           hexadecimal digits
//! ```
//!
//! Guarantees: [`decode`] accepts exactly the grammar above and only values
//! that decode to printable US-ASCII (RFC 3461 §4.2 and §4.4 require ORCPT
//! and ENVID to be printable before encoding), so a decoded value can go
//! into a DSN field as it is. [`encode`] always produces valid xtext, and
//! `decode(&encode(s)) == Ok(s)` for every printable ASCII `s`.
//!
//! The spool keeps addresses, which may be UTF-8 (RFC 6531), as the xtext
//! of their octets: [`decode_utf8`] takes a hexchar for any octet above
//! 127 too and wants the result to be UTF-8, so
//! `decode_utf8(&encode(s)) == Ok(s)` for every `s` without ASCII control
//! characters.

use std::fmt;

/// Why a string is not valid xtext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XtextError {
    /// A character outside ASCII 33..=126, or a bare `=` (RFC 3461 §4:
    /// `=` is not an xchar and must be sent as `+3D`).
    InvalidChar,
    /// A `+` with fewer than two characters after it.
    DanglingPlus,
    /// A `+` not followed by two upper-case hexadecimal digits (lower case
    /// is rejected: the RFC says "upper case").
    InvalidHex,
    /// A `+XX` that decodes to something other than printable ASCII 32..=126
    /// ([`decode`]), or to an ASCII control character ([`decode_utf8`]).
    NotPrintable,
    /// The decoded octets are not UTF-8 ([`decode_utf8`]).
    NotUtf8,
}

impl fmt::Display for XtextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XtextError::InvalidChar => "invalid character in xtext",
            XtextError::DanglingPlus => "incomplete hexchar at end of xtext",
            XtextError::InvalidHex => "hexchar is not two upper-case hex digits",
            XtextError::NotPrintable => "xtext decodes to a non-printable character",
            XtextError::NotUtf8 => "xtext decodes to octets that are not UTF-8",
        })
    }
}

impl std::error::Error for XtextError {}

/// Decodes an xtext value, e.g. `bob+2Bdsn@example.com` to
/// `bob+dsn@example.com`. The empty string is valid xtext.
///
/// # Errors
///
/// An [`XtextError`] when `s` does not match the RFC 3461 §4 grammar or
/// decodes to something other than printable ASCII.
pub fn decode(s: &str) -> Result<String, XtextError> {
    let octets = decode_octets(s, |value| (32..=126).contains(&value))?;
    // Every octet is printable ASCII, hence UTF-8.
    String::from_utf8(octets).map_err(|_| XtextError::NotPrintable)
}

/// Decodes an xtext value whose hexchars may stand for octets above 127
/// too, e.g. `j+C3+B6rg@example.org` to `jörg@example.org`: the lossless
/// inverse of [`encode`] for UTF-8 text (the spool's addresses, RFC 6531).
///
/// # Errors
///
/// An [`XtextError`] when `s` does not match the RFC 3461 §4 grammar, a
/// hexchar stands for an ASCII control character, or the octets are not
/// UTF-8.
pub fn decode_utf8(s: &str) -> Result<String, XtextError> {
    let octets = decode_octets(s, |value| value >= 32 && value != 127)?;
    String::from_utf8(octets).map_err(|_| XtextError::NotUtf8)
}

/// The octets of an xtext value; `allowed` judges each hexchar's value.
fn decode_octets(s: &str, allowed: impl Fn(u8) -> bool) -> Result<Vec<u8>, XtextError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&hi), Some(&lo)) => (hi, lo),
                    _ => return Err(XtextError::DanglingPlus),
                };
                let value = match (upper_hex_value(hi), upper_hex_value(lo)) {
                    (Some(hi), Some(lo)) => hi << 4 | lo,
                    _ => return Err(XtextError::InvalidHex),
                };
                if !allowed(value) {
                    return Err(XtextError::NotPrintable);
                }
                out.push(value);
                i += 3;
            }
            b @ 33..=126 if b != b'=' => {
                out.push(b);
                i += 1;
            }
            _ => return Err(XtextError::InvalidChar),
        }
    }
    Ok(out)
}

/// Encodes `s` as xtext: `+`, `=` and every octet outside ASCII 33..=126
/// become `+XX` (upper-case hex). Characters outside ASCII are encoded
/// octet by octet from their UTF-8 form; such values encode fine but
/// [`decode`] rejects them as not printable ([`decode_utf8`] takes them).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('+');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The value of an upper-case hexadecimal digit (RFC 3461 §4: "two upper
/// case hexadecimal digits").
fn upper_hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_xchars_decode_to_themselves() {
        for s in [
            "",
            "QQ314159",
            "bob@example.com",
            "rfc822;a@b",
            "~!#$%&'()*,-./:<>?[]^_`{|}",
        ] {
            assert_eq!(decode(s), Ok(s.to_owned()), "{s:?}");
        }
    }

    #[test]
    fn hexchars_decode() {
        let cases = [
            ("bob+2Bdsn@example.com", "bob+dsn@example.com"),
            ("a+3Db", "a=b"),
            ("+20", " "),
            ("+7E", "~"),
            ("+41+42C", "ABC"),
            ("x+2B", "x+"),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input).as_deref(), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn malformed_xtext_is_rejected() {
        let cases = [
            ("a=b", XtextError::InvalidChar),
            ("a b", XtextError::InvalidChar),
            ("a\tb", XtextError::InvalidChar),
            ("a\u{7f}", XtextError::InvalidChar),
            ("caf\u{e9}", XtextError::InvalidChar),
            ("+", XtextError::DanglingPlus),
            ("abc+", XtextError::DanglingPlus),
            ("abc+2", XtextError::DanglingPlus),
            ("+2b", XtextError::InvalidHex),
            ("+a0", XtextError::InvalidHex),
            ("+G0", XtextError::InvalidHex),
            ("++20", XtextError::InvalidHex),
            ("+ 2", XtextError::InvalidHex),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn non_printable_decoded_values_are_rejected() {
        for input in ["+00", "+0D+0A", "+1F", "+7F", "+80", "+FF", "ok+09"] {
            assert_eq!(decode(input), Err(XtextError::NotPrintable), "{input:?}");
        }
    }

    #[test]
    fn encode_escapes_plus_equals_and_non_xchars() {
        let cases = [
            ("bob@example.com", "bob@example.com"),
            ("bob+dsn@example.com", "bob+2Bdsn@example.com"),
            ("a=b", "a+3Db"),
            ("a b", "a+20b"),
            ("\r\n", "+0D+0A"),
            ("\u{7f}", "+7F"),
            ("\u{e9}", "+C3+A9"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(encode(input), expected, "{input:?}");
        }
    }

    #[test]
    fn encode_output_is_always_valid_xtext() {
        let all: String = (0u8..=127)
            .map(char::from)
            .chain(['\u{e9}', '\u{20ac}'])
            .collect();
        let encoded = encode(&all);
        assert!(
            encoded
                .bytes()
                .all(|b| (33..=126).contains(&b) && b != b'=')
        );
        // Only the printable part round-trips; the rest is rejected, not mangled.
        assert_eq!(decode(&encoded), Err(XtextError::NotPrintable));
    }

    #[test]
    fn every_printable_byte_round_trips() {
        for b in 32u8..=126 {
            let s = char::from(b).to_string();
            assert_eq!(decode(&encode(&s)), Ok(s.clone()), "byte {b}");
        }
        let all: String = (32u8..=126).map(char::from).collect();
        assert_eq!(decode(&encode(&all)), Ok(all));
    }

    #[test]
    fn many_strings_round_trip() {
        let cases = [
            "",
            "QQ314159",
            "+",
            "=",
            "++==",
            "  leading and trailing  ",
            "rfc822;\"john doe\"@example.com",
            "a+b=c d",
            "+2B",
        ];
        for s in cases {
            assert_eq!(decode(&encode(s)).as_deref(), Ok(s), "{s:?}");
        }
        // A small deterministic generator over the printable range.
        let mut state: u32 = 0x9e37_79b9;
        for len in 0..200 {
            let s: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    char::from(32 + (state % 95) as u8)
                })
                .collect();
            assert_eq!(decode(&encode(&s)), Ok(s.clone()), "{s:?}");
        }
    }

    #[test]
    fn utf8_text_round_trips_through_decode_utf8() {
        for s in [
            "",
            "j\u{f6}rg@example.org",
            "\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}",
            "\"j\u{f6} rg\"@b\u{fc}cher.example",
            "a+b=c d~",
            "\u{1f600}",
        ] {
            let encoded = encode(s);
            assert!(encoded.is_ascii(), "{encoded}");
            assert_eq!(decode_utf8(&encoded).as_deref(), Ok(s), "{s:?}");
        }
        assert_eq!(decode_utf8("j+C3+B6rg").as_deref(), Ok("j\u{f6}rg"));
    }

    #[test]
    fn decode_utf8_refuses_controls_and_broken_utf8() {
        let cases = [
            ("+0D+0A", XtextError::NotPrintable),
            ("a+7F", XtextError::NotPrintable),
            ("+C3", XtextError::NotUtf8),
            ("+FF+FE", XtextError::NotUtf8),
            ("+C0+80", XtextError::NotUtf8),
            ("caf\u{e9}", XtextError::InvalidChar),
            ("+c3+a9", XtextError::InvalidHex),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_utf8(input), Err(expected), "{input:?}");
        }
        // The ASCII decoder still refuses what is not printable ASCII.
        assert_eq!(decode("j+C3+B6rg"), Err(XtextError::NotPrintable));
    }

    #[test]
    fn errors_display_lowercase_without_period() {
        for e in [
            XtextError::InvalidChar,
            XtextError::DanglingPlus,
            XtextError::InvalidHex,
            XtextError::NotPrintable,
            XtextError::NotUtf8,
        ] {
            let text = e.to_string();
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
    }
}
