//! SMTP AUTH (RFC 4954) building blocks. Like [`crate::smtp`], all of it is
//! sans-IO: no sockets, files, threads or clocks.
//!
//! - [`passwd`]: the users, from a Dovecot passwd-file, and
//!   [`passwd::Users::verify`]; [`crypt`] (SHA512-CRYPT) on [`sha512`] does
//!   the hashing.

pub mod crypt;
pub mod passwd;
pub mod sha512;
