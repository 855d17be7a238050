//! The per-connection driver: command lines read against deadlines, fed to
//! the sans-IO session, replies flushed whenever the input buffer is empty
//! (RFC 2920 §3.2); the content and the RDLV hold are in [`super::data`]
//! and [`super::hold`].

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use super::chunks;
use super::data::{Message, receive};
use super::policy::ServerPolicy;
use super::secrets::Secrets;
use super::shared::{IpSlot, Shared};
use super::wire::{Line, Wire};
use crate::config::Config;
use crate::queue::manager::{Doorbell, DoorbellReceiver};
use crate::smtp::reply::Reply;
use crate::smtp::session::{
    Action, AuthConfig, MAX_COMMAND_LINE, MAX_LINE_BUFFER, Session, SessionConfig,
};

/// An accepted connection, handed from the acceptor to a session thread.
#[derive(Debug)]
pub struct Conn {
    /// The socket, in blocking mode.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its place among its address's sessions.
    pub slot: IpSlot,
    /// When it was accepted: the first command's deadline counts from
    /// here, so a connection that waited in the hand-off queue cannot hold
    /// a session thread for a whole `command_timeout` more.
    pub accepted: Instant,
    /// It came to a `listen_tls` address: TLS from the first octet.
    pub implicit_tls: bool,
}

/// What the connection does after a piece of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Flush and close.
    Close,
}

/// What a session thread keeps across connections.
#[derive(Debug)]
pub struct SessionThread {
    /// Where the queue rings for a held RDLV job.
    pub doorbell: Doorbell,
    /// Its receiving side.
    pub bell: DoorbellReceiver,
}

/// Counts for the connection's log line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages accepted.
    pub accepted: u32,
    /// Messages refused after their content.
    pub rejected: u32,
}

/// Everything a piece of the conversation needs.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Shared server state.
    pub shared: &'a Shared,
    /// This connection's configuration.
    pub config: &'a Config,
    /// The thread's doorbell.
    pub thread: &'a SessionThread,
    /// The client's address.
    pub peer: SocketAddr,
    /// Counts for the log.
    pub stats: Stats,
    /// When the connection was accepted.
    pub accepted: Instant,
    /// The certificate and users this connection uses.
    pub secrets: Arc<Secrets>,
}

/// Serves one connection to its end.
pub fn serve(shared: &Shared, thread: &SessionThread, conn: Conn) {
    let config = shared.config.get();
    let key = shared.track(&conn.stream);
    let started = Instant::now();
    let mut ctx = Ctx {
        shared,
        config: &config,
        thread,
        peer: conn.peer,
        stats: Stats::default(),
        accepted: conn.accepted,
        secrets: shared.secrets.get(),
    };
    let mut wire = Wire::new(conn.stream, config.command_timeout);
    let result = match conn.implicit_tls {
        true => implicit_tls(&ctx, &mut wire).and_then(|()| converse(&mut ctx, &mut wire)),
        false => converse(&mut ctx, &mut wire),
    };
    // The conversation is over: the address's place is free before the
    // last reply (221) goes out, so a client that reconnects as soon as it
    // reads it is not refused as one too many.
    drop(conn.slot);
    let result = result.and_then(|()| wire.flush());
    shared.untrack(key);
    let end = match result {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("error: {e}"),
    };
    log::info!(
        "connection peer={} messages={} rejected={} duration={:.1}s {end}",
        ctx.peer,
        ctx.stats.accepted,
        ctx.stats.rejected,
        started.elapsed().as_secs_f32()
    );
}

/// RFC 8314 §3.3: the handshake comes first, within the first command's
/// deadline.
#[cfg(feature = "tls")]
fn implicit_tls(ctx: &Ctx<'_>, wire: &mut Wire) -> io::Result<()> {
    let Some(tls) = ctx.secrets.tls.as_ref() else {
        // The reload dropped the certificate: nothing to talk TLS with.
        return Err(io::Error::other("no certificate loaded for implicit TLS"));
    };
    let deadline = crate::clock::after(ctx.accepted, ctx.config.command_timeout);
    wire.start_tls(tls, deadline).map_err(io::Error::other)?;
    log::info!("peer={} TLS {}", ctx.peer, tls_info(wire));
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn implicit_tls(_: &Ctx<'_>, _: &mut Wire) -> io::Result<()> {
    Err(io::Error::other("built without TLS"))
}

/// `version=TLSv1.3 cipher=…` for the log and the `Received:` line.
pub(super) fn tls_info(wire: &Wire) -> String {
    #[cfg(feature = "tls")]
    if let Some(info) = wire.tls_info() {
        return info.to_string();
    }
    let _ = wire;
    String::from("none")
}

/// STARTTLS (RFC 3207): the 220 is queued; the handshake must finish
/// within a command timeout. A failed handshake closes the connection
/// (nothing can be said in plaintext any more).
fn start_tls(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
) -> io::Result<Flow> {
    #[cfg(feature = "tls")]
    if let Some(tls) = ctx.secrets.tls.as_ref() {
        let deadline = crate::clock::deadline_after(ctx.config.command_timeout);
        if let Err(e) = wire.start_tls(tls, deadline) {
            log::warn!("peer={} STARTTLS failed: {e}", ctx.peer);
            return Ok(Flow::Close);
        }
        session.tls_started(policy);
        log::info!("peer={} STARTTLS {}", ctx.peer, tls_info(wire));
        return Ok(Flow::Continue);
    }
    let _ = (session, policy);
    log::error!("peer={} STARTTLS without a certificate; closing", ctx.peer);
    wire.flush()?;
    Ok(Flow::Close)
}

fn session_config(ctx: &Ctx<'_>, implicit_tls: bool) -> SessionConfig {
    let config = ctx.config;
    SessionConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.max_message_size,
        max_recipients: config.max_recipients,
        rdlv_mintimer: config.rdlv_mintimer,
        starttls: ctx.secrets.has_tls() && !implicit_tls,
        auth: AuthConfig {
            enabled: ctx.secrets.users.is_some(),
            plaintext: config.auth_plaintext.allows(ctx.peer.ip()),
            // Clients in relay_networks (the gateway's own programs, e.g.
            // `sendmail` over loopback) are trusted as they are; the rest
            // must AUTH first (Postfix's permit_mynetworks,
            // permit_sasl_authenticated, reject).
            required: config.auth_required && !config.may_relay(ctx.peer.ip()),
        },
        burl: config.burl_imap.is_some(),
    }
}

/// Carries out what the session asked for after a command; `message` is
/// the one being assembled from BDAT/BURL chunks, if any.
fn act(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    (action, message): (Action, &mut Option<Message>),
) -> io::Result<Flow> {
    match action {
        Action::Continue => Ok(Flow::Continue),
        Action::Close => Ok(Flow::Close),
        Action::StartTls => start_tls(ctx, wire, session, policy),
        Action::ReceiveData => receive(ctx, wire, session, policy),
        Action::ReceiveChunk { size, last } => {
            chunks::bdat(ctx, wire, session, policy, message, (size, last))
        }
        Action::DiscardChunk(size) => chunks::discard(ctx, wire, session, policy, size),
        #[cfg(feature = "burl")]
        Action::FetchUrl { last } => {
            super::burl_chunk::burl(ctx, wire, session, policy, message, last)
        }
        #[cfg(not(feature = "burl"))]
        Action::FetchUrl { last } => chunks::burl(ctx, wire, session, policy, message, last),
        // Only a session holding an RDLV reply asks for these, and the
        // hold handles that; anything else would be a bug: say so and
        // close rather than guess.
        Action::Wait | Action::Detach | Action::Abort { .. } => {
            log::error!(
                "peer={} session asked for {action:?} outside processing; closing",
                ctx.peer
            );
            wire.reply(&session.shutting_down());
            Ok(Flow::Close)
        }
    }
}

fn converse(ctx: &mut Ctx<'_>, wire: &mut Wire) -> io::Result<()> {
    let config = ctx.config;
    let mut session = Session::new(session_config(ctx, wire.is_tls()));
    if wire.is_tls() {
        session.set_tls();
    }
    let limits = ctx.shared.queue.limits();
    let secrets = Arc::clone(&ctx.secrets);
    let mut policy = ServerPolicy::new(config, limits, ctx.peer.ip())
        .with_auth(secrets.users.as_ref(), ctx.shared);
    if ctx.shared.shutting_down() {
        wire.reply(&session.shutting_down());
        return Ok(());
    }
    wire.reply(&session.greeting());
    // Grows only for a long line (an AUTH response may take 12 KiB).
    let mut line = Vec::with_capacity(MAX_COMMAND_LINE);
    let mut message: Option<Message> = None;
    // RFC 5321 §4.5.3.2.7: the whole next command within the timeout; the
    // first one's counts from the accept.
    let mut since = ctx.accepted;
    loop {
        let deadline = crate::clock::after(since, config.command_timeout);
        let read = wire.read_line(&mut line, MAX_LINE_BUFFER, deadline)?;
        let step = match read {
            Line::Complete => {
                log::trace!("< {}", session.loggable(&line));
                if ctx.shared.shutting_down() {
                    // RFC 5321 §3.8: 421 may answer any command at shutdown.
                    wire.reply(&session.shutting_down());
                    return Ok(());
                }
                session.feed(&line, &mut policy)
            }
            Line::TooLong => session.line_too_long(),
            Line::Flood => {
                wire.reply(&Reply::new(
                    421,
                    "4.7.0",
                    format!("{} line too long, closing connection", config.hostname),
                ));
                return Ok(());
            }
            Line::Eof if ctx.shared.shutting_down() => {
                wire.reply(&session.shutting_down());
                return Ok(());
            }
            Line::Eof => return Ok(()),
            Line::Timeout => {
                wire.reply(&session.timed_out());
                return Ok(());
            }
        };
        if let Some(reply) = &step.reply {
            wire.reply(reply);
        }
        let flow = act(
            ctx,
            wire,
            &mut session,
            &mut policy,
            (step.action, &mut message),
        )?;
        if !session.in_chunks() {
            // RSET, EHLO, an error: the chunks so far are discarded.
            message = None;
        }
        if flow == Flow::Close {
            return Ok(());
        }
        since = Instant::now();
    }
}
