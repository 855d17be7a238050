//! The commands detad sends (RFC 3501 §6, RFC 4467 §7), what it reads
//! from a capability list, and the SASL PLAIN response (RFC 4616).

use std::fmt;

/// What a server offers, from a CAPABILITY response or response code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `STARTTLS` (RFC 3501 §6.2.1).
    pub starttls: bool,
    /// `AUTH=PLAIN` (RFC 4616).
    pub auth_plain: bool,
    /// `SASL-IR`: an initial response on the AUTHENTICATE line (RFC 4959).
    pub sasl_ir: bool,
    /// `LOGINDISABLED`: LOGIN must not be used (RFC 3501 §6.2.3).
    pub login_disabled: bool,
}

impl Capabilities {
    /// Reads a space-separated capability list (names in any case).
    pub fn parse(list: &[u8]) -> Capabilities {
        let mut caps = Capabilities::default();
        for name in list.split(|&b| b == b' ') {
            let flag = match name.to_ascii_uppercase().as_slice() {
                b"STARTTLS" => &mut caps.starttls,
                b"AUTH=PLAIN" => &mut caps.auth_plain,
                b"SASL-IR" => &mut caps.sasl_ir,
                b"LOGINDISABLED" => &mut caps.login_disabled,
                _ => continue,
            };
            *flag = true;
        }
        caps
    }
}

/// The commands detad sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `CAPABILITY` (RFC 3501 §6.1.1).
    Capability,
    /// `STARTTLS` (RFC 3501 §6.2.1).
    StartTls,
    /// `AUTHENTICATE PLAIN` (RFC 3501 §6.2.2), with the base64 initial
    /// response on the same line when the server has SASL-IR (RFC 4959).
    AuthenticatePlain {
        /// The base64 initial response, if sent on the command line.
        initial_response: Option<&'a str>,
    },
    /// `LOGIN user password` (RFC 3501 §6.2.3), as quoted strings.
    Login {
        /// The user name.
        user: &'a str,
        /// The password.
        password: &'a str,
    },
    /// `URLFETCH url` (RFC 4467 §7), one URL.
    UrlFetch {
        /// The URL, exactly as the client gave it.
        url: &'a str,
    },
    /// `LOGOUT` (RFC 3501 §6.1.3).
    Logout,
}

impl fmt::Debug for Command<'_> {
    /// Never shows a credential or the URL's token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Command<'_> {
    /// The command's name, for logs: it shows no argument.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::StartTls => "STARTTLS",
            Command::AuthenticatePlain { .. } => "AUTHENTICATE PLAIN",
            Command::Login { .. } => "LOGIN",
            Command::UrlFetch { .. } => "URLFETCH",
            Command::Logout => "LOGOUT",
        }
    }

    /// The command line with its tag and CRLF; `None` when an argument
    /// cannot be an RFC 3501 quoted string (CR, LF, NUL or 8-bit octets).
    pub fn encode(&self, tag: &str) -> Option<Vec<u8>> {
        let mut line = format!("{tag} {}", self.name());
        match self {
            Command::AuthenticatePlain {
                initial_response: Some(response),
            } => {
                line.push(' ');
                // RFC 4959 §3: an empty initial response is sent as "=".
                line.push_str(if response.is_empty() { "=" } else { response });
            }
            Command::Login { user, password } => {
                line.push(' ');
                line.push_str(&quoted(user)?);
                line.push(' ');
                line.push_str(&quoted(password)?);
            }
            Command::UrlFetch { url } => {
                line.push(' ');
                line.push_str(&quoted(url)?);
            }
            _ => {}
        }
        line.push_str("\r\n");
        Some(line.into_bytes())
    }
}

/// RFC 3501 §9 `quoted`: `"` and `\` escaped; `None` if `s` has an octet
/// a quoted string cannot carry.
fn quoted(s: &str) -> Option<String> {
    if s.bytes()
        .any(|b| matches!(b, 0 | b'\r' | b'\n') || !b.is_ascii())
    {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

/// The SASL PLAIN response (RFC 4616 §2) with an empty authorization
/// identity, base64-encoded (RFC 4648 §4) for AUTHENTICATE; `None` if the
/// user or password contains NUL.
pub fn plain_response(user: &str, password: &str) -> Option<String> {
    if user.contains('\0') || password.contains('\0') {
        return None;
    }
    let message = format!("\0{user}\0{password}");
    Some(base64(message.as_bytes()))
}

/// RFC 4648 §4 base64 with padding.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_in_any_case() {
        let caps = Capabilities::parse(b"IMAP4rev1 starttls Auth=Plain LOGINDISABLED URLAUTH");
        assert_eq!(
            caps,
            Capabilities {
                starttls: true,
                auth_plain: true,
                sasl_ir: false,
                login_disabled: true
            }
        );
        assert_eq!(Capabilities::parse(b""), Capabilities::default());
    }

    #[test]
    fn commands_encode_with_tag_and_crlf() {
        let url = "imap://h/INBOX/;uid=1;urlauth=submit+u:internal:00";
        let cases: [(Command<'_>, &str); 6] = [
            (Command::Capability, "b1 CAPABILITY\r\n"),
            (Command::StartTls, "b1 STARTTLS\r\n"),
            (
                Command::AuthenticatePlain {
                    initial_response: Some("AHU="),
                },
                "b1 AUTHENTICATE PLAIN AHU=\r\n",
            ),
            (
                Command::AuthenticatePlain {
                    initial_response: None,
                },
                "b1 AUTHENTICATE PLAIN\r\n",
            ),
            (
                Command::Login {
                    user: "sub\"mit",
                    password: "p\\w",
                },
                "b1 LOGIN \"sub\\\"mit\" \"p\\\\w\"\r\n",
            ),
            (
                Command::UrlFetch { url },
                &format!("b1 URLFETCH \"{url}\"\r\n"),
            ),
        ];
        for (command, line) in cases {
            assert_eq!(command.encode("b1").unwrap(), line.as_bytes());
        }
        assert_eq!(Command::Logout.encode("b2").unwrap(), b"b2 LOGOUT\r\n");
    }

    #[test]
    fn login_refuses_what_a_quoted_string_cannot_carry() {
        for password in ["a\r\nb", "a\0b", "pässword"] {
            let login = Command::Login {
                user: "submit",
                password,
            };
            assert_eq!(login.encode("b1"), None, "{password:?}");
        }
    }

    #[test]
    fn command_debug_shows_no_arguments() {
        let login = Command::Login {
            user: "submit",
            password: "secret",
        };
        assert_eq!(format!("{login:?}"), "LOGIN");
    }

    #[test]
    fn plain_response_is_rfc4616_base64() {
        // RFC 4616 §4: authcid "tim", password "tanstaaftanstaaf".
        assert_eq!(
            plain_response("tim", "tanstaaftanstaaf").unwrap(),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        assert_eq!(
            plain_response("submit", "s3crét").unwrap(),
            "AHN1Ym1pdABzM2Nyw6l0"
        );
        assert_eq!(plain_response("a\0b", "c"), None);
    }

    #[test]
    fn base64_pads_like_rfc4648_test_vectors() {
        // RFC 4648 §10.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
