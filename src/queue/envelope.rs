//! The envelope of one message as the spool keeps it: who sent it, to whom,
//! with which RFC 3461 DSN parameters, and where each recipient stands.
//!
//! Plain data. Only the queue manager changes an envelope that is in the
//! spool; workers get copies and report [`Delivery`] values back.

pub use crate::smtp::params::{BodyType, Notify, Orcpt, Ret};

use super::delivery::{Delivery, DeliveryKind};

/// Where one recipient stands, derived from its last [`Delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    /// Not yet attempted.
    Pending,
    /// Delivered to its final destination or to a next hop taking DSN
    /// parameters; `relayed` when the next hop does not (RFC 3461 §5.2.2:
    /// the DSN action is then `relayed`).
    Delivered {
        /// Whether the hand-off was to a hop that does not support DSN.
        relayed: bool,
    },
    /// A temporary failure; retried later.
    Deferred,
    /// A permanent failure.
    Failed,
}

impl RcptState {
    /// The spool's (and the queue tools') name of a state.
    pub fn name(self) -> &'static str {
        match self {
            RcptState::Pending => "pending",
            RcptState::Delivered { relayed: false } => "delivered",
            RcptState::Delivered { relayed: true } => "relayed",
            RcptState::Deferred => "deferred",
            RcptState::Failed => "failed",
        }
    }

    /// Whether nothing more will be attempted for the recipient.
    pub fn is_final(self) -> bool {
        matches!(self, RcptState::Delivered { .. } | RcptState::Failed)
    }
}

/// One recipient of a message, with its DSN parameters and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path as given at RCPT, without angle brackets.
    pub address: String,
    /// `NOTIFY=`, or `None` when absent.
    pub notify: Option<Notify>,
    /// `ORCPT=`, decoded.
    pub orcpt: Option<Orcpt>,
    /// The result of the last attempt; `None` before the first.
    pub last: Option<Delivery>,
    /// Unix time of the last attempt (0 before the first attempt).
    pub last_attempt: i64,
    /// Whether the DSN for the current state (failed, delivered, relayed) was
    /// already written, or is not owed, so a restart never sends it twice.
    pub dsn_done: bool,
}

impl Recipient {
    /// A new pending recipient.
    pub fn new(address: String, notify: Option<Notify>, orcpt: Option<Orcpt>) -> Recipient {
        Recipient {
            address,
            notify,
            orcpt,
            last: None,
            last_attempt: 0,
            dsn_done: false,
        }
    }

    /// Where the recipient stands.
    pub fn state(&self) -> RcptState {
        match self.last.as_ref().map(|d| d.kind) {
            None => RcptState::Pending,
            Some(DeliveryKind::Delivered) => RcptState::Delivered { relayed: false },
            Some(DeliveryKind::Relayed) => RcptState::Delivered { relayed: true },
            Some(DeliveryKind::Deferred) => RcptState::Deferred,
            Some(DeliveryKind::Failed) => RcptState::Failed,
        }
    }

    /// The domain part of the address (after the last `@`), lower-cased.
    pub fn domain(&self) -> String {
        domain_of(&self.address)
    }

    /// The local part of the address (before the last `@`).
    pub fn local_part(&self) -> &str {
        match self.address.rfind('@') {
            Some(i) => &self.address[..i],
            None => &self.address,
        }
    }
}

/// The domain of an address (after the last `@`), lower-cased; empty when
/// there is none (`postmaster`). ASCII case folding only: the non-ASCII
/// letters of a U-label (RFC 6531) stay as they are, so a route for one
/// matches its own spelling (no Unicode case folding, no IDNA mapping).
pub fn domain_of(address: &str) -> String {
    match address.rfind('@') {
        Some(i) => address[i + 1..].to_ascii_lowercase(),
        None => String::new(),
    }
}

/// How the client asked for the message to be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain store and forward: acknowledged at once, outcome by DSN.
    Queued,
    /// RDLV: the session waits for the outcome and answers with it. Not yet
    /// committed: after a crash such a message is dropped (the client never
    /// heard a final reply and will retry).
    Reliable,
    /// RDLV then DETA: the client hung up; processing goes on, outcome by DSN.
    Detached,
}

impl Mode {
    /// The spool's (and the queue tools') name of a mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Queued => "queued",
            Mode::Reliable => "reliable",
            Mode::Detached => "detached",
        }
    }
}

/// Everything the spool keeps about one message besides its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Queue id, also the spool file name stem.
    pub id: String,
    /// The reverse-path without brackets; empty for the null path `<>`.
    pub reverse_path: String,
    /// `RET=`, if given.
    pub ret: Option<Ret>,
    /// `ENVID=`, decoded.
    pub envid: Option<String>,
    /// `BODY=` as declared.
    pub body: BodyType,
    /// Content size in octets as stored (CRLF line ends, dot-unstuffed).
    pub size: u64,
    /// CRC-32 of the content as stored, checked at startup so that a file
    /// torn by a power cut before its commit was durable is never delivered.
    pub content_crc: u32,
    /// Whether the content has octets above 127.
    pub eight_bit: bool,
    /// RFC 6531 `SMTPUTF8` was given on MAIL: addresses may be UTF-8 and the
    /// header fields too (RFC 6532). Such a message is relayed only to a
    /// hop that offers SMTPUTF8 (§3.4: no downgrade), and a DSN about it is
    /// an RFC 6533 one.
    pub smtputf8: bool,
    /// Unix time the message was received.
    pub arrival: i64,
    /// The client's address, for Received and logs.
    pub client_ip: String,
    /// The client's EHLO/HELO name.
    pub helo: String,
    /// The identity the client authenticated as (RFC 4954), if any.
    pub auth: Option<String>,
    /// How the client asked for the message to be handled.
    pub mode: Mode,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Unix time of the next attempt (0 = now).
    pub next_attempt: i64,
    /// Whether a `delayed` DSN was already sent (once per message).
    pub delay_warned: bool,
    /// Whether this message is itself a DSN we generated (never bounce it).
    pub is_dsn: bool,
    /// A BURL URL (RFC 4468) whose content is still to be fetched and
    /// appended to the content so far: an RDLV job fetches as the first
    /// step of its processing.
    pub fetch: Option<String>,
    /// The recipients.
    pub recipients: Vec<Recipient>,
}

impl Envelope {
    /// A new queued envelope: 7-bit body, no DSN parameters, no attempts
    /// yet; callers set what they know with struct update or assignment.
    pub fn new(
        id: String,
        reverse_path: String,
        arrival: i64,
        recipients: Vec<Recipient>,
    ) -> Envelope {
        Envelope {
            id,
            reverse_path,
            ret: None,
            envid: None,
            body: BodyType::SevenBit,
            size: 0,
            content_crc: 0,
            eight_bit: false,
            smtputf8: false,
            arrival,
            client_ip: String::new(),
            helo: String::new(),
            auth: None,
            mode: Mode::Queued,
            attempts: 0,
            next_attempt: 0,
            delay_warned: false,
            is_dsn: false,
            fetch: None,
            recipients,
        }
    }
}

impl Envelope {
    /// Whether a recipient still waits for an attempt (pending or deferred).
    pub fn has_open_recipients(&self) -> bool {
        self.recipients.iter().any(|r| !r.state().is_final())
    }

    /// The per-sender key of this message: the authenticated identity when
    /// there is one (RFC 4954), else the lower-cased reverse-path (`<>` for
    /// the null path).
    pub fn sender_key(&self) -> String {
        sender_key(self.auth.as_deref(), &self.reverse_path)
    }
}

/// The per-sender key (draft-burger-smtp-deta §5) of an identity and a
/// reverse-path: the authenticated identity when there is one, else the
/// lower-cased reverse-path (`<>` for the null path).
pub fn sender_key(auth: Option<&str>, reverse_path: &str) -> String {
    match auth {
        Some(identity) => format!("auth:{identity}"),
        None if reverse_path.is_empty() => "<>".into(),
        None => reverse_path.to_ascii_lowercase(),
    }
}
