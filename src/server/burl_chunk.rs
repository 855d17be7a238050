//! BURL (RFC 4468) on the server side: a chunk fetched from `burl_imap`
//! into the message being assembled ([`super::chunks`]).

use std::io::{self, Write};

use super::chunks::{end_chunk, start};
use super::conn::{Ctx, Flow};
use super::data::Message;
use super::policy::ServerPolicy;
use super::wire::Wire;
use crate::burl::{self, FetchError, Limits};
use crate::smtp::reply::Reply;
use crate::smtp::session::Session;

/// Content fetched by BURL goes through the message's judge into the
/// spool; a spool that stopped taking it stops the fetch.
struct Feed<'a> {
    message: &'a mut Message,
    scratch: Vec<u8>,
    fetched: u64,
}

impl Write for Feed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.message.feed(buf, &mut self.scratch);
        self.fetched += buf.len() as u64;
        match &self.message.sink.failure {
            Some(reply) if reply.code / 100 == 4 => Err(io::Error::other(reply.to_string())),
            _ => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `BURL url [LAST]` accepted: checks the URL against `burl_imap` and the
/// client's identity, fetches it into the message (the client waits: RFC
/// 4468 §3.2 resolves the URL before the reply), then as after a BDAT.
pub(in crate::server) fn burl(
    ctx: &mut Ctx<'_>,
    wire: &mut Wire,
    session: &mut Session,
    policy: &mut ServerPolicy<'_>,
    message: &mut Option<Message>,
    last: bool,
) -> io::Result<Flow> {
    let url = session.take_url().unwrap_or_default();
    let identity = session.identity().unwrap_or_default().to_string();
    let Some(settings) = ctx.config.burl() else {
        let reply = Reply::new(502, "5.5.1", "BURL not available");
        wire.reply(&session.chunk_failed(reply, policy));
        return Ok(Flow::Continue);
    };
    let authorized = match burl::check(&url, &settings.host, settings.port, &identity) {
        Ok(a) => a,
        Err(refusal) => {
            log::info!("peer={} BURL refused: {refusal}", ctx.peer);
            *message = None;
            wire.reply(&session.chunk_failed(refusal.reply(), policy));
            return Ok(Flow::Continue);
        }
    };
    if last && session.chunks_for_rdlv() {
        // RDLV holds the final reply while the job is processed, and the
        // fetch is its first step (by a worker): 120s, CONT and DETA then
        // work as after DATA, and a client that goes away aborts it.
        let m = message.get_or_insert_with(|| start(ctx, wire, session));
        m.fetch = Some(url.clone());
        return end_chunk(ctx, wire, session, policy, message, (0, true, false));
    }
    // The fetch may take a while: the replies so far go out first.
    wire.flush()?;
    let m = message.get_or_insert_with(|| start(ctx, wire, session));
    let room = ctx.config.max_message_size.saturating_sub(m.decoder.size());
    let limits = Limits::new(room, burl::FETCH_TIMEOUT);
    let mut feed = Feed {
        message: m,
        scratch: Vec::new(),
        fetched: 0,
    };
    let result = burl::resolve(&settings, &authorized, &mut feed, &limits);
    let fetched = feed.fetched;
    match result {
        Ok(_) => {
            log::info!(
                "peer={} BURL fetched {fetched} octets from {}:{}",
                ctx.peer,
                settings.host,
                settings.port
            );
            end_chunk(ctx, wire, session, policy, message, (fetched, last, last))
        }
        Err(e) => {
            log::warn!("peer={} BURL fetch failed: {e}", ctx.peer);
            *message = None;
            ctx.stats.rejected += 1;
            wire.reply(&session.chunk_failed(fetch_reply(&e), policy));
            Ok(Flow::Continue)
        }
    }
}

/// The reply to a failed fetch.
fn fetch_reply(e: &FetchError) -> Reply {
    e.reply()
}
