//! SHA512-CRYPT: the `$6$` scheme of Ulrich Drepper's "Unix crypt using
//! SHA-256 and SHA-512" (the algorithm behind glibc's and libxcrypt's
//! `crypt(3)`, `openssl passwd -6` and Dovecot's `{SHA512-CRYPT}`).
//!
//! ```text
//! $6$[rounds=N$]SALT$CHECKSUM
//!     N         decimal; 5000 when absent; a requested value is clamped
//!               to 1000..=999999999
//!     SALT      at most 16 characters (longer ones are cut to 16)
//!     CHECKSUM  86 characters of ./0-9A-Za-z: the 64-octet digest in the
//!               specification's own order and base64 variant
//! ```
//!
//! Guarantees:
//! - [`crypt`] returns what the specification's `crypt(3)` returns for the
//!   same setting: its test vectors are the tests below, and hashes from
//!   `openssl passwd -6` verify.
//! - [`Sha512Crypt::parse`] accepts exactly the strings `crypt` can return
//!   (rounds in range and written without leading zeros, salt of at most
//!   16 characters, an 86-character checksum). A stored hash that
//!   could never match is thus reported as malformed, not silently
//!   refused at every login.
//! - [`Sha512Crypt::verify`] compares the whole checksum in constant time.
//!
//! Cost: `rounds` SHA-512 computations of two blocks or so each, plus
//! twice the password length per round and the password length squared
//! once (the specification's P sequence). The rounds come from the
//! operator's password file and the whole range the specification allows
//! is accepted; the password comes from the client, so callers bound its
//! length (see [`super::passwd::MAX_PASSWORD_LEN`]).

use std::fmt;

use super::sha512::{DIGEST_LEN, Sha512};

/// Rounds used when a hash or setting has no `rounds=` (Drepper's spec).
pub const DEFAULT_ROUNDS: u32 = 5000;

/// The least number of rounds; smaller requests are raised to it.
pub const MIN_ROUNDS: u32 = 1000;

/// The largest number of rounds; larger requests are lowered to it.
pub const MAX_ROUNDS: u32 = 999_999_999;

/// The longest salt used; `crypt` ignores the characters after it.
pub const MAX_SALT_LEN: usize = 16;

/// The scheme's identifier at the start of every hash and setting.
const PREFIX: &str = "$6$";

/// Introduces an explicit number of rounds after [`PREFIX`].
const ROUNDS_PREFIX: &str = "rounds=";

/// Length of the encoded checksum: 21 groups of 4 characters plus 2.
const CHECKSUM_LEN: usize = 86;

/// The crypt base64 alphabet (not RFC 4648's), indexed by 6-bit value.
const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The order in which the spec encodes the digest: each triple of octet
/// indexes becomes four characters, and octet 63 the last two.
const ENCODING_ORDER: [(usize, usize, usize); 21] = [
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
];

/// Why a string is not a usable `$6$` hash or setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptError {
    /// It does not start with `$6$` (another crypt scheme, or no scheme).
    NotSha512Crypt,
    /// `rounds=` is not followed by decimal digits and a `$`; in a stored
    /// hash, also a number below 1000, above 999999999 or with a leading
    /// zero (`crypt` never writes those, so such a hash never matches).
    InvalidRounds,
    /// The salt has a character outside printable ASCII or, in a stored
    /// hash, is longer than 16 characters.
    InvalidSalt,
    /// The checksum is missing, not 86 characters long, or has a character
    /// outside `./0-9A-Za-z`.
    InvalidChecksum,
}

impl fmt::Display for CryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptError::NotSha512Crypt => "not a SHA512-CRYPT ($6$) hash",
            CryptError::InvalidRounds => "rounds= must be a number from 1000 to 999999999",
            CryptError::InvalidSalt => "salt must be at most 16 printable ASCII characters",
            CryptError::InvalidChecksum => "the hash part must be 86 characters of ./0-9A-Za-z",
        })
    }
}

impl std::error::Error for CryptError {}

/// A stored `$6$` hash, parsed once and verified against many passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha512Crypt {
    rounds: u32,
    salt: String,
    checksum: [u8; CHECKSUM_LEN],
}

impl fmt::Debug for Sha512Crypt {
    // The checksum is what an offline guesser needs: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha512Crypt")
            .field("rounds", &self.rounds)
            .field("salt", &self.salt)
            .finish_non_exhaustive()
    }
}

impl Sha512Crypt {
    /// Parses a stored hash such as `$6$rounds=10000$salt$OW1/…`.
    ///
    /// # Errors
    ///
    /// A [`CryptError`] when `hash` is not a string [`crypt`] could have
    /// returned.
    pub fn parse(hash: &str) -> Result<Sha512Crypt, CryptError> {
        let rest = hash
            .strip_prefix(PREFIX)
            .ok_or(CryptError::NotSha512Crypt)?;
        let (rounds, rest) = match rest.strip_prefix(ROUNDS_PREFIX) {
            Some(after) => {
                let (digits, rest) = after.split_once('$').ok_or(CryptError::InvalidRounds)?;
                (stored_rounds(digits)?, rest)
            }
            None => (DEFAULT_ROUNDS, rest),
        };
        let (salt, checksum) = rest.split_once('$').ok_or(CryptError::InvalidChecksum)?;
        if salt.len() > MAX_SALT_LEN || !salt.bytes().all(is_salt_byte) {
            return Err(CryptError::InvalidSalt);
        }
        let checksum: [u8; CHECKSUM_LEN] = checksum
            .as_bytes()
            .try_into()
            .map_err(|_| CryptError::InvalidChecksum)?;
        if !checksum.iter().all(|b| ALPHABET.contains(b)) {
            return Err(CryptError::InvalidChecksum);
        }
        Ok(Sha512Crypt {
            rounds,
            salt: salt.to_string(),
            checksum,
        })
    }

    /// The number of rounds this hash costs to verify.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// The salt, as written in the hash.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// A hash with the same rounds and salt, so it costs exactly as much
    /// to verify, that no password matches: its last checksum character
    /// stands for bits that the encoding of octet 63 leaves zero (only
    /// `.`, `/`, `0` and `1` can end a real checksum). For unknown users.
    pub(crate) fn decoy(&self) -> Sha512Crypt {
        let mut checksum = [ALPHABET[0]; CHECKSUM_LEN];
        checksum[CHECKSUM_LEN - 1] = ALPHABET[63];
        Sha512Crypt {
            rounds: self.rounds,
            salt: self.salt.clone(),
            checksum,
        }
    }

    /// Whether `password` hashes to this hash. Takes the same time for
    /// every wrong password of a given length.
    pub fn verify(&self, password: &[u8]) -> bool {
        let digest = sha512_crypt_digest(password, self.salt.as_bytes(), self.rounds);
        constant_time_eq(&encode_checksum(&digest), &self.checksum)
    }
}

/// Hashes `password` as `crypt(3)` does for a `$6$` `setting`:
/// `$6$[rounds=N$]SALT`, optionally followed by `$` and anything (so a
/// stored hash is its own setting). Rounds are clamped to
/// [`MIN_ROUNDS`]..=[`MAX_ROUNDS`] and the salt is cut to [`MAX_SALT_LEN`]
/// characters, as the specification says; the result names the rounds
/// only if the setting did.
///
/// # Errors
///
/// [`CryptError::NotSha512Crypt`] without the `$6$` prefix,
/// [`CryptError::InvalidRounds`] for a `rounds=` without digits and `$`,
/// [`CryptError::InvalidSalt`] for a salt character outside printable
/// ASCII. (glibc would take such a `rounds=…` as part of the salt; a
/// setting we write ourselves never has one.)
pub fn crypt(password: &[u8], setting: &str) -> Result<String, CryptError> {
    let rest = setting
        .strip_prefix(PREFIX)
        .ok_or(CryptError::NotSha512Crypt)?;
    let (rounds, rest) = match rest.strip_prefix(ROUNDS_PREFIX) {
        Some(after) => {
            let (digits, rest) = after.split_once('$').ok_or(CryptError::InvalidRounds)?;
            let requested = parse_decimal(digits).ok_or(CryptError::InvalidRounds)?;
            (Some(clamp_rounds(requested)), rest)
        }
        None => (None, rest),
    };
    let salt = rest.split_once('$').map_or(rest, |(salt, _)| salt);
    let salt = &salt.as_bytes()[..salt.len().min(MAX_SALT_LEN)];
    if !salt.iter().copied().all(is_salt_byte) {
        return Err(CryptError::InvalidSalt);
    }
    let digest = sha512_crypt_digest(password, salt, rounds.unwrap_or(DEFAULT_ROUNDS));
    let mut out = String::with_capacity(PREFIX.len() + 17 + salt.len() + 1 + CHECKSUM_LEN);
    out.push_str(PREFIX);
    if let Some(rounds) = rounds {
        out.push_str(&format!("{ROUNDS_PREFIX}{rounds}$"));
    }
    out.extend(salt.iter().map(|&b| char::from(b)));
    out.push('$');
    out.extend(encode_checksum(&digest).iter().map(|&b| char::from(b)));
    Ok(out)
}

/// Whether `password` matches the stored `hash`; `false` also when `hash`
/// does not parse. Parse once with [`Sha512Crypt::parse`] when verifying
/// many times.
pub fn verify(password: &[u8], hash: &str) -> bool {
    Sha512Crypt::parse(hash).is_ok_and(|hash| hash.verify(password))
}

/// Drepper's algorithm; the step numbers are those of the specification.
fn sha512_crypt_digest(password: &[u8], salt: &[u8], rounds: u32) -> [u8; DIGEST_LEN] {
    // Steps 4-8: digest B = password, salt, password.
    let mut b = Sha512::new();
    b.update(password);
    b.update(salt);
    b.update(password);
    let b = b.finalize();

    // Steps 1-3 and 9-12: digest A = password, salt, then B repeated to
    // the password's length, then per bit of that length (lowest first)
    // B for a 1 and the password for a 0.
    let mut a = Sha512::new();
    a.update(password);
    a.update(salt);
    let mut left = password.len();
    while left > DIGEST_LEN {
        a.update(&b);
        left -= DIGEST_LEN;
    }
    a.update(&b[..left]);
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            a.update(&b);
        } else {
            a.update(password);
        }
        bits >>= 1;
    }
    let mut a = a.finalize();

    // Steps 13-16: P = digest DP (the password, password-length times),
    // repeated to the password's length.
    let mut dp = Sha512::new();
    for _ in 0..password.len() {
        dp.update(password);
    }
    let p = repeat_to_len(&dp.finalize(), password.len());

    // Steps 17-20: S = digest DS (the salt, 16 + A[0] times), repeated to
    // the salt's length.
    let mut ds = Sha512::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s = repeat_to_len(&ds.finalize(), salt.len());

    // Step 21: the rounds.
    for round in 0..rounds {
        let mut c = Sha512::new();
        if round % 2 == 1 {
            c.update(&p);
        } else {
            c.update(&a);
        }
        if round % 3 != 0 {
            c.update(&s);
        }
        if round % 7 != 0 {
            c.update(&p);
        }
        if round % 2 == 1 {
            c.update(&a);
        } else {
            c.update(&p);
        }
        a = c.finalize();
    }
    a
}

/// `digest` repeated and cut to `len` octets (the spec's P and S).
fn repeat_to_len(digest: &[u8; DIGEST_LEN], len: usize) -> Vec<u8> {
    digest.iter().copied().cycle().take(len).collect()
}

/// Step 22: the digest in the spec's order, 6 bits per character, least
/// significant bits first.
fn encode_checksum(digest: &[u8; DIGEST_LEN]) -> [u8; CHECKSUM_LEN] {
    let mut out = [0u8; CHECKSUM_LEN];
    let mut chars = out.iter_mut();
    let mut put = |mut group: u32, count: usize| {
        for slot in chars.by_ref().take(count) {
            *slot = ALPHABET[(group & 0x3f) as usize];
            group >>= 6;
        }
    };
    for (i, j, k) in ENCODING_ORDER {
        put(
            u32::from(digest[i]) << 16 | u32::from(digest[j]) << 8 | u32::from(digest[k]),
            4,
        );
    }
    put(u32::from(digest[63]), 2);
    out
}

/// The rounds of a stored hash: only what `crypt` writes (in range, no
/// leading zero, no sign).
fn stored_rounds(digits: &str) -> Result<u32, CryptError> {
    let value = parse_decimal(digits).ok_or(CryptError::InvalidRounds)?;
    let canonical = !digits.starts_with('0');
    match u32::try_from(value) {
        Ok(rounds) if canonical && (MIN_ROUNDS..=MAX_ROUNDS).contains(&rounds) => Ok(rounds),
        _ => Err(CryptError::InvalidRounds),
    }
}

/// A non-empty string of ASCII digits as a number, saturating (glibc's
/// `strtoul` saturates too, and the result is clamped anyway).
fn parse_decimal(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The spec's clamping of a requested number of rounds.
fn clamp_rounds(requested: u64) -> u32 {
    let clamped = requested.clamp(u64::from(MIN_ROUNDS), u64::from(MAX_ROUNDS));
    u32::try_from(clamped).unwrap_or(MAX_ROUNDS)
}

/// Salt characters: printable ASCII except `$`, which ends the salt.
fn is_salt_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'$'
}

/// Equality that looks at every octet whatever the first difference, so
/// the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        // black_box keeps the optimiser from ending the loop early.
        diff = std::hint::black_box(diff | (x ^ y));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (setting, password, result) from Drepper's specification.
    const SPEC_VECTORS: [(&str, &str, &str); 7] = [
        (
            "$6$saltstring",
            "Hello world!",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "$6$rounds=10000$saltstringsaltstring",
            "Hello world!",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        (
            "$6$rounds=5000$toolongsaltstring",
            "This is just a test",
            "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
        ),
        (
            "$6$rounds=1400$anotherlongsaltstring",
            "a very much longer text to encrypt.  This one even stretches over morethan one line.",
            "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
        ),
        (
            "$6$rounds=77777$short",
            "we have a short salt string but not a short password",
            "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
        ),
        (
            "$6$rounds=123456$asaltof16chars..",
            "a short string",
            "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
        ),
        (
            "$6$rounds=10$roundstoolow",
            "the minimum number is still observed",
            "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
        ),
    ];

    /// (password, hash) made on the development machine with
    /// `openssl passwd -6 -salt SALT PASSWORD` (OpenSSL 3.0), and, where
    /// openssl refuses an empty salt or password, with libxcrypt's
    /// `crypt(3)` through Python's `crypt` module. Both agreed wherever
    /// both could answer.
    const OTHER_IMPLEMENTATIONS: [(&[u8], &str); 7] = [
        (
            b"correct horse battery staple",
            "$6$Xq7Tz0dM4pL2vR9c$5kitJSjBp8vTf3LsNDpa.y.mGwAJjxhll4WbyV1Tc3y1O/GsrBcBAGfImuZVDG.xF59y1wq0bnQ6CFxn5sRm0/",
        ),
        (
            "pässwörd".as_bytes(),
            "$6$utf8salt$Nf6juS0Q3mv0f53eB4BVd6Njt8ABkI/Nw9Yqy9ZA65U6sGRcr2ajrL8Kwlq2SfdEvHi3Rhn/AVzWRrTM5gRn80",
        ),
        (
            // Exactly one digest long: the step 3 loop adds B once, whole.
            b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "$6$sixtyfour$.Sorg/RnSOcF1H8rncPn8Aec4l3/gwnrtqSZuE7OyLMr0hC.tcCJ1jb/kHNE7BzEdY0PwirqwJ0L98.qp7JnE0",
        ),
        (
            // 130 octets: B twice, then two octets of it.
            b"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
            "$6$x128$LKrruhNEZFDIQ7Dlp9icXskNxRZzLHzu98WWXobiad8ElX61It0jTFbY7BLcS5aznU4R5kCHz1f/lB.oD1gNM.",
        ),
        (
            b"gateway",
            "$6$rounds=1000$detad$zLMRyfdNBTyKnrdye.bx0ov.SKYQsnQWqtfhJ.vscKyoDnCQZI2hXMF2G0KxjazfkaZ/gQePPZ9bQVISU3dnt.",
        ),
        (
            b"",
            "$6$ab$xnh5Qsr2NdbFw1PgdZie7nLON3gv.S.23iQDBqAzkdoXPtDnVSpludXkM5UWybQO3OI7hBj9wHg9Ow6sUWD60/",
        ),
        (
            b"empty salt",
            "$6$$8Lsf87AQZ1a0HU6lp/qX8euzqgc0OEibupjG89HgWva7WvuXWWbyivEFHyO8xmUeWfG5WzHeGoZq5RZR2dnIB1",
        ),
    ];

    const HELLO: &str = SPEC_VECTORS[0].2;

    #[test]
    fn spec_vectors_hash_as_specified() {
        for (setting, password, expected) in SPEC_VECTORS {
            assert_eq!(crypt(password.as_bytes(), setting).as_deref(), Ok(expected));
        }
    }

    #[test]
    fn spec_vectors_verify() {
        // The 77777- and 123456-round vectors are hashed once, above:
        // in a debug build they take most of a second each.
        for (_, password, hash) in SPEC_VECTORS {
            if Sha512Crypt::parse(hash).unwrap().rounds() <= 10_000 {
                assert!(verify(password.as_bytes(), hash), "{hash}");
            }
        }
    }

    #[test]
    fn hashes_from_openssl_and_libxcrypt_verify() {
        for (password, hash) in OTHER_IMPLEMENTATIONS {
            assert!(verify(password, hash), "{hash}");
            assert_eq!(crypt(password, hash).as_deref(), Ok(hash));
        }
    }

    #[test]
    fn wrong_passwords_do_not_verify() {
        assert!(!verify(b"Hello world?", HELLO));
        assert!(!verify(b"hello world!", HELLO));
        assert!(!verify(b"Hello world!\0", HELLO));
        assert!(!verify(b"", HELLO));
    }

    #[test]
    fn one_changed_checksum_character_does_not_verify() {
        let mut tampered = HELLO.to_string();
        tampered.pop();
        tampered.push('2');
        assert!(Sha512Crypt::parse(&tampered).is_ok());
        assert!(!verify(b"Hello world!", &tampered));
    }

    #[test]
    fn a_stored_hash_is_its_own_setting() {
        for (_, password, hash) in [SPEC_VECTORS[0], SPEC_VECTORS[6]] {
            assert_eq!(crypt(password.as_bytes(), hash).as_deref(), Ok(hash));
        }
    }

    #[test]
    fn explicit_default_rounds_give_the_same_checksum() {
        let implicit = crypt(b"pw", "$6$saltstring").unwrap();
        let explicit = crypt(b"pw", "$6$rounds=5000$saltstring").unwrap();
        assert_eq!(explicit, implicit.replacen("$6$", "$6$rounds=5000$", 1));
    }

    #[test]
    fn requested_rounds_are_clamped_to_the_spec_range() {
        assert_eq!(clamp_rounds(0), MIN_ROUNDS);
        assert_eq!(clamp_rounds(999), MIN_ROUNDS);
        assert_eq!(clamp_rounds(1000), 1000);
        assert_eq!(clamp_rounds(999_999_999), MAX_ROUNDS);
        assert_eq!(clamp_rounds(1_000_000_000), MAX_ROUNDS);
        assert_eq!(clamp_rounds(u64::MAX), MAX_ROUNDS);
        assert_eq!(parse_decimal("99999999999999999999999"), Some(u64::MAX));
    }

    #[test]
    fn stored_rounds_outside_the_spec_range_are_rejected() {
        for hash in [
            "$6$rounds=999$salt$",
            "$6$rounds=1000000000$salt$",
            "$6$rounds=0$salt$",
            "$6$rounds=99999999999999999999$salt$",
        ] {
            let hash = format!("{hash}{}", ".".repeat(CHECKSUM_LEN));
            assert_eq!(
                Sha512Crypt::parse(&hash),
                Err(CryptError::InvalidRounds),
                "{hash}"
            );
        }
        let lowest = format!("$6$rounds=1000$salt${}", ".".repeat(CHECKSUM_LEN));
        let highest = format!("$6$rounds=999999999$salt${}", ".".repeat(CHECKSUM_LEN));
        assert_eq!(Sha512Crypt::parse(&lowest).map(|h| h.rounds()), Ok(1000));
        assert_eq!(
            Sha512Crypt::parse(&highest).map(|h| h.rounds()),
            Ok(MAX_ROUNDS)
        );
    }

    #[test]
    fn malformed_rounds_are_rejected() {
        for rounds in ["", "abc", "+5000", "-5000", "05000", "5000 ", "5e3"] {
            let hash = format!("$6$rounds={rounds}$salt${}", ".".repeat(CHECKSUM_LEN));
            assert_eq!(
                Sha512Crypt::parse(&hash),
                Err(CryptError::InvalidRounds),
                "{hash}"
            );
        }
        assert_eq!(
            crypt(b"x", "$6$rounds=$salt"),
            Err(CryptError::InvalidRounds)
        );
        assert_eq!(
            crypt(b"x", "$6$rounds=5000"),
            Err(CryptError::InvalidRounds)
        );
    }

    #[test]
    fn other_schemes_are_not_sha512_crypt() {
        for hash in [
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
            "$2y$05$abcdefghijklmnopqrstuuQ1R2bJ2lOWzUg8C7n5vK0sH2nY6yW4W",
            "$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1",
            "{SHA512-CRYPT}$6$saltstring$x",
            "plaintext",
            "",
        ] {
            assert_eq!(
                Sha512Crypt::parse(hash),
                Err(CryptError::NotSha512Crypt),
                "{hash}"
            );
            assert!(!verify(b"Hello world!", hash));
        }
    }

    #[test]
    fn stored_salt_longer_than_sixteen_is_rejected() {
        let hash = format!("$6$0123456789abcdefg${}", ".".repeat(CHECKSUM_LEN));
        assert_eq!(Sha512Crypt::parse(&hash), Err(CryptError::InvalidSalt));
    }

    #[test]
    fn salt_with_space_or_non_ascii_is_rejected() {
        for salt in ["two words", "sälz", "tab\there"] {
            let hash = format!("$6${salt}${}", ".".repeat(CHECKSUM_LEN));
            assert_eq!(
                Sha512Crypt::parse(&hash),
                Err(CryptError::InvalidSalt),
                "{hash}"
            );
            assert_eq!(
                crypt(b"x", &format!("$6${salt}")),
                Err(CryptError::InvalidSalt)
            );
        }
    }

    #[test]
    fn setting_salt_is_cut_to_sixteen_characters() {
        let long = crypt(b"x", "$6$0123456789abcdefXYZ").unwrap();
        let cut = crypt(b"x", "$6$0123456789abcdef").unwrap();
        assert_eq!(long, cut);
        assert!(cut.starts_with("$6$0123456789abcdef$"));
    }

    #[test]
    fn checksum_of_wrong_length_or_alphabet_is_rejected() {
        let good = HELLO;
        let short = &good[..good.len() - 1];
        let long = format!("{good}.");
        let plus = format!("{}+", &good[..good.len() - 1]);
        let equals = format!("{}=", &good[..good.len() - 1]);
        for hash in [
            short,
            &long,
            &plus,
            &equals,
            "$6$saltstring$",
            "$6$saltstring",
        ] {
            assert_eq!(
                Sha512Crypt::parse(hash),
                Err(CryptError::InvalidChecksum),
                "{hash}"
            );
        }
    }

    #[test]
    fn parsed_hash_exposes_rounds_and_salt() {
        let hash = Sha512Crypt::parse(SPEC_VECTORS[1].2).unwrap();
        assert_eq!(hash.rounds(), 10000);
        assert_eq!(hash.salt(), "saltstringsaltst");
        let default = Sha512Crypt::parse(HELLO).unwrap();
        assert_eq!(default.rounds(), DEFAULT_ROUNDS);
    }

    #[test]
    fn decoy_costs_the_same_and_matches_nothing() {
        let real = Sha512Crypt::parse(OTHER_IMPLEMENTATIONS[4].1).unwrap();
        let decoy = real.decoy();
        assert_eq!((decoy.rounds(), decoy.salt()), (real.rounds(), real.salt()));
        assert!(!decoy.verify(b"gateway"));
        // Every real checksum ends in one of the four characters for the
        // two top bits of octet 63; the decoy's does not.
        for (_, hash) in OTHER_IMPLEMENTATIONS {
            assert!(b"./01".contains(&hash.as_bytes()[hash.len() - 1]), "{hash}");
        }
        assert!(!b"./01".contains(&decoy.checksum[CHECKSUM_LEN - 1]));
    }

    #[test]
    fn debug_does_not_show_the_checksum() {
        let shown = format!("{:?}", Sha512Crypt::parse(HELLO).unwrap());
        assert!(shown.contains("saltstring"), "{shown}");
        assert!(!shown.contains("svn8"), "{shown}");
        assert!(!shown.contains("checksum"), "{shown}");
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
