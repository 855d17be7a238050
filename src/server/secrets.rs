//! What the configuration names but does not contain: the server's TLS
//! certificate and key (`tls_cert`, `tls_key`) and the AUTH users
//! (`auth_users`). Loaded at startup, before the switch to `user` (so the
//! files may be readable by root alone), and again on SIGHUP (then they must
//! be readable by `user`; if they are not, the old ones stay and the log
//! says why).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::auth::passwd::Users;
use crate::config::Config;

/// The loaded certificate and users; immutable, replaced whole on reload.
#[derive(Default)]
pub struct Secrets {
    /// The server's certificate and key, for STARTTLS and implicit TLS.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ServerTls>,
    /// The users who may AUTH.
    pub users: Option<Users>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("tls", &self.has_tls())
            .field("users", &self.users.as_ref().map(Users::len))
            .finish()
    }
}

/// A file named in the configuration could not be used.
#[derive(Debug)]
pub struct SecretsError {
    /// The configuration key.
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong, and what to do.
    pub why: String,
    /// The file could not be read for lack of permission (after startup
    /// the daemon reads as its `user`).
    pub permission: bool,
}

impl fmt::Display for SecretsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.key, self.path.display(), self.why)
    }
}

impl std::error::Error for SecretsError {}

impl Secrets {
    /// Loads what `config` names.
    ///
    /// # Errors
    /// The first file that cannot be read or used, with the key naming it.
    pub fn load(config: &Config) -> Result<Secrets, SecretsError> {
        let users = match &config.auth_users {
            Some(path) => Some(load_users(path)?),
            None => None,
        };
        Ok(Secrets {
            #[cfg(feature = "tls")]
            tls: load_tls(config)?,
            users,
        })
    }

    /// Whether a certificate is loaded (STARTTLS and implicit TLS work).
    pub fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        return false;
    }
}

#[cfg(feature = "tls")]
fn load_tls(config: &Config) -> Result<Option<crate::tls::ServerTls>, SecretsError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    use crate::tls::{FileRole, TlsError};
    crate::tls::ServerTls::load(cert, key)
        .map(Some)
        .map_err(|e| {
            let (key_name, path, permission) = match &e {
                TlsError::Read { role, path, source } => (
                    *role,
                    path.clone(),
                    source.kind() == std::io::ErrorKind::PermissionDenied,
                ),
                TlsError::Pem { role, path, .. } => (*role, path.clone(), false),
                _ => (FileRole::Certificate, cert.clone(), false),
            };
            SecretsError {
                key: match key_name {
                    FileRole::PrivateKey => "tls_key",
                    _ => "tls_cert",
                },
                path,
                why: e.to_string(),
                permission,
            }
        })
}

fn load_users(path: &Path) -> Result<Users, SecretsError> {
    let error = |why: String, permission: bool| SecretsError {
        key: "auth_users",
        path: path.to_path_buf(),
        why,
        permission,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        error(
            e.to_string(),
            e.kind() == std::io::ErrorKind::PermissionDenied,
        )
    })?;
    let users = Users::parse(&text).map_err(|e| error(e.to_string(), false))?;
    if users.is_empty() {
        return Err(error("no users in the file".into(), false));
    }
    Ok(users)
}

/// The secrets in effect, swapped whole on SIGHUP; a session takes the
/// current ones when it starts and keeps them to its end.
#[derive(Debug, Default)]
pub struct LiveSecrets(RwLock<Arc<Secrets>>);

impl LiveSecrets {
    /// Starts with `secrets`.
    pub fn new(secrets: Secrets) -> LiveSecrets {
        LiveSecrets(RwLock::new(Arc::new(secrets)))
    }

    /// The secrets in effect now.
    pub fn get(&self) -> Arc<Secrets> {
        Arc::clone(&self.0.read().expect("secrets lock poisoned"))
    }

    /// Installs reloaded secrets.
    pub fn set(&self, secrets: Secrets) {
        *self.0.write().expect("secrets lock poisoned") = Arc::new(secrets);
    }
}
