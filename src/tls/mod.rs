//! TLS for the SMTP server and the relay client (feature `tls`): rustls with
//! the ring crypto provider, TLS 1.3 and 1.2 only, over blocking sockets for
//! the thread-per-connection drivers.
//!
//! ```text
//!  ServerTls::load(cert, key) ─▶ Arc<ServerConfig> ─┐  accept(tcp, deadline)
//!  ClientTls::new(ca_file)    ─▶ Arc<ClientConfig> ─┤  connect / connect_opportunistic
//!                                                   ▼
//!  Stream::Plain(PlainStream) ── start_tls_* ──▶ Stream::Tls(TlsStream)
//!      BufRead + Write, set_deadline, has_buffered_input, shutdown, tcp()
//! ```
//!
//! What the module guarantees:
//! - A handshake never outlives the deadline it is given: each socket read
//!   and write gets the time left, so a peer that trickles bytes cannot
//!   extend it ([`TlsStream::new`]).
//! - A read never outlives the deadline set with [`Stream::set_deadline`];
//!   a read past it fails with [`std::io::ErrorKind::TimedOut`] (never
//!   `WouldBlock`).
//! - STARTTLS never carries plaintext across the upgrade: whatever the
//!   [`Stream`] had buffered before the handshake is discarded (RFC 3207 §5,
//!   CVE-2011-0411). A caller that buffers on its own must drop its buffer too.
//! - Configurations are immutable and shared behind an [`Arc`]: a reload
//!   (SIGHUP) builds a new [`ServerTls`] or [`ClientTls`] and swaps it in;
//!   connections in progress keep the one they started with.
//! - Certificates are always verified on the client side; in opportunistic
//!   mode the outcome is reported ([`PeerCheck`]) instead of failing the
//!   handshake, and the caller decides ([`ClientTls::connect_opportunistic`]).

mod client;
mod deadline;
mod error;
mod pem;
mod plain;
mod server;
mod stream;
mod switch;

use std::sync::Arc;

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;

pub use client::{ClientTls, PeerCheck, SYSTEM_CA_BUNDLES};
pub use error::{FileRole, PemProblem, TlsError};
pub use plain::PlainStream;
pub use server::ServerTls;
pub use stream::{TlsInfo, TlsStream};
pub use switch::Stream;

/// The protocol versions offered and accepted: TLS 1.3 and 1.2 (RFC 8996
/// deprecates 1.0 and 1.1; rustls implements neither).
const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider every configuration is built with: ring, with its
/// default cipher suites and key exchange groups.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
