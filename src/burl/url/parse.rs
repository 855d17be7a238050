//! The URL grammar: RFC 5092 §11 `authimapurlfull`, with RFC 4467 §9's
//! `;EXPIRE=` and `;URLAUTH=`, and RFC 3986 for the server part. Pure; it
//! checks and splits, never decodes.

use super::{Access, IMAP_PORT, ImapUrl, MAX_URL_LEN, UrlRefusal};

impl<'a> ImapUrl<'a> {
    /// Parses a URLAUTH-authorized IMAP URL:
    /// `imap://[user[;AUTH=type]@]host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n`
    /// `[/;SECTION=s][/;PARTIAL=o[.l]][;EXPIRE=t];URLAUTH=access:mech:token`.
    ///
    /// # Errors
    ///
    /// [`UrlRefusal::TooLong`], [`UrlRefusal::Malformed`],
    /// [`UrlRefusal::NotImap`] or [`UrlRefusal::NotUrlauth`].
    pub fn parse(text: &'a str) -> Result<ImapUrl<'a>, UrlRefusal> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlRefusal::TooLong);
        }
        if !is_uri_text(text) {
            return Err(UrlRefusal::Malformed("character not allowed in a URL"));
        }
        let not_absolute = UrlRefusal::Malformed("not an absolute URL");
        let (scheme, rest) = text.split_once(':').ok_or(not_absolute)?;
        if !is_scheme(scheme) {
            return Err(not_absolute);
        }
        if !scheme.eq_ignore_ascii_case("imap") {
            return Err(UrlRefusal::NotImap);
        }
        let rest = rest
            .strip_prefix("//")
            .ok_or(UrlRefusal::Malformed("no server part"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let server = parse_server(authority)?;
        // RFC 4467 §3: the URLAUTH "MUST be at the end of the URL".
        let (part, urlauth) = split_urlauth(path).ok_or(UrlRefusal::NotUrlauth)?;
        let part = parse_message_part(part)?;
        let (access, mechanism, token) = parse_urlauth(urlauth)?;
        Ok(ImapUrl {
            text,
            user: server.user,
            auth_type: server.auth_type,
            host: server.host,
            port: server.port,
            mailbox: part.mailbox,
            uidvalidity: part.uidvalidity,
            uid: part.uid.ok_or(UrlRefusal::Malformed("no ;UID="))?,
            section: part.section,
            partial: part.partial,
            expire: part.expire,
            access,
            mechanism,
            token,
        })
    }
}

struct Server<'a> {
    user: Option<&'a str>,
    auth_type: Option<&'a str>,
    host: &'a str,
    port: u16,
}

/// RFC 5092 `iserver = [iuserinfo "@"] host [":" port]`, with
/// `iuserinfo = enc-user [iauth] / [enc-user] iauth`.
fn parse_server(authority: &str) -> Result<Server<'_>, UrlRefusal> {
    let (userinfo, hostport) = match authority.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, auth_type) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(';') {
            Some((user, auth)) => {
                let auth = strip_prefix_ci(auth, "AUTH=")
                    .filter(|a| *a == "*" || is_enc(a, is_achar))
                    .ok_or(UrlRefusal::Malformed("bad ;AUTH= in the server part"))?;
                let user = Some(user).filter(|u| !u.is_empty());
                (user, Some(auth))
            }
            None => (Some(u), None),
        },
    };
    if user.is_some_and(|u| !is_enc(u, is_achar)) {
        return Err(UrlRefusal::Malformed("bad user name in the server part"));
    }
    let bad_host = UrlRefusal::Malformed("bad host");
    let (host, port) = if let Some(literal) = hostport.strip_prefix('[') {
        // RFC 3986 §3.2.2: IP-literal; IPvFuture is not accepted.
        let (host, after) = literal.split_once(']').ok_or(bad_host)?;
        let ok = host.contains(':')
            && host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return Err(bad_host);
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or(bad_host)?)),
        }
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        };
        // RFC 3986 §3.2.2: reg-name or IPv4address, both within these.
        if !is_enc(host, |b| is_unreserved(b) || is_sub_delim(b)) {
            return Err(bad_host);
        }
        (host, port)
    };
    let port = match port {
        // RFC 3986 §3.2.3: an empty port means the default.
        None | Some("") => IMAP_PORT,
        Some(p) => parse_number(p)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
            .ok_or(UrlRefusal::Malformed("bad port"))?,
    };
    Ok(Server {
        user,
        auth_type,
        host,
        port,
    })
}

/// Splits `path` at `;URLAUTH=` (any case) into the message part (with any
/// `;EXPIRE=`) and what follows the `=`.
fn split_urlauth(path: &str) -> Option<(&str, &str)> {
    const KEY: &[u8] = b";urlauth=";
    let at = path
        .as_bytes()
        .windows(KEY.len())
        .position(|w| w.eq_ignore_ascii_case(KEY))?;
    Some((&path[..at], &path[at + KEY.len()..]))
}

/// The parameters of the message part, in their grammar order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Param {
    Mailbox,
    UidValidity,
    Uid,
    Section,
    Partial,
    Expire,
}

impl Param {
    fn named(name: &str) -> Option<Param> {
        let params = [
            ("UIDVALIDITY", Param::UidValidity),
            ("UID", Param::Uid),
            ("SECTION", Param::Section),
            ("PARTIAL", Param::Partial),
            ("EXPIRE", Param::Expire),
        ];
        let found = params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|&(_, p)| p)
    }

    /// RFC 5092: `iuid = "/" iuid-only`, and so for section and partial:
    /// the `/` before them ends the previous value's text.
    fn has_slash_before(self) -> bool {
        matches!(self, Param::Uid | Param::Section | Param::Partial)
    }
}

#[derive(Default)]
struct MessagePart<'a> {
    mailbox: &'a str,
    uidvalidity: Option<u32>,
    uid: Option<u32>,
    section: Option<&'a str>,
    partial: Option<(u32, Option<u32>)>,
    expire: Option<&'a str>,
}

/// RFC 5092 `imessagepart [expire]`: `enc-mailbox [uidvalidity] iuid
/// [isection] [ipartial]`, then RFC 4467's `[";EXPIRE=" date-time]`.
/// `;` never occurs inside a value (`bchar` excludes it), so the text
/// splits on it.
fn parse_message_part(text: &str) -> Result<MessagePart<'_>, UrlRefusal> {
    let mut pieces = text.split(';');
    let mut current = (Param::Mailbox, pieces.next().unwrap_or_default());
    let mut part = MessagePart::default();
    loop {
        let next = match pieces.next() {
            None => None,
            Some(piece) => {
                let (name, value) = piece
                    .split_once('=')
                    .ok_or(UrlRefusal::Malformed("URL parameter without a value"))?;
                let param =
                    Param::named(name).ok_or(UrlRefusal::Malformed("unknown URL parameter"))?;
                if param <= current.0 {
                    return Err(UrlRefusal::Malformed("URL parameters out of order"));
                }
                Some((param, value))
            }
        };
        let (param, mut value) = current;
        if next.is_some_and(|(p, _)| p.has_slash_before()) {
            value = value.strip_suffix('/').ok_or(UrlRefusal::Malformed(
                "no '/' before ;UID, ;SECTION or ;PARTIAL",
            ))?;
        }
        part.set(param, value)?;
        match next {
            Some(n) => current = n,
            None => return Ok(part),
        }
    }
}

impl<'a> MessagePart<'a> {
    fn set(&mut self, param: Param, value: &'a str) -> Result<(), UrlRefusal> {
        match param {
            Param::Mailbox => {
                if !is_enc(value, is_bchar) {
                    return Err(UrlRefusal::Malformed("bad or empty mailbox name"));
                }
                self.mailbox = value;
            }
            Param::UidValidity => {
                let n = parse_nz_number(value);
                self.uidvalidity = Some(n.ok_or(UrlRefusal::Malformed("bad ;UIDVALIDITY="))?);
            }
            Param::Uid => {
                self.uid = Some(parse_nz_number(value).ok_or(UrlRefusal::Malformed("bad ;UID="))?);
            }
            Param::Section => {
                if !is_enc(value, is_bchar) {
                    return Err(UrlRefusal::Malformed("bad ;SECTION="));
                }
                self.section = Some(value);
            }
            Param::Partial => {
                // RFC 5092: partial-range = number ["." nz-number]
                let bad = UrlRefusal::Malformed("bad ;PARTIAL=");
                let (offset, length) = match value.split_once('.') {
                    Some((o, l)) => (o, Some(parse_nz_number(l).ok_or(bad)?)),
                    None => (value, None),
                };
                self.partial = Some((parse_number(offset).ok_or(bad)?, length));
            }
            Param::Expire => {
                if !is_date_time(value) {
                    return Err(UrlRefusal::Malformed("bad ;EXPIRE="));
                }
                self.expire = Some(value);
            }
        }
        Ok(())
    }
}

/// RFC 4467 §9: `access ":" mechanism ":" enc-urlauth`.
fn parse_urlauth(text: &str) -> Result<(Access<'_>, &str, &str), UrlRefusal> {
    let mut fields = text.splitn(3, ':');
    let access = fields.next().unwrap_or_default();
    let (Some(mechanism), Some(token)) = (fields.next(), fields.next()) else {
        // A rump URL: GENURLAUTH input, never fetchable.
        return Err(UrlRefusal::Malformed("URLAUTH without mechanism and token"));
    };
    fn user(u: &str) -> Result<&str, UrlRefusal> {
        match is_enc(u, is_achar) {
            true => Ok(u),
            false => Err(UrlRefusal::Malformed("bad URLAUTH access identifier")),
        }
    }
    let access = if let Some(u) = strip_prefix_ci(access, "submit+") {
        Access::Submit(user(u)?)
    } else if let Some(u) = strip_prefix_ci(access, "user+") {
        Access::User(user(u)?)
    } else if access.eq_ignore_ascii_case("authuser") {
        Access::AuthUser
    } else if access.eq_ignore_ascii_case("anonymous") {
        Access::Anonymous
    } else {
        Access::Other(user(access)?)
    };
    let mechanism_ok = !mechanism.is_empty()
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !mechanism_ok {
        return Err(UrlRefusal::Malformed("bad URLAUTH mechanism"));
    }
    // RFC 4467 §3: at least 128 bits, so at least 32 hex digits.
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UrlRefusal::Malformed("bad URLAUTH token"));
    }
    Ok((access, mechanism, token))
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Every octet is a URI character (RFC 3986 §2) and every `%` starts a
/// percent-encoding. No `"`, `\`, space, control or 8-bit octet gets
/// through, which keeps the IMAP quoted string trivial.
fn is_uri_text(s: &str) -> bool {
    is_enc(s, |b| {
        is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'/' | b'?' | b'@' | b'[' | b']')
    })
}

/// `s` is `allowed` octets and `%` HEXDIG HEXDIG, and not empty.
fn is_enc(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    !b.is_empty()
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2.
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// RFC 5092 `achar = uchar / "&" / "="`, `uchar = unreserved /
/// sub-delims-sh / pct-encoded` (no `;`), percent-encoding handled by the
/// caller.
fn is_achar(b: u8) -> bool {
    is_unreserved(b) || (is_sub_delim(b) && b != b';')
}

/// RFC 5092 `bchar = achar / ":" / "@" / "/"`.
fn is_bchar(b: u8) -> bool {
    is_achar(b) || matches!(b, b':' | b'@' | b'/')
}

/// RFC 3501 §9 `number`: an unsigned 32-bit decimal.
fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// RFC 3501 §9 `nz-number = digit-nz *DIGIT`.
fn parse_nz_number(s: &str) -> Option<u32> {
    parse_number(s).filter(|_| !s.starts_with('0'))
}

/// RFC 3339 §5.6 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`,
/// checked for shape only.
fn is_date_time(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let shape = |t: &str, pattern: &str| {
        t.len() == pattern.len()
            && t.bytes().zip(pattern.bytes()).all(|(b, p)| {
                if p == b'd' {
                    b.is_ascii_digit()
                } else {
                    b.eq_ignore_ascii_case(&p)
                }
            })
    };
    let Some((date_time, rest)) = s.split_at_checked(19) else {
        return false;
    };
    if !shape(date_time, "dddd-dd-ddTdd:dd:dd") {
        return false;
    }
    let zone = match rest.strip_prefix('.') {
        Some(frac) => {
            let end = frac
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(frac.len());
            if !digits(&frac[..end]) {
                return false;
            }
            &frac[end..]
        }
        None => rest,
    };
    zone.eq_ignore_ascii_case("z") || shape(zone, "+dd:dd") || shape(zone, "-dd:dd")
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4467 §7 (the URLFETCH example, unwrapped).
    const RFC4467: &str = "imap://joe@example.com/INBOX/;uid=20/;section=1.2\
        ;urlauth=submit+fred:internal:91354a473744909de610943775f92038";

    const TOKEN: &str = "91354a473744909de610943775f92038";

    #[track_caller]
    fn refused(url: &str, expected: UrlRefusal) {
        assert_eq!(ImapUrl::parse(url).err(), Some(expected), "{url}");
    }

    fn url_with(middle: &str) -> String {
        format!("imap://joe@example.com/{middle};urlauth=submit+fred:internal:{TOKEN}")
    }

    #[test]
    fn rfc4467_example_parses_into_its_parts() {
        let url = ImapUrl::parse(RFC4467).unwrap();
        assert_eq!(url.user, Some("joe"));
        assert_eq!(url.auth_type, None);
        assert_eq!((url.host, url.port), ("example.com", 143));
        assert_eq!(url.mailbox, "INBOX");
        assert_eq!((url.uidvalidity, url.uid), (None, 20));
        assert_eq!(url.section, Some("1.2"));
        assert_eq!(url.access, Access::Submit("fred"));
        assert_eq!((url.mechanism, url.token), ("internal", TOKEN));
        assert_eq!(url.as_str(), RFC4467);
        assert_eq!(
            url.rump(),
            "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"
        );
    }

    #[test]
    fn rump_url_and_bad_tokens_are_malformed() {
        refused(
            "imap://joe@example.com/INBOX/;uid=20;urlauth=submit+fred",
            UrlRefusal::Malformed("URLAUTH without mechanism and token"),
        );
        // RFC 4467 §3: at least 128 bits, 32 hex digits.
        refused(
            &RFC4467.replace(TOKEN, &TOKEN[1..]),
            UrlRefusal::Malformed("bad URLAUTH token"),
        );
        refused(
            &RFC4467.replace(TOKEN, &TOKEN.replace('a', "g")),
            UrlRefusal::Malformed("bad URLAUTH token"),
        );
        refused(
            &RFC4467.replace(":internal:", "::"),
            UrlRefusal::Malformed("bad URLAUTH mechanism"),
        );
        refused(
            &RFC4467.replace("submit+fred", "submit+"),
            UrlRefusal::Malformed("bad URLAUTH access identifier"),
        );
    }

    #[test]
    fn url_over_2000_octets_is_refused_and_2000_is_not() {
        let base = RFC4467.len();
        let exact = format!("{RFC4467}{}", "0".repeat(MAX_URL_LEN - base));
        assert_eq!(exact.len(), MAX_URL_LEN);
        assert!(ImapUrl::parse(&exact).is_ok());
        let long = format!("{exact}0");
        refused(&long, UrlRefusal::TooLong);
        assert_eq!(
            UrlRefusal::TooLong.reply().to_string(),
            "501 5.5.4 BURL URL too long"
        );
    }

    #[test]
    fn other_schemes_and_non_urls_are_refused() {
        refused("https://example.com/x", UrlRefusal::NotImap);
        refused("IMAP://joe@example.com/x", UrlRefusal::NotUrlauth);
        refused(
            "example.com/INBOX",
            UrlRefusal::Malformed("not an absolute URL"),
        );
        refused("1map://x", UrlRefusal::Malformed("not an absolute URL"));
        refused(
            "imap:/example.com/INBOX",
            UrlRefusal::Malformed("no server part"),
        );
        refused("", UrlRefusal::Malformed("character not allowed in a URL"));
    }

    #[test]
    fn characters_that_could_escape_an_imap_quoted_string_are_refused() {
        for bad in [
            "\"", "\\", " ", "\r", "\n", "\0", "é", "%zz", "%4", "<", "{",
        ] {
            let url = RFC4467.replace("INBOX", &format!("INBOX{bad}"));
            refused(
                &url,
                UrlRefusal::Malformed("character not allowed in a URL"),
            );
        }
    }

    #[test]
    fn message_part_parameters_are_checked() {
        let accepted = [
            "INBOX/;UID=20",
            "INBOX;UIDVALIDITY=1/;UID=4294967295",
            "a/b%20c/;uid=20/;section=1.2.MIME",
            "INBOX/;uid=20/;partial=0.1024",
            "INBOX/;uid=20/;section=2/;partial=10",
            "INBOX/;uid=20;expire=2026-05-01T12:00:00Z",
            "INBOX/;uid=20;expire=2026-05-01t12:00:00.25+02:00",
        ];
        for middle in accepted {
            assert!(ImapUrl::parse(&url_with(middle)).is_ok(), "{middle}");
        }
        let text = url_with("x/;uid=7/;section=TEXT/;partial=5.10");
        let url = ImapUrl::parse(&text).unwrap();
        assert_eq!(url.section, Some("TEXT"));
        assert_eq!(url.partial, Some((5, Some(10))));
        let refused_with = [
            ("INBOX;uid=20", "no '/' before ;UID, ;SECTION or ;PARTIAL"),
            ("INBOX/;uid=0", "bad ;UID="),
            ("INBOX/;uid=020", "bad ;UID="),
            ("INBOX/;uid=4294967296", "bad ;UID="),
            ("INBOX", "no ;UID="),
            ("/;uid=20", "bad or empty mailbox name"),
            ("INBOX/;uid=20/;partial=0.0", "bad ;PARTIAL="),
            ("INBOX/;uid=20;expire=tomorrow", "bad ;EXPIRE="),
            ("INBOX/;section=1/;uid=20", "URL parameters out of order"),
            ("INBOX/;uid=20/;uid=21", "URL parameters out of order"),
            ("INBOX/;uid", "URL parameter without a value"),
            ("INBOX/;uid=20?ALL", "bad ;UID="),
        ];
        for (middle, why) in refused_with {
            refused(&url_with(middle), UrlRefusal::Malformed(why));
        }
    }

    #[test]
    fn server_part_is_checked() {
        let url = RFC4467.replace("joe@", "joe;AUTH=*@");
        assert_eq!(ImapUrl::parse(&url).unwrap().auth_type, Some("*"));
        let url = RFC4467.replace("joe@", ";AUTH=PLAIN@");
        let parsed = ImapUrl::parse(&url).unwrap();
        assert_eq!((parsed.user, parsed.auth_type), (None, Some("PLAIN")));
        let url = RFC4467.replace("joe@", "");
        assert_eq!(ImapUrl::parse(&url).unwrap().user, None);
        let cases = [
            ("joe@", "joe;X=1@", "bad ;AUTH= in the server part"),
            ("joe@", "jo:e@", "bad user name in the server part"),
            ("example.com", "example.com:0", "bad port"),
            ("example.com", "example.com:65536", "bad port"),
            ("example.com", "example.com:1x", "bad port"),
            ("joe@example.com", "joe@", "bad host"),
            ("example.com", "[::1", "bad host"),
        ];
        for (from, to, why) in cases {
            refused(&RFC4467.replace(from, to), UrlRefusal::Malformed(why));
        }
    }
}
