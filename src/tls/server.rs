//! The server side: the certificate chain and private key from PEM files,
//! one immutable configuration per load.
//!
//! Reloading (SIGHUP) is loading again: on success swap the new
//! [`ServerTls`] in (it is an `Arc` inside, cheap to clone into each
//! session), on failure keep the old one and log the error. A handshake in
//! progress keeps the configuration it started with.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection};

use super::error::{FileRole, TlsError};
use super::stream::TlsStream;
use super::{PROTOCOL_VERSIONS, pem, provider};

/// A loaded server certificate and key: what STARTTLS (RFC 3207) and
/// implicit TLS (RFC 8314) handshakes are made with.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// Loads the certificate chain from `cert_pem` (the server's own
    /// certificate first, then the intermediates; the root may be left
    /// out) and the private key from `key_pem` (PKCS#8, or the traditional
    /// RSA and EC forms; unencrypted). Both may name the same file. Offers
    /// TLS 1.3 and 1.2, asks no client certificate.
    ///
    /// # Errors
    /// [`TlsError::Read`] or [`TlsError::Pem`] name the file and what is
    /// wrong with it; [`TlsError::CertKey`] says why the pair is unusable
    /// (the key belongs to another certificate, an unsupported key type).
    pub fn load(cert_pem: &Path, key_pem: &Path) -> Result<ServerTls, TlsError> {
        let text = pem::read_file(FileRole::Certificate, cert_pem)?;
        let certs = pem::certificates(FileRole::Certificate, cert_pem, &text)?;
        let text = pem::read_file(FileRole::PrivateKey, key_pem)?;
        let key = pem::private_key(key_pem, &text)?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            // Parses the key and checks it against the first certificate.
            .with_single_cert(certs, key)
            .map_err(|source| TlsError::CertKey {
                cert: cert_pem.to_path_buf(),
                key: key_pem.to_path_buf(),
                source,
            })?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration, for callers that build connections
    /// themselves.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Runs the server handshake on `sock`, which must finish by
    /// `deadline`: at once after accept for implicit TLS, after the `220`
    /// reply to STARTTLS otherwise (then use
    /// [`Stream::start_tls_server`](super::Stream::start_tls_server), which
    /// discards plaintext read ahead).
    ///
    /// # Errors
    /// As [`TlsStream::new`].
    pub fn accept(&self, sock: TcpStream, deadline: Instant) -> Result<TlsStream, TlsError> {
        let conn = ServerConnection::new(Arc::clone(&self.config)).map_err(TlsError::Config)?;
        TlsStream::new(conn, sock, deadline)
    }
}
