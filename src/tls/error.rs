//! What can go wrong in loading TLS files, building configurations and
//! handshaking, worded for the operator: which file, what was wrong with
//! it, what to do.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which file a loading error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The server's certificate chain (PEM).
    Certificate,
    /// The server's private key (PEM).
    PrivateKey,
    /// A bundle of trusted CA certificates (PEM).
    CaBundle,
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileRole::Certificate => "certificate file",
            FileRole::PrivateKey => "private key file",
            FileRole::CaBundle => "CA file",
        })
    }
}

/// What was wrong with the contents of a PEM file.
#[derive(Debug)]
pub enum PemProblem {
    /// No `CERTIFICATE` block in it.
    NoCertificate,
    /// No private key block of a supported kind in it.
    NoPrivateKey,
    /// The key is encrypted with a passphrase, which a daemon cannot type.
    EncryptedKey,
    /// The text is not valid PEM (bad base64, a block without its end line).
    Malformed(rustls::pki_types::pem::Error),
}

impl fmt::Display for PemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemProblem::NoCertificate => f.write_str(
                "no certificate in it (expected PEM blocks -----BEGIN CERTIFICATE-----)",
            ),
            PemProblem::NoPrivateKey => f.write_str(
                "no private key in it (expected one PEM block -----BEGIN PRIVATE KEY----- \
                 (PKCS#8), -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)",
            ),
            PemProblem::EncryptedKey => f.write_str(
                "the private key is encrypted with a passphrase; store it unencrypted \
                 (openssl pkey -in KEY -out NEW) and protect it with file permissions (0600)",
            ),
            PemProblem::Malformed(e) => write!(f, "not valid PEM: {e}"),
        }
    }
}

/// A TLS configuration could not be built, or a handshake failed.
#[derive(Debug)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read.
    Read {
        /// Which file.
        role: FileRole,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file was read but holds nothing usable of the kind expected.
    Pem {
        /// Which file.
        role: FileRole,
        /// Its path.
        path: PathBuf,
        /// What was wrong.
        problem: PemProblem,
    },
    /// The certificate chain and the key do not make a usable pair: the key
    /// does not belong to the first certificate, the key type is not
    /// supported, or a certificate is not valid DER.
    CertKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// No CA file was given and none of [`SYSTEM_CA_BUNDLES`] exists.
    ///
    /// [`SYSTEM_CA_BUNDLES`]: super::SYSTEM_CA_BUNDLES
    NoSystemRoots {
        /// The paths looked at.
        tried: &'static [&'static str],
    },
    /// A CA file held no certificate usable as a trust anchor.
    NoUsableRoots {
        /// The CA file.
        path: PathBuf,
        /// How many certificates in it could not be parsed.
        ignored: usize,
    },
    /// rustls refused a configuration (a bug: the versions and provider
    /// are fixed in this module).
    Config(rustls::Error),
    /// The certificate verifier could not be built from the trust anchors.
    Verifier(rustls::client::VerifierBuilderError),
    /// A client connection was asked for a name that is neither a DNS name
    /// nor an IP address.
    ServerName {
        /// The name given.
        name: String,
    },
    /// The handshake failed: rustls or the peer refused it (certificate
    /// not trusted, no common protocol version or cipher suite, ...).
    Handshake {
        /// The peer, if the socket still knew it.
        peer: Option<SocketAddr>,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The handshake did not finish by its deadline.
    HandshakeTimeout {
        /// The peer, if the socket still knew it.
        peer: Option<SocketAddr>,
    },
    /// The connection failed or was closed during the handshake.
    HandshakeIo {
        /// The peer, if the socket still knew it.
        peer: Option<SocketAddr>,
        /// The socket error; `UnexpectedEof` when the peer closed.
        source: io::Error,
    },
    /// STARTTLS on a stream that is already TLS (the session must refuse
    /// a second STARTTLS before it gets here: RFC 3207 §4).
    AlreadyTls,
}

/// `1.2.3.4:25`, or `unknown peer` once the socket has forgotten it.
struct Peer(Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("unknown peer"),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { role, path, source } => {
                write!(f, "cannot read TLS {role} {}: {source}", path.display())
            }
            TlsError::Pem {
                role,
                path,
                problem,
            } => write!(f, "TLS {role} {}: {problem}", path.display()),
            TlsError::CertKey { cert, key, source } => write!(
                f,
                "TLS certificate {} and private key {} are not a usable pair: {}",
                cert.display(),
                key.display(),
                describe_cert_key(source)
            ),
            TlsError::NoSystemRoots { tried } => write!(
                f,
                "no CA bundle found for verifying servers (looked for {}); \
                 install the CA certificates package (Debian: ca-certificates, \
                 OpenWrt: ca-bundle) or name a CA file",
                tried.join(", ")
            ),
            TlsError::NoUsableRoots { path, ignored } => write!(
                f,
                "TLS CA file {}: no usable CA certificate in it ({ignored} could not be parsed)",
                path.display()
            ),
            TlsError::Config(e) => write!(f, "TLS configuration refused: {e}"),
            TlsError::Verifier(e) => write!(f, "TLS certificate verifier: {e}"),
            TlsError::ServerName { name } => write!(
                f,
                "{name:?} is not a valid TLS server name (a DNS name or IP address)"
            ),
            TlsError::Handshake { peer, source } => write!(
                f,
                "TLS handshake with {} failed: {}",
                Peer(*peer),
                describe_handshake(source)
            ),
            TlsError::HandshakeTimeout { peer } => write!(
                f,
                "TLS handshake with {} did not finish in time",
                Peer(*peer)
            ),
            TlsError::HandshakeIo { peer, source } => {
                write!(f, "TLS handshake with {} failed: {source}", Peer(*peer))
            }
            TlsError::AlreadyTls => f.write_str("STARTTLS on a connection that is already TLS"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } | TlsError::HandshakeIo { source, .. } => Some(source),
            TlsError::Pem {
                problem: PemProblem::Malformed(e),
                ..
            } => Some(e),
            TlsError::CertKey { source, .. }
            | TlsError::Handshake { source, .. }
            | TlsError::Config(source) => Some(source),
            TlsError::Verifier(e) => Some(e),
            _ => None,
        }
    }
}

/// rustls' words for a bad certificate/key pair, with what to do.
fn describe_cert_key(error: &rustls::Error) -> String {
    use rustls::{Error, InconsistentKeys};
    match error {
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the key does not belong to the first certificate in the file \
             (the server's own certificate must come first, then the intermediates)"
                .to_string()
        }
        Error::InconsistentKeys(InconsistentKeys::Unknown) => {
            "cannot tell whether the key belongs to the certificate".to_string()
        }
        Error::General(_) => {
            format!("{error} (supported: RSA of 2048 bits or more, ECDSA P-256/P-384, Ed25519)")
        }
        other => other.to_string(),
    }
}

/// rustls' words for a failed handshake, with a hint for the usual
/// certificate problems.
fn describe_handshake(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    let hint = match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "; the certificate is not issued by a trusted CA (check the CA file)"
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "; the certificate does not name the host connected to",
        Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "; check the certificate's dates and this system's clock",
        _ => "",
    };
    format!("{error}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_error_names_the_file_and_its_role() {
        let e = TlsError::Read {
            role: FileRole::PrivateKey,
            path: "/etc/detad/key.pem".into(),
            source: io::ErrorKind::NotFound.into(),
        };
        let text = e.to_string();
        assert!(text.starts_with("cannot read TLS private key file /etc/detad/key.pem: "));
    }

    #[test]
    fn key_mismatch_says_which_files_and_the_order_rule() {
        let e = TlsError::CertKey {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            source: rustls::InconsistentKeys::KeyMismatch.into(),
        };
        let text = e.to_string();
        assert!(text.contains("c.pem") && text.contains("k.pem"), "{text}");
        assert!(
            text.contains("does not belong to the first certificate"),
            "{text}"
        );
    }

    #[test]
    fn unknown_issuer_hints_at_the_ca_file() {
        let e = TlsError::Handshake {
            peer: Some("192.0.2.1:25".parse().unwrap()),
            source: rustls::CertificateError::UnknownIssuer.into(),
        };
        let text = e.to_string();
        assert!(text.contains("192.0.2.1:25"), "{text}");
        assert!(text.contains("check the CA file"), "{text}");
    }

    #[test]
    fn timeout_without_peer_is_still_readable() {
        let e = TlsError::HandshakeTimeout { peer: None };
        assert_eq!(
            e.to_string(),
            "TLS handshake with unknown peer did not finish in time"
        );
    }
}
