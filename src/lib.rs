//! detad: a small, crash-safe SMTP server for embedded Linux gateways.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, missing_debug_implementations)]
#![warn(missing_docs)]

pub mod bounce;
pub mod config;
pub mod deliver;
pub mod dsn;
pub mod envelope;
pub mod inflight;
pub mod queue;
pub mod relay;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod time_fmt;
