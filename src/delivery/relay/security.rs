//! [`Security`]: what the relay client needs to encrypt and authenticate
//! a session, built from the configuration once, at start and on each
//! reload ([`LiveSecurity`]), never per message: the STARTTLS policy, the
//! trust anchors (`relay_ca` or the system's bundle) and the credentials.

use std::fmt;
use std::sync::{Arc, RwLock};

use crate::config::{Config, RelayAuth, RelayTls, Transport};
#[cfg(feature = "tls")]
use crate::tls::{ClientTls, TlsError};

/// How sessions to the hops are secured.
#[derive(Debug, Clone)]
pub struct Security {
    /// STARTTLS policy (`relay_tls`).
    pub tls: RelayTls,
    /// Trust anchors and client configurations; `None` when no TLS is
    /// possible (see [`Security::unavailable`]).
    #[cfg(feature = "tls")]
    pub client: Option<Arc<ClientTls>>,
    /// Why TLS cannot be had, when it cannot: said once at start.
    pub unavailable: Option<&'static str>,
    /// Credentials for AUTH (`relay_auth`), sent only over TLS.
    pub auth: Option<RelayAuth>,
}

impl Default for Security {
    /// Plaintext without AUTH: `relay_tls = none`, no `relay_auth`.
    fn default() -> Security {
        Security {
            tls: RelayTls::None,
            #[cfg(feature = "tls")]
            client: None,
            unavailable: None,
            auth: None,
        }
    }
}

/// The trust anchors could not be loaded.
#[derive(Debug)]
pub enum SecurityError {
    /// `relay_ca` or the system's bundle is missing or unusable.
    #[cfg(feature = "tls")]
    Tls(TlsError),
}

impl fmt::Display for SecurityError {
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            #[cfg(feature = "tls")]
            SecurityError::Tls(ref e) => write!(f, "relay uplink (relay_tls, relay_ca): {e}"),
        }
    }
}

impl std::error::Error for SecurityError {}

/// Without a CA bundle, opportunistic STARTTLS is off (there is nothing
/// to check a certificate against, and so nothing worth logging).
#[cfg(feature = "tls")]
const NO_BUNDLE: &str = "no CA bundle found (install ca-certificates or set relay_ca)";

/// Without the `tls` feature, opportunistic STARTTLS is plaintext.
#[cfg(not(feature = "tls"))]
const NO_TLS_BUILD: &str = "detad was built without TLS";

impl Security {
    /// The settings of `config`. The trust anchors are loaded only when an
    /// `smtp:` route may use TLS or an `smtps:` route must.
    ///
    /// # Errors
    /// `relay_ca` unusable; no system bundle when `relay_tls = require` or
    /// an `smtps:` route needs one.
    pub fn from_config(config: &Config) -> Result<Security, SecurityError> {
        let (mut starttls, mut smtps) = (false, false);
        for route in &config.routes {
            if let Transport::Smtp { implicit_tls, .. } = route.transport {
                smtps |= implicit_tls;
                starttls |= !implicit_tls;
            }
        }
        let mut security = Security {
            tls: config.relay_tls,
            auth: config.relay_auth.clone(),
            ..Security::default()
        };
        if !(smtps || starttls && config.relay_tls != RelayTls::None) {
            return Ok(security);
        }
        #[cfg(feature = "tls")]
        match ClientTls::new(config.relay_ca.as_deref()) {
            Ok(client) => security.client = Some(Arc::new(client)),
            Err(TlsError::NoSystemRoots { .. })
                if config.relay_tls == RelayTls::Opportunistic && !smtps =>
            {
                security.unavailable = Some(NO_BUNDLE);
            }
            Err(e) => return Err(SecurityError::Tls(e)),
        }
        #[cfg(not(feature = "tls"))]
        {
            security.unavailable = Some(NO_TLS_BUILD);
        }
        Ok(security)
    }

    /// Whether a TLS handshake can be made at all.
    pub fn can_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.client.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Why TLS cannot be had, or `fallback`.
    pub(super) fn unavailable_reason(&self, fallback: &'static str) -> &'static str {
        self.unavailable.unwrap_or(fallback)
    }

    /// One line for the start log, e.g. `relay_tls=require (CA file
    /// /etc/detad/ca.pem), AUTH as relay-user`.
    pub fn summary(&self) -> String {
        let tls = match (self.unavailable, self.tls) {
            (Some(why), _) => format!("relay_tls={} but STARTTLS is off: {why}", self.tls),
            #[cfg(feature = "tls")]
            (None, _) if self.client.is_some() => {
                let ca = self
                    .client
                    .as_ref()
                    .map(|c| c.ca_file().display().to_string());
                format!(
                    "relay_tls={} (CA file {})",
                    self.tls,
                    ca.unwrap_or_default()
                )
            }
            (None, tls) => format!("relay_tls={tls}"),
        };
        match &self.auth {
            Some(auth) => format!("{tls}, AUTH as {} over TLS only", auth.user),
            None => format!("{tls}, no AUTH"),
        }
    }
}

/// The [`Security`] in effect, replaced whole on reload; a worker takes
/// the current one when it opens a connection.
#[derive(Debug)]
pub struct LiveSecurity(RwLock<Arc<Security>>);

impl LiveSecurity {
    /// Starts with `security`.
    pub fn new(security: Security) -> LiveSecurity {
        LiveSecurity(RwLock::new(Arc::new(security)))
    }

    /// The settings in effect now.
    pub fn get(&self) -> Arc<Security> {
        Arc::clone(&self.0.read().expect("uplink lock poisoned"))
    }

    /// Installs reloaded settings.
    pub fn set(&self, security: Security) {
        *self.0.write().expect("uplink lock poisoned") = Arc::new(security);
    }
}
