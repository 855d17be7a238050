//! The envelope of one message as the spool keeps it: who sent it, to whom,
//! with which RFC 3461 DSN parameters, and where each recipient stands.
//!
//! Plain data, shared by the session (which builds it), the spool (which
//! persists it), the workers (which update recipient states), the relay
//! client (which passes DSN parameters on) and the DSN builder.

/// RFC 3461 §4.3 `RET=`: what a failure DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: only its header section.
    Hdrs,
}

/// RFC 1652 / RFC 6152 `BODY=`: the declared body type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// `BODY=7BIT` or no parameter.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// RFC 3461 §4.1 `NOTIFY=`: which events the sender wants a DSN for.
///
/// `None` in [`Recipient::notify`] means the parameter was absent, which
/// RFC 3461 §4.1 says to treat as `FAILURE` (and, at our discretion, `DELAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// `SUCCESS`: a `delivered` or `relayed` DSN is wanted.
    pub success: bool,
    /// `FAILURE`: a `failed` DSN is wanted.
    pub failure: bool,
    /// `DELAY`: a `delayed` DSN is wanted.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`: no DSN of any kind.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };
}

/// RFC 3461 §4.2 `ORCPT=addr-type;xtext`, kept decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orcpt {
    /// The address type, e.g. `rfc822` (case preserved as received).
    pub addr_type: String,
    /// The decoded original recipient address.
    pub address: String,
}

/// Where one recipient stands. Persisted before the worker acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptState {
    /// Not yet attempted, or due for another attempt.
    Pending,
    /// Delivered to its final destination (Maildir, program) or accepted by
    /// the next hop. `relayed` is true when the next hop does not take DSN
    /// parameters (RFC 3461 §5.2.2: the DSN action is then `relayed`).
    Delivered {
        /// Whether the hand-off was to a hop that does not support DSN.
        relayed: bool,
    },
    /// A temporary failure; retried later.
    Deferred,
    /// A permanent failure.
    Failed,
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
    /// Delivery state.
    pub state: RcptState,
    /// Enhanced status code of the last outcome, e.g. `5.1.1` (empty before
    /// the first attempt).
    pub status: String,
    /// The last diagnostic: what the remote MTA or program said, or our own
    /// explanation (empty before the first attempt).
    pub diagnostic: String,
    /// The remote MTA that produced the diagnostic, if any.
    pub remote_mta: Option<String>,
    /// Unix time of the last attempt (0 before the first attempt).
    pub last_attempt: i64,
    /// Whether the DSN for the current state (failed, delivered, relayed) was
    /// already written, so a restart never sends it twice.
    pub dsn_done: bool,
}

impl Recipient {
    /// A new pending recipient.
    pub fn new(address: String, notify: Option<Notify>, orcpt: Option<Orcpt>) -> Recipient {
        Recipient {
            address,
            notify,
            orcpt,
            state: RcptState::Pending,
            status: String::new(),
            diagnostic: String::new(),
            remote_mta: None,
            last_attempt: 0,
            dsn_done: false,
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
/// there is none (`postmaster`).
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
    /// Whether the content has octets above 127.
    pub eight_bit: bool,
    /// Unix time the message was received.
    pub arrival: i64,
    /// The client's address, for Received and logs.
    pub client_ip: String,
    /// The client's EHLO/HELO name.
    pub helo: String,
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
            eight_bit: false,
            arrival,
            client_ip: String::new(),
            helo: String::new(),
            mode: Mode::Queued,
            attempts: 0,
            next_attempt: 0,
            delay_warned: false,
            is_dsn: false,
            recipients,
        }
    }
}
