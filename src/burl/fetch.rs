//! The conversation with the IMAP server for one URLFETCH, sans-IO: the
//! greeting, CAPABILITY, STARTTLS, AUTHENTICATE PLAIN or LOGIN as the
//! submit user (RFC 4468 §3.3), URLFETCH (RFC 4467 §7), LOGOUT.
//!
//! Feed [`Conversation::feed`] the bytes the server sent; it answers with
//! how many it used and one [`Step`]: send a command, write a chunk of the
//! content to the sink, read more, upgrade to TLS now, or finished.
//! Guarantees:
//! - credentials are sent only after STARTTLS when [`Security::StartTls`]
//!   is asked for, and never in the clear because of a server's answer
//!   (a missing STARTTLS or a PREAUTH greeting ends the conversation);
//! - the content chunks borrow the input and add up to at most the
//!   `max_size` given: a larger announced literal fails before any of it
//!   is read;
//! - one command is in flight at a time, so the server's bytes after the
//!   STARTTLS reply are never taken as the start of the TLS session;
//! - [`Outgoing`] and [`Credentials`] never show a password, a SASL
//!   response or the URL's token in `Debug`.

use std::borrow::Cow;
use std::fmt;

use super::error::{Failure, server_text};
use super::imap::{Capabilities, Command, Event, ResponseParser, Status, UrlData, plain_response};
use super::url::AuthorizedUrl;

/// RFC 4468 §3.3: "The string "submit" is suggested as a default value for
/// the authentication identity, with no default for the password."
pub const DEFAULT_SUBMIT_USER: &str = "submit";

/// detad's own IMAP login (RFC 4468 §3.3: "submit server credentials").
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity, [`DEFAULT_SUBMIT_USER`] by default.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Whether the conversation negotiates TLS itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// STARTTLS before logging in (RFC 4468 §3.3, RFC 3501 §6.2.1); fail
    /// if the server does not offer it.
    StartTls,
    /// Use the stream as it is: already TLS (imaps), or a trusted local
    /// connection.
    AsIs,
}

/// A command line to write to the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    name: &'static str,
    bytes: Vec<u8>,
}

impl Outgoing {
    /// The command's name, safe to log.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The line, CRLF included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outgoing({})", self.name)
    }
}

/// What the driver should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'i> {
    /// Write this line to the server, then feed again.
    Send(Outgoing),
    /// Write this chunk of the content to the sink, then feed again.
    Body(Cow<'i, [u8]>),
    /// Read more from the server; all the input was used.
    NeedInput,
    /// The server accepted STARTTLS: run the TLS handshake on the stream
    /// now, then call [`Conversation::tls_started`]. Any input not used is
    /// not part of the TLS session and must be refused, not fed.
    StartTls,
    /// The conversation is over: the octets written to the sink, or why
    /// not. Then send [`Conversation::farewell`] if there is one, and
    /// close.
    Finished(Result<u64, Failure>),
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Capability,
    StartTls,
    AwaitTls,
    /// `responded`: the PLAIN response has been sent.
    Authenticate {
        responded: bool,
    },
    Login,
    UrlFetch,
    Finished,
}

/// What the URLFETCH response carried so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetched {
    Nothing,
    Nil,
    Empty,
    Data,
}

/// One URLFETCH conversation; see the module doc.
pub struct Conversation<'a> {
    parser: ResponseParser,
    core: Core<'a>,
}

impl fmt::Debug for Conversation<'_> {
    /// The state only: the URL (its token), the credentials and the SASL
    /// response stay out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &self.core;
        f.debug_struct("Conversation")
            .field("state", &core.state)
            .field("security", &core.security)
            .field("tls_active", &core.tls_active)
            .field("tag", &core.tag)
            .field("received", &core.received)
            .field("result", &core.result)
            .finish_non_exhaustive()
    }
}

/// Everything but the parser, so a parser event can be handled while it
/// borrows the parser.
struct Core<'a> {
    credentials: &'a Credentials,
    url: &'a str,
    security: Security,
    tls_active: bool,
    max_size: u64,
    state: State,
    capabilities: Option<Capabilities>,
    tags: u32,
    /// The tag of the command in flight.
    tag: String,
    outbox: Option<Outgoing>,
    /// The SASL PLAIN response, kept until the server asks for it.
    plain: Option<String>,
    fetched: Fetched,
    received: u64,
    result: Option<Result<u64, Failure>>,
    /// Whether the connection is in step, so LOGOUT makes sense.
    in_step: bool,
}

impl<'a> Conversation<'a> {
    /// A conversation that will fetch `url` as `credentials`, allowing at
    /// most `max_size` octets of content.
    pub fn new(
        credentials: &'a Credentials,
        url: &AuthorizedUrl<'a>,
        security: Security,
        max_size: u64,
    ) -> Conversation<'a> {
        Conversation {
            parser: ResponseParser::default(),
            core: Core {
                credentials,
                url: url.as_str(),
                security,
                tls_active: false,
                max_size,
                state: State::Greeting,
                capabilities: None,
                tags: 0,
                tag: String::new(),
                outbox: None,
                plain: None,
                fetched: Fetched::Nothing,
                received: 0,
                result: None,
                in_step: true,
            },
        }
    }

    /// Takes the server's bytes up to the next step; returns how many it
    /// used and the step.
    pub fn feed<'i>(&mut self, input: &'i [u8]) -> (usize, Step<'i>) {
        let mut used = 0;
        loop {
            let core = &mut self.core;
            if let Some(out) = core.outbox.take() {
                return (used, Step::Send(out));
            }
            if let Some(result) = &core.result {
                return (used, Step::Finished(result.clone()));
            }
            if core.state == State::AwaitTls {
                return (used, Step::StartTls);
            }
            let (n, event) = match self.parser.feed(&input[used..]) {
                Ok(found) => found,
                Err(e) => {
                    core.abort(protocol(e.to_string()));
                    continue;
                }
            };
            used += n;
            match event {
                Event::Incomplete => return (used, Step::NeedInput),
                Event::Data(chunk) => {
                    core.received += chunk.len() as u64;
                    return (used, Step::Body(Cow::Borrowed(chunk)));
                }
                Event::UrlFetch {
                    data: UrlData::Inline(data),
                    ..
                } if core.state == State::UrlFetch && !data.is_empty() => {
                    // A quoted string: small, and it lives in the parser.
                    if let Some(chunk) = core.on_inline(data) {
                        return (used, Step::Body(Cow::Owned(chunk)));
                    }
                }
                event => core.on_event(event),
            }
        }
    }

    /// Tells the conversation the TLS handshake is done after
    /// [`Step::StartTls`]; it then asks for the capabilities again.
    pub fn tls_started(&mut self) {
        let core = &mut self.core;
        if core.state == State::AwaitTls {
            core.tls_active = true;
            // RFC 3501 §6.2.1: "the client MUST discard cached information
            // about server capabilities".
            core.capabilities = None;
            core.send(Command::Capability, State::Capability);
        }
    }

    /// After [`Step::Finished`]: the LOGOUT line (RFC 3501 §6.1.3) to send
    /// without waiting for its reply, once, if the connection is in step.
    pub fn farewell(&mut self) -> Option<Outgoing> {
        let core = &mut self.core;
        if core.result.is_none() || !core.in_step {
            return None;
        }
        core.in_step = false;
        Some(core.outgoing(Command::Logout))
    }
}

fn protocol(detail: impl Into<String>) -> Failure {
    Failure::Protocol {
        detail: detail.into(),
    }
}

impl Core<'_> {
    fn finish(&mut self, result: Result<u64, Failure>) {
        self.state = State::Finished;
        self.result = Some(result);
    }

    /// Ends the conversation out of step: nothing more may be sent.
    fn abort(&mut self, failure: Failure) {
        self.in_step = false;
        self.finish(Err(failure));
    }

    fn outgoing(&mut self, command: Command<'_>) -> Outgoing {
        self.tags += 1;
        self.tag = format!("b{}", self.tags);
        // LOGIN's arguments are checked before it is sent, and a checked
        // URL has only URI characters: every command here encodes.
        let bytes = command
            .encode(&self.tag)
            .expect("command arguments are quotable");
        Outgoing {
            name: command.name(),
            bytes,
        }
    }

    fn send(&mut self, command: Command<'_>, next: State) {
        let out = self.outgoing(command);
        self.outbox = Some(out);
        self.state = next;
    }

    fn on_event(&mut self, event: Event<'_, '_>) {
        match (self.state, event) {
            (State::Finished, _) => {}
            (
                _,
                Event::Status {
                    tag: None,
                    status: Status::Bye,
                    text,
                    ..
                },
            ) => self.abort(Failure::Unavailable {
                text: server_text(text),
            }),
            (
                State::Greeting,
                Event::Status {
                    tag: None,
                    status,
                    code,
                    ..
                },
            ) => self.on_greeting(status, code),
            (State::Greeting, _) => self.abort(protocol("no greeting")),
            (_, Event::Capability { list }) => self.capabilities = Some(Capabilities::parse(list)),
            (_, Event::Status { tag: None, .. } | Event::Other { .. }) => {}
            (State::Authenticate { responded: false }, Event::Continuation { .. }) => {
                let response = self.plain.take().unwrap_or_default();
                let bytes = format!("{response}\r\n").into_bytes();
                self.outbox = Some(Outgoing {
                    name: "AUTHENTICATE response",
                    bytes,
                });
                self.state = State::Authenticate { responded: true };
            }
            (State::Authenticate { responded: true }, Event::Continuation { .. }) => {
                // PLAIN is one step; RFC 3501 §6.2.2: "*" cancels.
                self.outbox = Some(Outgoing {
                    name: "AUTHENTICATE cancel",
                    bytes: b"*\r\n".to_vec(),
                });
            }
            (_, Event::Continuation { .. }) => self.abort(protocol("unexpected continuation")),
            (State::UrlFetch, Event::UrlFetch { data, .. }) => self.on_urlfetch(data),
            (_, Event::UrlFetch { .. }) => self.abort(protocol("unexpected URLFETCH response")),
            (
                _,
                Event::Status {
                    tag: Some(tag),
                    status,
                    text,
                    ..
                },
            ) => {
                if tag != self.tag.as_bytes() {
                    self.abort(protocol("response with an unknown tag"));
                } else {
                    self.on_tagged(status, text);
                }
            }
            (_, Event::Incomplete | Event::Data(_)) => {}
        }
    }

    fn on_greeting(&mut self, status: Status, code: Option<&[u8]>) {
        match status {
            Status::Ok => {
                let listed = code.and_then(|c| strip_prefix_ci(c, b"CAPABILITY "));
                match listed {
                    Some(list) => {
                        self.capabilities = Some(Capabilities::parse(list));
                        self.log_in();
                    }
                    None => self.send(Command::Capability, State::Capability),
                }
            }
            // RFC 3501 §6.2.1: STARTTLS only in the not-authenticated
            // state; a PREAUTH injected by an attacker would keep us in
            // the clear.
            Status::Preauth if self.security == Security::StartTls => {
                self.abort(Failure::TlsUnavailable {
                    detail: "PREAUTH greeting, so no STARTTLS",
                });
            }
            Status::Preauth => self.send_urlfetch(),
            _ => self.abort(protocol("greeting is not OK or PREAUTH")),
        }
    }

    /// Once the capabilities are known: STARTTLS if still due, else log in
    /// as the submit user, preferring SASL PLAIN (RFC 4468 §3.3).
    fn log_in(&mut self) {
        let caps = self.capabilities.unwrap_or_default();
        if self.security == Security::StartTls && !self.tls_active {
            if caps.starttls {
                self.send(Command::StartTls, State::StartTls);
            } else {
                self.abort(Failure::TlsUnavailable {
                    detail: "STARTTLS not offered",
                });
            }
            return;
        }
        let credentials = self.credentials;
        if caps.auth_plain {
            let Some(response) = plain_response(&credentials.user, &credentials.password) else {
                return self.refuse_login("the submit credentials contain NUL");
            };
            if caps.sasl_ir {
                let command = Command::AuthenticatePlain {
                    initial_response: Some(&response),
                };
                self.send(command, State::Authenticate { responded: true });
            } else {
                let command = Command::AuthenticatePlain {
                    initial_response: None,
                };
                self.send(command, State::Authenticate { responded: false });
                self.plain = Some(response);
            }
        } else if caps.login_disabled {
            self.refuse_login("neither AUTH=PLAIN nor LOGIN offered");
        } else {
            let command = Command::Login {
                user: &credentials.user,
                password: &credentials.password,
            };
            if command.encode("").is_none() {
                return self.refuse_login("the submit credentials cannot be sent with LOGIN");
            }
            self.send(command, State::Login);
        }
    }

    fn refuse_login(&mut self, why: &str) {
        self.abort(Failure::LoginRefused { text: why.into() });
    }

    fn send_urlfetch(&mut self) {
        let url = self.url;
        self.send(Command::UrlFetch { url }, State::UrlFetch);
    }

    fn on_tagged(&mut self, status: Status, text: &[u8]) {
        let text = server_text(text);
        match (self.state, status) {
            (State::Capability, Status::Ok) if self.capabilities.is_some() => self.log_in(),
            (State::Capability, _) => self.abort(protocol("no CAPABILITY response")),
            (State::StartTls, Status::Ok) => self.state = State::AwaitTls,
            (State::StartTls, _) => self.finish(Err(Failure::TlsUnavailable {
                detail: "STARTTLS refused",
            })),
            (State::Authenticate { .. } | State::Login, Status::Ok) => self.send_urlfetch(),
            (State::Authenticate { .. } | State::Login, _) => {
                self.finish(Err(Failure::LoginRefused { text }));
            }
            (State::UrlFetch, Status::Ok) => self.on_urlfetch_done(),
            (State::UrlFetch, Status::No) => self.finish(Err(Failure::ServerTrouble { text })),
            (State::UrlFetch, _) => self.finish(Err(Failure::UrlNotResolved {
                detail: format!("URLFETCH rejected: {text}"),
            })),
            _ => self.abort(protocol("unexpected tagged response")),
        }
    }

    fn on_urlfetch(&mut self, data: UrlData<'_>) {
        if self.fetched != Fetched::Nothing {
            return self.abort(protocol("second URLFETCH response"));
        }
        self.fetched = match data {
            UrlData::Nil => Fetched::Nil,
            UrlData::Inline(_) | UrlData::Literal(0) => Fetched::Empty,
            UrlData::Literal(size) if size > self.max_size => {
                let limit = self.max_size;
                return self.abort(Failure::TooLarge { size, limit });
            }
            UrlData::Literal(_) => Fetched::Data,
        };
    }

    /// A non-empty quoted string as the content: the chunk to write.
    fn on_inline(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self.on_urlfetch(UrlData::Literal(data.len() as u64));
        if self.fetched != Fetched::Data {
            return None;
        }
        self.received = data.len() as u64;
        Some(data.to_vec())
    }

    fn on_urlfetch_done(&mut self) {
        let result = match self.fetched {
            Fetched::Data => Ok(self.received),
            // RFC 4468 §6: 554 5.6.6 when URLFETCH "returned an error or no
            // data"; RFC 4467 §8: NIL for a URL "invalid for any reason".
            Fetched::Nil => Err(Failure::UrlNotResolved {
                detail: "NIL".into(),
            }),
            Fetched::Empty => Err(Failure::UrlNotResolved {
                detail: "no data".into(),
            }),
            // RFC 4467 §7: a URLFETCH response MUST come before the OK.
            Fetched::Nothing => Err(protocol("OK without a URLFETCH response")),
        };
        self.finish(result);
    }
}

fn strip_prefix_ci<'t>(text: &'t [u8], prefix: &[u8]) -> Option<&'t [u8]> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::burl::url::check;

    const URL: &str = "imap://joe@example.com/INBOX/;uid=20/;section=1.2\
        ;urlauth=submit+fred:internal:91354a473744909de610943775f92038";

    fn credentials() -> Credentials {
        Credentials {
            user: "submit".into(),
            password: "secret".into(),
        }
    }

    /// What the client did while being fed the server's bytes.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Run {
        sent: Vec<String>,
        body: Vec<u8>,
        starttls: bool,
        result: Option<Result<u64, Failure>>,
        farewell: Option<String>,
    }

    /// Feeds the server's bytes in the chunks given, doing what each step
    /// says (a STARTTLS is "done" at once).
    fn run_chunks(security: Security, max_size: u64, chunks: &[&[u8]]) -> Run {
        let credentials = credentials();
        let url = check(URL, "example.com", 143, "fred").unwrap();
        let mut conversation = Conversation::new(&credentials, &url, security, max_size);
        let mut run = Run::default();
        'chunks: for chunk in chunks {
            let mut used = 0;
            loop {
                let (n, step) = conversation.feed(&chunk[used..]);
                used += n;
                match step {
                    Step::Send(out) => {
                        let line = String::from_utf8(out.as_bytes().to_vec()).unwrap();
                        run.sent.push(line.trim_end().to_string());
                    }
                    Step::Body(data) => run.body.extend_from_slice(&data),
                    Step::NeedInput => break,
                    Step::StartTls => {
                        assert_eq!(used, chunk.len(), "bytes after the STARTTLS reply");
                        run.starttls = true;
                        conversation.tls_started();
                    }
                    Step::Finished(result) => {
                        run.result = Some(result);
                        run.farewell = conversation
                            .farewell()
                            .map(|out| String::from_utf8(out.as_bytes().to_vec()).unwrap());
                        assert_eq!(conversation.farewell(), None, "LOGOUT only once");
                        break 'chunks;
                    }
                }
            }
        }
        run
    }

    fn run(security: Security, server: &str) -> Run {
        run_chunks(security, 1000, &[server.as_bytes()])
    }

    #[track_caller]
    fn failed(run: &Run) -> &Failure {
        match &run.result {
            Some(Err(failure)) => failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// RFC 4467 §7, the server's side, with our tags.
    const RFC4467_SERVER: &str = "* OK [CAPABILITY IMAP4REV1 URLAUTH] example.com IMAP server\r\n\
        b1 OK submitserver logged in\r\n\
        * URLFETCH \"imap://joe@example.com/INBOX/;uid=20/;section=1.2\
        ;urlauth=submit+fred:internal:91354a473744909de610943775f92038\" {28}\r\n\
        Si vis pacem, para bellum.\r\n\
        \r\n\
        b2 OK URLFETCH completed\r\n";

    #[test]
    fn rfc4467_example_fetches_with_login() {
        let run = run(Security::AsIs, RFC4467_SERVER);
        assert_eq!(
            run.sent,
            [
                "b1 LOGIN \"submit\" \"secret\"".to_string(),
                format!("b2 URLFETCH \"{URL}\""),
            ]
        );
        assert_eq!(run.body, b"Si vis pacem, para bellum.\r\n");
        assert_eq!(run.result, Some(Ok(28)));
        assert_eq!(run.farewell.as_deref(), Some("b3 LOGOUT\r\n"));
    }

    #[test]
    fn outcome_does_not_depend_on_where_the_input_is_cut() {
        let server = RFC4467_SERVER.as_bytes();
        let whole = run_chunks(Security::AsIs, 1000, &[server]);
        for i in 0..=server.len() {
            let (a, b) = server.split_at(i);
            assert_eq!(
                run_chunks(Security::AsIs, 1000, &[a, b]),
                whole,
                "cut at {i}"
            );
        }
        let bytes: Vec<&[u8]> = server.chunks(1).collect();
        assert_eq!(run_chunks(Security::AsIs, 1000, &bytes), whole);
    }

    #[test]
    fn starttls_comes_first_and_capabilities_are_asked_again() {
        let server = "* OK ready\r\n\
            * CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n\
            b1 OK\r\n\
            b2 OK begin TLS\r\n";
        let after_tls = "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR URLAUTH\r\n\
            b3 OK\r\n\
            b4 OK logged in\r\n\
            * URLFETCH \"u\" {3}\r\nabc\r\n\
            b5 OK\r\n";
        let run = run_chunks(
            Security::StartTls,
            1000,
            &[server.as_bytes(), after_tls.as_bytes()],
        );
        assert!(run.starttls);
        assert_eq!(
            run.sent,
            [
                "b1 CAPABILITY".to_string(),
                "b2 STARTTLS".into(),
                "b3 CAPABILITY".into(),
                "b4 AUTHENTICATE PLAIN AHN1Ym1pdABzZWNyZXQ=".into(),
                format!("b5 URLFETCH \"{URL}\""),
            ]
        );
        assert_eq!(run.result, Some(Ok(3)));
    }

    #[test]
    fn plain_without_sasl_ir_waits_for_the_continuation() {
        let server = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n\
            + \r\n\
            b1 OK\r\n\
            * URLFETCH \"u\" {1}\r\nx\r\n\
            b2 OK\r\n";
        let run = run(Security::AsIs, server);
        assert_eq!(
            run.sent[..2],
            ["b1 AUTHENTICATE PLAIN", "AHN1Ym1pdABzZWNyZXQ="]
        );
        assert_eq!(run.result, Some(Ok(1)));
    }

    #[test]
    fn a_second_continuation_cancels_the_authentication() {
        let server = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n\
            + \r\n+ \r\n\
            b1 BAD cancelled\r\n";
        let run = run(Security::AsIs, server);
        assert_eq!(
            run.sent,
            ["b1 AUTHENTICATE PLAIN", "AHN1Ym1pdABzZWNyZXQ=", "*"]
        );
        assert!(matches!(failed(&run), Failure::LoginRefused { .. }));
    }

    #[test]
    fn no_starttls_offered_means_no_credentials_sent() {
        let server = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n";
        let run = run(Security::StartTls, server);
        assert!(run.sent.is_empty());
        assert_eq!(
            failed(&run),
            &Failure::TlsUnavailable {
                detail: "STARTTLS not offered"
            }
        );
        assert_eq!(
            failed(&run).reply().to_string(),
            "454 4.7.0 TLS not available with the IMAP server"
        );
        assert_eq!(run.farewell, None);
    }

    #[test]
    fn starttls_refused_fails_temporarily() {
        let server = "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nb1 NO not now\r\n";
        let run = run(Security::StartTls, server);
        assert_eq!(run.sent, ["b1 STARTTLS"]);
        assert!(matches!(failed(&run), Failure::TlsUnavailable { .. }));
        assert_eq!(run.farewell.as_deref(), Some("b2 LOGOUT\r\n"));
    }

    #[test]
    fn preauth_greeting_refuses_starttls_but_fetches_as_is() {
        let run = run(Security::StartTls, "* PREAUTH hi\r\n");
        assert!(run.sent.is_empty());
        assert!(matches!(failed(&run), Failure::TlsUnavailable { .. }));
        let server = "* PREAUTH hi\r\n* URLFETCH \"u\" {2}\r\nok\r\nb1 OK\r\n";
        let run = run_chunks(Security::AsIs, 1000, &[server.as_bytes()]);
        assert_eq!(run.sent, [format!("b1 URLFETCH \"{URL}\"")]);
        assert_eq!(run.result, Some(Ok(2)));
    }

    #[test]
    fn refused_login_is_a_temporary_security_failure() {
        let server = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n\
            b1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n";
        let run = run(Security::AsIs, server);
        assert_eq!(
            failed(&run),
            &Failure::LoginRefused {
                text: "Authentication failed.".into()
            }
        );
        assert_eq!(
            failed(&run).reply().to_string(),
            "454 4.7.0 IMAP server refused the submit login"
        );
        assert_eq!(run.farewell.as_deref(), Some("b2 LOGOUT\r\n"));
    }

    #[test]
    fn no_login_method_is_a_refused_login_without_sending_anything() {
        let server = "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n";
        let run = run(Security::AsIs, server);
        assert!(run.sent.is_empty());
        assert!(matches!(failed(&run), Failure::LoginRefused { .. }));
    }

    #[test]
    fn nil_empty_and_bad_are_resolution_failures() {
        for answer in [
            "* URLFETCH \"u\" NIL\r\nb2 OK\r\n",
            "* URLFETCH \"u\" \"\"\r\nb2 OK\r\n",
            "* URLFETCH \"u\" {0}\r\n\r\nb2 OK\r\n",
            "b2 BAD invalid URL\r\n",
        ] {
            let server = format!("* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\n{answer}");
            let run = run(Security::AsIs, &server);
            assert!(
                matches!(failed(&run), Failure::UrlNotResolved { .. }),
                "{answer}"
            );
            assert_eq!(
                failed(&run).reply().to_string(),
                "554 5.6.6 IMAP URL resolution failed"
            );
            assert!(run.body.is_empty());
        }
    }

    #[test]
    fn tagged_no_to_urlfetch_is_temporary_server_trouble() {
        let server = "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\nb2 NO internal error\r\n";
        let run = run(Security::AsIs, server);
        assert_eq!(
            failed(&run),
            &Failure::ServerTrouble {
                text: "internal error".into()
            }
        );
        assert_eq!(failed(&run).reply().code, 451);
    }

    #[test]
    fn quoted_data_is_written_too() {
        let server = "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\n\
            * URLFETCH \"u\" \"a \\\"quoted\\\" part\"\r\nb2 OK\r\n";
        let run = run(Security::AsIs, server);
        assert_eq!(run.body, b"a \"quoted\" part");
        assert_eq!(run.result, Some(Ok(15)));
    }

    #[test]
    fn literal_over_the_limit_fails_before_any_data() {
        let server = "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\n\
            * URLFETCH \"u\" {1001}\r\nxxxx";
        let run = run(Security::AsIs, server);
        assert_eq!(
            failed(&run),
            &Failure::TooLarge {
                size: 1001,
                limit: 1000
            }
        );
        assert!(run.body.is_empty());
        assert_eq!(run.farewell, None);
        let reply = failed(&run).reply().to_string();
        assert_eq!(
            reply,
            "552 5.3.4 message size exceeds fixed maximum message size"
        );
    }

    #[test]
    fn literal_at_the_limit_is_fetched() {
        let data = "y".repeat(1000);
        let server = format!(
            "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\n* URLFETCH \"u\" {{1000}}\r\n{data}\r\nb2 OK\r\n"
        );
        assert_eq!(run(Security::AsIs, &server).result, Some(Ok(1000)));
    }

    #[test]
    fn protocol_violations_end_the_conversation_out_of_step() {
        let cases = [
            (
                "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\nb2 OK\r\n",
                "OK without a URLFETCH response",
            ),
            (
                "* OK [CAPABILITY IMAP4rev1] hi\r\nb7 OK\r\n",
                "response with an unknown tag",
            ),
            ("+ go ahead\r\n", "no greeting"),
            ("* NO go away\r\n", "greeting is not OK or PREAUTH"),
            ("* OK hi\r\nb1 OK\r\n", "no CAPABILITY response"),
            (
                "* OK [CAPABILITY IMAP4rev1] hi\r\n+ \r\n",
                "unexpected continuation",
            ),
            (
                "* OK [CAPABILITY IMAP4rev1] hi\r\n* URLFETCH u NIL\r\n",
                "unexpected URLFETCH response",
            ),
            (
                "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\n* URLFETCH u NIL\r\n* URLFETCH u NIL\r\n",
                "second URLFETCH response",
            ),
            ("* OK hi\n", "line ends with a bare LF"),
        ];
        for (server, detail) in cases {
            let run = run(Security::AsIs, server);
            assert_eq!(
                failed(&run),
                &Failure::Protocol {
                    detail: detail.into()
                },
                "{server:?}"
            );
            assert_eq!(
                failed(&run).reply().to_string(),
                "451 4.5.0 IMAP server protocol error"
            );
        }
    }

    #[test]
    fn logout_is_sent_only_while_in_step() {
        // A tagged OK without the URLFETCH response: out of spec, in step.
        let server = "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\nb2 OK\r\n";
        assert_eq!(
            run(Security::AsIs, server).farewell.as_deref(),
            Some("b3 LOGOUT\r\n")
        );
        // A malformed response: the stream is out of step.
        let server = "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\n* URLFETCH\r\n";
        assert_eq!(run(Security::AsIs, server).farewell, None);
    }

    #[test]
    fn bye_means_the_server_is_unavailable() {
        for server in [
            "* BYE too busy\r\n",
            "* OK [CAPABILITY IMAP4rev1] hi\r\nb1 OK\r\n* BYE shutting down\r\n",
        ] {
            let run = run(Security::AsIs, server);
            assert!(matches!(failed(&run), Failure::Unavailable { .. }));
            assert_eq!(
                failed(&run).reply().to_string(),
                "454 4.4.1 IMAP server unavailable"
            );
            assert_eq!(run.farewell, None);
        }
    }

    #[test]
    fn unsolicited_untagged_responses_are_ignored() {
        let server = "* OK [CAPABILITY IMAP4rev1] hi\r\n\
            * OK [ALERT] maintenance tonight\r\n\
            * 3 EXISTS\r\n\
            b1 OK\r\n\
            * NO [x] warning\r\n\
            * URLFETCH \"u\" {1}\r\nz\r\n\
            b2 OK\r\n";
        assert_eq!(run(Security::AsIs, server).result, Some(Ok(1)));
    }

    #[test]
    fn server_text_is_printable_and_bounded() {
        let long = "é".repeat(300);
        let server = format!("* OK [CAPABILITY IMAP4rev1] hi\r\nb1 NO {long}\r\n");
        let Failure::LoginRefused { text } = failed(&run(Security::AsIs, &server)).clone() else {
            panic!("not a refused login");
        };
        assert_eq!(text, "?".repeat(200));
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let credentials = credentials();
        assert!(!format!("{credentials:?}").contains("secret"));
        let url = check(URL, "example.com", 143, "fred").unwrap();
        let mut conversation = Conversation::new(&credentials, &url, Security::AsIs, 10);
        let (_, step) = conversation.feed(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n");
        assert_eq!(format!("{step:?}"), "Send(Outgoing(AUTHENTICATE PLAIN))");
        let shown = format!("{conversation:?}");
        let plain = plain_response("submit", "secret").unwrap();
        for secret in ["secret", &plain, "91354a473744909de610943775f92038"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
