//! RFC 4648 §4 base64 (standard alphabet, `=` padding), as SMTP AUTH
//! carries it (RFC 4954 §4).
//!
//! Guarantees: [`encode`] produces the canonical padded form. [`decode`]
//! accepts exactly the canonical forms and nothing else: no whitespace or
//! line breaks, no characters outside the alphabet, padding only at the end
//! and only as much as the length needs, and zero unused bits in the last
//! group (RFC 4648 §3.5). So `encode(&decode(s)?) == s` for every `s` that
//! decodes, and `decode(&encode(b)) == Ok(b)` for all bytes `b`.
//!
//! RFC 4954 §4 asks for this strictness: servers "MUST reject (and not
//! ignore) any character not explicitly allowed by the BASE64 alphabet, and
//! MUST reject any sequence of BASE64 characters that contains the pad
//! character ('=') anywhere other than the end of the string".

use std::fmt;

/// The RFC 4648 §4 alphabet, indexed by 6-bit value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The padding character (RFC 4648 §4).
const PAD: u8 = b'=';

/// Why a string is not canonical base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64Error {
    /// The length is not a multiple of four (RFC 4648 §4: padding is
    /// required, so every encoding is a whole number of 4-character groups).
    InvalidLength,
    /// A byte outside the alphabet and not `=`: whitespace, CR, LF, `-`,
    /// `_` (the URL-safe alphabet of RFC 4648 §5 is not accepted), non-ASCII.
    InvalidCharacter,
    /// A `=` anywhere but in the last one or two positions, or three or more
    /// of them (`=AAA`, `AA=A`, `A===`, `====`).
    MisplacedPadding,
    /// The bits after the last whole octet are not zero (RFC 4648 §3.5),
    /// e.g. `QR==` instead of `QQ==`: a second spelling of the same bytes.
    NonCanonical,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Base64Error::InvalidLength => "base64 length is not a multiple of 4",
            Base64Error::InvalidCharacter => "invalid character in base64",
            Base64Error::MisplacedPadding => "misplaced padding in base64",
            Base64Error::NonCanonical => "non-zero pad bits in base64",
        })
    }
}

impl std::error::Error for Base64Error {}

/// Encodes `input` as padded base64 with the standard alphabet, e.g.
/// `b"Username:"` to `VXNlcm5hbWU6`. The empty input encodes to `""`.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b0 = u32::from(chunk[0]);
        let b1 = chunk.get(1).copied().map_or(0, u32::from);
        let b2 = chunk.get(2).copied().map_or(0, u32::from);
        let group = b0 << 16 | b1 << 8 | b2;
        // RFC 4648 §4: one input octet gives two characters and "==", two
        // give three characters and "=".
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                let index = (group >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push(char::from(PAD));
            }
        }
    }
    out
}

/// Decodes canonical padded base64, e.g. `AGFsaWNlAHNlY3JldA==` to
/// `b"\0alice\0secret"`. The empty input decodes to no bytes.
///
/// # Errors
///
/// A [`Base64Error`] for anything but the canonical encoding of some bytes
/// (see the variants).
pub fn decode(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    if !input.len().is_multiple_of(4) {
        return Err(Base64Error::InvalidLength);
    }
    let groups = input.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (n, group) in input.chunks_exact(4).enumerate() {
        let pad = group.iter().rev().take_while(|&&b| b == PAD).count();
        if pad > 2 || (pad > 0 && n + 1 != groups) {
            return Err(Base64Error::MisplacedPadding);
        }
        let mut bits: u32 = 0;
        for &b in &group[..4 - pad] {
            let value = match value_of(b) {
                Some(v) => v,
                None if b == PAD => return Err(Base64Error::MisplacedPadding),
                None => return Err(Base64Error::InvalidCharacter),
            };
            bits = bits << 6 | u32::from(value);
        }
        bits <<= 6 * pad;
        // RFC 4648 §3.5: the unused bits of a padded group must be zero
        // for the encoding to be canonical.
        let unused_mask = match pad {
            0 => 0,
            1 => 0xff,
            _ => 0xffff,
        };
        if bits & unused_mask != 0 {
            return Err(Base64Error::NonCanonical);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Ok(out)
}

/// The 6-bit value of an alphabet character, `None` for anything else.
fn value_of(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 §10 test vectors.
    const RFC_VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors_encode() {
        for (plain, encoded) in RFC_VECTORS {
            assert_eq!(encode(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn rfc4648_vectors_decode() {
        for (plain, encoded) in RFC_VECTORS {
            assert_eq!(decode(encoded.as_bytes()).as_deref(), Ok(plain.as_bytes()));
        }
    }

    #[test]
    fn login_challenges_encode_as_deployed() {
        assert_eq!(encode(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(encode(b"Password:"), "UGFzc3dvcmQ6");
    }

    #[test]
    fn rfc4954_plain_example_decodes() {
        // RFC 4954 §4.1: "AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=".
        assert_eq!(
            decode(b"dGVzdAB0ZXN0ADEyMzQ=").as_deref(),
            Ok(&b"test\0test\x001234"[..])
        );
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            let bytes = &all[all.len() - len..];
            assert_eq!(decode(encode(bytes).as_bytes()).as_deref(), Ok(bytes));
        }
    }

    #[test]
    fn high_alphabet_characters_decode() {
        assert_eq!(decode(b"+/+/").as_deref(), Ok(&[0xfb, 0xff, 0xbf][..]));
    }

    #[test]
    fn length_not_multiple_of_four_is_rejected() {
        for input in [&b"Zg"[..], b"Zg=", b"Zm9vY", b"="] {
            assert_eq!(decode(input), Err(Base64Error::InvalidLength), "{input:?}");
        }
    }

    #[test]
    fn whitespace_and_line_breaks_are_rejected() {
        for input in [
            &b"Zm9v Zm9v"[..],
            b"Zm9v\r\nZm9v",
            b" Zm9vZm9v  ",
            b"Zm9\tv",
        ] {
            assert!(decode(input).is_err(), "{input:?}");
        }
        assert_eq!(decode(b"Zm\nv"), Err(Base64Error::InvalidCharacter));
    }

    #[test]
    fn characters_outside_the_alphabet_are_rejected() {
        for input in [&b"Zm9-"[..], b"Zm9_", b"Zm9*", b"Zm9\0", b"Zm9\xc3"] {
            assert_eq!(
                decode(input),
                Err(Base64Error::InvalidCharacter),
                "{input:?}"
            );
        }
    }

    #[test]
    fn padding_anywhere_but_the_end_is_rejected() {
        // RFC 4954 §4's own examples: "=AAA" and "AAA=BBB" (made a multiple
        // of four here, so only the padding rule can reject them).
        for input in [
            &b"=AAA"[..],
            b"AAA=BBBB",
            b"AA=A",
            b"A===",
            b"====",
            b"Zg==Zg==",
        ] {
            assert_eq!(
                decode(input),
                Err(Base64Error::MisplacedPadding),
                "{input:?}"
            );
        }
    }

    #[test]
    fn non_zero_pad_bits_are_rejected() {
        assert_eq!(decode(b"Zh=="), Err(Base64Error::NonCanonical));
        assert_eq!(decode(b"Zm9="), Err(Base64Error::NonCanonical));
        assert_eq!(decode(b"Zg==").as_deref(), Ok(&b"f"[..]));
        assert_eq!(decode(b"Zm8=").as_deref(), Ok(&b"fo"[..]));
    }

    #[test]
    fn lone_equals_sign_is_not_base64() {
        // The "=" of an empty initial response (RFC 4954 §4) is for the
        // SASL layer to recognise; as base64 it is malformed.
        assert!(decode(b"=").is_err());
    }
}
