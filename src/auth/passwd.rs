//! The users who may authenticate, from a Dovecot passwd-file.
//!
//! ```text
//! # comment lines and blank lines are skipped
//! alice:{SHA512-CRYPT}$6$rounds=100000$8Xh1…:1000:1000::/home/alice
//! bob:{CRYPT}$6$…
//! carol:$6$…
//! ```
//!
//! Each entry is `user:password` optionally followed by more `:`-separated
//! fields (uid, gid, gecos, home, shell, extra fields), which are ignored.
//! The password is `{SCHEME}hash`, or a bare hash, which Dovecot reads as
//! its passwd-file default scheme `CRYPT`. Supported: `{SHA512-CRYPT}`,
//! `{CRYPT}` with a `$6$` hash, and a bare `$6$` hash. Scheme names are
//! case-insensitive, as in Dovecot; user names are case-sensitive.
//!
//! Guarantees:
//! - [`Users::parse`] accepts a file only if every entry is usable. An
//!   unsupported scheme (PLAIN, BLF-CRYPT, SHA256-CRYPT, MD5-CRYPT, …), a
//!   malformed hash, a bad user name or a second entry for a user is an
//!   error naming the line, so a typo cannot quietly lock someone out.
//! - [`Users::verify`] does the same work for an unknown user as for the
//!   file's costliest entry, so its timing does not tell which users exist
//!   when all entries share rounds and salt length (as hashes made by one
//!   tool do).
//! - Errors and `Debug` output never contain a hash.

use std::collections::HashMap;
use std::fmt;

use super::crypt::{CryptError, Sha512Crypt};

/// The longest password [`Users::verify`] will hash; longer ones fail at
/// once. SHA512-CRYPT's work grows with the password length (twice per
/// round, and with its square once), so an unbounded one is a way to burn
/// CPU. RFC 4616 §2 asks servers to accept passwords of up to 255 octets.
pub const MAX_PASSWORD_LEN: usize = 256;

/// The schemes [`Users::parse`] accepts, for error messages.
const SUPPORTED: &str = "supported are {SHA512-CRYPT}, {CRYPT} with a $6$ hash, or a bare $6$ hash \
     (make one with `doveadm pw -s SHA512-CRYPT` or `openssl passwd -6`)";

/// A passwd-file line that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdError {
    /// The line number, counting from 1 (comment and blank lines count).
    pub line: usize,
    /// What is wrong with it.
    pub kind: PasswdErrorKind,
}

/// What is wrong with a passwd-file line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswdErrorKind {
    /// The user name is empty or has white space or control characters.
    InvalidUser,
    /// No `:` after the user name, or an empty password field.
    MissingPassword,
    /// A `{` that starts a scheme name has no closing `}`.
    UnterminatedScheme,
    /// A scheme other than the supported ones. Holds the scheme as written
    /// in `{…}` or, for a `{CRYPT}` or bare hash that is not `$6$`, the
    /// Dovecot name of its format (`BLF-CRYPT` for `$2y$`, …; `CRYPT` for
    /// an unrecognised one such as DES crypt or a plaintext password).
    UnsupportedScheme(String),
    /// A `$6$` hash that is malformed.
    InvalidHash(CryptError),
    /// A second entry for a user; holds the user name.
    DuplicateUser(String),
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            PasswdErrorKind::InvalidUser => {
                f.write_str("user name is empty or has white space or control characters")
            }
            PasswdErrorKind::MissingPassword => {
                f.write_str("no password field after the user name")
            }
            PasswdErrorKind::UnterminatedScheme => {
                write!(f, "password scheme has no closing '}}'; {SUPPORTED}")
            }
            PasswdErrorKind::UnsupportedScheme(scheme)
                if scheme.eq_ignore_ascii_case("BLF-CRYPT") =>
            {
                write!(
                    f,
                    "unsupported password scheme {{{scheme}}} (bcrypt is not built in); {SUPPORTED}"
                )
            }
            PasswdErrorKind::UnsupportedScheme(scheme) => {
                write!(f, "unsupported password scheme {{{scheme}}}; {SUPPORTED}")
            }
            PasswdErrorKind::InvalidHash(error) => {
                write!(f, "malformed SHA512-CRYPT hash: {error}")
            }
            PasswdErrorKind::DuplicateUser(user) => write!(f, "second entry for user {user:?}"),
        }
    }
}

impl std::error::Error for PasswdError {}

/// The users of a passwd-file and their hashes; read-only once parsed.
pub struct Users {
    hashes: HashMap<String, Sha512Crypt>,
    /// Verified in place of an unknown user's hash: same rounds and salt as
    /// the costliest entry. `None` when there are no users.
    decoy: Option<Sha512Crypt>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.hashes.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Parses the text of a passwd-file (LF or CRLF line ends).
    ///
    /// # Errors
    ///
    /// A [`PasswdError`] for the first line that cannot be used.
    pub fn parse(text: &str) -> Result<Users, PasswdError> {
        let mut hashes = HashMap::new();
        let mut costliest: Option<Sha512Crypt> = None;
        for (index, line) in text.lines().enumerate() {
            let error = |kind| PasswdError {
                line: index + 1,
                kind,
            };
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (user, hash) = parse_entry(line).map_err(error)?;
            if hashes.contains_key(user) {
                return Err(error(PasswdErrorKind::DuplicateUser(user.to_string())));
            }
            if costliest
                .as_ref()
                .is_none_or(|c| hash.rounds() > c.rounds())
            {
                costliest = Some(hash.clone());
            }
            hashes.insert(user.to_string(), hash);
        }
        Ok(Users {
            hashes,
            decoy: costliest.map(|hash| hash.decoy()),
        })
    }

    /// Whether `user` exists and `password` is theirs. User names are
    /// compared exactly (case-sensitively). An unknown user costs a full
    /// verification too (see the module guarantees); a password over
    /// [`MAX_PASSWORD_LEN`] octets fails at once, whoever the user.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        let (hash, known) = match (self.hashes.get(user), &self.decoy) {
            (Some(hash), _) => (hash, true),
            (None, Some(decoy)) => (decoy, false),
            (None, None) => return false,
        };
        let matched = hash.verify(password);
        known && matched
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there are no users (then nobody can authenticate).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// One non-comment line: the user name and the parsed hash.
fn parse_entry(line: &str) -> Result<(&str, Sha512Crypt), PasswdErrorKind> {
    let (user, rest) = line
        .split_once(':')
        .ok_or(PasswdErrorKind::MissingPassword)?;
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PasswdErrorKind::InvalidUser);
    }
    // Later fields (uid, gid, gecos, home, shell, extra) are not ours.
    let password = rest.split_once(':').map_or(rest, |(password, _)| password);
    if password.is_empty() {
        return Err(PasswdErrorKind::MissingPassword);
    }
    Ok((user, parse_password(password)?))
}

/// A password field: `{SCHEME}hash` or a bare hash (Dovecot's default
/// scheme for passwd-file is CRYPT).
fn parse_password(field: &str) -> Result<Sha512Crypt, PasswdErrorKind> {
    let (scheme, hash) = match field.strip_prefix('{') {
        Some(rest) => rest
            .split_once('}')
            .ok_or(PasswdErrorKind::UnterminatedScheme)?,
        None => ("CRYPT", field),
    };
    let is_sha512_crypt = scheme.eq_ignore_ascii_case("SHA512-CRYPT")
        || (scheme.eq_ignore_ascii_case("CRYPT") && hash.starts_with("$6$"));
    if is_sha512_crypt {
        return Sha512Crypt::parse(hash).map_err(PasswdErrorKind::InvalidHash);
    }
    let named = if scheme.eq_ignore_ascii_case("CRYPT") {
        crypt_format_name(hash)
    } else {
        scheme
    };
    Err(PasswdErrorKind::UnsupportedScheme(named.to_string()))
}

/// Dovecot's scheme name for the format of a `crypt(3)` hash, from its
/// `$id$` prefix; `CRYPT` when unrecognised (DES crypt, plaintext, …).
fn crypt_format_name(hash: &str) -> &'static str {
    const FORMATS: [(&str, &str); 7] = [
        ("$1$", "MD5-CRYPT"),
        ("$2a$", "BLF-CRYPT"),
        ("$2b$", "BLF-CRYPT"),
        ("$2y$", "BLF-CRYPT"),
        ("$5$", "SHA256-CRYPT"),
        ("$7$", "SCRYPT"),
        ("$y$", "YESCRYPT"),
    ];
    FORMATS
        .iter()
        .find(|(prefix, _)| hash.starts_with(prefix))
        .map_or("CRYPT", |&(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::super::crypt::crypt;
    use super::*;

    /// From `openssl passwd -6 -salt 'rounds=1000$aliceSaltAlice16' 'alice password'`.
    const ALICE: &str = "$6$rounds=1000$aliceSaltAlice16$ceXCL1UhunNhOlf48j9jzJ8DO/N81UYmqatToP3exkzFM4E/WRj6N0kQ/wXTdqR5TWKn6G6q1apXnle8X1exU.";
    /// From `openssl passwd -6 -salt 'rounds=1000$bobsalt' 'hunter2'`.
    const BOB: &str = "$6$rounds=1000$bobsalt$Jtqi..BSkt3rQubHu9D3HCLPk/ak1D450fShOqSyx2unV0YEqdvawtdu6OgUYXL6nzFYajCOVupjGZewVEszq1";
    /// From `openssl passwd -6 -salt 'rounds=2000$carolSalt' 'Carol!'`.
    const CAROL: &str = "$6$rounds=2000$carolSalt$RT5haeJmdqZkinR9Dby/AW1mC4HE7R9p2850THVGkJ5QXPUk2w6U2mizQiWfoFTP67AX1Efdnrspf1ymL4pPR.";
    /// From `openssl passwd -6 -salt 'rounds=1000$AliceUpper' 'other password'`.
    const ALICE_UPPER: &str = "$6$rounds=1000$AliceUpper$ATanpSuPQDOoL8o7wAhGCqXGTWEd0uI2JA3WCdQ2CDef6s7ITYrNNMqneMmq.COoU6xgZ/nDin8WZ8PsPeO3z1";

    #[track_caller]
    fn users(text: &str) -> Users {
        match Users::parse(text) {
            Ok(users) => users,
            Err(e) => panic!("{e}"),
        }
    }

    #[track_caller]
    fn parse_error(text: &str) -> PasswdError {
        match Users::parse(text) {
            Ok(users) => panic!("parsed: {users:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn all_three_spellings_of_sha512_crypt_are_accepted() {
        let users = users(&format!(
            "alice:{{SHA512-CRYPT}}{ALICE}\nbob:{{CRYPT}}{BOB}\ncarol:{CAROL}\n"
        ));
        assert_eq!(users.len(), 3);
        assert!(users.verify("alice", b"alice password"));
        assert!(users.verify("bob", b"hunter2"));
        assert!(users.verify("carol", b"Carol!"));
    }

    #[test]
    fn scheme_names_are_case_insensitive() {
        let users = users(&format!(
            "alice:{{sha512-crypt}}{ALICE}\nbob:{{Crypt}}{BOB}"
        ));
        assert!(users.verify("alice", b"alice password"));
        assert!(users.verify("bob", b"hunter2"));
    }

    #[test]
    fn wrong_password_is_refused() {
        let users = users(&format!("bob:{BOB}"));
        assert!(!users.verify("bob", b"hunter3"));
        assert!(!users.verify("bob", b"Hunter2"));
        assert!(!users.verify("bob", b""));
    }

    #[test]
    fn unknown_user_is_refused() {
        let users = users(&format!("bob:{BOB}"));
        assert!(!users.verify("alice", b"hunter2"));
        assert!(!users.verify("", b"hunter2"));
    }

    #[test]
    fn user_names_are_case_sensitive() {
        let users = users(&format!("alice:{ALICE}\nAlice:{ALICE_UPPER}"));
        assert_eq!(users.len(), 2);
        assert!(users.verify("alice", b"alice password"));
        assert!(users.verify("Alice", b"other password"));
        assert!(!users.verify("Alice", b"alice password"));
        assert!(!users.verify("ALICE", b"alice password"));
    }

    #[test]
    fn fields_after_the_password_are_ignored() {
        let users = users(&format!(
            "bob:{{SHA512-CRYPT}}{BOB}:1000:1000:Bob B:/home/bob:/bin/false:userdb_quota_rule=*:storage=1G"
        ));
        assert!(users.verify("bob", b"hunter2"));
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_handled() {
        let text = format!("# users\r\n\r\n   \r\n  # indented comment\r\nbob:{BOB}\r\n\r\n");
        let users = users(&text);
        assert_eq!(users.len(), 1);
        assert!(users.verify("bob", b"hunter2"));
    }

    #[test]
    fn empty_file_has_no_users_and_verifies_nobody() {
        let users = users("# nobody yet\n");
        assert!(users.is_empty());
        assert!(!users.verify("bob", b"hunter2"));
    }

    #[test]
    fn unsupported_schemes_are_errors_naming_line_and_scheme() {
        let cases = [
            ("bob:{PLAIN}hunter2", "PLAIN"),
            (
                "bob:{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuuQ1R2bJ2lOWzUg8C7n5vK0sH2nY6yW4W",
                "BLF-CRYPT",
            ),
            (
                "bob:{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                "SHA256-CRYPT",
            ),
            ("bob:{MD5}$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1", "MD5"),
            ("bob:{SHA512-CRYPT.b64}JDYk", "SHA512-CRYPT.b64"),
            (
                "bob:{CRYPT}$2y$05$abcdefghijklmnopqrstuuQ1R2bJ2lOWzUg8C7n5vK0sH2nY6yW4W",
                "BLF-CRYPT",
            ),
            ("bob:$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1", "MD5-CRYPT"),
            (
                "bob:$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                "SHA256-CRYPT",
            ),
            ("bob:hunter2", "CRYPT"),
            ("bob:{}x", ""),
        ];
        for (line, scheme) in cases {
            let error = parse_error(&format!("# header\n{line}"));
            assert_eq!(error.line, 2, "{line}");
            assert_eq!(
                error.kind,
                PasswdErrorKind::UnsupportedScheme(scheme.to_string())
            );
            let message = error.to_string();
            assert!(
                message.starts_with("line 2: unsupported password scheme"),
                "{message}"
            );
            assert!(message.contains(&format!("{{{scheme}}}")), "{message}");
            assert!(
                message.contains("supported are {SHA512-CRYPT}"),
                "{message}"
            );
        }
    }

    #[test]
    fn blf_crypt_message_says_bcrypt_is_not_built_in() {
        let error = parse_error("bob:{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu");
        let message = error.to_string();
        assert!(
            message.contains("{BLF-CRYPT} (bcrypt is not built in)"),
            "{message}"
        );
        assert!(message.contains("doveadm pw -s SHA512-CRYPT"), "{message}");
    }

    #[test]
    fn malformed_sha512_crypt_hash_is_an_error() {
        let truncated = &BOB[..BOB.len() - 1];
        let error = parse_error(&format!("alice:{ALICE}\nbob:{{SHA512-CRYPT}}{truncated}"));
        assert_eq!(error.line, 2);
        assert_eq!(
            error.kind,
            PasswdErrorKind::InvalidHash(CryptError::InvalidChecksum)
        );
        assert!(!error.to_string().contains("Jtqi"), "no hash in messages");
        let error = parse_error("bob:{SHA512-CRYPT}$5$saltstring$5B8vYYiY");
        assert_eq!(
            error.kind,
            PasswdErrorKind::InvalidHash(CryptError::NotSha512Crypt)
        );
        let error = parse_error(&format!("bob:{}", BOB.replace("1000", "10")));
        assert_eq!(
            error.kind,
            PasswdErrorKind::InvalidHash(CryptError::InvalidRounds)
        );
    }

    #[test]
    fn trailing_white_space_after_the_hash_is_an_error() {
        let error = parse_error(&format!("bob:{BOB} "));
        assert_eq!(
            error.kind,
            PasswdErrorKind::InvalidHash(CryptError::InvalidChecksum)
        );
    }

    #[test]
    fn missing_password_is_an_error() {
        for line in ["bob", "bob:", "bob::1000:1000"] {
            assert_eq!(
                parse_error(line).kind,
                PasswdErrorKind::MissingPassword,
                "{line}"
            );
        }
    }

    #[test]
    fn unterminated_scheme_is_an_error() {
        let error = parse_error(&format!("bob:{{SHA512-CRYPT{BOB}"));
        assert_eq!(error.kind, PasswdErrorKind::UnterminatedScheme);
    }

    #[test]
    fn empty_or_spaced_user_names_are_errors() {
        for line in [
            format!(":{BOB}"),
            format!(" bob:{BOB}"),
            format!("bo b:{BOB}"),
        ] {
            assert_eq!(
                parse_error(&line).kind,
                PasswdErrorKind::InvalidUser,
                "{line}"
            );
        }
    }

    #[test]
    fn duplicate_user_is_an_error_on_the_second_line() {
        let error = parse_error(&format!("bob:{BOB}\n# again\nbob:{{CRYPT}}{BOB}"));
        assert_eq!(error.line, 3);
        assert_eq!(
            error.kind,
            PasswdErrorKind::DuplicateUser("bob".to_string())
        );
        assert_eq!(error.to_string(), "line 3: second entry for user \"bob\"");
    }

    #[test]
    fn overlong_password_is_refused_without_hashing() {
        let longest = vec![b'x'; MAX_PASSWORD_LEN];
        let too_long = vec![b'x'; MAX_PASSWORD_LEN + 1];
        let longest_hash = crypt(&longest, "$6$rounds=1000$long").unwrap();
        let too_long_hash = crypt(&too_long, "$6$rounds=1000$long").unwrap();
        let users = users(&format!(
            "ann:{longest_hash}
bob:{too_long_hash}"
        ));
        assert!(users.verify("ann", &longest));
        assert!(!users.verify("bob", &too_long));
    }

    #[test]
    fn unknown_users_cost_as_much_as_the_costliest_entry() {
        let users = users(&format!("alice:{ALICE}\ncarol:{CAROL}\nbob:{BOB}"));
        let decoy = users.decoy.as_ref().unwrap();
        assert_eq!((decoy.rounds(), decoy.salt()), (2000, "carolSalt"));
        // And the decoy never lets anyone in, even with the right password.
        assert!(!users.verify("nobody", b"Carol!"));
    }

    #[test]
    fn debug_shows_no_names_or_hashes() {
        let shown = format!("{:?}", users(&format!("bob:{BOB}")));
        assert_eq!(shown, "Users { count: 1, .. }");
    }
}
