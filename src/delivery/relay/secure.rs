//! Encrypting a session as `relay_tls` asks, on the model of Postfix's
//! smtp(8): implicit TLS for `smtps:` (RFC 8314 §3.3), STARTTLS after EHLO
//! (RFC 3207), then EHLO again.
//!
//! | `relay_tls`     | STARTTLS offered                         | not offered   |
//! |-----------------|------------------------------------------|---------------|
//! | `none`          | not used                                 | plaintext     |
//! | `opportunistic` | used; an unverified certificate is logged | plaintext     |
//! | `require`       | used; the certificate must verify        | 4.7.4, defer  |
//!
//! A handshake that fails ends the connection (4.7.5): there is no way
//! back to plaintext on it (RFC 3207 §4.1), and none is tried on another.
//! A refused STARTTLS (`454`) is plaintext under `opportunistic`, 4.7.4
//! under `require`.

use log::debug;
#[cfg(feature = "tls")]
use log::info;

use super::Security;
use super::connection::Connection;
use super::error::{Insecurity, OpenError};
use crate::config::RelayTls;
#[cfg(feature = "tls")]
use crate::smtp::reply_parser::Extensions;

impl Connection {
    /// `smtps:`: the handshake before the greeting. The certificate is
    /// checked as `relay_tls = require` says; under `none` or
    /// `opportunistic` one that does not verify is logged.
    pub(super) fn implicit_tls(&mut self, security: &Security) -> Result<(), OpenError> {
        #[cfg(feature = "tls")]
        if let Some(client) = &security.client {
            let policy = match security.tls {
                RelayTls::Require => RelayTls::Require,
                _ => RelayTls::Opportunistic,
            };
            return self.handshake(client, policy);
        }
        Err(self.insecure(Insecurity::Unavailable(
            security.unavailable_reason("smtps: needs TLS"),
        )))
    }

    /// STARTTLS after EHLO, as `security.tls` says; on success EHLO again.
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    pub(super) fn secure(&mut self, security: &Security, helo_name: &str) -> Result<(), OpenError> {
        if self.is_tls() || security.tls == RelayTls::None {
            return Ok(());
        }
        #[cfg(feature = "tls")]
        if let Some(client) = &security.client
            && self.extensions.starttls
        {
            return self.starttls(client, security.tls, helo_name);
        }
        match security.tls {
            RelayTls::Require if !security.can_tls() => Err(self.insecure(
                Insecurity::Unavailable(security.unavailable_reason("TLS is unavailable")),
            )),
            RelayTls::Require => Err(self.insecure(Insecurity::NotOffered)),
            _ => {
                debug!("relay: {} in plaintext: no STARTTLS", self.peer_name());
                Ok(())
            }
        }
    }

    /// Ends the session for a security reason: QUIT, then the error.
    pub(super) fn insecure(&mut self, problem: Insecurity) -> OpenError {
        self.close_politely();
        self.abandon();
        log::warn!(
            "relay: {}",
            OpenError::Insecure {
                host: self.host.clone(),
                addr: self.peer,
                problem: problem.clone(),
            }
        );
        OpenError::Insecure {
            host: self.host.clone(),
            addr: self.peer,
            problem,
        }
    }

    #[cfg(feature = "tls")]
    fn starttls(
        &mut self,
        client: &crate::tls::ClientTls,
        policy: RelayTls,
        helo_name: &str,
    ) -> Result<(), OpenError> {
        let reply = self
            .command("STARTTLS\r\n")
            .map_err(|e| self.lost_open("doing STARTTLS", e))?;
        if reply.code != 220 {
            // RFC 3207 §4: after 454 the client decides; 421 ends the session.
            if policy == RelayTls::Require || reply.code == 421 {
                return Err(self.insecure(Insecurity::StartTlsRefused(reply)));
            }
            info!(
                "relay: {} refused STARTTLS ({reply}); going on in plaintext (relay_tls = opportunistic)",
                self.peer_name()
            );
            return Ok(());
        }
        self.handshake(client, policy)?;
        // RFC 3207 §4.2: forget what was learned before TLS; EHLO again.
        self.extensions = Extensions::default();
        let reply = self
            .command(&format!("EHLO {helo_name}\r\n"))
            .map_err(|e| self.lost_open("doing EHLO after STARTTLS", e))?;
        if !reply.is_positive() {
            return Err(self.refused(reply));
        }
        self.extensions = Extensions::parse_ehlo(&reply);
        debug!(
            "relay: {} offers {:?} over TLS",
            self.peer_name(),
            self.extensions
        );
        Ok(())
    }

    /// The client handshake on the plaintext link, by the command timeout.
    /// `Require`: the certificate must verify; otherwise a failed check is
    /// logged and the session goes on encrypted (RFC 7435).
    #[cfg(feature = "tls")]
    fn handshake(
        &mut self,
        client: &crate::tls::ClientTls,
        policy: RelayTls,
    ) -> Result<(), OpenError> {
        use super::link::Link;
        use crate::tls::PeerCheck;

        // RFC 3207 §4.2 (and CVE-2011-0411, mirrored): what the hop sent
        // after its 220 came before TLS and is never read as a reply.
        let ahead = self.discard_input();
        if ahead > 0 {
            log::warn!(
                "relay: {} sent {ahead} bytes after its 220 before the TLS handshake; discarded",
                self.peer_name()
            );
        }
        let Link::Plain(sock) = std::mem::replace(self.stream.get_mut(), Link::Gone) else {
            unreachable!("a TLS handshake on a link that is not plaintext");
        };
        let deadline = crate::clock::deadline_after(self.timeouts.command);
        let name = super::connection::bare_host(&self.host);
        let result = match policy {
            RelayTls::Require => client
                .connect(sock, name, deadline)
                .map(|s| (s, PeerCheck::Verified)),
            _ => client.connect_opportunistic(sock, name, deadline),
        };
        let (tls, check) = match result {
            Ok(pair) => pair,
            Err(source) => {
                self.usable = false;
                let e = OpenError::Handshake {
                    host: self.host.clone(),
                    addr: self.peer,
                    source: Box::new(source),
                };
                log::warn!("relay: {e}");
                return Err(e);
            }
        };
        match check {
            PeerCheck::Verified => debug!(
                "relay: TLS with {}: {}, certificate verified",
                self.peer_name(),
                tls.info()
            ),
            PeerCheck::Failed(e) => info!(
                "relay: TLS with {}: {}, certificate NOT verified ({e}); encrypting anyway (relay_tls = opportunistic)",
                self.peer_name(),
                tls.info()
            ),
        }
        *self.stream.get_mut() = Link::Tls(Box::new(tls));
        Ok(())
    }
}
