//! The uplink's settings: `relay_tls` (the STARTTLS policy) and
//! `relay_auth` (the credentials file, read and checked when the key is
//! set: at start, at `-t` and on each reload).
//!
//! The password never leaves [`RelayAuth`] except through
//! [`RelayAuth::password`]: it is not in `Debug`, `Display` or any error.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `relay_tls`: whether the relay client encrypts with STARTTLS
/// (RFC 3207), on the model of Postfix's `smtp_tls_security_level`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayTls {
    /// `none`: never STARTTLS (an `smtps:` route is still TLS: that is
    /// its transport).
    None,
    /// `opportunistic`: STARTTLS when the hop offers it; a certificate that
    /// does not verify is logged and accepted (RFC 7435); without the
    /// offer, plaintext.
    #[default]
    Opportunistic,
    /// `require`: TLS with a verified certificate, or the message waits.
    Require,
}

impl RelayTls {
    /// Parses `none`, `opportunistic` or `require`.
    ///
    /// # Errors
    /// A message naming the three values.
    pub fn parse(value: &str) -> Result<RelayTls, String> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Ok(RelayTls::None),
            "opportunistic" => Ok(RelayTls::Opportunistic),
            "require" => Ok(RelayTls::Require),
            _ => Err(format!("`{value}` is not none, opportunistic or require")),
        }
    }
}

impl fmt::Display for RelayTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayTls::None => "none",
            RelayTls::Opportunistic => "opportunistic",
            RelayTls::Require => "require",
        })
    }
}

/// RFC 4616 §2: the authentication identity and the password are at most
/// 255 octets each.
const MAX_CREDENTIAL: usize = 255;

/// `relay_auth`: the user and password the relay client authenticates
/// with (AUTH PLAIN or LOGIN, RFC 4954), from a file that only its owner
/// (and group) may read.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayAuth {
    /// The file the credentials came from.
    pub path: PathBuf,
    /// The user name (SASL authentication identity).
    pub user: String,
    password: String,
}

impl fmt::Debug for RelayAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayAuth")
            .field("path", &self.path)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl RelayAuth {
    /// Reads `path`: one line `user:password` (split at the first `:`;
    /// empty lines are ignored), the file not readable or writable by
    /// others (`o+r`, `o+w`: the message says `chmod 600`).
    ///
    /// # Errors
    /// A message naming the file and what is wrong; never the password.
    pub fn load(path: &Path) -> Result<RelayAuth, String> {
        let text = read_private(path)?;
        let (user, password) =
            parse_credentials(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(RelayAuth {
            path: path.to_path_buf(),
            user,
            password,
        })
    }

    /// Credentials given directly (tests, embedding).
    pub fn new(user: &str, password: &str) -> RelayAuth {
        RelayAuth {
            path: PathBuf::new(),
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// The password, for the AUTH exchange only: never log it.
    pub fn password(&self) -> &str {
        &self.password
    }
}

/// Reads a file that holds a password: refused when every user may read
/// or write it (`o+r`, `o+w`), with a message that says `chmod 600`.
///
/// # Errors
/// The file cannot be read, or is open to every user.
pub(super) fn read_private(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        return Err(format!(
            "{shown} holds a password and is accessible to every user (mode {mode:04o}); \
             chmod 600 {shown} (owned by the user detad runs as)"
        ));
    }
    fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))
}

/// The one `user:password` line of a credentials file.
fn parse_credentials(text: &str) -> Result<(String, String), String> {
    let mut lines = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((n, line)) = lines.next() else {
        return Err("no `user:password` line in it".into());
    };
    if let Some((extra, _)) = lines.next() {
        return Err(format!(
            "line {}: only one `user:password` line is allowed",
            extra + 1
        ));
    }
    let n = n + 1;
    let Some((user, password)) = line.split_once(':') else {
        return Err(format!("line {n}: expected `user:password`"));
    };
    if user.is_empty() || password.is_empty() {
        return Err(format!(
            "line {n}: the user and the password must not be empty"
        ));
    }
    // RFC 4616 §2: NUL separates the fields of PLAIN; the lengths are bounded.
    if line.contains('\0') {
        return Err(format!("line {n}: a NUL character cannot be sent"));
    }
    if user.len() > MAX_CREDENTIAL || password.len() > MAX_CREDENTIAL {
        return Err(format!(
            "line {n}: the user and the password are at most {MAX_CREDENTIAL} octets each"
        ));
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_tls_values_parse_and_print_back() {
        for value in ["none", "opportunistic", "require"] {
            assert_eq!(RelayTls::parse(value).unwrap().to_string(), value);
        }
        assert_eq!(RelayTls::parse("REQUIRE"), Ok(RelayTls::Require));
        assert!(RelayTls::parse("yes").is_err());
        assert_eq!(RelayTls::default(), RelayTls::Opportunistic);
    }

    #[test]
    fn one_line_is_split_at_the_first_colon() {
        assert_eq!(
            parse_credentials("\nrelay-user:pa:ss word\r\n\n"),
            Ok(("relay-user".into(), "pa:ss word".into()))
        );
    }

    #[test]
    fn bad_files_are_refused_without_showing_the_password() {
        for (text, want) in [
            ("", "no `user:password`"),
            ("u:secret\nv:secret\n", "line 2: only one"),
            ("usersecret\n", "line 1: expected"),
            (":secret\n", "must not be empty"),
            ("u:\n", "must not be empty"),
            ("u:sec\0ret\n", "NUL"),
        ] {
            let e = parse_credentials(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("secret") && !e.contains("sec"), "{e}");
        }
        let long = format!("u:{}\n", "p".repeat(256));
        assert!(parse_credentials(&long).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let auth = RelayAuth::new("relay-user", "hunter2");
        let shown = format!("{auth:?}");
        assert!(shown.contains("relay-user") && !shown.contains("hunter2"));
        assert_eq!(auth.password(), "hunter2");
    }
}
