//! AUTH (RFC 4954) with the `relay_auth` credentials, after TLS: PLAIN
//! (RFC 4616) with an initial response, else LOGIN. Only over TLS: both
//! send the password as it is, so on a plaintext session the message
//! waits (4.7.10) and nothing of the credentials is sent (RFC 4616 §5).
//!
//! A hop that offers neither PLAIN nor LOGIN (or no AUTH at all) gets the
//! mail without AUTH, as Postfix does; if it wants AUTH it says so to MAIL
//! or RCPT. AUTH lines are traced as `AUTH PLAIN <hidden>`, never as sent.

use std::io;

use log::{debug, info};

use super::connection::Connection;
use super::error::{Insecurity, OpenError};
use crate::auth::base64;
use crate::config::RelayAuth;
use crate::smtp::reply::Reply;

/// The SASL mechanisms the client knows, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    /// RFC 4616: one response with the user and the password.
    Plain,
    /// draft-murchison-sasl-login: the user, then the password, each
    /// after a `334` challenge.
    Login,
}

/// The mechanism to use among those `offered` (upper case), if any.
fn choose(offered: &[String]) -> Option<Mechanism> {
    let has = |name: &str| offered.iter().any(|m| m == name);
    if has("PLAIN") {
        Some(Mechanism::Plain)
    } else if has("LOGIN") {
        Some(Mechanism::Login)
    } else {
        None
    }
}

/// The PLAIN message (RFC 4616 §2): no authorization identity, then the
/// authentication identity and the password, each after a NUL.
fn plain_response(auth: &RelayAuth) -> String {
    let message = format!("\0{}\0{}", auth.user, auth.password());
    base64::encode(message.as_bytes())
}

impl Connection {
    /// Authenticates with `auth` if the hop offers PLAIN or LOGIN.
    ///
    /// # Errors
    /// [`Insecurity::CredentialsInClear`] on a plaintext session;
    /// [`OpenError::AuthRefused`] for a 4yz or 5yz answer; a lost
    /// connection or an answer that makes no sense.
    pub(super) fn authenticate(&mut self, auth: &RelayAuth) -> Result<(), OpenError> {
        let Some(mechanism) = choose(&self.extensions.auth) else {
            if !self.extensions.auth.is_empty() {
                info!(
                    "relay: {} offers AUTH {} but neither PLAIN nor LOGIN; sending without authentication",
                    self.peer_name(),
                    self.extensions.auth.join(" ")
                );
            }
            return Ok(());
        };
        // RFC 4616 §5, RFC 4954 §4: a password as it is, only under TLS.
        if !self.is_tls() {
            return Err(self.insecure(Insecurity::CredentialsInClear));
        }
        let reply = match mechanism {
            Mechanism::Plain => {
                let line = format!("AUTH PLAIN {}\r\n", plain_response(auth));
                self.secret_command(&line, "AUTH PLAIN <hidden>")?
            }
            Mechanism::Login => self.auth_login(auth)?,
        };
        match reply.code {
            // RFC 4954 §6: 235 2.7.0 Authentication Succeeded.
            235 => {
                debug!(
                    "relay: authenticated to {} as {} ({mechanism:?})",
                    self.peer_name(),
                    auth.user
                );
                Ok(())
            }
            _ if reply.is_transient() || reply.is_permanent() => {
                self.close_politely();
                self.abandon();
                Err(OpenError::AuthRefused {
                    host: self.host.clone(),
                    addr: self.peer,
                    reply,
                })
            }
            _ => {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected reply to AUTH: {reply}"),
                );
                Err(self.lost_open("doing AUTH", e))
            }
        }
    }

    /// AUTH LOGIN: the user and the password, each answering a `334`.
    /// Returns the first reply that is not a `334`, or the last one.
    fn auth_login(&mut self, auth: &RelayAuth) -> Result<Reply, OpenError> {
        let reply = self
            .command("AUTH LOGIN\r\n")
            .map_err(|e| self.lost_open("doing AUTH", e))?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let user = format!("{}\r\n", base64::encode(auth.user.as_bytes()));
        let reply = self.secret_command(&user, "<hidden>")?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let password = format!("{}\r\n", base64::encode(auth.password().as_bytes()));
        self.secret_command(&password, "<hidden>")
    }

    /// Sends a line that carries credentials (traced as `shown`) and reads
    /// the reply.
    fn secret_command(&mut self, line: &str, shown: &str) -> Result<Reply, OpenError> {
        let timeout = self.timeouts.command;
        self.write_secret(line, shown)
            .and_then(|()| self.read_reply(timeout))
            .map_err(|e| self.lost_open("doing AUTH", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_is_preferred_then_login() {
        assert_eq!(
            choose(&offered(&["LOGIN", "PLAIN"])),
            Some(Mechanism::Plain)
        );
        assert_eq!(
            choose(&offered(&["CRAM-MD5", "LOGIN"])),
            Some(Mechanism::Login)
        );
        assert_eq!(choose(&offered(&["CRAM-MD5"])), None);
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn plain_response_is_rfc4616_without_authzid() {
        // RFC 4616 §4 example: "\0tim\0tanstaaftanstaaf".
        let auth = RelayAuth::new("tim", "tanstaaftanstaaf");
        assert_eq!(plain_response(&auth), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    }
}
