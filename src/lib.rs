//! detad: a small, crash-safe SMTP server for embedded Linux gateways, with
//! the Reliable Delivery (RDLV) and Detached Operation (DETA) extensions and
//! RFC 3461/3464 delivery status notifications.
//!
//! ```text
//!  main thread (server): mio Poll over listeners, signals, control socket, Waker
//!    accept ──▶ bounded channel<Conn> ──▶ session threads (server::conn), fixed pool
//!    pool full ──▶ 421 4.3.2               │ smtp::session (sans-IO) says what to do
//!                                          │ content ──▶ spool tmp/ (the session writes it)
//!                                          ▼ commit / hold / detach / abort / conclude
//!                          queue manager thread (queue::manager): the one owner
//!                          of every message: envelopes, schedule, limits, DSN decisions
//!                                          │ attempts (bounded channel)
//!                                          ▼
//!                          workers (delivery::worker): maildir, pipe, smtp relay
//!                          ──▶ typed Delivery results back to the manager
//! ```
//!
//! One message's way: the session thread reads `MAIL`, `RCPT`, `DATA`, feeds
//! each line to [`smtp::session::Session`] and streams the content through
//! [`smtp::data::DataDecoder`] into `tmp/`. At the end it asks the queue
//! manager to commit; the manager appends the envelope, renames the file
//! into `queue/`, makes the batch durable with one barrier and answers; the
//! session sends `250`. For RDLV the session holds the reply instead,
//! watching its socket and the manager's doorbell, and sends `120`s until
//! the manager reports the outcome. A worker takes the attempt, delivers
//! each recipient and reports each typed result, which the manager records
//! before the worker goes on; then the manager decides the DSNs, the next
//! attempt, or the removal. See `docs/architecture.md`.
//!
//! Layers, each importing only from those below it:
//! [`smtp`] and [`config`] (and [`time_fmt`]) → [`queue`] → [`delivery`] →
//! [`server`] → [`cli`]. The protocol core ([`smtp`], the DSN builder, the
//! envelope codec, [`time_fmt`]) touches no socket, file, thread or clock.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, missing_debug_implementations)]
#![warn(missing_docs)]

pub mod auth;
#[cfg(feature = "burl")]
pub mod burl;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod queue;
pub mod server;
pub mod smtp;
pub mod time_fmt;
#[cfg(feature = "tls")]
pub mod tls;
