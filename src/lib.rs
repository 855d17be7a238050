//! detad: a small, crash-safe SMTP server for embedded Linux gateways, with
//! the Reliable Delivery (RDLV) and Detached Operation (DETA) extensions and
//! RFC 3461/3464 delivery status notifications.
//!
//! ```text
//!  main loop (server::listener): mio Poll over listeners, signals, control socket, Waker
//!    accept ──▶ bounded channel<Conn> ──▶ session threads (server::conn), fixed pool
//!    pool full ──▶ 421 4.3.2                 │ smtp::session (sans-IO) says what to do
//!                                            │ DATA ──▶ smtp::data ──▶ spool (tmp, fsync, rename)
//!                                            ▼
//!    retry schedule (heap) ──▶ bounded channel<Job> ──▶ workers (server::worker), fixed pool
//!                                            │ route per recipient: deliver (maildir, pipe), relay (smtp)
//!                                            │ outcome ──▶ spool; bounce + dsn ──▶ new spool message
//!    RDLV: the session waits on an inflight::Ticket; 120 / CONT / DETA / abort
//! ```
//!
//! One message's way: the session thread reads `MAIL`, `RCPT`, `DATA` and
//! feeds each line to [`smtp::session::Session`], which answers with a reply
//! and an action; the content goes through [`smtp::data::DataDecoder`] into
//! [`spool::Spool`] (content first, envelope last: its rename is the commit).
//! A plain transaction is answered `250` now; an RDLV one registers a ticket
//! in [`inflight::Inflight`] and waits for the worker's outcome, sending `120`
//! each interval. A worker loads the envelope, routes each recipient
//! ([`config::Config::route_for`]), records each outcome in the spool before
//! the next, writes the DSNs that are due ([`bounce`], [`dsn`]), and removes
//! the message or schedules its next attempt with the main loop.
//!
//! The protocol core ([`smtp`], [`dsn`], [`time_fmt`]) touches no socket,
//! file, thread or clock. Everything else is a thin driver around it.
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
#[cfg(feature = "tls")]
pub mod tls;
