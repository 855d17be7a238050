//! The end of a transaction: the data verdict, the plain `250`, and the
//! RDLV hold (120 keep-alives, CONT, DETA, abort, the final reply).
//!
//! From [`Session::data_end`] on, the transaction belongs to the driver: it
//! spools the message and hands any per-sender reservation to the queue.

use std::time::Duration;

use super::super::command::{Command, verb_of};
use super::super::data::Verdict;
use super::super::reply::Reply;
use super::{Action, Policy, Session, Stage, Step, Transaction, bad_sequence};

/// The state of a held RDLV reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hold {
    /// The negotiated interval, seconds: the client's `maxtimer`, else our
    /// `mintimer`.
    interval: u32,
    /// A 120 was sent and its answer (CONT or DETA) is awaited.
    keepalive_pending: bool,
}

/// How processing of an RDLV job ended, as the queue reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every recipient reached a definite state.
    Done {
        /// Recipients delivered (or handed to the next hop).
        delivered: usize,
        /// Recipients deferred to the retry queue.
        deferred: usize,
        /// The first permanent failure, when any failed: its code (the
        /// remote one, or ours), status and diagnostic text.
        first_failure: Option<Reply>,
    },
    /// Processing could not run at all (nothing kept).
    Failed(String),
}

/// Why the queue did not detach a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachRefusal {
    /// `max_detached` jobs already run detached.
    Limit,
    /// The detached mark could not be written to the spool.
    Spool,
}

/// RFC 5321 §4.5.3.1.5: room for a diagnostic in a final reply line: 512
/// octets less the code, the enhanced status code and the CRLF.
const MAX_FINAL_TEXT: usize = 480;

/// RFC 5321 §4.3.2: the codes a reply to the end of data may have.
fn final_code(code: u16) -> u16 {
    match code {
        250 | 450 | 451 | 452 | 550 | 552 | 554 => code,
        400..=499 => 451,
        _ => 554,
    }
}

/// Text from elsewhere (a next hop's reply, a local error) made fit for a
/// reply line: RFC 5321 §4.2 `textstring` is HT and printable US-ASCII, so
/// anything else (CR, LF, NUL, UTF-8) becomes `?`; then cut to
/// [`MAX_FINAL_TEXT`].
fn truncate_text(text: String) -> String {
    let mut text: String = text
        .chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.len() > MAX_FINAL_TEXT {
        let cut = (0..=MAX_FINAL_TEXT)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
    }
    text
}

impl Session {
    /// The end of data was reached; `verdict` is the decoder's judgement.
    /// Returns the transaction to spool (it now belongs to the driver), or
    /// the rejection to send (the transaction is then over).
    pub fn data_end(
        &mut self,
        verdict: Verdict,
        policy: &mut dyn Policy,
    ) -> Result<Transaction, Reply> {
        let Stage::Data(txn) = std::mem::replace(&mut self.stage, Stage::Greeted) else {
            return Err(bad_sequence());
        };
        let Some(refusal) = verdict.refusal() else {
            return Ok(txn);
        };
        policy.end_transaction();
        Err(refusal)
    }

    /// The message is durable in the spool as `id` (`rdlv` is the
    /// transaction's): a plain transaction gets its 250 now; an RDLV
    /// transaction starts waiting for the outcome.
    pub fn spooled(&mut self, id: &str, rdlv: Option<u32>) -> Step {
        match rdlv {
            Some(interval) => {
                self.stage = Stage::Processing(Hold {
                    interval,
                    keepalive_pending: false,
                });
                Step {
                    reply: None,
                    action: Action::Wait,
                }
            }
            None => Step::reply(Reply::new(250, "2.0.0", format!("queued as {id}"))),
        }
    }

    /// Whether an RDLV job's final reply is being held.
    pub fn is_processing(&self) -> bool {
        matches!(self.stage, Stage::Processing(_))
    }

    /// How long after the end of data (or the last CONT) the next 120 is
    /// due: before the client's `maxtimer` runs out (a tenth of it is
    /// margin for the network), but never sooner than our advertised
    /// `mintimer`. `None` outside processing.
    pub fn keepalive_after(&self) -> Option<Duration> {
        let Stage::Processing(hold) = self.stage else {
            return None;
        };
        let interval = Duration::from_secs(u64::from(hold.interval));
        let min = Duration::from_secs(u64::from(self.config.rdlv_mintimer));
        Some(interval.mul_f32(0.9).max(min))
    }

    /// How long the client has to answer a 120: the interval. `None`
    /// outside processing.
    pub fn answer_window(&self) -> Option<Duration> {
        match self.stage {
            Stage::Processing(hold) => Some(Duration::from_secs(u64::from(hold.interval))),
            _ => None,
        }
    }

    /// The interval passed without an outcome: the 120 to send now. The
    /// driver then reads the client's answer within [`Session::answer_window`].
    pub fn keepalive(&mut self) -> Reply {
        if let Stage::Processing(hold) = &mut self.stage {
            hold.keepalive_pending = true;
        }
        // RFC 3463 classes are 2, 4, 5 only: a 1yz reply has no x.y.z.
        Reply::plain(
            120,
            format!("{} DATA processing in progress", self.config.hostname),
        )
    }

    /// The job reached a definite state: the final reply to the end of data
    /// (or to the last CONT), one that RFC 5321 §4.3.2 allows there.
    pub fn outcome(&mut self, outcome: &Outcome, id: &str) -> Reply {
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
            } => Reply {
                code: final_code(failure.code),
                status: Some(failure.effective_status()),
                lines: vec![truncate_text(failure.text())],
            },
            Outcome::Done { .. } => Reply::new(554, "5.0.0", "no recipient could be processed"),
            Outcome::Failed(why) => Reply::new(
                451,
                "4.3.0",
                truncate_text(format!("processing failed, nothing kept: {why}")),
            ),
        }
    }

    /// DETA took effect (the job is marked detached in the spool): the 221,
    /// after which the driver closes (draft-burger-smtp-deta §2.2.1).
    pub fn detached(&mut self) -> Reply {
        self.stage = Stage::Greeted;
        let text = format!("{} closing transmission channel", self.config.hostname);
        Reply::new(221, "2.0.0", text)
    }

    /// DETA could not take effect: the client keeps waiting as after CONT.
    pub fn detach_refused(&mut self, why: DetachRefusal) -> Reply {
        if let Stage::Processing(hold) = &mut self.stage {
            hold.keepalive_pending = false;
        }
        match why {
            DetachRefusal::Limit => {
                Reply::new(452, "4.3.2", "too many detached jobs, keep waiting (CONT)")
            }
            DetachRefusal::Spool => {
                Reply::new(452, "4.3.2", "cannot detach now, keep waiting (CONT)")
            }
        }
    }

    /// The stage to fall back to after an abort the driver performed on its
    /// own (EOF, timeout, reset): the transaction is gone.
    pub fn aborted(&mut self) {
        self.stage = Stage::Greeted;
    }

    /// A line while the reply is held. `early`: it was buffered before the
    /// pending 120 went out, so it cannot answer it.
    pub(super) fn while_processing(
        &mut self,
        line: &[u8],
        early: bool,
        policy: &mut dyn Policy,
    ) -> Step {
        let Stage::Processing(hold) = self.stage else {
            return Step::reply(bad_sequence());
        };
        let answers_keepalive = hold.keepalive_pending && !early;
        let command = match Self::command_of(line) {
            Ok(c) => c,
            // CONT or DETA with arguments is a syntax error, not "anything
            // else": the same 120 stays pending.
            Err(_)
                if verb_of(line).eq_ignore_ascii_case(b"CONT")
                    || verb_of(line).eq_ignore_ascii_case(b"DETA") =>
            {
                return Step::reply(Reply::new(501, "5.5.4", "CONT and DETA take no arguments"));
            }
            // A line that is no command at all is "anything else" too:
            // after a 120 it aborts (RFC 5321 §4.2.1); sent before the 120,
            // it is answered and the answer is still awaited.
            Err(reply) if answers_keepalive => {
                self.stage = Stage::Greeted;
                policy.end_transaction();
                return Step::with(reply, Action::Abort { close: false });
            }
            Err(reply) => return Step::reply(reply),
        };
        match command {
            Command::Cont | Command::Deta if !answers_keepalive => {
                // draft-burger-smtp-deta §2.2.1: DETA answers a 120 only.
                Step::reply(Reply::new(503, "5.5.1", "no 120 reply is pending"))
            }
            Command::Cont => {
                self.stage = Stage::Processing(Hold {
                    keepalive_pending: false,
                    ..hold
                });
                Step {
                    reply: None,
                    action: Action::Wait,
                }
            }
            // The 221 comes from [`Session::detached`], once the queue has
            // made the detached mark durable.
            Command::Deta => Step {
                reply: None,
                action: Action::Detach,
            },
            other => {
                // RFC 5321 §4.2.1: anything but "continue" after a 1yz aborts.
                self.stage = Stage::Greeted;
                policy.end_transaction();
                let keep_reply = matches!(other, Command::Rset | Command::Quit);
                let mut step = self.dispatch(other, policy);
                if !keep_reply {
                    step.reply = Some(bad_sequence());
                }
                // A BDAT's octets would follow, unread: close rather than
                // take them for commands.
                let close = matches!(step.action, Action::Close | Action::DiscardChunk(_));
                step.action = Action::Abort { close };
                step
            }
        }
    }
}
