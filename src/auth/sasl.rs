//! The server side of SASL PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login) inside SMTP AUTH (RFC 4954 §4), sans-IO.
//!
//! ```text
//! C: AUTH PLAIN AGFsaWNlAHNlY3JldA==   Exchange::start("PLAIN", Some(..))  Done
//! C: AUTH PLAIN                        Exchange::start("PLAIN", None)      Challenge("")
//! S: 334
//! C: AGFsaWNlAHNlY3JldA==              exchange.feed(..)                   Done
//! C: AUTH LOGIN                        Exchange::start("LOGIN", None)      Challenge("VXNlcm5hbWU6")
//! S: 334 VXNlcm5hbWU6
//! C: YWxpY2U=                          exchange.feed(..)                   Challenge("UGFzc3dvcmQ6")
//! S: 334 UGFzc3dvcmQ6
//! C: *                                 exchange.feed(..)                   Fail(501 5.0.0)
//! ```
//!
//! Guarantees:
//! - An exchange ends (with [`Step::Done`] or [`Step::Fail`]) after at
//!   most two client lines; it keeps nothing but the LOGIN user name
//!   between lines, and looks at no line longer than [`MAX_RESPONSE_LEN`].
//! - In [`Credentials`], `authcid` (and `authzid`, if any) is non-empty
//!   UTF-8 and the password is non-empty; none contains NUL.
//! - Nothing here checks a password (that is [`super::passwd`]'s job) or
//!   logs; `Debug` never shows a password.
//!
//! Decisions:
//! - **PLAIN authzid.** detad has no proxy users, so an authorization
//!   identity other than the authentication identity fails with 535 5.7.8,
//!   the reply a wrong password gets (RFC 4616 §2: the server verifies
//!   that the credentials "permit the client to act as the (presented or
//!   derived) authorization identity"). An authzid equal to the authcid is
//!   accepted. The check comes before the password's and tells the client
//!   nothing it did not send; the session counts the 535 as a failed login.
//! - **LOGIN initial response.** The draft has the server speak first, but
//!   some clients send `AUTH LOGIN <user>`; like Dovecot's LOGIN, this
//!   module takes it as the user name and asks for the password.
//! - **Passwords are octets.** RFC 4616 §2 says UTF-8, but the password is
//!   only hashed, and a client that sends Latin-1 still matches a hash made
//!   from the same octets. Identities must be UTF-8: they are compared with
//!   the passwd-file names. SASLprep (RFC 4954 §4 SHOULD) is not applied;
//!   identities compare exactly.

use std::fmt;

use super::base64;

/// RFC 4954 §4: "12288 octets is considered to be a sufficient line length
/// limit" for an exchange line; the limit applies to the base64 text
/// without its CRLF (Postfix's `smtpd_sasl_response_limit` counts the same
/// way). It holds PLAIN messages of up to 9216 octets.
pub const MAX_RESPONSE_LEN: usize = 12288;

/// The parameters of the EHLO `AUTH` keyword (RFC 4954 §3).
pub const MECHANISMS: &str = "PLAIN LOGIN";

/// LOGIN's first challenge, base64 of `Username:`: the text every deployed
/// client expects (the draft's "User Name" is only a SHOULD).
const USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";

/// LOGIN's second challenge, base64 of `Password:`.
const PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// A supported SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: one message, `[authzid] NUL authcid NUL passwd`.
    Plain,
    /// draft-murchison-sasl-login: the user name, then the password.
    Login,
}

impl Mechanism {
    /// The mechanism of that name, ignoring ASCII case (RFC 4954 §7: the
    /// syntax's alphabetic characters are case-insensitive).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The registered name, upper case.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Why an exchange failed: the reply the session should send. Kept local
/// (not [`crate::smtp::reply::Reply`]) so this module stands alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The reply code.
    pub code: u16,
    /// The enhanced status code (RFC 3463).
    pub status: &'static str,
    /// The reply text.
    pub text: &'static str,
}

impl Failure {
    /// RFC 4954 §4: the client answered a challenge with `*`; "the server
    /// MUST reject the AUTH command by sending a 501 reply".
    pub const CANCELLED: Failure = Failure::new(501, "5.0.0", "authentication cancelled");
    /// RFC 4954 §4: a response that is not base64 gets "a 501 reply (and
    /// an enhanced status code of 5.5.2)".
    pub const INVALID_BASE64: Failure = Failure::new(501, "5.5.2", "invalid base64 data");
    /// A response that decodes but is not what the mechanism expects (a
    /// PLAIN message without its two NULs, an empty or non-UTF-8 user
    /// name, an empty password).
    pub const MALFORMED_RESPONSE: Failure =
        Failure::new(501, "5.5.2", "malformed authentication data");
    /// RFC 4954 §4: a mechanism the server does not support gets "a 504
    /// reply" with "a 5.5.4 enhanced response code".
    pub const UNKNOWN_MECHANISM: Failure =
        Failure::new(504, "5.5.4", "unrecognized authentication type");
    /// RFC 4954 §4: a line longer than the authentication buffer gets "the
    /// 500 reply" with "an enhanced status code of 5.5.6".
    pub const LINE_TOO_LONG: Failure =
        Failure::new(500, "5.5.6", "authentication exchange line is too long");
    /// RFC 4954 §6, 535 5.7.8: a PLAIN authzid other than the authcid.
    /// The session sends the same reply for a wrong password; every 535
    /// counts as a failed login.
    pub const CREDENTIALS_INVALID: Failure =
        Failure::new(535, "5.7.8", "authentication credentials invalid");
    /// [`Exchange::feed`] after the exchange ended: a session bug.
    pub const NOT_IN_PROGRESS: Failure =
        Failure::new(503, "5.5.1", "no authentication exchange in progress");

    const fn new(code: u16, status: &'static str, text: &'static str) -> Failure {
        Failure { code, status, text }
    }
}

/// What the client presented; not yet checked against any password file.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authorization identity, if the client sent a non-empty one
    /// (PLAIN only); when present it equals `authcid`.
    pub authzid: Option<String>,
    /// The authentication identity: the user name.
    pub authcid: String,
    /// The password, as the client's octets.
    pub password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What happens after a start or a client line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `334 ` and this base64 text (possibly empty), then feed the
    /// client's next line.
    Challenge(String),
    /// The exchange is complete: verify these credentials.
    Done(Credentials),
    /// The exchange failed: send this reply.
    Fail(Failure),
}

/// One AUTH exchange in progress.
#[derive(Clone, PartialEq, Eq)]
pub struct Exchange {
    state: State,
}

#[derive(Clone, PartialEq, Eq)]
enum State {
    /// PLAIN, waiting for the message.
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password of this user.
    LoginPassword { authcid: String },
    /// Done or failed; nothing more to feed.
    Finished,
}

impl fmt::Debug for Exchange {
    // The user name is AUTH data (style: never logged).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Plain => "Plain",
            State::LoginUser => "LoginUser",
            State::LoginPassword { .. } => "LoginPassword",
            State::Finished => "Finished",
        };
        f.debug_struct("Exchange").field("state", &state).finish()
    }
}

impl Exchange {
    /// Starts an exchange for `AUTH mechanism [initial_response]`.
    /// `initial_response` is the argument as sent: base64, or `=` for an
    /// empty response (RFC 4954 §4). Keep the exchange only while the step
    /// is a [`Step::Challenge`].
    ///
    /// ```
    /// use detad::auth::sasl::{Exchange, Step};
    ///
    /// let (mut exchange, step) = Exchange::start("login", None);
    /// assert_eq!(step, Step::Challenge("VXNlcm5hbWU6".to_string()));
    /// assert_eq!(exchange.feed(b"YWxpY2U=\r\n"), Step::Challenge("UGFzc3dvcmQ6".to_string()));
    /// match exchange.feed(b"c2VjcmV0\r\n") {
    ///     Step::Done(credentials) => {
    ///         assert_eq!(credentials.authcid, "alice");
    ///         assert_eq!(credentials.password, b"secret");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn start(mechanism: &str, initial_response: Option<&[u8]>) -> (Exchange, Step) {
        let mut exchange = Exchange {
            state: State::Finished,
        };
        let Some(mechanism) = Mechanism::from_name(mechanism) else {
            return (exchange, Step::Fail(Failure::UNKNOWN_MECHANISM));
        };
        exchange.state = match mechanism {
            Mechanism::Plain => State::Plain,
            Mechanism::Login => State::LoginUser,
        };
        let step = match initial_response {
            // RFC 4954 §4: "=" is a response that "is present, but contains
            // no data".
            Some(b"=") => exchange.respond(Vec::new()),
            Some(text) => exchange.respond_encoded(text),
            // RFC 4954 §4: a mechanism that needs an initial response
            // starts with "a server challenge that contains no data"
            // (PLAIN: "334 "); LOGIN asks for the user name.
            None => Step::Challenge(match mechanism {
                Mechanism::Plain => String::new(),
                Mechanism::Login => USERNAME_CHALLENGE.to_string(),
            }),
        };
        (exchange, step)
    }

    /// Feeds the client's answer to the last challenge: one line, with or
    /// without its CRLF.
    pub fn feed(&mut self, line: &[u8]) -> Step {
        if self.is_finished() {
            return Step::Fail(Failure::NOT_IN_PROGRESS);
        }
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        if text == b"*" {
            self.state = State::Finished;
            return Step::Fail(Failure::CANCELLED);
        }
        self.respond_encoded(text)
    }

    /// Whether the exchange has ended (done or failed).
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Checks the length and decodes a response, then hands it on.
    fn respond_encoded(&mut self, text: &[u8]) -> Step {
        let decoded = if text.len() > MAX_RESPONSE_LEN {
            Err(Failure::LINE_TOO_LONG)
        } else {
            base64::decode(text).map_err(|_| Failure::INVALID_BASE64)
        };
        match decoded {
            Ok(response) => self.respond(response),
            Err(failure) => {
                self.state = State::Finished;
                Step::Fail(failure)
            }
        }
    }

    /// Takes one decoded response in the current state.
    fn respond(&mut self, response: Vec<u8>) -> Step {
        let outcome = match std::mem::replace(&mut self.state, State::Finished) {
            State::Plain => parse_plain(&response),
            State::LoginUser => match identity(&response) {
                Ok(authcid) => {
                    self.state = State::LoginPassword { authcid };
                    return Step::Challenge(PASSWORD_CHALLENGE.to_string());
                }
                Err(failure) => Err(failure),
            },
            State::LoginPassword { authcid } => password(response).map(|password| Credentials {
                authzid: None,
                authcid,
                password,
            }),
            State::Finished => Err(Failure::NOT_IN_PROGRESS),
        };
        match outcome {
            Ok(credentials) => Step::Done(credentials),
            Err(failure) => Step::Fail(failure),
        }
    }
}

/// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`,
/// each part `1*SAFE` (no NUL).
fn parse_plain(message: &[u8]) -> Result<Credentials, Failure> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::MALFORMED_RESPONSE);
    };
    let authcid = identity(authcid)?;
    let authzid = match authzid {
        [] => None,
        bytes => Some(identity(bytes)?),
    };
    // RFC 4616 §2: the server fails the exchange when the client may not
    // act as the authzid; here only as itself (see the module doc).
    if authzid.as_ref().is_some_and(|authzid| *authzid != authcid) {
        return Err(Failure::CREDENTIALS_INVALID);
    }
    Ok(Credentials {
        authzid,
        authcid,
        password: password(passwd.to_vec())?,
    })
}

/// A user name: non-empty UTF-8 without NUL.
fn identity(bytes: &[u8]) -> Result<String, Failure> {
    match std::str::from_utf8(bytes) {
        Ok(name) if !name.is_empty() && !name.contains('\0') => Ok(name.to_string()),
        _ => Err(Failure::MALFORMED_RESPONSE),
    }
}

/// A password: non-empty octets without NUL (RFC 4616 §2 `1*SAFE`; a NUL
/// would also end the password early in C `crypt(3)` implementations).
fn password(bytes: Vec<u8>) -> Result<Vec<u8>, Failure> {
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(Failure::MALFORMED_RESPONSE);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn done(step: Step) -> Credentials {
        match step {
            Step::Done(credentials) => credentials,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    #[track_caller]
    fn challenge(step: Step) -> String {
        match step {
            Step::Challenge(text) => text,
            other => panic!("expected Challenge, got {other:?}"),
        }
    }

    fn credentials(authzid: Option<&str>, authcid: &str, password: &[u8]) -> Credentials {
        Credentials {
            authzid: authzid.map(str::to_string),
            authcid: authcid.to_string(),
            password: password.to_vec(),
        }
    }

    fn plain(message: &[u8]) -> String {
        base64::encode(message)
    }

    #[test]
    fn plain_initial_response_from_rfc4954_completes_at_once() {
        // RFC 4954 §4.1: "AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=" is test/test/1234.
        let (exchange, step) = Exchange::start("PLAIN", Some(b"dGVzdAB0ZXN0ADEyMzQ="));
        assert_eq!(done(step), credentials(Some("test"), "test", b"1234"));
        assert!(exchange.is_finished());
    }

    #[test]
    fn plain_without_initial_response_gets_an_empty_challenge() {
        let (mut exchange, step) = Exchange::start("PLAIN", None);
        assert_eq!(challenge(step), "");
        let line = format!("{}\r\n", plain(b"\0alice\0secret"));
        assert_eq!(
            done(exchange.feed(line.as_bytes())),
            credentials(None, "alice", b"secret")
        );
        assert!(exchange.is_finished());
    }

    #[test]
    fn plain_authzid_other_than_authcid_is_invalid_credentials() {
        let (_, step) = Exchange::start("PLAIN", Some(plain(b"admin\0alice\0secret").as_bytes()));
        assert_eq!(step, Step::Fail(Failure::CREDENTIALS_INVALID));
        assert_eq!(
            (
                Failure::CREDENTIALS_INVALID.code,
                Failure::CREDENTIALS_INVALID.status
            ),
            (535, "5.7.8")
        );
        // Compared exactly, like user names.
        let (_, step) = Exchange::start("PLAIN", Some(plain(b"Alice\0alice\0secret").as_bytes()));
        assert_eq!(step, Step::Fail(Failure::CREDENTIALS_INVALID));
    }

    #[test]
    fn plain_messages_with_wrong_structure_are_malformed() {
        let cases: [&[u8]; 10] = [
            b"",
            b"alice",
            b"\0alice",
            b"alice\0secret",
            b"\0alice\0secret\0",
            b"\0alice\0sec\0ret",
            b"\0\0secret",
            b"\0alice\0",
            b"\0\xffalice\0secret",
            b"\xff\0alice\0secret",
        ];
        for message in cases {
            let (_, step) = Exchange::start("PLAIN", Some(plain(message).as_bytes()));
            assert_eq!(step, Step::Fail(Failure::MALFORMED_RESPONSE), "{message:?}");
        }
        assert_eq!(
            (
                Failure::MALFORMED_RESPONSE.code,
                Failure::MALFORMED_RESPONSE.status
            ),
            (501, "5.5.2")
        );
    }

    #[test]
    fn plain_password_may_be_any_octets_but_nul() {
        let (_, step) = Exchange::start("PLAIN", Some(plain(b"\0alice\0s\xe9cret").as_bytes()));
        assert_eq!(done(step).password, b"s\xe9cret");
        let (_, step) = Exchange::start(
            "PLAIN",
            Some(plain("\0jürgen\0pässword".as_bytes()).as_bytes()),
        );
        assert_eq!(
            done(step),
            credentials(None, "jürgen", "pässword".as_bytes())
        );
    }

    #[test]
    fn empty_initial_response_is_an_empty_message() {
        // RFC 4954 §4: "=" means present but empty; neither mechanism
        // accepts an empty first response.
        for mechanism in ["PLAIN", "LOGIN"] {
            let (exchange, step) = Exchange::start(mechanism, Some(b"="));
            assert_eq!(step, Step::Fail(Failure::MALFORMED_RESPONSE), "{mechanism}");
            assert!(exchange.is_finished());
        }
    }

    #[test]
    fn login_asks_for_user_name_then_password() {
        let (mut exchange, step) = Exchange::start("LOGIN", None);
        assert_eq!(challenge(step), "VXNlcm5hbWU6");
        assert_eq!(
            base64::decode(b"VXNlcm5hbWU6").as_deref(),
            Ok(&b"Username:"[..])
        );
        assert_eq!(challenge(exchange.feed(b"YWxpY2U=\r\n")), "UGFzc3dvcmQ6");
        assert_eq!(
            base64::decode(b"UGFzc3dvcmQ6").as_deref(),
            Ok(&b"Password:"[..])
        );
        assert_eq!(
            done(exchange.feed(b"c2VjcmV0\r\n")),
            credentials(None, "alice", b"secret")
        );
        assert!(exchange.is_finished());
    }

    #[test]
    fn login_initial_response_is_the_user_name() {
        let (mut exchange, step) = Exchange::start("LOGIN", Some(b"YWxpY2U="));
        assert_eq!(challenge(step), "UGFzc3dvcmQ6");
        assert_eq!(
            done(exchange.feed(b"c2VjcmV0")),
            credentials(None, "alice", b"secret")
        );
    }

    #[test]
    fn login_empty_or_invalid_fields_are_malformed() {
        let (mut exchange, _) = Exchange::start("LOGIN", None);
        assert_eq!(
            exchange.feed(b"\r\n"),
            Step::Fail(Failure::MALFORMED_RESPONSE)
        );
        let (mut exchange, _) = Exchange::start("LOGIN", None);
        assert_eq!(
            exchange.feed(plain(b"al\0ice").as_bytes()),
            Step::Fail(Failure::MALFORMED_RESPONSE)
        );
        let (mut exchange, _) = Exchange::start("LOGIN", None);
        assert_eq!(
            exchange.feed(plain(b"\xff").as_bytes()),
            Step::Fail(Failure::MALFORMED_RESPONSE)
        );
        let (mut exchange, _) = Exchange::start("LOGIN", Some(b"YWxpY2U="));
        assert_eq!(exchange.feed(b""), Step::Fail(Failure::MALFORMED_RESPONSE));
        let (mut exchange, _) = Exchange::start("LOGIN", Some(b"YWxpY2U="));
        assert_eq!(
            exchange.feed(plain(b"sec\0ret").as_bytes()),
            Step::Fail(Failure::MALFORMED_RESPONSE)
        );
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        for name in ["plain", "Plain", "PLAIN"] {
            assert_eq!(challenge(Exchange::start(name, None).1), "");
        }
        for name in ["login", "Login", "lOgIn"] {
            assert_eq!(challenge(Exchange::start(name, None).1), USERNAME_CHALLENGE);
        }
    }

    #[test]
    fn advertised_mechanisms_are_the_supported_ones() {
        let names: Vec<_> = MECHANISMS.split(' ').collect();
        assert_eq!(names, ["PLAIN", "LOGIN"]);
        for name in names {
            assert_eq!(Mechanism::from_name(name).map(Mechanism::name), Some(name));
        }
    }

    #[test]
    fn unknown_mechanism_is_504_and_ends_the_exchange() {
        for name in ["CRAM-MD5", "XOAUTH2", "PLAINX", "PLAI", ""] {
            let (exchange, step) = Exchange::start(name, Some(b"dGVzdAB0ZXN0ADEyMzQ="));
            assert_eq!(step, Step::Fail(Failure::UNKNOWN_MECHANISM), "{name:?}");
            assert!(exchange.is_finished());
        }
        assert_eq!(
            (
                Failure::UNKNOWN_MECHANISM.code,
                Failure::UNKNOWN_MECHANISM.status
            ),
            (504, "5.5.4")
        );
    }

    #[test]
    fn star_cancels_at_every_step() {
        let (mut plain_exchange, _) = Exchange::start("PLAIN", None);
        assert_eq!(
            plain_exchange.feed(b"*\r\n"),
            Step::Fail(Failure::CANCELLED)
        );
        let (mut login_user, _) = Exchange::start("LOGIN", None);
        assert_eq!(login_user.feed(b"*\r\n"), Step::Fail(Failure::CANCELLED));
        let (mut login_password, _) = Exchange::start("LOGIN", Some(b"YWxpY2U="));
        assert_eq!(login_password.feed(b"*"), Step::Fail(Failure::CANCELLED));
        assert!(login_password.is_finished());
        assert_eq!(
            (Failure::CANCELLED.code, Failure::CANCELLED.status),
            (501, "5.0.0")
        );
    }

    #[test]
    fn invalid_base64_is_501_5_5_2() {
        let (_, step) = Exchange::start("PLAIN", Some(b"not base64!"));
        assert_eq!(step, Step::Fail(Failure::INVALID_BASE64));
        for line in [
            &b"AGFsaWNlAHNlY3JldA"[..],
            b"AGFsaWNl AHNlY3JldA==",
            b"=AGFs",
            b"**",
            b"YWxpY2U=\n",
        ] {
            let (mut exchange, _) = Exchange::start("PLAIN", None);
            assert_eq!(
                exchange.feed(line),
                Step::Fail(Failure::INVALID_BASE64),
                "{line:?}"
            );
            assert!(exchange.is_finished());
        }
        assert_eq!(
            (Failure::INVALID_BASE64.code, Failure::INVALID_BASE64.status),
            (501, "5.5.2")
        );
    }

    #[test]
    fn responses_up_to_the_limit_are_accepted_and_longer_ones_refused() {
        // 9216 octets encode to exactly MAX_RESPONSE_LEN characters.
        let mut message = b"\0alice\0".to_vec();
        message.resize(9216, b'p');
        let longest = plain(&message);
        assert_eq!(longest.len(), MAX_RESPONSE_LEN);
        let (mut exchange, _) = Exchange::start("PLAIN", None);
        assert_eq!(
            done(exchange.feed(format!("{longest}\r\n").as_bytes()))
                .password
                .len(),
            9209
        );
        let (_, step) = Exchange::start("PLAIN", Some(longest.as_bytes()));
        assert_eq!(done(step).authcid, "alice");

        message.extend_from_slice(b"ppp");
        let too_long = plain(&message);
        let (mut exchange, _) = Exchange::start("PLAIN", None);
        assert_eq!(
            exchange.feed(too_long.as_bytes()),
            Step::Fail(Failure::LINE_TOO_LONG)
        );
        let (_, step) = Exchange::start("LOGIN", Some(too_long.as_bytes()));
        assert_eq!(step, Step::Fail(Failure::LINE_TOO_LONG));
        // Garbage over the limit is "too long", not "invalid base64".
        let (mut exchange, _) = Exchange::start("LOGIN", None);
        assert_eq!(
            exchange.feed(&[b'!'; MAX_RESPONSE_LEN + 1]),
            Step::Fail(Failure::LINE_TOO_LONG)
        );
        assert_eq!(
            (Failure::LINE_TOO_LONG.code, Failure::LINE_TOO_LONG.status),
            (500, "5.5.6")
        );
    }

    #[test]
    fn feeding_a_finished_exchange_is_refused() {
        let (mut exchange, step) = Exchange::start("PLAIN", Some(b"dGVzdAB0ZXN0ADEyMzQ="));
        done(step);
        assert_eq!(
            exchange.feed(b"dGVzdAB0ZXN0ADEyMzQ="),
            Step::Fail(Failure::NOT_IN_PROGRESS)
        );
        let (mut exchange, _) = Exchange::start("LOGIN", None);
        exchange.feed(b"*");
        assert_eq!(
            exchange.feed(b"YWxpY2U="),
            Step::Fail(Failure::NOT_IN_PROGRESS)
        );
    }

    #[test]
    fn debug_never_shows_passwords_or_user_names() {
        let shown = format!("{:?}", credentials(None, "alice", b"hunter2"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("104"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
        let (exchange, _) = Exchange::start("LOGIN", Some(b"YWxpY2U="));
        assert_eq!(
            format!("{exchange:?}"),
            "Exchange { state: \"LoginPassword\" }"
        );
    }
}
