//! The SMTP session state machine (RFC 5321 §4.1.4 sequencing) with the RDLV
//! and DETA extensions. Sans-IO: lines in, [`Step`]s out; decisions that need
//! the world (routes, spool space, per-sender reservations) go through
//! [`Policy`].
//!
//! ```text
//! Connected --EHLO/HELO--> Greeted --MAIL--> Mail(txn) --RCPT..--> Mail(txn) --DATA--> Data(txn)
//!     ^                       ^                                                       |
//!     |                       +------- 250 queued ------------------------------------+ (plain)
//!     |                       +------- final reply <-- Processing <-------------------+ (RDLV)
//!                                        120 / CONT / DETA (221, detach) / abort
//! ```
//!
//! Every stage that belongs to a transaction carries it, so no method has
//! to assume a transaction exists.

mod chunking;
#[cfg(test)]
mod chunking_tests;
mod processing;
mod security;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

pub use chunking::ChunkEnd;
pub use processing::{DetachRefusal, Outcome};

use super::address::Path;
use super::command::{Command, MailParams, RcptParams, parse};
use super::reply::Reply;
use super::reply_parser::MAX_REPLY_LINE;
use crate::auth::sasl::{self, Credentials, Exchange};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 3461 §5 lets MAIL and RCPT grow by the DSN parameters (ENVID up to 100,
/// ORCPT up to 500 characters); we allow this much for those two verbs.
pub const MAX_PARAM_LINE: usize = 1536;
/// RFC 4954 §4: an AUTH command line with its initial response may be up
/// to 12288 octets; so may each response line of the exchange.
pub const MAX_AUTH_LINE: usize = sasl::MAX_RESPONSE_LEN + 64;
/// The largest line the driver needs to buffer.
pub const MAX_LINE_BUFFER: usize = MAX_AUTH_LINE;
/// The largest `maxtimer` we accept, in seconds (design: range 1..600).
pub const MAX_RDLV_TIMER: u32 = 600;
/// After this many errors the session is closed (Postfix's hard error limit).
const MAX_ERRORS: u32 = 20;

/// Settings the session needs; plain data.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our host name, in the greeting and replies.
    pub hostname: String,
    /// SIZE limit in octets.
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// RDLV `mintimer`, seconds.
    pub rdlv_mintimer: u32,
    /// STARTTLS may be offered (a certificate is loaded; the connection is
    /// not TLS from its start).
    pub starttls: bool,
    /// SMTP AUTH on this connection.
    pub auth: AuthConfig,
    /// BURL (RFC 4468) can fetch from the configured IMAP server.
    pub burl: bool,
}

/// Where and whether SMTP AUTH (RFC 4954) is offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// There are users to authenticate.
    pub enabled: bool,
    /// AUTH is offered without TLS too (`auth_plaintext`, as it applies to
    /// this client's address).
    pub plaintext: bool,
    /// Nothing but EHLO, HELO, STARTTLS, AUTH, NOOP, RSET and QUIT before a
    /// successful AUTH (`530 5.7.0`).
    pub required: bool,
}

/// Decisions that need state outside the session. The server implements it
/// over its routes, spool and queue manager; tests implement it in a few
/// lines.
pub trait Policy {
    /// At MAIL: may this sender start a transaction (spool space for `size`,
    /// the per-sender limit as a first check)?
    fn check_sender(&mut self, reverse_path: &Path, size: Option<u64>) -> Result<(), Reply>;
    /// At RCPT: may this recipient be accepted (relay access, a route, a
    /// deliverable local part)?
    fn check_recipient(&mut self, address: &str) -> Result<(), Reply>;
    /// At DATA: is there room in the spool?
    fn check_data(&mut self) -> Result<(), Reply>;
    /// At RDLV: reserve a place among this sender's jobs in processing
    /// (draft-burger-smtp-deta §5). The reservation is held until
    /// [`Policy::end_transaction`] or until the driver hands it on.
    fn reserve_reliable(&mut self, reverse_path: &str) -> Result<(), Reply>;
    /// The transaction is over (RSET, EHLO, abort, a final reply): release
    /// what [`Policy::reserve_reliable`] took, if it was not handed on.
    fn end_transaction(&mut self);
    /// AUTH: are these credentials good? On success the policy takes the
    /// user as the client's identity (relay rights, the per-sender key);
    /// on failure it answers (`535 5.7.8`, after its delay).
    fn authenticate(&mut self, credentials: &Credentials) -> Result<(), Reply>;
    /// The identity is void (RFC 3207 §4.2: a new TLS layer starts over).
    fn forget_identity(&mut self);
}

/// What the driver must do after a reply (if any) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the next command.
    Continue,
    /// Flush and close the connection.
    Close,
    /// Read message content with the DATA decoder, then call
    /// [`Session::data_end`].
    ReceiveData,
    /// RDLV: wait for the job's outcome until [`Session::keepalive_after`],
    /// then call [`Session::outcome`] or [`Session::keepalive`].
    Wait,
    /// DETA: ask the queue to detach the job; then [`Session::detached`]
    /// (write the 221 and close) or [`Session::detach_refused`].
    Detach,
    /// Abort the job in processing, write the reply, carry on.
    Abort {
        /// Whether to close after the reply (QUIT).
        close: bool,
    },
    /// STARTTLS: write the 220, discard any input read ahead (RFC 3207 §5),
    /// run the server handshake, then call [`Session::tls_started`]; close
    /// if the handshake fails.
    StartTls,
    /// BDAT: read exactly `size` octets into the message, then call
    /// [`Session::chunk_end`].
    ReceiveChunk {
        /// Octets that follow the command line.
        size: u64,
        /// The message ends with this chunk.
        last: bool,
    },
    /// A refused BDAT: read its octets and throw them away (they are
    /// content, never commands), then write the reply.
    DiscardChunk(u64),
    /// BURL: check and fetch [`Session::take_url`] into the message, then
    /// call [`Session::chunk_end`] (or [`Session::chunk_failed`]).
    FetchUrl {
        /// The message ends with this chunk.
        last: bool,
    },
}

/// The result of feeding one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The reply to write, if any.
    pub reply: Option<Reply>,
    /// What to do next.
    pub action: Action,
}

impl Step {
    fn reply(reply: Reply) -> Step {
        Step {
            reply: Some(reply),
            action: Action::Continue,
        }
    }
    fn with(reply: Reply, action: Action) -> Step {
        Step {
            reply: Some(reply),
            action,
        }
    }
}

/// One accepted recipient as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    /// The forward-path without brackets (bare `postmaster` qualified).
    pub address: String,
    /// Its RCPT parameters.
    pub params: RcptParams,
}

/// A transaction as the session hands it over at end of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Reverse-path; empty for `<>`.
    pub reverse_path: String,
    /// MAIL parameters.
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub recipients: Vec<RcptTo>,
    /// The client's EHLO/HELO name.
    pub helo: String,
    /// RDLV `maxtimer` (seconds) when the client asked for reliable delivery.
    pub rdlv: Option<u32>,
    /// The authenticated identity, if the client authenticated.
    pub auth: Option<String>,
}

/// Where the conversation stands. The stages of a transaction carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Connected,
    Greeted,
    /// After MAIL; RCPTs accumulate in the transaction.
    Mail(Transaction),
    /// After the 354: the content is being read.
    Data(Transaction),
    /// After a BDAT or BURL that was not the last: more chunks come.
    Chunks(Transaction),
    /// RDLV: the final reply to the end of data is being held.
    Processing(processing::Hold),
}

/// One SMTP conversation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    stage: Stage,
    helo: String,
    esmtp: bool,
    errors: u32,
    /// The connection is encrypted (implicit TLS, or after STARTTLS).
    tls: bool,
    /// Who the client authenticated as.
    identity: Option<String>,
    /// An AUTH exchange waiting for the client's next line.
    exchange: Option<Exchange>,
    /// The URL of the BURL command in progress.
    burl_url: Option<String>,
}

fn bad_sequence() -> Reply {
    Reply::new(503, "5.5.1", "bad sequence of commands")
}

/// RFC 6531 §3.5: a non-ASCII address in a transaction without `SMTPUTF8`
/// gets 553 "mailbox name not allowed" with X.6.7, "non-ASCII addresses
/// not permitted for that sender/recipient". The reply does not echo the
/// address: the client did not say it can read UTF-8.
fn needs_smtputf8(path: &Path, smtputf8: bool) -> Option<Reply> {
    match path {
        Path::Mailbox(m) if !smtputf8 && !m.is_ascii() => Some(Reply::new(
            553,
            "5.6.7",
            "non-ASCII address needs the SMTPUTF8 parameter on MAIL (RFC 6531)",
        )),
        _ => None,
    }
}

impl Session {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            stage: Stage::Connected,
            helo: String::new(),
            esmtp: false,
            errors: 0,
            tls: false,
            identity: None,
            exchange: None,
            burl_url: None,
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::plain(220, format!("{} ESMTP detad", self.config.hostname))
    }

    /// The reply when the server shuts down (RFC 5321 §3.8).
    pub fn shutting_down(&self) -> Reply {
        Reply::new(
            421,
            "4.3.2",
            format!("{} shutting down, try again later", self.config.hostname),
        )
    }

    /// The reply when the client was silent past the timeout (RFC 5321 §4.5.3.2).
    pub fn timed_out(&self) -> Reply {
        Reply::new(
            421,
            "4.4.2",
            format!(
                "{} timeout exceeded, closing connection",
                self.config.hostname
            ),
        )
    }

    /// The reply to a command line longer than the driver buffers; the
    /// driver has already read it to its end (RFC 5321 §4.5.3.1.4).
    pub fn line_too_long(&mut self) -> Step {
        if self.exchange.take().is_some() {
            // RFC 4954 §4: the exchange ends.
            return self.error(Reply::new(
                500,
                "5.5.6",
                "authentication exchange line is too long",
            ));
        }
        self.error(Reply::new(500, "5.5.2", "line too long"))
    }

    /// The client's EHLO/HELO name (empty before it).
    pub fn helo(&self) -> &str {
        &self.helo
    }

    /// Whether the client greeted with EHLO.
    pub fn is_esmtp(&self) -> bool {
        self.esmtp
    }

    /// Whether the transaction under way was opened with `SMTPUTF8`
    /// (RFC 6531 §3.4): the Received line says so (§3.7.3).
    pub fn is_smtputf8(&self) -> bool {
        matches!(
            &self.stage,
            Stage::Mail(txn) | Stage::Data(txn) | Stage::Chunks(txn) if txn.params.smtputf8
        )
    }

    /// Feeds one command line (with its line end).
    pub fn feed(&mut self, line: &[u8], policy: &mut dyn Policy) -> Step {
        self.feed_line(line, false, policy)
    }

    /// Feeds a command line that the client sent before it could have seen
    /// the pending 120 (it was already buffered when the 120 went out): a
    /// DETA or CONT there is not an answer to that 120.
    pub fn feed_early(&mut self, line: &[u8], policy: &mut dyn Policy) -> Step {
        self.feed_line(line, true, policy)
    }

    fn feed_line(&mut self, line: &[u8], early: bool, policy: &mut dyn Policy) -> Step {
        if matches!(self.stage, Stage::Processing(_)) {
            return self.while_processing(line, early, policy);
        }
        if let Some(exchange) = self.exchange.take() {
            return self.auth_response(exchange, line, policy);
        }
        let command = match Self::command_of(line) {
            Ok(c) => c,
            // RFC 3030 §2: without a size the chunk cannot be skipped, and
            // its octets must never be read as commands.
            Err(reply) if super::command::verb_of(line).eq_ignore_ascii_case(b"BDAT") => {
                return Step::with(reply, Action::Close);
            }
            Err(reply) => return self.error(reply),
        };
        let step = self.dispatch(command, policy);
        if step.reply.as_ref().is_some_and(|r| r.code >= 500) {
            self.count_error(step)
        } else {
            step
        }
    }

    /// Checks the line end and length and parses the command.
    fn command_of(line: &[u8]) -> Result<Command, Reply> {
        // RFC 5321 §2.3.8: only CRLF ends a line.
        let Some(body) = line.strip_suffix(b"\r\n") else {
            return Err(Reply::new(500, "5.5.2", "command lines must end with CRLF"));
        };
        if body.contains(&b'\r') || body.contains(&b'\n') {
            return Err(Reply::new(500, "5.5.2", "bare CR or LF in command line"));
        }
        let command = parse(body)?;
        let limit = match command {
            Command::Mail(..) | Command::Rcpt(..) => MAX_PARAM_LINE,
            Command::Auth(..) => MAX_AUTH_LINE,
            _ => MAX_COMMAND_LINE,
        };
        if line.len() > limit {
            return Err(Reply::new(500, "5.5.2", "line too long"));
        }
        Ok(command)
    }

    fn error(&mut self, reply: Reply) -> Step {
        self.count_error(Step::reply(reply))
    }

    fn count_error(&mut self, step: Step) -> Step {
        self.errors += 1;
        if self.errors >= MAX_ERRORS && !matches!(self.stage, Stage::Processing(_)) {
            let r = Reply::new(
                421,
                "4.7.0",
                format!(
                    "{} too many errors, closing connection",
                    self.config.hostname
                ),
            );
            return Step::with(r, Action::Close);
        }
        step
    }

    /// Ends the transaction, if any, and falls back to `Greeted` (or stays
    /// `Connected` before a greeting).
    fn reset(&mut self, policy: &mut dyn Policy) {
        if matches!(
            self.stage,
            Stage::Mail(_) | Stage::Data(_) | Stage::Chunks(_)
        ) {
            policy.end_transaction();
        }
        if self.stage != Stage::Connected {
            self.stage = Stage::Greeted;
        }
    }

    fn dispatch(&mut self, command: Command, policy: &mut dyn Policy) -> Step {
        // A BDAT's octets follow it whatever the answer: its own checks.
        if let Command::Bdat(size, last) = command {
            return self.bdat(size, last, policy);
        }
        if let Some(refusal) = self.needs_auth(&command) {
            return Step::reply(refusal);
        }
        match (&mut self.stage, command) {
            (_, Command::Ehlo(domain)) => self.hello(domain, true, policy),
            (_, Command::Helo(domain)) => self.hello(domain, false, policy),
            (_, Command::Quit) => Step::with(
                Reply::new(
                    221,
                    "2.0.0",
                    format!("{} closing transmission channel", self.config.hostname),
                ),
                Action::Close,
            ),
            (_, Command::Noop) => Step::reply(Reply::new(250, "2.0.0", "OK")),
            (_, Command::Help) => Step::reply(Reply::new(
                214,
                "2.0.0",
                "commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT BURL RSET NOOP QUIT VRFY HELP RDLV CONT DETA",
            )),
            (_, Command::StartTls) => self.starttls(),
            (_, Command::Burl(url, last)) => self.burl(url, last, policy),
            // RFC 3030 §3: DATA may not follow BDAT in a transaction.
            (Stage::Chunks(_), Command::Data) => Step::reply(Reply::new(
                503,
                "5.5.1",
                "DATA not allowed after BDAT or BURL",
            )),
            (_, Command::Auth(mechanism, initial)) => self.auth(&mechanism, initial, policy),
            // RFC 5321 §3.5.3: 252 when we will not verify but will try.
            (_, Command::Vrfy) => Step::reply(Reply::new(
                252,
                "2.5.0",
                "cannot VRFY user, but will accept message and attempt delivery",
            )),
            (_, Command::Rset) => {
                self.reset(policy);
                Step::reply(Reply::new(250, "2.0.0", "OK"))
            }
            // RFC 5321 §4.1.1.1: after HELO no extension may be used.
            (_, Command::Rdlv(_)) if !self.esmtp => Step::reply(Reply::new(
                503,
                "5.5.1",
                "RDLV needs EHLO (the extension was not offered)",
            )),
            (Stage::Greeted, Command::Mail(path, params)) => self.mail(path, params, policy),
            (Stage::Mail(_), Command::Rcpt(path, params)) => self.rcpt(path, params, policy),
            (Stage::Mail(txn), Command::Rdlv(maxtimer)) if !txn.recipients.is_empty() => {
                Self::rdlv(&self.config, txn, maxtimer, policy)
            }
            (Stage::Mail(txn), Command::Data) if !txn.recipients.is_empty() => self.data(policy),
            (Stage::Mail(_), Command::Data) => {
                Step::reply(Reply::new(554, "5.5.1", "no valid recipients"))
            }
            (Stage::Connected, Command::Mail(..)) => {
                Step::reply(Reply::new(503, "5.5.1", "send EHLO or HELO first"))
            }
            (Stage::Mail(_), Command::Mail(..)) => {
                Step::reply(Reply::new(503, "5.5.1", "nested MAIL command"))
            }
            _ => Step::reply(bad_sequence()),
        }
    }

    fn data(&mut self, policy: &mut dyn Policy) -> Step {
        if let Err(reply) = policy.check_data() {
            return Step::reply(reply);
        }
        match std::mem::replace(&mut self.stage, Stage::Greeted) {
            Stage::Mail(txn) => {
                self.stage = Stage::Data(txn);
                Step::with(
                    Reply::plain(354, "start mail input; end with <CRLF>.<CRLF>"),
                    Action::ReceiveData,
                )
            }
            other => {
                self.stage = other;
                Step::reply(bad_sequence())
            }
        }
    }

    fn hello(&mut self, domain: String, esmtp: bool, policy: &mut dyn Policy) -> Step {
        // RFC 5321 §4.1.4: EHLO/HELO mid-session resets like RSET.
        self.reset(policy);
        self.stage = Stage::Greeted;
        self.esmtp = esmtp;
        self.helo = domain;
        // The client's name may fill a 512-octet command line; the reply
        // line ("250-", our name, CRLF around it) has no more room than that.
        let room = MAX_REPLY_LINE.saturating_sub(self.config.hostname.len() + " greets ".len() + 6);
        let echoed = self.helo.get(..room).unwrap_or(&self.helo);
        let greet = format!("{} greets {}", self.config.hostname, echoed);
        if !esmtp {
            return Step::reply(Reply::plain(250, greet));
        }
        let mut lines = vec![
            greet,
            "PIPELINING".into(),
            "8BITMIME".into(),
            format!("SIZE {}", self.config.max_message_size),
            "ENHANCEDSTATUSCODES".into(),
            "DSN".into(),
            format!("RDLV mintimer={}", self.config.rdlv_mintimer),
            "DETA".into(),
            "CHUNKING".into(),
            // RFC 6531 §3.2; the UTF-8 content it implies needs 8BITMIME,
            // offered above.
            "SMTPUTF8".into(),
        ];
        if self.offers_starttls() {
            lines.push("STARTTLS".into());
        }
        if self.offers_auth() {
            lines.push(format!("AUTH {}", sasl::MECHANISMS));
        }
        // RFC 4468 §3.1: a bare BURL says "supported, after AUTH".
        if self.config.burl && self.identity.is_some() {
            lines.push("BURL imap".into());
        } else if self.config.burl && self.offers_auth() {
            lines.push("BURL".into());
        }
        lines.push("HELP".into());
        Step::reply(Reply::multi(250, lines))
    }

    fn mail(&mut self, path: Path, params: MailParams, policy: &mut dyn Policy) -> Step {
        // RFC 5321 §4.1.1.1 / RFC 1869: parameters are extensions, which a
        // HELO client was never offered.
        if params.given && !self.esmtp {
            return Step::reply(Reply::new(
                555,
                "5.5.4",
                "MAIL parameters need EHLO (no extension was offered)",
            ));
        }
        if let Some(refusal) = needs_smtputf8(&path, params.smtputf8) {
            return Step::reply(refusal);
        }
        // RFC 1870 §6.1: a declared size over the limit is refused at MAIL.
        if params
            .size
            .is_some_and(|s| s > self.config.max_message_size)
        {
            return Step::reply(Reply::new(
                552,
                "5.3.4",
                "message size exceeds fixed maximum message size",
            ));
        }
        if let Err(reply) = policy.check_sender(&path, params.size) {
            return Step::reply(reply);
        }
        let reverse_path = match &path {
            Path::Null => String::new(),
            Path::Mailbox(m) => m.clone(),
        };
        let reply = Reply::new(250, "2.1.0", format!("sender <{reverse_path}> OK"));
        self.stage = Stage::Mail(Transaction {
            reverse_path,
            params,
            recipients: Vec::new(),
            helo: self.helo.clone(),
            rdlv: None,
            auth: self.identity.clone(),
        });
        Step::reply(reply)
    }

    fn rcpt(&mut self, path: Path, params: RcptParams, policy: &mut dyn Policy) -> Step {
        let Path::Mailbox(address) = path else {
            return Step::reply(Reply::new(501, "5.1.3", "bad recipient address syntax"));
        };
        if params.given && !self.esmtp {
            return Step::reply(Reply::new(
                555,
                "5.5.4",
                "RCPT parameters need EHLO (no extension was offered)",
            ));
        }
        // RFC 5321 §4.5.1: <postmaster> alone is ours; qualify it so routing
        // and delivery see the same domain.
        let address = if address.eq_ignore_ascii_case("postmaster") {
            format!("postmaster@{}", self.config.hostname)
        } else {
            address
        };
        let Stage::Mail(txn) = &mut self.stage else {
            return Step::reply(bad_sequence());
        };
        if let Some(refusal) = needs_smtputf8(&Path::Mailbox(address.clone()), txn.params.smtputf8)
        {
            return Step::reply(refusal);
        }
        // RFC 5321 §4.5.3.1.8: 452 past our limit (which is at least 100).
        if txn.recipients.len() >= self.config.max_recipients {
            return Step::reply(Reply::new(452, "4.5.3", "too many recipients"));
        }
        if let Err(reply) = policy.check_recipient(&address) {
            return Step::reply(reply);
        }
        let reply = Reply::new(250, "2.1.5", format!("recipient <{address}> OK"));
        txn.recipients.push(RcptTo { address, params });
        Step::reply(reply)
    }

    fn rdlv(
        config: &SessionConfig,
        txn: &mut Transaction,
        maxtimer: Option<u32>,
        policy: &mut dyn Policy,
    ) -> Step {
        if txn.rdlv.is_some() {
            return Step::reply(bad_sequence());
        }
        let min = config.rdlv_mintimer;
        let timer = maxtimer.unwrap_or(min);
        if timer < min || timer > MAX_RDLV_TIMER {
            return Step::reply(Reply::new(
                501,
                "5.5.4",
                format!("maxtimer must be between {min} and {MAX_RDLV_TIMER}"),
            ));
        }
        // draft-burger-smtp-deta §5: the per-sender limit is a reservation
        // taken here, so concurrent sessions of one sender cannot overshoot.
        if let Err(reply) = policy.reserve_reliable(&txn.reverse_path) {
            return Step::reply(reply);
        }
        txn.rdlv = Some(timer);
        Step::reply(Reply::new(200, "2.0.0", "reliable delivery OK"))
    }
}
