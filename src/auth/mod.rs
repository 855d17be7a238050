//! SMTP AUTH (RFC 4954) building blocks. Like [`crate::smtp`], all of it is
//! sans-IO: no sockets, files, threads or clocks; the session and its
//! driver read the password file, keep time and sleep.
//!
//! - [`sasl`]: the PLAIN and LOGIN exchange, from `AUTH` to credentials or
//!   a failure reply; [`base64`] decodes its lines strictly.
//! - [`passwd`]: the users, from a Dovecot passwd-file, and
//!   [`passwd::Users::verify`]; [`crypt`] (SHA512-CRYPT) on [`sha512`] does
//!   the hashing.
//! - [`throttle`]: the delay after failed logins, per client address.
//!
//! How the session is meant to use them (the wiring is not done yet):
//!
//! ```text
//! startup   users = Users::parse(&read_to_string(passwd_file)?)   error names the line: exit 78
//!           throttle = Mutex<Throttle::new(Policy::default())>    shared by the session threads
//! EHLO      "250-AUTH PLAIN LOGIN" (sasl::MECHANISMS), only where plaintext passwords
//!           are protected: TLS, or a link the operator declares safe (RFC 4954 §4 note)
//! AUTH m r  refused with 503 5.5.1 once authenticated or inside a transaction (RFC 4954 §4)
//!           (exchange, step) = Exchange::start(m, r)
//! loop      Challenge(text) -> "334 text"; read one line (at most MAX_RESPONSE_LEN + CRLF)
//!                              step = exchange.feed(line)
//!           Fail(f)         -> "f.code f.status f.text"; a 535 counts as a failure below
//!           Done(creds)     -> users.verify(&creds.authcid, &creds.password)
//!             true          -> throttle.success(ip); "235 2.7.0 authentication successful"
//!             false         -> throttle.failure(ip, now); sleep throttle.delay(ip, now)
//!                              (lock released first); "535 5.7.8" (Failure::CREDENTIALS_INVALID)
//! ```
//!
//! Never log the lines of an exchange or a password (style §2.8); the
//! authcid may go into the 235 log line. A verification runs the rounds
//! the operator chose, on the session thread: 5000 (the default) took
//! about 4 ms on one x86-64 core in a release build; measure on the
//! target board before choosing more.

pub mod base64;
pub mod crypt;
pub mod passwd;
pub mod sasl;
pub mod sha512;
pub mod throttle;
