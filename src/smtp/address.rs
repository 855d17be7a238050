//! Paths and mailboxes, RFC 5321 §4.1.2 syntax with the §4.5.3.1 size
//! limits, extended by RFC 6531 §3.3: `atext`, `qtextSMTP` and
//! `sub-domain` also take UTF8-non-ascii (a domain label with non-ASCII
//! characters is a U-label).
//!
//! Whether a non-ASCII address may be used (only with `SMTPUTF8` on MAIL,
//! RFC 6531 §3.5) is the session's question; this module only says what
//! is well formed.
//!
//! Guarantees: an address returned by [`parse_path`] is printable ASCII
//! and non-ASCII characters that are not control characters (C1 included:
//! RFC 6531 allows any UTF8-non-ascii, but nothing we deliver to or write
//! into a header should carry a control), with no spaces outside a quoted
//! local part, no angle brackets, and within the length limits, which are
//! in octets (RFC 6531 §3.3 keeps RFC 5321's). It is safe to write into a
//! spool line once xtext-encoded.
//!
//! Not checked: that a U-label is valid IDNA2008 (that needs the IDNA
//! tables, too big for this binary; the next hop or the resolver judges),
//! nor the length of its A-label; only ASCII labels are held to 63 octets.

/// RFC 5321 §4.5.3.1.1: at most 64 octets of local part.
pub const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2: at most 255 octets of domain.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3: at most 256 octets of path, brackets included.
pub const MAX_PATH: usize = 256;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Not of the form `<...>`, or bad characters.
    Syntax,
    /// Over one of the RFC 5321 §4.5.3.1 limits.
    TooLong,
}

/// A parsed path: the null path `<>` or a mailbox `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `<>`, the null reverse-path (RFC 5321 §4.5.5).
    Null,
    /// A mailbox, without brackets; `postmaster` alone is allowed as a
    /// forward-path (RFC 5321 §4.5.1).
    Mailbox(String),
}

/// Splits `<path> params` at the closing bracket: returns the path text
/// (brackets included) and the rest.
pub fn split_path(arg: &str) -> Result<(&str, &str), AddressError> {
    if !arg.starts_with('<') {
        return Err(AddressError::Syntax);
    }
    // A quoted local part may contain '>', so find the bracket outside quotes.
    let bytes = arg.as_bytes();
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b'>' && !quoted {
            return Ok((&arg[..=i], &arg[i + 1..]));
        }
    }
    Err(AddressError::Syntax)
}

/// Parses `<>` or `<[@route,...:]local@domain>`; a source route is accepted
/// and ignored (RFC 5321 §4.1.1.3, Appendix C).
pub fn parse_path(path: &str) -> Result<Path, AddressError> {
    if path.len() > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    let inner = path
        .strip_prefix('<')
        .and_then(|p| p.strip_suffix('>'))
        .ok_or(AddressError::Syntax)?;
    if inner.is_empty() {
        return Ok(Path::Null);
    }
    let mailbox = match inner.strip_prefix('@') {
        Some(_) => inner.split_once(':').ok_or(AddressError::Syntax)?.1,
        None => inner,
    };
    if mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok(Path::Mailbox("postmaster".into()));
    }
    let at = mailbox.rfind('@').ok_or(AddressError::Syntax)?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if local.len() > MAX_LOCAL_PART || domain.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    if !(is_dot_string(local) || is_quoted_string(local)) {
        return Err(AddressError::Syntax);
    }
    if !(is_domain(domain) || is_address_literal(domain)) {
        return Err(AddressError::Syntax);
    }
    Ok(Path::Mailbox(mailbox.to_string()))
}

/// RFC 6531 §3.3 UTF8-non-ascii, less the C1 controls (see the module
/// doc). A `char` is always a whole, valid UTF-8 sequence.
fn is_utf8_non_ascii(c: char) -> bool {
    !c.is_ascii() && !c.is_control()
}

/// RFC 5322 atext, and UTF8-non-ascii (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_utf8_non_ascii(c)
}

/// `Dot-string = Atom *("." Atom)`.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`; qtextSMTP takes
/// UTF8-non-ascii too (RFC 6531 §3.3), quoted-pairSMTP stays ASCII.
fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(' '..='~') => {}
                _ => return false,
            },
            '"' => return false,
            ' '..='~' => {}
            c if is_utf8_non_ascii(c) => {}
            _ => return false,
        }
    }
    true
}

/// `Domain = sub-domain *("." sub-domain)`, `sub-domain = Let-dig [Ldh-str]`
/// or a U-label (RFC 6531 §3.3): letters, digits and `-` inside, where a
/// U-label's letters may be any UTF8-non-ascii.
fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            let ldh = |c: char| c.is_ascii_alphanumeric() || c == '-' || is_utf8_non_ascii(c);
            !label.is_empty()
                // RFC 1035 §2.3.4 for ASCII labels; a U-label's limit is on
                // its A-label, which the next hop computes.
                && (label.len() <= 63 || !label.is_ascii())
                && label.chars().all(ldh)
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General ) "]"`, checked with
/// std's address parsers.
fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<core::net::Ipv6Addr>().is_ok()
        }
        _ => inner.parse::<core::net::Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(s: &str) -> Result<Path, AddressError> {
        parse_path(s)
    }

    #[test]
    fn null_reverse_path_is_accepted() {
        assert_eq!(mailbox("<>"), Ok(Path::Null));
    }

    #[test]
    fn paths_parse_per_rfc5321() {
        let cases: &[(&str, Result<Path, AddressError>)] = &[
            ("<a@b.example>", Ok(Path::Mailbox("a@b.example".into()))),
            (
                "<first.last+tag@x-y.example>",
                Ok(Path::Mailbox("first.last+tag@x-y.example".into())),
            ),
            (
                "<@relay.example:a@b.example>",
                Ok(Path::Mailbox("a@b.example".into())),
            ),
            (
                "<\"john doe\"@b.example>",
                Ok(Path::Mailbox("\"john doe\"@b.example".into())),
            ),
            ("<a@[192.0.2.1]>", Ok(Path::Mailbox("a@[192.0.2.1]".into()))),
            ("<a@[IPv6:::1]>", Ok(Path::Mailbox("a@[IPv6:::1]".into()))),
            ("<Postmaster>", Ok(Path::Mailbox("postmaster".into()))),
            ("a@b", Err(AddressError::Syntax)),
            ("<a@b", Err(AddressError::Syntax)),
            ("<a b@c>", Err(AddressError::Syntax)),
            ("<a..b@c>", Err(AddressError::Syntax)),
            ("<.a@c>", Err(AddressError::Syntax)),
            ("<a@-c.example>", Err(AddressError::Syntax)),
            ("<a@c..example>", Err(AddressError::Syntax)),
            ("<a>", Err(AddressError::Syntax)),
            ("<a@[300.1.1.1]>", Err(AddressError::Syntax)),
        ];
        for (input, want) in cases {
            assert_eq!(&mailbox(input), want, "input {input}");
        }
    }

    #[test]
    fn utf8_paths_parse_per_rfc6531_3_3() {
        let ok = |s: &str| Ok(Path::Mailbox(s.into()));
        let cases: &[(&str, Result<Path, AddressError>)] = &[
            (
                "<j\u{f6}s\u{e9}@example.org>",
                ok("j\u{f6}s\u{e9}@example.org"),
            ),
            (
                "<\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}>",
                ok("\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}"),
            ),
            ("<a@b\u{fc}cher.example>", ok("a@b\u{fc}cher.example")),
            ("<\"j\u{f6} s\"@x.example>", ok("\"j\u{f6} s\"@x.example")),
            ("<\u{1f600}.x@x.example>", ok("\u{1f600}.x@x.example")),
            // C1 controls (U+0080..U+009F) are refused like C0 ones.
            ("<a\u{85}b@x.example>", Err(AddressError::Syntax)),
            ("<\"a\u{9f}\"@x.example>", Err(AddressError::Syntax)),
            ("<a@b\u{80}.example>", Err(AddressError::Syntax)),
            // The ASCII rules still hold around non-ASCII text.
            ("<j\u{f6}..s@x.example>", Err(AddressError::Syntax)),
            ("<a@-b\u{fc}.example>", Err(AddressError::Syntax)),
            ("<a@[\u{e9}]>", Err(AddressError::Syntax)),
            ("<\"a\\\u{e9}\"@x.example>", Err(AddressError::Syntax)),
        ];
        for (input, want) in cases {
            assert_eq!(&mailbox(input), want, "input {input}");
        }
    }

    #[test]
    fn utf8_limits_are_in_octets() {
        // 32 two-octet characters: 64 octets, the limit.
        let local = "\u{e9}".repeat(32);
        assert!(mailbox(&format!("<{local}@b.example>")).is_ok());
        assert_eq!(
            mailbox(&format!("<{local}a@b.example>")),
            Err(AddressError::TooLong)
        );
        // A U-label is not held to 63 octets (its A-label may be shorter).
        let label = "\u{4f8b}".repeat(30);
        assert!(mailbox(&format!("<a@{label}.example>")).is_ok());
        assert_eq!(
            mailbox(&format!("<a@{}.example>", "b".repeat(64))),
            Err(AddressError::Syntax)
        );
    }

    #[test]
    fn limits_follow_rfc5321_4_5_3_1() {
        let local64 = "a".repeat(64);
        assert!(mailbox(&format!("<{local64}@b.example>")).is_ok());
        assert_eq!(
            mailbox(&format!("<a{local64}@b.example>")),
            Err(AddressError::TooLong)
        );
        let long = format!("<a@{}.example>", "b".repeat(250));
        assert_eq!(mailbox(&long), Err(AddressError::TooLong));
    }

    #[test]
    fn split_path_finds_bracket_outside_quotes() {
        assert_eq!(
            split_path("<\"a>b\"@c> SIZE=1"),
            Ok(("<\"a>b\"@c>", " SIZE=1"))
        );
        assert_eq!(split_path("<a@b>"), Ok(("<a@b>", "")));
        assert_eq!(split_path("a@b"), Err(AddressError::Syntax));
    }
}
