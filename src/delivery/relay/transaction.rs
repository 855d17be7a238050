//! One mail transaction on a [`Connection`]: MAIL, the RCPTs and DATA
//! (pipelined when the hop offers PIPELINING), the dot-stuffed content and
//! the final dot, with RSET before a transaction that follows a failed one.
//! Every recipient ends with exactly one [`Delivery`].

use std::io::{self, Read, Write};

use log::{debug, trace};

use super::connection::Connection;
use super::error::{describe_io, io_status};
use super::outcome::{TransferError, TransferOutcome};
use super::wire::{DotStuffer, StuffError, is_sendable, mail_command, rcpt_command};
use crate::queue::delivery::{Delivery, RemoteMta};
use crate::queue::envelope::{Envelope, Recipient};
use crate::smtp::reply::Reply;
use crate::smtp::status::EnhancedStatus;

/// How much content is read from the spool at a time.
const CHUNK_SIZE: usize = 16 * 1024;

/// Our diagnostic for an address we will not put on the wire.
const UNSENDABLE: &str = "address cannot be sent: control or non-ASCII characters";

/// A recipient's place in a transaction.
#[derive(Debug, Clone)]
enum Slot {
    /// No final result yet.
    Waiting,
    /// Its RCPT was accepted; the final dot decides.
    Accepted,
    /// Final.
    Done(Delivery),
}

/// How a transaction ended early.
enum End {
    /// The cancel check said stop.
    Cancelled,
    /// Every recipient without a final result gets this one.
    Failed(Delivery),
}

impl End {
    /// A temporary failure for all, with our own diagnostic.
    fn temporary(status: EnhancedStatus, text: String) -> End {
        End::Failed(Delivery::deferred(status, text))
    }

    /// A permanent failure for all, with our own diagnostic.
    fn permanent(status: EnhancedStatus, text: String) -> End {
        End::Failed(Delivery::failed(status, text))
    }
}

impl Connection {
    /// Sends one message to `rcpts` (all through this hop) and reports the
    /// outcome for each. `content` is the message as spooled: CRLF line
    /// ends, not dot-stuffed; it is read in chunks and streamed.
    ///
    /// `cancel` is consulted before MAIL, after each chunk of content and
    /// right before the final dot. If it says stop once MAIL was sent, the
    /// connection is closed without the final dot, so the hop must not
    /// deliver (RFC 5321 §4.1.1.10).
    ///
    /// On a connection that is not usable, every recipient gets a
    /// temporary result.
    ///
    /// # Errors
    ///
    /// [`TransferError::Cancelled`] when `cancel` said stop.
    pub fn send(
        &mut self,
        env: &Envelope,
        rcpts: &[&Recipient],
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<TransferOutcome, TransferError> {
        let mut slots = vec![Slot::Waiting; rcpts.len()];
        let end = if rcpts.is_empty() {
            Ok(())
        } else if !self.usable {
            let text = format!("connection with {} is no longer usable", self.peer_name());
            Err(End::temporary(EnhancedStatus::of(4, 4, 2), text))
        } else if cancel() {
            Err(End::Cancelled)
        } else {
            self.transact(env, rcpts, &mut slots, content, cancel)
        };
        let fallback = match end {
            Ok(()) => None,
            Err(End::Cancelled) => {
                debug!("relay: id={} cancelled", env.id);
                return Err(TransferError::Cancelled);
            }
            Err(End::Failed(result)) => Some(result),
        };
        let results: Vec<Delivery> = slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Done(result) => result,
                Slot::Waiting | Slot::Accepted => fallback
                    .clone()
                    .expect("a completed transaction leaves every recipient with a result"),
            })
            .collect();
        debug!(
            "relay: id={} via {}: {:?}",
            env.id,
            self.peer_name(),
            results
        );
        Ok(TransferOutcome { results })
    }

    /// One transaction. Fills `slots`; an `Err` applies to the slots not yet
    /// done.
    fn transact(
        &mut self,
        env: &Envelope,
        rcpts: &[&Recipient],
        slots: &mut [Slot],
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), End> {
        if let Some(refusal) = self.refuse_before_mail(env) {
            return Err(End::Failed(refusal));
        }
        let mail = mail_command(env, &self.extensions);
        if !is_sendable(&mail) {
            return Err(End::permanent(
                EnhancedStatus::of(5, 1, 7),
                UNSENDABLE.into(),
            ));
        }
        let rcpt_commands: Vec<Option<String>> = slots
            .iter_mut()
            .zip(rcpts)
            .map(|(slot, rcpt)| {
                let command = rcpt_command(rcpt, &self.extensions);
                if is_sendable(&command) {
                    return Some(command);
                }
                *slot = Slot::Done(Delivery::failed(EnhancedStatus::of(5, 1, 3), UNSENDABLE));
                None
            })
            .collect();
        if rcpt_commands.iter().all(Option::is_none) {
            return Ok(());
        }
        if self.needs_rset {
            self.rset()?;
        }
        if self.send_envelope(mail, &rcpt_commands, slots)? == 0 {
            if self.extensions.pipelining {
                self.drain_replies(0);
            }
            return Ok(());
        }
        self.send_data(slots, content, cancel)
    }

    /// MAIL and the RCPTs, pipelined when the hop allows (then DATA goes
    /// out too). Records each RCPT's result; returns how many were accepted.
    fn send_envelope(
        &mut self,
        mail: String,
        rcpt_commands: &[Option<String>],
        slots: &mut [Slot],
    ) -> Result<usize, End> {
        let pipelining = self.extensions.pipelining;
        self.needs_rset = true;
        if pipelining {
            // RFC 2920 §3.1: MAIL and RCPT may appear anywhere in a group,
            // DATA only last. One write; then the replies, in order.
            let mut group = mail;
            rcpt_commands
                .iter()
                .flatten()
                .for_each(|c| group.push_str(c));
            group.push_str("DATA\r\n");
            self.write_commands(&group)
                .map_err(|e| self.lost(e, "sending MAIL FROM"))?;
        } else {
            self.write_commands(&mail)
                .map_err(|e| self.lost(e, "sending MAIL FROM"))?;
        }
        let reply = self.read_command_reply("MAIL FROM")?;
        if let Err(result) = self.check(&reply, 2, "MAIL FROM") {
            if pipelining && self.usable {
                // The RCPT and DATA replies mean nothing now (503), but
                // they must be read to keep in step.
                self.drain_replies(rcpt_commands.iter().flatten().count());
            }
            return Err(End::Failed(result));
        }
        let mut accepted = 0;
        for (slot, command) in slots.iter_mut().zip(rcpt_commands) {
            let Some(command) = command else { continue };
            if !pipelining {
                self.write_commands(command)
                    .map_err(|e| self.lost(e, "sending RCPT TO"))?;
            }
            let reply = self.read_command_reply("RCPT TO")?;
            match self.check(&reply, 2, "RCPT TO") {
                Ok(()) => {
                    *slot = Slot::Accepted;
                    accepted += 1;
                }
                // 421 or confusion: the session is over for everyone.
                Err(result) if !self.usable => return Err(End::Failed(result)),
                Err(result) => *slot = Slot::Done(result),
            }
        }
        Ok(accepted)
    }

    /// DATA (unless pipelined already), the content and the final dot; the
    /// reply to the dot decides for every accepted recipient.
    fn send_data(
        &mut self,
        slots: &mut [Slot],
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), End> {
        if !self.extensions.pipelining {
            self.write_commands("DATA\r\n")
                .map_err(|e| self.lost(e, "sending DATA"))?;
        }
        let reply = self.read_command_reply("DATA")?;
        // RFC 5321 §4.1.1.4: 354, or a 4yz/5yz that applies to every
        // accepted recipient.
        self.check(&reply, 3, "DATA").map_err(End::Failed)?;
        self.send_content(content, cancel)?;
        let reply = self
            .read_reply(self.timeouts.data_end)
            .map_err(|e| self.lost(e, "waiting for the reply to the end of data"))?;
        // Whatever the reply, the transaction is over (RFC 5321 §4.1.1.4).
        self.needs_rset = false;
        self.check(&reply, 2, "end of data").map_err(End::Failed)?;
        // RFC 3461 §5.2.2: past a hop without DSN, success is `relayed`.
        let relayed = !self.extensions.dsn;
        for slot in slots.iter_mut() {
            if let Slot::Accepted = slot {
                *slot = Slot::Done(Delivery::from_reply(reply.clone(), self.remote(), relayed));
            }
        }
        Ok(())
    }

    /// A permanent failure decided before MAIL, from what the hop offers.
    fn refuse_before_mail(&self, env: &Envelope) -> Option<Delivery> {
        // RFC 6152 §3: 8-bit content may only go to a hop offering 8BITMIME,
        // and we do not convert to 7 bit.
        if env.eight_bit && !self.extensions.eight_bit_mime {
            let text = format!(
                "conversion required but not supported: 8-bit message and {} does not offer 8BITMIME",
                self.peer_name()
            );
            return Some(Delivery::failed(EnhancedStatus::of(5, 6, 3), text));
        }
        // RFC 1870 §6: do not send a message larger than the fixed maximum.
        match self.extensions.size {
            Some(limit) if limit > 0 && env.size > limit => {
                let text = format!(
                    "message size {} exceeds the fixed maximum message size {limit} of {}",
                    env.size,
                    self.peer_name()
                );
                Some(Delivery::failed(EnhancedStatus::of(5, 3, 4), text))
            }
            _ => None,
        }
    }

    /// RFC 5321 §4.1.1.5: RSET ends the failed transaction; the reply MUST
    /// be 250, anything else leaves the session in an unknown state.
    fn rset(&mut self) -> Result<(), End> {
        let reply = self
            .command("RSET\r\n")
            .map_err(|e| self.lost(e, "doing RSET"))?;
        if !reply.is_positive() {
            self.abandon();
            let text = format!("{} refused RSET: {reply}", self.peer_name());
            return Err(End::temporary(EnhancedStatus::of(4, 4, 2), text));
        }
        self.needs_rset = false;
        Ok(())
    }

    /// Reads the replies to `rcpts` pipelined RCPTs and the DATA of a
    /// transaction that is going nowhere. Results are already decided, so
    /// trouble here only makes the connection unusable.
    fn drain_replies(&mut self, rcpts: usize) {
        for _ in 0..rcpts {
            match self.read_reply(self.timeouts.command) {
                Ok(reply) if reply.code != 421 => {}
                _ => return self.abandon(),
            }
        }
        let reply = match self.read_reply(self.timeouts.command) {
            Ok(reply) => reply,
            Err(_) => return self.abandon(),
        };
        if reply.code == 421 {
            return self.abandon();
        }
        if reply.is_intermediate() {
            // RFC 2920 §3.1 / RFC 5321 §3.3: DATA was accepted with no valid
            // recipient; end the (empty) data, the server delivers nothing.
            trace!("> .");
            let end = self.write_raw(b".\r\n", self.timeouts.data_block);
            match end.and_then(|()| self.read_reply(self.timeouts.data_end)) {
                Ok(_) => self.needs_rset = false,
                Err(_) => self.abandon(),
            }
        }
    }

    /// Streams the content dot-stuffed, then the final dot unless cancelled.
    fn send_content(
        &mut self,
        content: &mut dyn Read,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), End> {
        // RFC 5321 §4.5.3.2.5: each block must be taken within 3 minutes.
        let timeout = Some(self.timeouts.data_block);
        self.writer
            .get_ref()
            .set_write_timeout(timeout)
            .map_err(|e| self.lost(e, "sending the content"))?;
        let mut stuffer = DotStuffer::new();
        let mut chunk = vec![0; CHUNK_SIZE];
        loop {
            let n = match content.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.abandon();
                    let text = format!("cannot read the message from the spool: {e}");
                    return Err(End::temporary(EnhancedStatus::of(4, 3, 0), text));
                }
            };
            stuffer
                .stuff(&chunk[..n], &mut self.writer)
                .map_err(|e| self.content_error(e))?;
            if cancel() {
                self.abandon();
                return Err(End::Cancelled);
            }
        }
        stuffer
            .finish(&mut self.writer)
            .map_err(|e| self.content_error(e))?;
        self.writer
            .flush()
            .map_err(|e| self.lost(e, "sending the content"))?;
        // The last moment to cancel: without the final dot the hop must
        // cancel the transaction (RFC 5321 §4.1.1.10).
        if cancel() {
            self.abandon();
            return Err(End::Cancelled);
        }
        trace!("> .");
        self.writer
            .write_all(b".\r\n")
            .and_then(|()| self.writer.flush())
            .map_err(|e| self.lost(e, "sending the end of data"))
    }

    fn content_error(&mut self, error: StuffError) -> End {
        let what = match error {
            StuffError::Io(e) => return self.lost(e, "sending the content"),
            StuffError::BareCr => "a bare CR",
            StuffError::BareLf => "a bare LF",
            StuffError::Nul => "a NUL octet",
        };
        // RFC 5321 §2.3.8: CR and LF only as CRLF. Forwarding a bare one is
        // the outbound half of SMTP smuggling, and NUL is never mail text:
        // the message is not sent.
        self.abandon();
        let text = format!("message content has {what}; refusing to relay it");
        End::permanent(EnhancedStatus::of(5, 6, 0), text)
    }

    /// Checks a reply against the class expected. Otherwise returns the
    /// result for the recipients it applies to; `421` and replies that make
    /// no sense here also end the session.
    fn check(&mut self, reply: &Reply, class: u16, command: &str) -> Result<(), Delivery> {
        if reply.code / 100 == class {
            return Ok(());
        }
        if reply.is_transient() || reply.is_permanent() {
            // RFC 5321 §3.8: after 421 the server closes the connection.
            if reply.code == 421 {
                self.abandon();
            }
            return Err(Delivery::from_reply(reply.clone(), self.remote(), false));
        }
        self.abandon();
        let text = format!(
            "unexpected reply from {} to {command}: {reply}",
            self.peer_name()
        );
        Err(Delivery::deferred(EnhancedStatus::of(4, 5, 0), text))
    }

    /// The hop, as a DSN names it.
    fn remote(&self) -> RemoteMta {
        RemoteMta::from_host(&self.host)
    }

    /// Reads the reply to a command, turning trouble into a temporary
    /// failure for all.
    fn read_command_reply(&mut self, command: &str) -> Result<Reply, End> {
        self.read_reply(self.timeouts.command).map_err(|e| {
            let during = format!("waiting for the reply to {command}");
            self.lost(e, &during)
        })
    }

    /// Marks the connection dead and makes the temporary result for all.
    fn lost(&mut self, error: io::Error, during: &str) -> End {
        self.abandon();
        let text = describe_io(&error, &self.peer_name(), during);
        End::temporary(io_status(&error), text)
    }
}
