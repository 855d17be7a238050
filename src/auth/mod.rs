//! SMTP AUTH (RFC 4954) building blocks. Like [`crate::smtp`], all of it is
//! sans-IO: no sockets, files, threads or clocks.
//!
//! - [`sasl`]: the PLAIN and LOGIN exchange, from `AUTH` to credentials or
//!   a failure reply; [`base64`] decodes its lines strictly.
//! - [`passwd`]: the users, from a Dovecot passwd-file, and
//!   [`passwd::Users::verify`]; [`crypt`] (SHA512-CRYPT) on [`sha512`] does
//!   the hashing.

pub mod base64;
pub mod crypt;
pub mod passwd;
pub mod sasl;
pub mod sha512;
