//! The RFC 6533 §3 `utf-8` address type: how a UTF-8 address travels in
//! `ORCPT=utf-8;...` and in the `Original-Recipient` and `Final-Recipient`
//! fields of a DSN.
//!
//! ```text
//! utf-8-addr-xtext    = 1*(QCHAR / EmbeddedUnicodeChar)   ; 7-bit
//! utf-8-addr-unitext  = 1*(QUCHAR / EmbeddedUnicodeChar)  ; with UTF-8
//! QCHAR               = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e
//!                       ; printable ASCII but "+", "=" and "\"
//! QUCHAR              = QCHAR / UTF8-2 / UTF8-3 / UTF8-4
//! EmbeddedUnicodeChar = %x5C.78 "{" HEXPOINT "}"          ; \x{E9}
//! ```
//!
//! Neither form needs the xtext of RFC 3461 on top: both are valid xtext
//! already (no `+`, no `=`), which is why ORCPT carries them as they are.
//!
//! Guarantees: [`decode`] returns a non-empty string without control
//! characters (C0, DEL or C1); [`encode_xtext`] is printable ASCII;
//! `decode(&encode_xtext(s))` and `decode(&encode_unitext(s))` give back
//! every such `s`.

/// Why a value is not of the `utf-8` address type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8AddrError;

/// QCHAR: printable ASCII except SP, `+`, `=` and `\`.
fn is_qchar(c: char) -> bool {
    matches!(c, '!'..='~') && !matches!(c, '+' | '=' | '\\')
}

/// Decodes `utf-8-addr-xtext` or `utf-8-addr-unitext`: `\x{HEX}` becomes
/// the character it names, anything else must be a QCHAR or a non-ASCII
/// character. The HEXPOINT's forms (no leading zeros beyond two digits)
/// are not insisted on; what it names must be a Unicode scalar value that
/// is not a control character.
///
/// # Errors
///
/// [`Utf8AddrError`] when `value` is empty, not of the grammar, or names a
/// control character.
pub fn decode(value: &str) -> Result<String, Utf8AddrError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\\x{") {
            let end = after.find('}').ok_or(Utf8AddrError)?;
            let hex = &after[..end];
            let named = (1..=6)
                .contains(&hex.len())
                .then(|| u32::from_str_radix(hex, 16).ok())
                .flatten()
                .filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(char::from_u32)
                .ok_or(Utf8AddrError)?;
            if named.is_control() {
                return Err(Utf8AddrError);
            }
            out.push(named);
            rest = &after[end + 1..];
        } else if is_qchar(c) || (!c.is_ascii() && !c.is_control()) {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        } else {
            return Err(Utf8AddrError);
        }
    }
    if out.is_empty() {
        return Err(Utf8AddrError);
    }
    Ok(out)
}

/// `utf-8-addr-xtext`: 7-bit, for an ORCPT to a hop without SMTPUTF8 and
/// for a `message/delivery-status` (RFC 6533 §3).
pub fn encode_xtext(address: &str) -> String {
    encode(address, false)
}

/// `utf-8-addr-unitext`: non-ASCII characters as they are, for an ORCPT in
/// an SMTPUTF8 transaction and a `message/global-delivery-status`.
pub fn encode_unitext(address: &str) -> String {
    encode(address, true)
}

fn encode(address: &str, unitext: bool) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        if is_qchar(c) || (unitext && !c.is_ascii() && !c.is_control()) {
            out.push(c);
        } else {
            // Two hex digits at least, no more leading zeros: the
            // HEXPOINT forms of RFC 6533 §3.
            out.push_str(&format!("\\x{{{:02X}}}", u32::from(c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_unicode_chars_decode_and_qchars_stay() {
        let cases = [
            ("j\\x{F6}rg@example.org", "j\u{f6}rg@example.org"),
            ("j\u{f6}rg@example.org", "j\u{f6}rg@example.org"),
            ("a\\x{2B}b\\x{3D}c@x", "a+b=c@x"),
            ("\\x{5C}@x", "\\@x"),
            ("\\x{7528}\\x{6237}@x", "\u{7528}\u{6237}@x"),
            ("\\x{1F600}@x", "\u{1f600}@x"),
            ("\\x{e9}@x", "\u{e9}@x"),
            ("\"a\\x{20}b\"@x", "\"a b\"@x"),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "a+b@x",
            "a=b@x",
            "a b@x",
            "a\\b@x",
            "\\x{}@x",
            "\\x{E9@x",
            "\\x{1234567}@x",
            "\\x{D800}@x",
            "\\x{110000}@x",
            "\\x{0A}@x",
            "\\x{85}@x",
            "a\u{85}b@x",
            "a\tb@x",
            "\\x{+E9}@x",
        ] {
            assert_eq!(decode(bad), Err(Utf8AddrError), "{bad:?}");
        }
    }

    #[test]
    fn both_encodings_round_trip() {
        for s in [
            "bob@example.com",
            "j\u{f6}rg+tag@b\u{fc}cher.example",
            "\"a b=c\\\\d\"@x",
            "\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}",
            "\u{1f600}@x",
        ] {
            let xtext = encode_xtext(s);
            assert!(xtext.bytes().all(|b| (33..=126).contains(&b)), "{xtext}");
            assert!(!xtext.contains('+') && !xtext.contains('='), "{xtext}");
            assert_eq!(decode(&xtext).as_deref(), Ok(s), "{xtext}");
            let unitext = encode_unitext(s);
            assert_eq!(decode(&unitext).as_deref(), Ok(s), "{unitext}");
        }
        assert_eq!(encode_xtext("j\u{f6}rg+x@b"), "j\\x{F6}rg\\x{2B}x@b");
        assert_eq!(encode_unitext("j\u{f6}rg+x@b"), "j\u{f6}rg\\x{2B}x@b");
        assert_eq!(encode_xtext("\u{7528}"), "\\x{7528}");
        assert_eq!(encode_xtext("\u{100}"), "\\x{100}");
    }
}
