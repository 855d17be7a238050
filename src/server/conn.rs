//! The per-connection driver: command lines read against deadlines, fed to
//! the sans-IO session, replies flushed whenever the input buffer is empty
//! (RFC 2920 §3.2); the content and the RDLV hold are in [`super::data`]
//! and [`super::hold`].

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use super::data::receive;
use super::policy::ServerPolicy;
use super::shared::{IpSlot, Shared};
use super::wire::{Line, Wire};
use crate::config::Config;
use crate::queue::manager::{Doorbell, DoorbellReceiver};
use crate::smtp::reply::Reply;
use crate::smtp::session::{Action, MAX_LINE_BUFFER, Session, SessionConfig};

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
    };
    let mut wire = Wire::new(conn.stream, config.command_timeout);
    let result = converse(&mut ctx, &mut wire).and_then(|()| wire.flush());
    shared.untrack(key);
    drop(conn.slot);
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

fn converse(ctx: &mut Ctx<'_>, wire: &mut Wire) -> io::Result<()> {
    let config = ctx.config;
    let mut session = Session::new(SessionConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.max_message_size,
        max_recipients: config.max_recipients,
        rdlv_mintimer: config.rdlv_mintimer,
    });
    let limits = ctx.shared.queue.limits();
    let mut policy = ServerPolicy::new(config, limits, ctx.peer.ip());
    if ctx.shared.shutting_down() {
        wire.reply(&session.shutting_down());
        return Ok(());
    }
    wire.reply(&session.greeting());
    let mut line = Vec::with_capacity(MAX_LINE_BUFFER);
    // RFC 5321 §4.5.3.2.7: the whole next command within the timeout; the
    // first one's counts from the accept.
    let mut since = ctx.accepted;
    loop {
        let deadline = crate::clock::after(since, config.command_timeout);
        let read = wire.read_line(&mut line, MAX_LINE_BUFFER, deadline)?;
        let step = match read {
            Line::Complete => {
                log::trace!("< {}", String::from_utf8_lossy(&line).trim_end());
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
        match step.action {
            Action::Continue => {}
            Action::Close => return Ok(()),
            Action::ReceiveData => {
                if receive(ctx, wire, &mut session, &mut policy)? == Flow::Close {
                    return Ok(());
                }
            }
            // Only a session holding an RDLV reply asks for these, and the
            // hold handles that; anything else would be a bug: say so and
            // close rather than guess.
            Action::Wait | Action::Detach | Action::Abort { .. } => {
                log::error!(
                    "peer={} session asked for {:?} outside processing; closing",
                    ctx.peer,
                    step.action
                );
                wire.reply(&session.shutting_down());
                return Ok(());
            }
        }
        since = Instant::now();
    }
}
