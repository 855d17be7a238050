//! What sessions, workers and the main loop ask the queue manager, and the
//! handle they ask through. Every question that changes a message waits
//! for the manager's answer; nothing else writes an envelope.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::config::Config;
use crate::queue::bounce::DsnJob;
use crate::queue::delivery::Delivery;
use crate::queue::envelope::Envelope;
use crate::queue::limits::{ByteReservation, Limits, SenderSlot};
use crate::queue::spool::{ContentFile, Spool};
use crate::smtp::session::{DetachRefusal, Outcome};

/// A new message for the queue: its content (written into `tmp/`), its
/// envelope, and what the session holds for it.
#[derive(Debug)]
pub struct Commit {
    /// The content, finished.
    pub content: ContentFile,
    /// The envelope; `mode` says plain or RDLV.
    pub env: Envelope,
    /// The octets of spool the content took.
    pub bytes: ByteReservation,
    /// RDLV: the sender's place in processing, and where the outcome goes.
    pub hold: Option<(SenderSlot, Doorbell)>,
}

/// The content of a message whose BURL fetch ([`Envelope::fetch`]) is
/// done: the content so far and the fetched part, in `tmp/ID`, to take the
/// place of the message's file.
#[derive(Debug)]
pub struct Refill {
    /// The whole content, finished.
    pub content: ContentFile,
    /// The octets of spool it took.
    pub bytes: ByteReservation,
    /// Whether it has octets above 127.
    pub eight_bit: bool,
}

/// Why a commit failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// The spool could not take it (the log has the details).
    Spool(String),
    /// The queue is shutting down.
    ShuttingDown,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Spool(e) => write!(f, "spool: {e}"),
            CommitError::ShuttingDown => f.write_str("the queue is shutting down"),
        }
    }
}

impl std::error::Error for CommitError {}

/// What the session holding an RDLV reply hears from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldEvent {
    /// The job of this id reached a definite state.
    Outcome(String, Outcome),
    /// The job of this id was removed by the operator, or the server is
    /// shutting down: answer accordingly and end the hold.
    Ended(String, HoldEnd),
}

/// Why a hold ended without an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// `queue remove`: the client gets 451.
    Removed,
    /// The server shuts down: the client gets 421.
    Shutdown,
}

/// How a session thread is told that its held job has news: a bounded
/// channel for the event and a socket byte to wake its poll(2), so it can
/// watch its client's socket and the queue at once.
#[derive(Debug, Clone)]
pub struct Doorbell {
    events: Sender<HoldEvent>,
    bell: Arc<UnixStream>,
}

/// The session's side of a [`Doorbell`].
#[derive(Debug)]
pub struct DoorbellReceiver {
    events: Receiver<HoldEvent>,
    bell: UnixStream,
}

/// A doorbell pair, made once per session thread.
///
/// # Errors
/// The socket pair could not be made.
pub fn doorbell() -> std::io::Result<(Doorbell, DoorbellReceiver)> {
    let (ring, hear) = UnixStream::pair()?;
    ring.set_nonblocking(true)?;
    hear.set_nonblocking(true)?;
    let (tx, rx) = bounded(8);
    Ok((
        Doorbell {
            events: tx,
            bell: Arc::new(ring),
        },
        DoorbellReceiver {
            events: rx,
            bell: hear,
        },
    ))
}

impl Doorbell {
    /// Delivers an event and rings; never blocks (a full bell socket
    /// already means "look").
    pub(super) fn ring(&self, event: HoldEvent) {
        let _ = self.events.try_send(event);
        let _ = (&*self.bell).write(&[1]);
    }
}

impl DoorbellReceiver {
    /// The socket to poll for readability.
    pub fn socket(&self) -> &UnixStream {
        &self.bell
    }

    /// Takes the next event, draining the wake-up bytes.
    pub fn take(&self) -> Option<HoldEvent> {
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::Read::read(&mut &self.bell, &mut buf) {
            if n == 0 {
                break;
            }
        }
        self.events.try_recv().ok()
    }
}

/// What a worker does after recording outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on with the next recipient.
    Continue,
    /// Stop at this safe point (cancelled, parked, shutdown).
    Stop,
}

/// What a worker does when its attempt is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Nothing more: the worker is free.
    Done,
    /// Build and spool these DSNs for the envelope (a copy of the
    /// manager's), then report with [`QueueHandle::dsns_done`].
    Dsns(Box<Envelope>, Vec<DsnJob>),
}

/// One delivery attempt, handed to a worker. The cancel flag is the
/// manager's: set on abort, removal or shutdown; the worker stops at its
/// next safe point.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// A copy of the envelope.
    pub env: Envelope,
    /// The recipients to attempt (indices).
    pub due: Vec<usize>,
    /// Set when the attempt must stop.
    pub cancel: Arc<AtomicBool>,
}

impl Attempt {
    /// Whether the attempt must stop at the next safe point.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// Where the answer to a control request goes.
pub type ControlReply = Box<dyn FnOnce(ControlAnswer) + Send>;

/// The manager's answer to a control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAnswer {
    /// Done: what was done.
    Done(String),
    /// Nothing to do: no such message.
    NotFound(String),
    /// Not done now: why (e.g. a delivery that could not be stopped in time).
    Busy(String),
    /// The request was not understood.
    Refused(String),
}

pub(super) enum Request {
    Commit(Box<Commit>, Sender<Result<(), CommitError>>),
    Refill(String, Box<Refill>, Sender<Result<Envelope, String>>),
    Detach(String, Sender<Result<(), DetachRefusal>>),
    Abort(String, String),
    Conclude(String, bool, Sender<Result<(), String>>),
    Record(String, Vec<(usize, Delivery)>, Sender<Next>),
    AttemptDone(String, Sender<Finish>),
    DsnsDone(String, Vec<DsnJob>, Sender<()>),
    Control(String, ControlReply),
    Flush,
    Reload(Arc<Config>),
    Shutdown,
}

/// The way to the queue manager; cheap to clone.
#[derive(Debug, Clone)]
pub struct QueueHandle {
    pub(super) requests: Sender<Request>,
    pub(super) spool: Arc<Spool>,
    pub(super) limits: Arc<Limits>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Commit(..) => "Commit",
            Request::Refill(..) => "Refill",
            Request::Detach(..) => "Detach",
            Request::Abort(..) => "Abort",
            Request::Conclude(..) => "Conclude",
            Request::Record(..) => "Record",
            Request::AttemptDone(..) => "AttemptDone",
            Request::DsnsDone(..) => "DsnsDone",
            Request::Control(..) => "Control",
            Request::Flush => "Flush",
            Request::Reload(_) => "Reload",
            Request::Shutdown => "Shutdown",
        })
    }
}

impl QueueHandle {
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = bounded(1);
        self.requests.send(make(tx)).ok()?;
        rx.recv().ok()
    }

    /// The spool (to write content into `tmp/` and to read).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The reservation ledger.
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// Commits a new message and waits until it is durable (plain) or
    /// spooled for processing (RDLV).
    ///
    /// # Errors
    /// The spool failed or the queue is shutting down: nothing is kept.
    pub fn commit(&self, commit: Commit) -> Result<(), CommitError> {
        self.ask(|tx| Request::Commit(Box::new(commit), tx))
            .unwrap_or(Err(CommitError::ShuttingDown))
    }

    /// A worker fetched a message's BURL content: the new content takes the
    /// place of the old; returns the envelope to go on with.
    ///
    /// # Errors
    /// The message is gone (aborted, removed) or the spool failed; the
    /// worker stops.
    pub fn refill(&self, id: &str, refill: Refill) -> Result<Envelope, String> {
        self.ask(|tx| Request::Refill(id.to_string(), Box::new(refill), tx))
            .unwrap_or_else(|| Err("the queue is shutting down".into()))
    }

    /// DETA: marks the held job detached, durably, before the 221.
    ///
    /// # Errors
    /// The limit is reached or the mark could not be written.
    pub fn detach(&self, id: &str) -> Result<(), DetachRefusal> {
        self.ask(|tx| Request::Detach(id.to_string(), tx))
            .unwrap_or(Err(DetachRefusal::Spool))
    }

    /// The client of a held job went away (or said something else than
    /// CONT/DETA): stop at the next safe point, deliver nothing more,
    /// remove the message. `why` goes into the log.
    pub fn abort(&self, id: &str, why: &str) {
        let _ = self
            .requests
            .send(Request::Abort(id.to_string(), why.to_string()));
    }

    /// The session answered the held job: `positive` (a 2xx) commits it
    /// (deferred recipients and owed DSNs become ordinary queued mail),
    /// anything else drops it.
    ///
    /// # Errors
    /// A positive answer could not be made durable: the message is
    /// dropped and the session must answer 451 instead.
    pub fn conclude(&self, id: &str, positive: bool) -> Result<(), String> {
        self.ask(|tx| Request::Conclude(id.to_string(), positive, tx))
            .unwrap_or_else(|| Err("the queue is shutting down".into()))
    }

    /// A worker's results for some recipients; waits until they are
    /// recorded (durable for queued mail).
    pub fn record(&self, id: &str, results: Vec<(usize, Delivery)>) -> Next {
        self.ask(|tx| Request::Record(id.to_string(), results, tx))
            .unwrap_or(Next::Stop)
    }

    /// A worker's attempt is over.
    pub fn attempt_done(&self, id: &str) -> Finish {
        self.ask(|tx| Request::AttemptDone(id.to_string(), tx))
            .unwrap_or(Finish::Done)
    }

    /// A worker spooled (or kept) these DSN jobs.
    pub fn dsns_done(&self, id: &str, done: Vec<DsnJob>) {
        let _ = self.ask(|tx| Request::DsnsDone(id.to_string(), done, tx));
    }

    /// A control request (`flush`, `retry ID`, `remove ID`); `reply` gets
    /// the answer, possibly later (a removal waits for a running delivery
    /// to stop).
    pub fn control(&self, line: &str, reply: ControlReply) {
        if let Err(e) = self
            .requests
            .send(Request::Control(line.to_string(), reply))
            && let Request::Control(_, reply) = e.into_inner()
        {
            reply(ControlAnswer::Busy("the queue is shutting down".into()));
        }
    }

    /// Retry every deferred message now.
    pub fn flush(&self) {
        let _ = self.requests.send(Request::Flush);
    }

    /// A reloaded configuration.
    pub fn reload(&self, config: Arc<Config>) {
        let _ = self.requests.send(Request::Reload(config));
    }

    /// Stops the queue: running attempts stop at their next safe point,
    /// held RDLV jobs end, and the manager exits once every worker is free.
    pub fn shutdown(&self) {
        let _ = self.requests.send(Request::Shutdown);
    }
}
