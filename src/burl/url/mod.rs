//! IMAP URLs with URLAUTH (RFC 5092 §11, RFC 4467 §9), as given to BURL
//! (RFC 4468), and the check that decides whether detad may fetch one.
//!
//! Guarantees:
//! - pure: no DNS, no sockets; [`check`] accepts only a URL naming exactly
//!   the configured IMAP host and port, so the submit credentials never go
//!   to a server the client chose (RFC 4468 §8);
//! - the URL is kept exactly as given: RFC 4467 §6 forbids percent-decoding
//!   or case-folding it before the IMAP server verifies the token, so
//!   [`ImapUrl::as_str`] is what goes into `URLFETCH`;
//! - an accepted URL has only URI characters (RFC 3986 §2), so it can be
//!   sent as an IMAP quoted string without escaping;
//! - every refusal is a [`UrlRefusal`] that knows its SMTP reply.
//!
//! The grammar ([`ImapUrl::parse`]) is in `parse`; this file has the types,
//! the refusals and [`check`].

use std::fmt;

use crate::smtp::reply::Reply;

mod parse;

/// The longest URL accepted. RFC 4468 sets none; a URLAUTH URL is a server,
/// a mailbox, a few numbers and a token, far below this.
pub const MAX_URL_LEN: usize = 2000;

/// RFC 5092 §3.1 (and RFC 3501 §2.1): the port when the URL names none.
pub const IMAP_PORT: u16 = 143;

/// A syntactically valid URLAUTH-authorized IMAP URL (RFC 5092
/// `authimapurlfull`). All parts borrow the URL and stay percent-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapUrl<'a> {
    text: &'a str,
    /// The mailbox owner (`enc-user` before `@`), if present.
    pub user: Option<&'a str>,
    /// The `;AUTH=` type in the server part, if present.
    pub auth_type: Option<&'a str>,
    /// The host as written, without the brackets of an IP literal.
    pub host: &'a str,
    /// The port, [`IMAP_PORT`] when absent.
    pub port: u16,
    /// The mailbox (`enc-mailbox`).
    pub mailbox: &'a str,
    /// `;UIDVALIDITY=`, if present.
    pub uidvalidity: Option<u32>,
    /// `/;UID=`.
    pub uid: u32,
    /// `/;SECTION=`, if present.
    pub section: Option<&'a str>,
    /// `/;PARTIAL=offset[.length]`, if present.
    pub partial: Option<(u32, Option<u32>)>,
    /// `;EXPIRE=` (an RFC 3339 date-time), if present. Enforced by the IMAP
    /// server, not here: this module reads no clock.
    pub expire: Option<&'a str>,
    /// Who may use the URL.
    pub access: Access<'a>,
    /// The authorization mechanism, e.g. `INTERNAL` (any case).
    pub mechanism: &'a str,
    /// The authorization token, at least 32 hex digits.
    pub token: &'a str,
}

/// The URLAUTH access identifier (RFC 4467 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// `submit+USER`: a submit server acting for USER (percent-encoded).
    Submit(&'a str),
    /// `user+USER`: only an IMAP session logged in as USER.
    User(&'a str),
    /// `authuser`: any logged-in IMAP user.
    AuthUser,
    /// `anonymous`: anyone.
    Anonymous,
    /// Any other identifier, such as the `application+USER` forms of
    /// RFC 5524.
    Other(&'a str),
}

/// Why a BURL URL is refused before any IMAP server is contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlRefusal {
    /// Longer than [`MAX_URL_LEN`].
    TooLong,
    /// Not a valid URLAUTH IMAP URL; says what is wrong.
    Malformed(&'static str),
    /// A valid absolute URL of another scheme than `imap`.
    NotImap,
    /// An IMAP URL without `;URLAUTH=`: it could only be fetched with the
    /// client's own IMAP identity, a trust relationship detad does not have
    /// (RFC 4468 §3.3).
    NotUrlauth,
    /// The URL names another host or port than the configured IMAP server.
    UntrustedServer,
    /// The access identifier is not `submit+USER`.
    NotSubmitAccess,
    /// `submit+USER` for a USER other than the client's authorization
    /// identity (RFC 4468 §3.3).
    OtherUser,
}

impl UrlRefusal {
    /// The SMTP reply code.
    pub fn code(&self) -> u16 {
        match self {
            // RFC 5321 §4.2.3: a syntax error in parameters. Dovecot's
            // submission server answers an invalid URL the same way.
            UrlRefusal::TooLong | UrlRefusal::Malformed(_) => 501,
            _ => 554,
        }
    }

    /// The RFC 3463 enhanced status code.
    pub fn status(&self) -> &'static str {
        match self {
            UrlRefusal::TooLong | UrlRefusal::Malformed(_) => "5.5.4",
            // RFC 4468 §5: X.6.6 message content not available.
            UrlRefusal::NotImap => "5.6.6",
            // RFC 4468 §6 "554 5.7.8 URL resolution requires trust
            // relationship", renumbered X.7.14 by RFC 5248 §2.4.
            UrlRefusal::NotUrlauth | UrlRefusal::UntrustedServer => "5.7.14",
            // RFC 4468 §3.4: "554 5.7.0 IMAP URL authorization failed".
            UrlRefusal::NotSubmitAccess | UrlRefusal::OtherUser => "5.7.0",
        }
    }

    /// The reply text.
    pub fn text(&self) -> &'static str {
        match self {
            UrlRefusal::TooLong => "BURL URL too long",
            UrlRefusal::Malformed(_) => "invalid IMAP URL",
            UrlRefusal::NotImap => "only imap URLs can be resolved",
            UrlRefusal::NotUrlauth => {
                "URL resolution requires trust relationship: URLAUTH URL needed"
            }
            UrlRefusal::UntrustedServer => {
                "URL resolution requires trust relationship: not our IMAP server"
            }
            UrlRefusal::NotSubmitAccess => {
                "IMAP URL authorization failed: access must be submit+ your user"
            }
            UrlRefusal::OtherUser => "IMAP URL authorization failed: not your user",
        }
    }

    /// The whole SMTP reply.
    pub fn reply(&self) -> Reply {
        match self {
            UrlRefusal::Malformed(why) => Reply::new(
                self.code(),
                self.status(),
                format!("{}: {why}", self.text()),
            ),
            _ => Reply::new(self.code(), self.status(), self.text()),
        }
    }
}

impl fmt::Display for UrlRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlRefusal::Malformed(why) => write!(f, "invalid IMAP URL: {why}"),
            _ => f.write_str(self.text()),
        }
    }
}

impl std::error::Error for UrlRefusal {}

/// A URL that passed [`check`]: the configured server, `submit+` the
/// client's own identity. Only [`check`] makes one, so the fetch driver
/// cannot be handed a URL that skipped the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizedUrl<'a>(ImapUrl<'a>);

impl<'a> AuthorizedUrl<'a> {
    /// The parsed URL.
    pub fn url(&self) -> &ImapUrl<'a> {
        &self.0
    }

    /// The URL exactly as the client gave it.
    pub fn as_str(&self) -> &'a str {
        self.0.text
    }
}

/// Checks a BURL URL against the configured IMAP server (`burl_imap`) and
/// the client's SMTP authorization identity.
///
/// Host names compare case-insensitively and literally: no DNS, and an IP
/// literal matches only the same IP literal. `host` may be given with or
/// without the brackets of an IPv6 literal.
///
/// # Errors
///
/// The [`UrlRefusal`] to answer, in this order: length, syntax, scheme,
/// URLAUTH present, server, access identifier.
pub fn check<'a>(
    url: &'a str,
    host: &str,
    port: u16,
    authorization_identity: &str,
) -> Result<AuthorizedUrl<'a>, UrlRefusal> {
    let parsed = ImapUrl::parse(url)?;
    let host = strip_brackets(host);
    // RFC 4468 §8: "A submit server that only uses submit credentials with
    // a fixed set of trusted IMAP servers will not be vulnerable".
    if !parsed.host.eq_ignore_ascii_case(host) || parsed.port != port {
        return Err(UrlRefusal::UntrustedServer);
    }
    match parsed.access {
        // RFC 4468 §3.3: "the submit server MUST refuse the BURL command
        // unless the userid in the URL's <access> token matches the submit
        // client's authorization identity". RFC 4467 §3: the IMAP server
        // does not check it.
        Access::Submit(user) if decoded_eq(user, authorization_identity) => {
            Ok(AuthorizedUrl(parsed))
        }
        Access::Submit(_) => Err(UrlRefusal::OtherUser),
        _ => Err(UrlRefusal::NotSubmitAccess),
    }
}

impl<'a> ImapUrl<'a> {
    /// The URL exactly as given.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The rump URL (RFC 4467 §6): the URL without `:mechanism:token`, the
    /// text the token was computed over.
    pub fn rump(&self) -> &'a str {
        let cut = self.mechanism.len() + self.token.len() + 2;
        &self.text[..self.text.len() - cut]
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether percent-decoding `encoded` gives exactly the octets of `plain`.
/// `encoded` has been validated, so every `%` has two hex digits.
fn decoded_eq(encoded: &str, plain: &str) -> bool {
    let hex = |b: u8| char::from(b).to_digit(16).unwrap_or(0) as u8;
    let enc = encoded.as_bytes();
    let mut plain = plain.bytes();
    let mut i = 0;
    while i < enc.len() {
        let b = if enc[i] == b'%' {
            i += 3;
            hex(enc[i - 2]) << 4 | hex(enc[i - 1])
        } else {
            i += 1;
            enc[i - 1]
        };
        if plain.next() != Some(b) {
            return false;
        }
    }
    plain.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4467 §7 (the URLFETCH example, unwrapped).
    const RFC4467: &str = "imap://joe@example.com/INBOX/;uid=20/;section=1.2\
        ;urlauth=submit+fred:internal:91354a473744909de610943775f92038";

    /// RFC 4468 §3.4 (the BURL example, unwrapped).
    const RFC4468: &str = "imap://harry@gryffindor.example.com/outbox\
        ;uidvalidity=1078863300/;uid=25;urlauth=submit+harry\
        :internal:91354a473744909de610943775f92038";

    /// draft-burger-smtp-deta-00 §4.2, unwrapped. Illustrative only: the
    /// uidvalidity is not a number and `;authid=` is no URL parameter.
    const DETA_DRAFT: &str = "imap://handset@host.example.com/outbox\
        ;uidvalidity=a9j230r932/;uid=32;authid=fred;urlauth=submit+handset\
        :internal:91354a473744909de610943775f92038";

    #[track_caller]
    fn refused(url: &str, expected: UrlRefusal) {
        assert_eq!(
            check(url, "example.com", 143, "fred"),
            Err(expected),
            "{url}"
        );
    }

    #[test]
    fn rfc4467_example_is_accepted_for_fred_on_example_com() {
        let url = check(RFC4467, "example.com", 143, "fred").unwrap();
        assert_eq!(url.as_str(), RFC4467);
        assert_eq!(url.url().uid, 20);
    }

    #[test]
    fn rfc4468_example_is_accepted_for_harry() {
        let url = check(RFC4468, "gryffindor.example.com", 143, "harry").unwrap();
        assert_eq!(url.url().mailbox, "outbox");
        assert_eq!(url.url().uidvalidity, Some(1078863300));
        assert_eq!(url.url().uid, 25);
        assert_eq!(url.url().section, None);
    }

    #[test]
    fn deta_draft_example_is_refused_as_not_rfc5092() {
        let refusal = check(DETA_DRAFT, "host.example.com", 143, "handset").unwrap_err();
        assert_eq!(refusal, UrlRefusal::Malformed("bad ;UIDVALIDITY="));
        assert_eq!(
            refusal.reply().to_string(),
            "501 5.5.4 invalid IMAP URL: bad ;UIDVALIDITY="
        );
        // With a numeric uidvalidity, `;authid=` is still unknown.
        let numeric = DETA_DRAFT.replace("a9j230r932", "1078863300");
        let refusal = check(&numeric, "host.example.com", 143, "handset").unwrap_err();
        assert_eq!(refusal, UrlRefusal::Malformed("unknown URL parameter"));
        // Corrected as RFC 4468 §3.4 writes it, it is accepted.
        let fixed = numeric.replace(";authid=fred", "");
        assert!(check(&fixed, "host.example.com", 143, "handset").is_ok());
    }

    #[test]
    fn host_compares_without_case_and_port_defaults_to_143() {
        assert!(check(RFC4467, "EXAMPLE.COM", 143, "fred").is_ok());
        let explicit = RFC4467.replace("example.com/", "Example.Com:143/");
        assert!(check(&explicit, "example.com", 143, "fred").is_ok());
        // RFC 3986 §3.2.3: an empty port is the default one.
        let empty = RFC4467.replace("example.com/", "example.com:/");
        assert!(check(&empty, "example.com", 143, "fred").is_ok());
    }

    #[test]
    fn another_host_or_port_is_untrusted() {
        refused(
            &RFC4467.replace("example.com", "evil.example"),
            UrlRefusal::UntrustedServer,
        );
        refused(
            &RFC4467.replace("example.com", "example.com.evil.example"),
            UrlRefusal::UntrustedServer,
        );
        refused(
            &RFC4467.replace("example.com/", "example.com:993/"),
            UrlRefusal::UntrustedServer,
        );
        refused(
            &RFC4467.replace("example.com", "127.0.0.1"),
            UrlRefusal::UntrustedServer,
        );
        // Percent-encoding is not decoded: never the configured host.
        refused(
            &RFC4467.replace("example.com", "example%2Ecom"),
            UrlRefusal::UntrustedServer,
        );
        assert_eq!(
            check(RFC4467, "example.com", 1143, "fred"),
            Err(UrlRefusal::UntrustedServer)
        );
    }

    #[test]
    fn ip_literal_matches_with_or_without_brackets() {
        let url = RFC4467.replace("example.com", "[2001:db8::1]");
        assert_eq!(ImapUrl::parse(&url).unwrap().host, "2001:db8::1");
        assert!(check(&url, "[2001:db8::1]", 143, "fred").is_ok());
        assert!(check(&url, "2001:DB8::1", 143, "fred").is_ok());
        let with_port = RFC4467.replace("example.com", "[::1]:1143");
        assert!(check(&with_port, "::1", 1143, "fred").is_ok());
        refused(
            &RFC4467.replace("example.com", "[v1.x]"),
            UrlRefusal::Malformed("bad host"),
        );
    }

    #[test]
    fn submit_access_must_name_the_authorization_identity() {
        refused(
            &RFC4467.replace("submit+fred", "submit+joe"),
            UrlRefusal::OtherUser,
        );
        // User names compare exactly.
        refused(
            &RFC4467.replace("submit+fred", "submit+Fred"),
            UrlRefusal::OtherUser,
        );
        refused(
            &RFC4467.replace("submit+fred", "submit+fredd"),
            UrlRefusal::OtherUser,
        );
        assert!(
            check(
                &RFC4467.replace("submit+", "SUBMIT+"),
                "example.com",
                143,
                "fred"
            )
            .is_ok()
        );
    }

    #[test]
    fn submit_user_is_compared_percent_decoded() {
        let url = RFC4467.replace("submit+fred", "submit+fred%40example.org");
        assert!(check(&url, "example.com", 143, "fred@example.org").is_ok());
        assert_eq!(
            check(&url, "example.com", 143, "fred%40example.org"),
            Err(UrlRefusal::OtherUser)
        );
        // The URL itself stays encoded.
        assert_eq!(
            ImapUrl::parse(&url).unwrap().access,
            Access::Submit("fred%40example.org")
        );
    }

    #[test]
    fn other_access_identifiers_are_not_submit_access() {
        let cases = [
            ("user+fred", Access::User("fred")),
            ("authuser", Access::AuthUser),
            ("anonymous", Access::Anonymous),
            ("Anonymous", Access::Anonymous),
            ("stream+fred", Access::Other("stream+fred")),
        ];
        for (access, parsed) in cases {
            let url = RFC4467.replace("submit+fred", access);
            assert_eq!(ImapUrl::parse(&url).unwrap().access, parsed, "{access}");
            refused(&url, UrlRefusal::NotSubmitAccess);
        }
    }

    #[test]
    fn url_without_urlauth_needs_a_trust_relationship() {
        refused(
            "imap://joe@example.com/INBOX/;uid=20/;section=1.2",
            UrlRefusal::NotUrlauth,
        );
        refused("imap://example.com/INBOX", UrlRefusal::NotUrlauth);
        refused("imap://example.com", UrlRefusal::NotUrlauth);
        let reply = UrlRefusal::NotUrlauth.reply();
        assert_eq!(
            (reply.code, reply.status.map(|s| s.to_string()).as_deref()),
            (554, Some("5.7.14"))
        );
    }

    #[test]
    fn each_refusal_has_its_rfc4468_reply() {
        let table = [
            (UrlRefusal::TooLong, "501 5.5.4"),
            (UrlRefusal::Malformed("x"), "501 5.5.4"),
            (UrlRefusal::NotImap, "554 5.6.6"),
            (UrlRefusal::NotUrlauth, "554 5.7.14"),
            (UrlRefusal::UntrustedServer, "554 5.7.14"),
            (UrlRefusal::NotSubmitAccess, "554 5.7.0"),
            (UrlRefusal::OtherUser, "554 5.7.0"),
        ];
        for (refusal, expected) in table {
            let reply = refusal.reply();
            assert_eq!(
                format!("{} {}", reply.code, reply.status.unwrap()),
                expected
            );
            assert!(reply.to_string().contains(refusal.text()));
        }
    }
}
