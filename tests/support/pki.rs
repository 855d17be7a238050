//! A throwaway PKI made with the `openssl` command at test time (no key is
//! ever committed): two CAs, and a server certificate for `localhost` and
//! 127.0.0.1 issued by the first. Without `openssl`, [`Pki::new`] says so
//! and returns `None`, and the test passes without running.
//! `tests/tls.rs` adds more certificate variants with [`Pki::issue`].

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::TempDir;

/// The openssl configuration: the CA and server certificate extensions.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = detad test
[ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// `ca.pem` and `other-ca.pem` (self-signed CAs), and `server.pem` with
/// `server.key` (EC P-256) issued by `ca.pem`, in a temporary directory.
#[derive(Debug)]
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// Makes the PKI; `None` (with a line on stderr) without openssl.
    pub fn new(test: &str) -> Option<Pki> {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!(
                "skipping {test}: the openssl command is not installed (apt-get install openssl)"
            );
            return None;
        }
        let pki = Pki {
            dir: TempDir::new(test),
        };
        std::fs::write(pki.path("openssl.cnf"), OPENSSL_CNF).unwrap();
        pki.ca("ca");
        pki.ca("other-ca");
        pki.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "server.key",
        ]);
        pki.issue("server.key", "server.pem");
        Some(pki)
    }

    /// A file of the PKI.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A server certificate `pem` for the key `key` (a file of the PKI),
    /// issued by `ca.pem` for `localhost` and 127.0.0.1.
    #[track_caller]
    pub fn issue(&self, key: &str, pem: &str) {
        #[rustfmt::skip]
        self.openssl(&["req", "-new", "-config", "openssl.cnf", "-key", key,
            "-out", "server.csr"]);
        #[rustfmt::skip]
        self.openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "2", "-days", "2", "-extfile", "openssl.cnf", "-extensions", "leaf",
            "-out", pem]);
    }

    /// Runs `openssl ARGS` in the PKI's directory; it must succeed.
    #[track_caller]
    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed CA `NAME.pem` with its key `NAME.key`.
    fn ca(&self, name: &str) {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        #[rustfmt::skip]
        self.openssl(&["req", "-x509", "-new", "-config", "openssl.cnf", "-extensions", "ca",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key,
            "-out", &pem, "-days", "2", "-subj", &format!("/CN=detad test {name}")]);
    }
}
