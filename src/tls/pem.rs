//! Reading PEM files (rustls-pki-types' parser, re-exported by rustls):
//! certificate chains, one private key, CA bundles. Each file is read once,
//! whole; every error names the file and what it was for.

use std::fs;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{FileRole, PemProblem, TlsError};

/// The markers of a passphrase-protected key: PKCS#8 `ENCRYPTED PRIVATE
/// KEY`, and the legacy OpenSSL header inside an RSA or EC block.
const ENCRYPTED_KEY_MARKERS: &[&[u8]] = &[b"ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED"];

/// The contents of `path`.
pub(super) fn read_file(role: FileRole, path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        role,
        path: path.to_path_buf(),
        source,
    })
}

/// Every `CERTIFICATE` block in `text` (the contents of `path`), in order;
/// other blocks (a key in the same file) are skipped. At least one.
pub(super) fn certificates(
    role: FileRole,
    path: &Path,
    text: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |problem| TlsError::Pem {
        role,
        path: path.to_path_buf(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(PemProblem::Malformed(e)))?;
    if certs.is_empty() {
        return Err(bad(PemProblem::NoCertificate));
    }
    Ok(certs)
}

/// The first private key in `text` (the contents of `path`): PKCS#8
/// (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
pub(super) fn private_key(path: &Path, text: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bad = |problem| TlsError::Pem {
        role: FileRole::PrivateKey,
        path: path.to_path_buf(),
        problem,
    };
    // Before parsing: a legacy encrypted block parses as PEM, and would only
    // fail later as "not a key" without saying why.
    if ENCRYPTED_KEY_MARKERS
        .iter()
        .any(|marker| contains(text, marker))
    {
        return Err(bad(PemProblem::EncryptedKey));
    }
    PrivateKeyDer::from_pem_slice(text).map_err(|e| match e {
        pem::Error::NoItemsFound => bad(PemProblem::NoPrivateKey),
        e => bad(PemProblem::Malformed(e)),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A syntactically valid PEM block; the DER inside is not checked here.
    const CERT_BLOCK: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
    const KEY_BLOCK: &str = "-----BEGIN PRIVATE KEY-----\nBAUG\n-----END PRIVATE KEY-----\n";

    #[track_caller]
    fn problem(result: Result<impl std::fmt::Debug, TlsError>) -> PemProblem {
        match result {
            Err(TlsError::Pem { problem, .. }) => problem,
            other => panic!("expected a PEM problem, got {other:?}"),
        }
    }

    #[test]
    fn certificates_are_read_in_order_and_keys_skipped() {
        let text = format!("{CERT_BLOCK}{KEY_BLOCK}{CERT_BLOCK}");
        let certs = certificates(FileRole::Certificate, Path::new("c"), text.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), &[1, 2, 3]);
    }

    #[test]
    fn file_without_certificate_is_no_certificate() {
        let p = problem(certificates(
            FileRole::Certificate,
            Path::new("c"),
            KEY_BLOCK.as_bytes(),
        ));
        assert!(matches!(p, PemProblem::NoCertificate));
    }

    #[test]
    fn unterminated_block_is_malformed() {
        let p = problem(certificates(
            FileRole::CaBundle,
            Path::new("c"),
            b"-----BEGIN CERTIFICATE-----\nAQID\n",
        ));
        assert!(matches!(p, PemProblem::Malformed(_)));
    }

    #[test]
    fn pkcs8_rsa_and_ec_key_blocks_are_keys() {
        let block = |label: &str| format!("-----BEGIN {label}-----\nBAUG\n-----END {label}-----\n");
        let key = |label: &str| private_key(Path::new("k"), block(label).as_bytes()).unwrap();
        assert!(matches!(key("PRIVATE KEY"), PrivateKeyDer::Pkcs8(_)));
        assert!(matches!(key("RSA PRIVATE KEY"), PrivateKeyDer::Pkcs1(_)));
        assert!(matches!(key("EC PRIVATE KEY"), PrivateKeyDer::Sec1(_)));
    }

    #[test]
    fn certificate_only_file_has_no_private_key() {
        let p = problem(private_key(Path::new("k"), CERT_BLOCK.as_bytes()));
        assert!(matches!(p, PemProblem::NoPrivateKey));
    }

    #[test]
    fn encrypted_keys_are_named_as_such() {
        let pkcs8 =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nBAUG\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nBAUG\n-----END RSA PRIVATE KEY-----\n";
        for text in [pkcs8, legacy] {
            let p = problem(private_key(Path::new("k"), text.as_bytes()));
            assert!(matches!(p, PemProblem::EncryptedKey), "{text}");
        }
    }
}
