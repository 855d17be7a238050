//! STARTTLS (RFC 3207) and AUTH (RFC 4954) in the session: what is offered
//! where, the AUTH exchange, and the `auth_required` gate.
//!
//! The session never sees a socket or a password file: STARTTLS ends in
//! [`Action::StartTls`] for the driver, and the credentials an exchange
//! yields go to [`Policy::authenticate`].

use std::borrow::Cow;

use super::{Action, Command, Policy, Session, Stage, Step, bad_sequence};
use crate::auth::sasl::{Exchange, Step as SaslStep};
use crate::smtp::command::verb_of;
use crate::smtp::reply::Reply;

impl Session {
    /// The connection is TLS from its first octet (implicit TLS, RFC 8314):
    /// call before the greeting.
    pub fn set_tls(&mut self) {
        self.tls = true;
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Who the client authenticated as.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The handshake after a STARTTLS succeeded. RFC 3207 §4.2: everything
    /// learnt before it is discarded (greeting, identity); the client
    /// starts over with EHLO.
    pub fn tls_started(&mut self, policy: &mut dyn Policy) {
        self.reset(policy);
        self.stage = Stage::Connected;
        self.tls = true;
        self.helo.clear();
        self.esmtp = false;
        self.exchange = None;
        if self.identity.take().is_some() {
            policy.forget_identity();
        }
    }

    /// A command line as it may be logged: the responses of an AUTH
    /// exchange and an AUTH initial response carry credentials (RFC 4954
    /// §4: base64 is not encryption) and are never shown.
    pub fn loggable<'a>(&self, line: &'a [u8]) -> Cow<'a, str> {
        if self.exchange.is_some() {
            return Cow::Borrowed("(AUTH response, not shown)");
        }
        if verb_of(line).eq_ignore_ascii_case(b"AUTH") {
            let mechanism = String::from_utf8_lossy(line)
                .split_ascii_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            return Cow::Owned(format!("AUTH {mechanism} (initial response not shown)"));
        }
        String::from_utf8_lossy(line.strip_suffix(b"\r\n").unwrap_or(line))
    }

    pub(super) fn offers_starttls(&self) -> bool {
        self.config.starttls && !self.tls
    }

    pub(super) fn offers_auth(&self) -> bool {
        let auth = self.config.auth;
        auth.enabled && (self.tls || auth.plaintext) && self.identity.is_none()
    }

    /// `auth_required`: the refusal of a command that needs an identity.
    pub(super) fn needs_auth(&self, command: &Command) -> Option<Reply> {
        if !self.config.auth.required || self.identity.is_some() {
            return None;
        }
        let free = matches!(
            command,
            Command::Ehlo(_)
                | Command::Helo(_)
                | Command::StartTls
                | Command::Auth(..)
                | Command::Quit
                | Command::Noop
                | Command::Rset
        );
        if free {
            return None;
        }
        let text = if !self.tls && !self.config.auth.plaintext {
            "must issue a STARTTLS command first"
        } else {
            "authentication required"
        };
        Some(Reply::new(530, "5.7.0", text))
    }

    pub(super) fn starttls(&mut self) -> Step {
        if self.tls {
            return Step::reply(Reply::new(503, "5.5.1", "TLS already active"));
        }
        if !self.config.starttls {
            return Step::reply(Reply::new(502, "5.5.1", "STARTTLS not available"));
        }
        match self.stage {
            Stage::Greeted if self.esmtp => Step::with(
                Reply::new(220, "2.0.0", "ready to start TLS"),
                Action::StartTls,
            ),
            Stage::Connected | Stage::Greeted => {
                Step::reply(Reply::new(503, "5.5.1", "send EHLO first"))
            }
            _ => Step::reply(bad_sequence()),
        }
    }

    pub(super) fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
        policy: &mut dyn Policy,
    ) -> Step {
        let refusal = if !self.config.auth.enabled {
            Some(Reply::new(503, "5.5.1", "authentication not enabled"))
        } else if !self.esmtp {
            Some(Reply::new(503, "5.5.1", "send EHLO first"))
        } else if !self.tls && !self.config.auth.plaintext {
            // RFC 4954 §6.
            Some(Reply::new(
                538,
                "5.7.11",
                "encryption required for requested authentication mechanism",
            ))
        } else if self.identity.is_some() {
            // RFC 4954 §4: once authenticated, AUTH may not be issued again.
            Some(Reply::new(503, "5.5.1", "already authenticated"))
        } else if !matches!(self.stage, Stage::Greeted) {
            Some(Reply::new(
                503,
                "5.5.1",
                "AUTH not allowed during a mail transaction",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            return Step::reply(reply);
        }
        let (exchange, step) = Exchange::start(mechanism, initial.as_deref().map(str::as_bytes));
        self.auth_step(exchange, step, policy)
    }

    /// The client's answer to a 334 challenge.
    pub(super) fn auth_response(
        &mut self,
        mut exchange: Exchange,
        line: &[u8],
        policy: &mut dyn Policy,
    ) -> Step {
        let step = exchange.feed(line);
        let step = self.auth_step(exchange, step, policy);
        if step.reply.as_ref().is_some_and(|r| r.code >= 500) {
            self.count_error(step)
        } else {
            step
        }
    }

    fn auth_step(&mut self, exchange: Exchange, step: SaslStep, policy: &mut dyn Policy) -> Step {
        match step {
            SaslStep::Challenge(text) => {
                self.exchange = Some(exchange);
                Step::reply(Reply::plain(334, text))
            }
            SaslStep::Fail(f) => Step::reply(Reply::new(f.code, f.status, f.text)),
            SaslStep::Done(credentials) => match policy.authenticate(&credentials) {
                Ok(()) => {
                    self.identity = Some(credentials.authcid.clone());
                    Step::reply(Reply::new(235, "2.7.0", "authentication successful"))
                }
                Err(reply) => Step::reply(reply),
            },
        }
    }
}
