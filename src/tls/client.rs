//! The client side (the relay's uplink): trust anchors from a CA file or
//! the system's bundle, and two ways to treat the server's certificate.
//!
//! - Verified ([`ClientTls::connect`]): rustls checks the chain against the
//!   trust anchors and the certificate against the name connected to; a
//!   failure fails the handshake.
//! - Opportunistic ([`ClientTls::connect_opportunistic`]): the handshake
//!   completes whatever the chain, but the handshake signatures are still
//!   checked against the presented certificate, and the very same chain
//!   and name check runs right after, before a byte of SMTP is sent. Its
//!   outcome comes back as a [`PeerCheck`] for the caller to act on:
//!   deliver anyway (encryption against passive listeners, RFC 7435), or
//!   close the connection and defer, or fall back. Encrypting over an
//!   unverified certificate is never worse than the plaintext that
//!   opportunistic STARTTLS would otherwise fall back to.
//!
//! The two modes have separate configurations and so separate session
//! caches: a session resumed in verified mode was verified when it was made.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::error::{FileRole, TlsError};
use super::stream::TlsStream;
use super::{PROTOCOL_VERSIONS, pem, provider};

/// Where the system's CA bundle is looked for without a CA file, in order;
/// the first that exists is used. Debian, Ubuntu, Alpine, OpenWrt
/// (`ca-bundle`) and Buildroot use the first one.
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Trust anchors and the client configurations built on them.
#[derive(Debug, Clone)]
pub struct ClientTls {
    ca_file: PathBuf,
    verifier: Arc<WebPkiServerVerifier>,
    verified: Arc<ClientConfig>,
    opportunistic: Arc<ClientConfig>,
}

/// What the check of the server's certificate said, in opportunistic mode.
#[derive(Debug)]
pub enum PeerCheck {
    /// The chain leads to a trust anchor and the certificate names the host.
    Verified,
    /// It does not; rustls says why (e.g. `UnknownIssuer`,
    /// `NotValidForName`, `Expired`).
    Failed(rustls::Error),
}

impl ClientTls {
    /// Loads the trust anchors from `ca_file`, or, without one, from the
    /// first of [`SYSTEM_CA_BUNDLES`] that exists.
    ///
    /// # Errors
    /// [`TlsError::NoSystemRoots`] when no bundle is found,
    /// [`TlsError::Read`] or [`TlsError::Pem`] for an unreadable file,
    /// [`TlsError::NoUsableRoots`] when no certificate in it is usable.
    pub fn new(ca_file: Option<&Path>) -> Result<ClientTls, TlsError> {
        let ca_file = match ca_file {
            Some(path) => path.to_path_buf(),
            None => find_bundle(SYSTEM_CA_BUNDLES)?,
        };
        let roots = load_roots(&ca_file)?;
        let provider = provider();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(TlsError::Verifier)?;
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(TlsError::Config)?
            .with_webpki_verifier(Arc::clone(&verifier))
            .with_no_client_auth();
        let opportunistic = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainCheckedAfter {
                inner: Arc::clone(&verifier),
            }))
            .with_no_client_auth();
        Ok(ClientTls {
            ca_file,
            verifier,
            verified: Arc::new(verified),
            opportunistic: Arc::new(opportunistic),
        })
    }

    /// The CA file the trust anchors came from.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The configuration that fails the handshake on a bad certificate.
    pub fn verified_config(&self) -> &Arc<ClientConfig> {
        &self.verified
    }

    /// The configuration that completes the handshake whatever the chain;
    /// only for use with [`ClientTls::check_peer`] afterwards.
    pub fn opportunistic_config(&self) -> &Arc<ClientConfig> {
        &self.opportunistic
    }

    /// Runs a verified client handshake with `server_name` (the host name
    /// connected to, or an IP address) on `sock`, by `deadline`.
    ///
    /// # Errors
    /// [`TlsError::ServerName`] for a name that is neither; otherwise as
    /// [`TlsStream::new`], a bad certificate being a
    /// [`TlsError::Handshake`] with `rustls::Error::InvalidCertificate`.
    pub fn connect(
        &self,
        sock: TcpStream,
        server_name: &str,
        deadline: Instant,
    ) -> Result<TlsStream, TlsError> {
        let name = parse_server_name(server_name)?;
        let conn =
            ClientConnection::new(Arc::clone(&self.verified), name).map_err(TlsError::Config)?;
        TlsStream::new(conn, sock, deadline)
    }

    /// Runs an opportunistic client handshake: completed whatever the
    /// server's certificate, which is then checked as in verified mode.
    /// Nothing has been sent over the stream yet; on
    /// [`PeerCheck::Failed`] the caller decides whether to go on.
    ///
    /// # Errors
    /// As [`ClientTls::connect`], except for certificate problems.
    pub fn connect_opportunistic(
        &self,
        sock: TcpStream,
        server_name: &str,
        deadline: Instant,
    ) -> Result<(TlsStream, PeerCheck), TlsError> {
        let name = parse_server_name(server_name)?;
        let conn = ClientConnection::new(Arc::clone(&self.opportunistic), name.clone())
            .map_err(TlsError::Config)?;
        let stream = TlsStream::new(conn, sock, deadline)?;
        let check = self.check_peer(&stream, &name);
        Ok((stream, check))
    }

    /// Checks the certificate chain `stream`'s server presented against the
    /// trust anchors and `server_name`, as verified mode does in the
    /// handshake.
    pub fn check_peer(&self, stream: &TlsStream, server_name: &ServerName<'_>) -> PeerCheck {
        let chain = stream.connection().peer_certificates().unwrap_or_default();
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return PeerCheck::Failed(rustls::Error::NoCertificatesPresented);
        };
        match self.verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            &[],
            UnixTime::now(),
        ) {
            Ok(_) => PeerCheck::Verified,
            Err(e) => PeerCheck::Failed(e),
        }
    }
}

/// `name` as a TLS server name; an MX host's trailing dot is dropped (SNI
/// and certificates carry none).
fn parse_server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    ServerName::try_from(bare.to_string()).map_err(|_| TlsError::ServerName {
        name: name.to_string(),
    })
}

/// The first of `candidates` that is a file.
fn find_bundle(candidates: &'static [&'static str]) -> Result<PathBuf, TlsError> {
    candidates
        .iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .map(Path::to_path_buf)
        .ok_or(TlsError::NoSystemRoots { tried: candidates })
}

/// The usable trust anchors in the PEM bundle at `path`; at least one.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let text = pem::read_file(FileRole::CaBundle, path)?;
    let certs = pem::certificates(FileRole::CaBundle, path, &text)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoUsableRoots {
            path: path.to_path_buf(),
            ignored,
        });
    }
    if ignored > 0 {
        log::debug!(
            "tls: {}: {added} CA certificates used, {ignored} not parsable",
            path.display()
        );
    }
    Ok(roots)
}

/// Opportunistic mode's verifier: accepts any chain in the handshake (it
/// is checked by [`ClientTls::check_peer`] right after), but still checks
/// the handshake signatures, so the peer holds the key of the certificate
/// it presented.
#[derive(Debug)]
struct ChainCheckedAfter {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainCheckedAfter {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_addresses_are_server_names() {
        for name in [
            "mx.example.org",
            "mx.example.org.",
            "192.0.2.1",
            "2001:db8::1",
        ] {
            assert!(parse_server_name(name).is_ok(), "{name}");
        }
        let bare = parse_server_name("mx.example.org.").unwrap();
        assert_eq!(bare.to_str(), "mx.example.org");
    }

    #[test]
    fn junk_is_not_a_server_name() {
        let e = parse_server_name("mx example").unwrap_err();
        assert!(matches!(e, TlsError::ServerName { ref name } if name == "mx example"));
    }

    #[test]
    fn no_bundle_lists_the_paths_looked_at() {
        const NOWHERE: &[&str] = &["/nonexistent/detad/a.crt", "/nonexistent/detad/b.crt"];
        let e = find_bundle(NOWHERE).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/nonexistent/detad/a.crt, /nonexistent/detad/b.crt"),
            "{text}"
        );
    }

    #[test]
    fn first_existing_bundle_wins() {
        // A directory is not a bundle; /proc/self/status always exists.
        const CANDIDATES: &[&str] = &["/nonexistent/detad/a.crt", "/", "/proc/self/status"];
        assert_eq!(
            find_bundle(CANDIDATES).unwrap(),
            Path::new("/proc/self/status")
        );
    }
}
