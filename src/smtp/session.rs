//! The SMTP session state machine (RFC 5321 §4.1.4 sequencing) with the RDLV
//! and DETA extensions. Sans-IO: lines in, [`Step`]s out; decisions that need
//! the world (routes, spool space, per-sender counts) go through [`Policy`].
//!
//! ```text
//! Connected --EHLO/HELO--> Greeted --MAIL--> Mail --RCPT--> Rcpt --DATA--> Data
//!     ^                       ^  ^                            |  RDLV        |
//!     |                       |  +---- 250 queued ------------+--------------+ (plain)
//!     |                       +------- final reply <-- Processing <----------+ (RDLV)
//!                                        120 / CONT / DETA (221, detach) / abort
//! ```

use super::address::Path;
use super::command::{Command, MailParams, RcptParams, parse};
use super::data::Verdict;
use super::reply::Reply;
use crate::envelope::Recipient;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 3461 §5 lets MAIL and RCPT grow by the DSN parameters (ENVID up to 100,
/// ORCPT up to 500 characters); we allow this much for those two verbs.
pub const MAX_PARAM_LINE: usize = 1536;
/// The largest line the driver needs to buffer.
pub const MAX_LINE_BUFFER: usize = MAX_PARAM_LINE;
/// The largest `maxtimer` we accept, in seconds (design: range 1..600).
pub const MAX_RDLV_TIMER: u32 = 600;
/// Room for a diagnostic in a final reply line: 512 octets less the code,
/// the enhanced status code and the CRLF.
const MAX_FINAL_TEXT: usize = 480;
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
}

/// Decisions that need state outside the session. The server implements it
/// over its routes, spool and in-flight registry; tests implement it in a
/// few lines.
pub trait Policy {
    /// At MAIL: may this sender start a transaction (per-sender limit, spool
    /// space for `size`)?
    fn check_sender(&mut self, reverse_path: &Path, size: Option<u64>) -> Result<(), Reply>;
    /// At RCPT: may this recipient be accepted (relay access, a route, a
    /// deliverable local part)?
    fn check_recipient(&mut self, address: &str) -> Result<(), Reply>;
    /// At DATA: is there room in the spool?
    fn check_data(&mut self) -> Result<(), Reply>;
    /// At DETA: may one more job run detached (`max_detached`)?
    fn may_detach(&mut self) -> bool;
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
    /// RDLV: wait for the job's outcome for [`Session::interval_secs`], then
    /// call [`Session::outcome`] or [`Session::keepalive`].
    Wait,
    /// DETA accepted: mark the job detached, write the 221, close.
    Detach,
    /// Abort the job in processing, write the reply, carry on with `then`.
    Abort {
        /// Whether to close after the reply (QUIT).
        close: bool,
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

/// A transaction as the session hands it over at end of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Reverse-path; empty for `<>`.
    pub reverse_path: String,
    /// MAIL parameters.
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub recipients: Vec<Recipient>,
    /// The client's EHLO/HELO name.
    pub helo: String,
    /// RDLV `maxtimer` (seconds) when the client asked for reliable delivery.
    pub rdlv: Option<u32>,
}

/// How processing of an RDLV job ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every recipient reached a definite state.
    Done {
        /// Recipients delivered (or handed to the next hop).
        delivered: usize,
        /// Recipients deferred to the retry queue.
        deferred: usize,
        /// The first permanent failure's reply, when any failed.
        first_failure: Option<Reply>,
    },
    /// Processing could not run at all (nothing kept).
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connected,
    Greeted,
    Mail,
    Rcpt,
    Data,
    /// RDLV: the final reply is being held.
    Processing {
        keepalive_pending: bool,
    },
}

/// One SMTP conversation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    stage: Stage,
    helo: String,
    esmtp: bool,
    txn: Option<Transaction>,
    errors: u32,
}

fn bad_sequence() -> Reply {
    Reply::new(503, "5.5.1", "bad sequence of commands")
}

impl Session {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            stage: Stage::Connected,
            helo: String::new(),
            esmtp: false,
            txn: None,
            errors: 0,
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
        self.error(Reply::new(500, "5.5.2", "line too long"))
    }

    /// The keep-alive interval for the job in processing, in seconds: the
    /// client's `maxtimer`, else our `mintimer`.
    pub fn interval_secs(&self) -> u32 {
        self.txn
            .as_ref()
            .and_then(|t| t.rdlv)
            .unwrap_or(self.config.rdlv_mintimer)
    }

    /// The client's EHLO/HELO name (empty before it).
    pub fn helo(&self) -> &str {
        &self.helo
    }

    /// Whether the client greeted with EHLO.
    pub fn is_esmtp(&self) -> bool {
        self.esmtp
    }

    /// Whether an RDLV job's final reply is being held.
    pub fn is_processing(&self) -> bool {
        matches!(self.stage, Stage::Processing { .. })
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
        let command = match Self::command_of(line) {
            Ok(c) => c,
            Err(reply) => match self.stage {
                // A line that is no command at all is "anything else" too:
                // after a 120 it aborts (RFC 5321 §4.2.1); sent before the
                // 120, it is answered and the answer is still awaited.
                Stage::Processing {
                    keepalive_pending: true,
                } if !early => {
                    self.txn = None;
                    self.stage = Stage::Greeted;
                    return Step::with(reply, Action::Abort { close: false });
                }
                Stage::Processing { .. } => return Step::reply(reply),
                _ => return self.error(reply),
            },
        };
        if let Stage::Processing { keepalive_pending } = self.stage {
            return self.while_processing(command, keepalive_pending && !early, policy);
        }
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
        if self.errors >= MAX_ERRORS && !self.is_processing() {
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

    fn dispatch(&mut self, command: Command, policy: &mut dyn Policy) -> Step {
        match (self.stage, command) {
            (_, Command::Ehlo(domain)) => self.hello(domain, true),
            (_, Command::Helo(domain)) => self.hello(domain, false),
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
                "commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP RDLV CONT DETA",
            )),
            // RFC 5321 §3.5.3: 252 when we will not verify but will try.
            (_, Command::Vrfy) => Step::reply(Reply::new(
                252,
                "2.5.0",
                "cannot VRFY user, but will accept message and attempt delivery",
            )),
            (_, Command::Rset) => {
                self.reset();
                Step::reply(Reply::new(250, "2.0.0", "OK"))
            }
            (Stage::Greeted, Command::Mail(path, params)) => self.mail(path, params, policy),
            (Stage::Mail | Stage::Rcpt, Command::Rcpt(path, params)) => {
                self.rcpt(path, params, policy)
            }
            (Stage::Rcpt, Command::Rdlv(maxtimer)) => self.rdlv(maxtimer),
            (Stage::Rcpt, Command::Data) => match policy.check_data() {
                Ok(()) => {
                    self.stage = Stage::Data;
                    Step::with(
                        Reply::plain(354, "start mail input; end with <CRLF>.<CRLF>"),
                        Action::ReceiveData,
                    )
                }
                Err(reply) => Step::reply(reply),
            },
            (Stage::Mail, Command::Data) => {
                Step::reply(Reply::new(554, "5.5.1", "no valid recipients"))
            }
            (Stage::Connected, Command::Mail(..)) => {
                Step::reply(Reply::new(503, "5.5.1", "send EHLO or HELO first"))
            }
            (Stage::Mail | Stage::Rcpt, Command::Mail(..)) => {
                Step::reply(Reply::new(503, "5.5.1", "nested MAIL command"))
            }
            _ => Step::reply(bad_sequence()),
        }
    }

    fn hello(&mut self, domain: String, esmtp: bool) -> Step {
        // RFC 5321 §4.1.4: EHLO/HELO mid-session resets like RSET.
        self.reset();
        self.stage = Stage::Greeted;
        self.esmtp = esmtp;
        self.helo = domain;
        let greet = format!("{} greets {}", self.config.hostname, self.helo);
        if !esmtp {
            return Step::reply(Reply::plain(250, greet));
        }
        let lines = vec![
            greet,
            "PIPELINING".into(),
            "8BITMIME".into(),
            format!("SIZE {}", self.config.max_message_size),
            "ENHANCEDSTATUSCODES".into(),
            "DSN".into(),
            format!("RDLV mintimer={}", self.config.rdlv_mintimer),
            "DETA".into(),
            "HELP".into(),
        ];
        Step::reply(Reply::multi(250, lines))
    }

    fn reset(&mut self) {
        self.txn = None;
        if self.stage != Stage::Connected {
            self.stage = Stage::Greeted;
        }
    }

    fn mail(&mut self, path: Path, params: MailParams, policy: &mut dyn Policy) -> Step {
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
        self.txn = Some(Transaction {
            reverse_path,
            params,
            recipients: Vec::new(),
            helo: self.helo.clone(),
            rdlv: None,
        });
        self.stage = Stage::Mail;
        Step::reply(reply)
    }

    fn rcpt(&mut self, path: Path, params: RcptParams, policy: &mut dyn Policy) -> Step {
        let Path::Mailbox(address) = path else {
            return Step::reply(Reply::new(501, "5.1.3", "bad recipient address syntax"));
        };
        let txn = self
            .txn
            .as_mut()
            .expect("Mail and Rcpt stages always have a transaction");
        // RFC 5321 §4.5.3.1.8: 452 past our limit (which is at least 100).
        if txn.recipients.len() >= self.config.max_recipients {
            return Step::reply(Reply::new(452, "4.5.3", "too many recipients"));
        }
        // RFC 5321 §4.5.1: <postmaster> alone is ours; qualify it so routing
        // and delivery see the same domain.
        let address = if address == "postmaster" {
            format!("postmaster@{}", self.config.hostname)
        } else {
            address
        };
        if let Err(reply) = policy.check_recipient(&address) {
            return Step::reply(reply);
        }
        let reply = Reply::new(250, "2.1.5", format!("recipient <{address}> OK"));
        txn.recipients
            .push(Recipient::new(address, params.notify, params.orcpt));
        self.stage = Stage::Rcpt;
        Step::reply(reply)
    }

    fn rdlv(&mut self, maxtimer: Option<u32>) -> Step {
        let txn = self
            .txn
            .as_mut()
            .expect("Rcpt stage always has a transaction");
        if txn.rdlv.is_some() {
            return Step::reply(bad_sequence());
        }
        let min = self.config.rdlv_mintimer;
        let timer = maxtimer.unwrap_or(min);
        if timer < min || timer > MAX_RDLV_TIMER {
            return Step::reply(Reply::new(
                501,
                "5.5.4",
                format!("maxtimer must be between {min} and {MAX_RDLV_TIMER}"),
            ));
        }
        txn.rdlv = Some(timer);
        Step::reply(Reply::new(200, "2.0.0", "reliable delivery OK"))
    }

    /// The end of data was reached; `verdict` is the decoder's judgement.
    /// Returns the transaction to spool, or the rejection to send (the
    /// transaction is then over).
    pub fn data_end(&mut self, verdict: Verdict) -> Result<Transaction, Reply> {
        assert_eq!(self.stage, Stage::Data, "data_end outside DATA");
        let txn = self
            .txn
            .take()
            .expect("Data stage always has a transaction");
        self.stage = Stage::Greeted;
        match verdict {
            Verdict::Ok => {
                self.txn = Some(txn.clone());
                self.stage = Stage::Greeted;
                Ok(txn)
            }
            // RFC 5321 §4.1.1.4 / CERT VU#302671: refuse, never normalise.
            Verdict::BareNewline => Err(Reply::new(
                550,
                "5.6.0",
                "message contains bare CR or LF; only CRLF line ends are allowed",
            )),
            Verdict::LineTooLong => Err(Reply::new(
                500,
                "5.5.2",
                "message line longer than 1000 octets",
            )),
            Verdict::TooBig => Err(Reply::new(
                552,
                "5.3.4",
                "message size exceeds fixed maximum message size",
            )),
        }
    }

    /// The message is durable in the spool as `id`: a plain transaction gets
    /// its 250 now; an RDLV transaction starts waiting for the outcome.
    pub fn spooled(&mut self, id: &str) -> Step {
        let rdlv = self.txn.as_ref().and_then(|t| t.rdlv).is_some();
        if rdlv {
            self.stage = Stage::Processing {
                keepalive_pending: false,
            };
            Step {
                reply: None,
                action: Action::Wait,
            }
        } else {
            self.txn = None;
            Step::reply(Reply::new(250, "2.0.0", format!("queued as {id}")))
        }
    }

    /// Spooling failed; `reply` says why (451, 452).
    pub fn spool_failed(&mut self, reply: Reply) -> Reply {
        self.txn = None;
        reply
    }

    /// The interval passed without an outcome: the 120 to send now. The
    /// driver then reads the client's answer within the interval.
    pub fn keepalive(&mut self) -> Reply {
        self.stage = Stage::Processing {
            keepalive_pending: true,
        };
        // RFC 3463 classes are 2, 4, 5 only: a 1yz reply has no x.y.z.
        Reply::plain(
            120,
            format!("{} DATA processing in progress", self.config.hostname),
        )
    }

    /// The job reached a definite state: the final reply to the end of data
    /// (or to the last CONT).
    pub fn outcome(&mut self, outcome: &Outcome, id: &str) -> Reply {
        self.txn = None;
        self.stage = Stage::Greeted;
        match outcome {
            Outcome::Done {
                delivered,
                deferred,
                first_failure,
            } if delivered + deferred > 0 => {
                let text = match (delivered, deferred) {
                    (_, 0) => format!("{id} delivered to {delivered} recipient(s)"),
                    (0, _) => {
                        format!("{id} queued for {deferred} recipient(s), delivery will be retried")
                    }
                    _ => {
                        format!("{id} delivered to {delivered}, queued for {deferred} recipient(s)")
                    }
                };
                let text = if first_failure.is_some() {
                    format!("{text}; failures are reported by DSN")
                } else {
                    text
                };
                Reply::new(250, "2.0.0", text)
            }
            Outcome::Done {
                first_failure: Some(failure),
                ..
            } => {
                let code = if failure.code >= 500 {
                    failure.code
                } else {
                    554
                };
                let status = failure
                    .status
                    .clone()
                    .filter(|s| s.starts_with('5'))
                    .unwrap_or_else(|| "5.0.0".into());
                // RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets;
                // an upstream's multi-line reply is joined, so cut it.
                let mut text = failure.lines.join(" ");
                if text.len() > MAX_FINAL_TEXT {
                    let cut = (0..=MAX_FINAL_TEXT)
                        .rev()
                        .find(|&i| text.is_char_boundary(i))
                        .unwrap_or(0);
                    text.truncate(cut);
                }
                Reply {
                    code,
                    status: Some(status),
                    lines: vec![text],
                }
            }
            Outcome::Done { .. } => Reply::new(554, "5.0.0", "no recipient could be processed"),
            Outcome::Failed(why) => Reply::new(
                451,
                "4.3.0",
                format!("processing failed, nothing kept: {why}"),
            ),
        }
    }

    /// DETA took effect (the job is marked detached in the spool): the 221,
    /// after which the driver closes (draft-burger-smtp-deta §2.2.1).
    pub fn detached(&mut self) -> Reply {
        self.txn = None;
        self.stage = Stage::Greeted;
        let text = format!("{} closing transmission channel", self.config.hostname);
        Reply::new(221, "2.0.0", text)
    }

    /// DETA could not take effect (the mark could not be written): the
    /// client keeps waiting as after CONT.
    pub fn detach_failed(&mut self) -> Reply {
        self.stage = Stage::Processing {
            keepalive_pending: false,
        };
        Reply::new(452, "4.3.2", "cannot detach now, keep waiting (CONT)")
    }

    /// The stage to fall back to after an abort the driver performed on its
    /// own (EOF, timeout): the transaction is gone.
    pub fn aborted(&mut self) {
        self.txn = None;
        self.stage = Stage::Greeted;
    }

    fn while_processing(
        &mut self,
        command: Command,
        answers_keepalive: bool,
        policy: &mut dyn Policy,
    ) -> Step {
        match command {
            Command::Cont | Command::Deta if !answers_keepalive => {
                // Draft-burger-smtp-deta §2.2.1: DETA answers a 120 only.
                Step::reply(Reply::new(503, "5.5.1", "no 120 reply is pending"))
            }
            Command::Cont => {
                self.stage = Stage::Processing {
                    keepalive_pending: false,
                };
                Step {
                    reply: None,
                    action: Action::Wait,
                }
            }
            // The 221 comes from [`Session::detached`], once the driver has
            // made the detached mark durable.
            Command::Deta if policy.may_detach() => Step {
                reply: None,
                action: Action::Detach,
            },
            Command::Deta => {
                // max_detached reached: keep the client, as if it said CONT.
                self.stage = Stage::Processing {
                    keepalive_pending: false,
                };
                let reply = Reply::new(452, "4.3.2", "too many detached jobs, keep waiting (CONT)");
                Step::with(reply, Action::Wait)
            }
            other => {
                // RFC 5321 §4.2.1: anything but "continue" after a 1yz aborts.
                self.txn = None;
                self.stage = Stage::Greeted;
                let mut step = self.dispatch(other.clone(), policy);
                if !matches!(other, Command::Rset | Command::Quit) {
                    step.reply = Some(bad_sequence());
                }
                let close = step.action == Action::Close;
                step.action = Action::Abort { close };
                step
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::data::DataDecoder;

    /// A policy with fixed answers.
    #[derive(Default)]
    struct TestPolicy {
        busy_sender: Option<&'static str>,
        refuse_rcpt: Option<&'static str>,
        spool_full: bool,
        no_detach: bool,
    }

    impl Policy for TestPolicy {
        fn check_sender(&mut self, path: &Path, _size: Option<u64>) -> Result<(), Reply> {
            match (path, self.busy_sender) {
                (Path::Mailbox(m), Some(b)) if m == b => Err(Reply::new(452, "4.7.1", "too many")),
                _ if self.spool_full => Err(Reply::new(452, "4.3.1", "full")),
                _ => Ok(()),
            }
        }
        fn check_recipient(&mut self, address: &str) -> Result<(), Reply> {
            match self.refuse_rcpt {
                Some(r) if r == address => Err(Reply::new(550, "5.1.2", "no route")),
                _ => Ok(()),
            }
        }
        fn check_data(&mut self) -> Result<(), Reply> {
            if self.spool_full {
                Err(Reply::new(452, "4.3.1", "full"))
            } else {
                Ok(())
            }
        }
        fn may_detach(&mut self) -> bool {
            !self.no_detach
        }
    }

    fn session() -> Session {
        Session::new(SessionConfig {
            hostname: "gw.test".into(),
            max_message_size: 1000,
            max_recipients: 100,
            rdlv_mintimer: 30,
        })
    }

    /// Runs an RFC 5321 Appendix D style transcript: `C:` lines are fed,
    /// each `S:` line is a reply expected in order (code, then an optional
    /// text prefix after the code). `D:` feeds a message body (`\n` becomes
    /// CRLF, `\l` a bare LF) through the DATA decoder and spools it as `ID1`; `W:` is the
    /// interval passing (a 120 is expected next); `O:` delivers an outcome
    /// (`ok`, `fail`).
    #[track_caller]
    fn transcript(s: &mut Session, p: &mut TestPolicy, script: &str) -> Vec<Action> {
        let mut replies: Vec<Reply> = Vec::new();
        let mut actions = Vec::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (tag, rest) = (&line[..2], line[2..].trim_start());
            match tag {
                "C:" => {
                    let step = s.feed(format!("{rest}\r\n").as_bytes(), p);
                    replies.extend(step.reply);
                    if step.action == Action::Detach {
                        replies.push(s.detached());
                    }
                    actions.push(step.action);
                }
                "E:" => {
                    let step = s.feed_early(format!("{rest}\r\n").as_bytes(), p);
                    replies.extend(step.reply);
                    actions.push(step.action);
                }
                "D:" => {
                    let body = format!(
                        "{}\r\n.\r\n",
                        rest.replace("\\n", "\r\n").replace("\\l", "\n")
                    );
                    let mut d = DataDecoder::new(1000);
                    let (_, done) = d.decode(body.as_bytes(), &mut Vec::new());
                    assert!(done, "no end of data in {body:?}");
                    match s.data_end(d.verdict()) {
                        Ok(_) => {
                            let step = s.spooled("ID1");
                            replies.extend(step.reply);
                            actions.push(step.action);
                        }
                        Err(r) => replies.push(r),
                    }
                }
                "W:" => replies.push(s.keepalive()),
                "O:" => {
                    let outcome = match rest {
                        "ok" => Outcome::Done {
                            delivered: 1,
                            deferred: 0,
                            first_failure: None,
                        },
                        "deferred" => Outcome::Done {
                            delivered: 0,
                            deferred: 1,
                            first_failure: None,
                        },
                        _ => Outcome::Done {
                            delivered: 0,
                            deferred: 0,
                            first_failure: Some(Reply::new(550, "5.1.1", "no such user")),
                        },
                    };
                    replies.push(s.outcome(&outcome, "ID1"));
                }
                "S:" => {
                    let want = rest;
                    assert!(!replies.is_empty(), "expected {want:?}, no reply left");
                    let got = replies.remove(0).to_bytes();
                    let got = String::from_utf8_lossy(&got);
                    let got = got.lines().last().unwrap_or("");
                    assert!(got.starts_with(want), "expected {want:?}, got {got:?}");
                }
                _ => panic!("bad transcript line {line:?}"),
            }
        }
        assert!(replies.is_empty(), "unexpected replies left: {replies:?}");
        actions
    }

    #[track_caller]
    fn run(script: &str) -> Vec<Action> {
        transcript(&mut session(), &mut TestPolicy::default(), script)
    }

    const START: &str = "C: EHLO c.test\nS: 250 HELP\nC: MAIL FROM:<a@x.test>\nS: 250 2.1.0\nC: RCPT TO:<b@y.test>\nS: 250 2.1.5\n";

    #[test]
    fn plain_transaction_is_queued() {
        run(&format!(
            "{START}C: DATA\nS: 354\nD: Subject: t\\n\\nhi\nS: 250 2.0.0 queued as ID1\nC: QUIT\nS: 221 2.0.0"
        ));
    }

    #[test]
    fn ehlo_advertises_the_extensions() {
        let mut s = session();
        let step = s.feed(b"EHLO c\r\n", &mut TestPolicy::default());
        let text = String::from_utf8(step.reply.unwrap().to_bytes()).unwrap();
        for kw in [
            "PIPELINING",
            "8BITMIME",
            "SIZE 1000",
            "ENHANCEDSTATUSCODES",
            "DSN",
            "RDLV mintimer=30",
            "DETA",
        ] {
            assert!(
                text.contains(&format!("250-{kw}\r\n")),
                "{kw} missing in {text}"
            );
        }
    }

    #[test]
    fn null_reverse_path_is_accepted() {
        run("C: HELO c\nS: 250\nC: MAIL FROM:<>\nS: 250 2.1.0");
    }

    #[test]
    fn sequence_errors_are_503() {
        run(
            "C: MAIL FROM:<a@b>\nS: 503 5.5.1\nC: EHLO c\nS: 250\nC: RCPT TO:<a@b>\nS: 503 5.5.1\nC: DATA\nS: 503 5.5.1",
        );
        run(&format!("{START}C: MAIL FROM:<a@b>\nS: 503 5.5.1"));
        run("C: EHLO c\nS: 250\nC: MAIL FROM:<a@b>\nS: 250\nC: DATA\nS: 554 5.5.1");
    }

    #[test]
    fn unknown_command_gets_500_and_the_session_goes_on() {
        run(
            "C: FROB\nS: 500 5.5.2\nC: NOOP\nS: 250 2.0.0\nC: VRFY x\nS: 252 2.5.0\nC: HELP\nS: 214 2.0.0",
        );
    }

    #[test]
    fn rset_and_ehlo_clear_the_transaction() {
        run(&format!(
            "{START}C: RSET\nS: 250\nC: RCPT TO:<b@y>\nS: 503\nC: MAIL FROM:<a@x>\nS: 250"
        ));
        run(&format!(
            "{START}C: EHLO again\nS: 250 HELP\nC: RCPT TO:<b@y>\nS: 503"
        ));
    }

    #[test]
    fn command_line_limits() {
        let mut s = session();
        let mut p = TestPolicy::default();
        let ok = format!("NOOP {}\r\n", "x".repeat(512 - 7));
        assert_eq!(ok.len(), 512);
        assert_eq!(s.feed(ok.as_bytes(), &mut p).reply.unwrap().code, 250);
        let long = format!("NOOP {}\r\n", "x".repeat(513 - 7));
        assert_eq!(s.feed(long.as_bytes(), &mut p).reply.unwrap().code, 500);
        assert_eq!(s.line_too_long().reply.unwrap().code, 500);
        assert_eq!(
            s.feed(b"NOOP\n", &mut p).reply.unwrap().code,
            500,
            "bare LF line end"
        );
    }

    #[test]
    fn dsn_parameters_may_exceed_512_octets() {
        let orcpt = "x".repeat(480);
        let mut s = session();
        let mut p = TestPolicy::default();
        s.feed(b"EHLO c\r\n", &mut p);
        s.feed(b"MAIL FROM:<a@b>\r\n", &mut p);
        let line =
            format!("RCPT TO:<b@c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{orcpt}@example.com\r\n");
        assert!(line.len() > 512);
        assert_eq!(s.feed(line.as_bytes(), &mut p).reply.unwrap().code, 250);
    }

    #[test]
    fn recipient_limit_is_452() {
        let mut script = String::from("C: EHLO c\nS: 250\nC: MAIL FROM:<a@b>\nS: 250\n");
        for i in 0..100 {
            script.push_str(&format!("C: RCPT TO:<r{i}@c>\nS: 250\n"));
        }
        script.push_str("C: RCPT TO:<r100@c>\nS: 452 4.5.3\nC: DATA\nS: 354");
        run(&script);
    }

    #[test]
    fn declared_size_over_the_limit_is_552_at_mail() {
        run(
            "C: EHLO c\nS: 250\nC: MAIL FROM:<a@b> SIZE=1001\nS: 552 5.3.4\nC: MAIL FROM:<a@b> SIZE=1000\nS: 250",
        );
    }

    #[test]
    fn content_defects_are_refused_after_the_terminator() {
        run(&format!(
            "{START}C: DATA\nS: 354\nD: a\\lb\nS: 550 5.6.0\nC: NOOP\nS: 250"
        ));
        let long = "x".repeat(1001);
        run(&format!("{START}C: DATA\nS: 354\nD: {long}\nS: 500 5.5.2"));
    }

    #[test]
    fn policy_refusals_are_passed_on() {
        let mut p = TestPolicy {
            busy_sender: Some("a@x.test"),
            refuse_rcpt: Some("b@y.test"),
            ..Default::default()
        };
        transcript(
            &mut session(),
            &mut p,
            "C: EHLO c\nS: 250\nC: MAIL FROM:<a@x.test>\nS: 452 4.7.1\nC: MAIL FROM:<c@x.test>\nS: 250\nC: RCPT TO:<b@y.test>\nS: 550 5.1.2",
        );
        let mut full = TestPolicy {
            spool_full: true,
            ..Default::default()
        };
        transcript(
            &mut session(),
            &mut full,
            "C: EHLO c\nS: 250\nC: MAIL FROM:<a@b>\nS: 452 4.3.1",
        );
    }

    #[test]
    fn rdlv_needs_a_recipient_and_comes_once() {
        run(
            "C: EHLO c\nS: 250\nC: RDLV\nS: 503 5.5.1\nC: MAIL FROM:<a@b>\nS: 250\nC: RDLV\nS: 503 5.5.1",
        );
        run(&format!(
            "{START}C: RDLV\nS: 200 2.0.0 reliable delivery OK\nC: RDLV\nS: 503 5.5.1"
        ));
    }

    #[test]
    fn rdlv_maxtimer_is_checked_against_mintimer_and_600() {
        run(&format!(
            "{START}C: RDLV maxtimer=29\nS: 501 5.5.4\nC: RDLV maxtimer=601\nS: 501 5.5.4\nC: RDLV maxtimer=x\nS: 501 5.5.4\nC: RDLV maxtimer=600\nS: 200"
        ));
        let mut s = session();
        transcript(
            &mut s,
            &mut TestPolicy::default(),
            &format!("{START}C: RDLV\nS: 200"),
        );
        assert_eq!(s.interval_secs(), 30, "no maxtimer means mintimer");
    }

    #[test]
    fn rdlv_final_reply_when_processing_finishes_in_time() {
        let actions = run(&format!(
            "{START}C: RDLV maxtimer=60\nS: 200\nC: DATA\nS: 354\nD: hi\nO: ok\nS: 250 2.0.0 ID1 delivered"
        ));
        assert_eq!(actions.last(), Some(&Action::Wait));
    }

    #[test]
    fn draft_example_4_1_detached_submit() {
        let actions = run(&format!(
            "{START}C: RDLV maxtimer=30\nS: 200 2.0.0 reliable delivery OK\nC: DATA\nS: 354\nD: lots of data\n\
             W: \nS: 120 gw.test DATA processing in progress\nC: DETA\nS: 221 2.0.0 gw.test closing"
        ));
        assert_eq!(actions.last(), Some(&Action::Detach));
    }

    #[test]
    fn keepalive_has_no_enhanced_status_code() {
        let mut s = session();
        assert_eq!(
            s.keepalive().to_bytes(),
            b"120 gw.test DATA processing in progress\r\n"
        );
    }

    #[test]
    fn cont_keeps_waiting_until_the_outcome() {
        let actions = run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: CONT\nW: \nS: 120\nC: CONT\nO: deferred\nS: 250 2.0.0 ID1 queued"
        ));
        assert_eq!(actions.iter().filter(|a| **a == Action::Wait).count(), 3);
    }

    #[test]
    fn all_recipients_failing_gives_the_first_diagnostic() {
        run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nO: fail\nS: 550 5.1.1 no such user"
        ));
    }

    #[test]
    fn anything_but_cont_or_deta_after_120_aborts() {
        let a = run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: RSET\nS: 250\nC: MAIL FROM:<a@b>\nS: 250"
        ));
        assert_eq!(a[a.len() - 2], Action::Abort { close: false });
        let a = run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: QUIT\nS: 221"
        ));
        assert_eq!(a.last(), Some(&Action::Abort { close: true }));
        let a = run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: NOOP\nS: 503 5.5.1"
        ));
        assert_eq!(a.last(), Some(&Action::Abort { close: false }));
    }

    #[test]
    fn a_garbage_line_after_120_aborts_with_500() {
        let a = run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: BLAH\nS: 500 5.5.2"
        ));
        assert_eq!(a.last(), Some(&Action::Abort { close: false }));
        let a = run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nE: BLAH\nS: 500 5.5.2\nC: CONT"
        ));
        assert_eq!(a.last(), Some(&Action::Wait));
    }

    #[test]
    fn deta_or_cont_without_a_pending_120_is_503() {
        run("C: EHLO c\nS: 250\nC: DETA\nS: 503 5.5.1\nC: CONT\nS: 503 5.5.1");
        // Pipelined early, before the 120 went out: not an answer to it.
        let a = run(&format!(
            "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nE: DETA\nS: 503 5.5.1\nC: CONT"
        ));
        assert_eq!(a[a.len() - 2], Action::Continue);
        assert_eq!(a.last(), Some(&Action::Wait));
    }

    #[test]
    fn deta_that_cannot_be_recorded_keeps_waiting() {
        let mut s = session();
        let mut p = TestPolicy::default();
        transcript(
            &mut s,
            &mut p,
            &format!("{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120"),
        );
        let step = s.feed(b"DETA\r\n", &mut p);
        assert_eq!((step.reply, step.action), (None, Action::Detach));
        assert_eq!(s.detach_failed().code, 452);
        assert!(s.is_processing());
        assert_eq!(s.keepalive().code, 120);
    }

    #[test]
    fn bare_postmaster_is_qualified_with_our_hostname() {
        let mut s = session();
        let mut p = TestPolicy {
            refuse_rcpt: Some("postmaster@gw.test"),
            ..Default::default()
        };
        transcript(
            &mut s,
            &mut p,
            "C: EHLO c\nS: 250\nC: MAIL FROM:<>\nS: 250\nC: RCPT TO:<Postmaster>\nS: 550 5.1.2",
        );
    }

    #[test]
    fn long_upstream_failure_is_cut_to_a_legal_reply_line() {
        let mut s = session();
        let failure = Reply::new(550, "5.1.1", "x".repeat(2000));
        let reply = s.outcome(
            &Outcome::Done {
                delivered: 0,
                deferred: 0,
                first_failure: Some(failure),
            },
            "ID",
        );
        assert!(reply.to_bytes().len() <= 512, "{}", reply.to_bytes().len());
    }

    #[test]
    fn deta_over_max_detached_keeps_waiting() {
        let mut p = TestPolicy {
            no_detach: true,
            ..Default::default()
        };
        let a = transcript(
            &mut session(),
            &mut p,
            &format!(
                "{START}C: RDLV\nS: 200\nC: DATA\nS: 354\nD: x\nW: \nS: 120\nC: DETA\nS: 452 4.3.2\nO: ok\nS: 250"
            ),
        );
        assert_eq!(a.last(), Some(&Action::Wait));
    }

    #[test]
    fn random_lines_never_panic_and_always_get_a_reply() {
        // xorshift over command fragments and odd bytes; the seed is in the
        // assertion message on failure.
        const PIECES: &[&str] = &[
            "EHLO x",
            "MAIL FROM:<a@b>",
            "MAIL FROM:<>",
            "RCPT TO:<c@d>",
            "DATA",
            "RSET",
            "RDLV",
            "RDLV maxtimer=",
            "CONT",
            "DETA",
            "QUIT",
            " SIZE=",
            "NOTIFY=NEVER",
            "ORCPT=rfc822;",
            "+2B",
            "\u{e9}",
            "<",
            ">",
            "\t",
            "\r",
            "\n",
            "0",
            "99999999999999999999",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2000 {
            let mut s = session();
            let mut p = TestPolicy::default();
            for _ in 0..(next() % 8) {
                let mut line = String::new();
                for _ in 0..(next() % 4 + 1) {
                    line.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                }
                line.push_str("\r\n");
                let step = if next() % 2 == 0 {
                    s.feed(line.as_bytes(), &mut p)
                } else {
                    s.feed_early(line.as_bytes(), &mut p)
                };
                let needs_reply = !matches!(step.action, Action::Wait | Action::Detach);
                if step.action == Action::Detach {
                    let _ = s.detached();
                }
                assert!(
                    step.reply.is_some() || !needs_reply,
                    "round {round}: no reply to {line:?}"
                );
                if step.action == Action::ReceiveData {
                    let _ = s.data_end(crate::smtp::data::Verdict::Ok);
                    let _ = s.spooled("ID");
                }
                if s.is_processing() && next() % 2 == 0 {
                    let _ = s.keepalive();
                }
            }
        }
    }

    #[test]
    fn many_errors_close_the_session() {
        let mut s = session();
        let mut p = TestPolicy::default();
        let mut last = None;
        for _ in 0..MAX_ERRORS {
            last = Some(s.feed(b"FROB\r\n", &mut p));
        }
        let step = last.unwrap();
        assert_eq!(step.reply.unwrap().code, 421);
        assert_eq!(step.action, Action::Close);
    }
}
