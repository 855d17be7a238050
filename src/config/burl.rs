//! The BURL settings (RFC 4468): the one IMAP server detad fetches from,
//! how it talks to it, and its own submit login there.
//!
//! ```text
//! burl_imap = 127.0.0.1:143          the only host and port a URL may name
//! burl_tls = starttls                none | starttls | tls (imaps)
//! burl_ca = /etc/detad/imap-ca.pem   trust anchors for that server
//! burl_user = submit                 detad's IMAP login (RFC 4468 §3.3)
//! burl_password_file = /etc/detad/burl.pass   the password alone, not o+r
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// `burl_tls`: how the IMAP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BurlTls {
    /// Plain IMAP (a server on the same host, loopback only).
    None,
    /// STARTTLS before the login (RFC 4468 §3.3 requires it be possible).
    #[default]
    StartTls,
    /// TLS from the first octet (imaps, RFC 8314).
    Tls,
}

impl BurlTls {
    /// Parses `none`, `starttls` or `tls`.
    ///
    /// # Errors
    /// Any other value.
    pub fn parse(value: &str) -> Result<BurlTls, String> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Ok(BurlTls::None),
            "starttls" => Ok(BurlTls::StartTls),
            "tls" => Ok(BurlTls::Tls),
            _ => Err(format!("`{value}` is not none, starttls or tls")),
        }
    }
}

impl fmt::Display for BurlTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BurlTls::None => "none",
            BurlTls::StartTls => "starttls",
            BurlTls::Tls => "tls",
        })
    }
}

/// The submit password, read from `burl_password_file`; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BurlPassword {
    /// The file it came from.
    pub path: PathBuf,
    password: String,
}

impl fmt::Debug for BurlPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BurlPassword")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The longest password accepted (IMAP servers take far less).
const MAX_PASSWORD: usize = 1024;

impl BurlPassword {
    /// Reads the password: the first line of `path`, which must not be
    /// readable or writable by every user.
    ///
    /// # Errors
    /// The file is unreadable, too open, or its first line is empty.
    pub fn load(path: &Path) -> Result<BurlPassword, String> {
        let shown = path.display();
        let text = super::relay::read_private(path)?;
        let first = text.lines().next().unwrap_or("");
        let password = first.strip_suffix('\r').unwrap_or(first);
        if password.is_empty() {
            return Err(format!("{shown}: the first line (the password) is empty"));
        }
        if password.len() > MAX_PASSWORD || password.contains('\0') {
            return Err(format!(
                "{shown}: the password must be at most {MAX_PASSWORD} octets, without NUL"
            ));
        }
        Ok(BurlPassword {
            path: path.to_path_buf(),
            password: password.to_string(),
        })
    }

    /// The password, for the login only.
    pub fn password(&self) -> &str {
        &self.password
    }
}

/// Everything BURL needs; present when `burl_imap` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burl {
    /// The IMAP server's host (name or address literal, as URLs must name it).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: BurlTls,
    /// Trust anchors for its certificate (none: the system's).
    pub ca: Option<PathBuf>,
    /// detad's login.
    pub user: String,
    /// Its password.
    pub password: Option<BurlPassword>,
}

/// `HOST:PORT` (an IPv6 literal in brackets).
///
/// # Errors
/// No port, or a port that is not 1..65535.
pub fn parse_host_port(value: &str) -> Result<(String, u16), String> {
    let bad = || format!("`{value}` is not HOST:PORT (e.g. 127.0.0.1:143)");
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn host_and_port_are_split_at_the_last_colon() {
        assert_eq!(
            parse_host_port("127.0.0.1:143"),
            Ok(("127.0.0.1".into(), 143))
        );
        assert_eq!(parse_host_port("[::1]:993"), Ok(("[::1]".into(), 993)));
        for bad in ["imap.example", ":143", "h:0", "h:70000", "h: 1"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_password_file_is_one_line_and_private() {
        let dir = std::env::temp_dir().join(format!("detad-burlpass-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pass");
        fs::write(&path, "s3cret\r\nignored\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let p = BurlPassword::load(&path).unwrap();
        assert_eq!(p.password(), "s3cret");
        assert!(!format!("{p:?}").contains("s3cret"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(BurlPassword::load(&path).unwrap_err().contains("chmod 600"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
