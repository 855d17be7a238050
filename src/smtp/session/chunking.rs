//! Counted content: BDAT (RFC 3030) and BURL (RFC 4468) chunks, which may
//! be mixed in one message until one of them says `LAST`.
//!
//! The driver reads (or fetches) each chunk and reports it with
//! [`Session::chunk_end`]; a refused BDAT still has its octets read and
//! thrown away ([`Action::DiscardChunk`]), so they are never taken for
//! commands. An error ends the transaction and its chunks are discarded
//! (RFC 3030 §2: the transaction is failed).

use super::{Action, Policy, Session, Stage, Step, Transaction, bad_sequence};
use crate::smtp::data::Verdict;
use crate::smtp::reply::Reply;

/// What a chunk came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEnd {
    /// Not the last: reply and wait for the next chunk.
    More(Reply),
    /// The last: the message is complete; spool it, then
    /// [`Session::spooled`].
    Last(Transaction),
    /// The transaction failed (its chunks are discarded): reply.
    Failed(Reply),
}

impl Session {
    /// Whether a message is being assembled from chunks (the driver keeps
    /// its content only while this holds).
    pub fn in_chunks(&self) -> bool {
        matches!(self.stage, Stage::Chunks(_))
    }

    /// Whether the message being assembled is an RDLV transaction's.
    pub fn chunks_for_rdlv(&self) -> bool {
        matches!(&self.stage, Stage::Chunks(txn) if txn.rdlv.is_some())
    }

    /// The URL of the BURL command being carried out.
    pub fn take_url(&mut self) -> Option<String> {
        self.burl_url.take()
    }

    /// `BDAT size [LAST]`.
    pub(super) fn bdat(&mut self, size: u64, last: bool, policy: &mut dyn Policy) -> Step {
        let refuse = |reply| Step::with(reply, Action::DiscardChunk(size));
        if !self.esmtp {
            return refuse(Reply::new(503, "5.5.1", "BDAT needs EHLO"));
        }
        if let Some(reply) = self.needs_auth(&super::Command::Bdat(size, last)) {
            return refuse(reply);
        }
        if let Err(reply) = self.begin_chunks(policy) {
            return refuse(reply);
        }
        Step {
            reply: None,
            action: Action::ReceiveChunk { size, last },
        }
    }

    /// `BURL url [LAST]`: RFC 4468 §3.1 allows it after AUTH only, and
    /// after at least one accepted recipient.
    pub(super) fn burl(&mut self, url: String, last: bool, policy: &mut dyn Policy) -> Step {
        if !self.config.burl {
            return Step::reply(Reply::new(502, "5.5.1", "BURL not available"));
        }
        if self.identity.is_none() {
            return Step::reply(Reply::new(530, "5.7.0", "BURL needs AUTH first"));
        }
        if let Stage::Mail(txn) = &self.stage
            && txn.recipients.is_empty()
        {
            return Step::reply(Reply::new(
                554,
                "5.5.0",
                "no recipients have been specified",
            ));
        }
        if let Err(reply) = self.begin_chunks(policy) {
            return Step::reply(reply);
        }
        self.burl_url = Some(url);
        Step {
            reply: None,
            action: Action::FetchUrl { last },
        }
    }

    /// The first chunk moves the transaction to `Chunks`; later ones keep it.
    fn begin_chunks(&mut self, policy: &mut dyn Policy) -> Result<(), Reply> {
        match std::mem::replace(&mut self.stage, Stage::Greeted) {
            Stage::Chunks(txn) => {
                self.stage = Stage::Chunks(txn);
                Ok(())
            }
            Stage::Mail(txn) if !txn.recipients.is_empty() => {
                if let Err(reply) = policy.check_data() {
                    self.stage = Stage::Mail(txn);
                    return Err(reply);
                }
                self.stage = Stage::Chunks(txn);
                Ok(())
            }
            Stage::Mail(txn) => {
                self.stage = Stage::Mail(txn);
                Err(Reply::new(554, "5.5.1", "no valid recipients"))
            }
            other => {
                self.stage = other;
                Err(bad_sequence())
            }
        }
    }

    /// A chunk of `size` octets was read (or fetched); `verdict` judges the
    /// message so far (after [`crate::smtp::data::DataDecoder::finish`]
    /// for the last).
    pub fn chunk_end(
        &mut self,
        size: u64,
        last: bool,
        verdict: Verdict,
        policy: &mut dyn Policy,
    ) -> ChunkEnd {
        if !self.in_chunks() {
            return ChunkEnd::Failed(bad_sequence());
        }
        if verdict != Verdict::Ok || last {
            // The end of the message: judged and handed over as after DATA.
            if let Stage::Chunks(txn) = std::mem::replace(&mut self.stage, Stage::Greeted) {
                self.stage = Stage::Data(txn);
            }
            return match self.data_end(verdict, policy) {
                Ok(txn) => ChunkEnd::Last(txn),
                Err(reply) => ChunkEnd::Failed(reply),
            };
        }
        ChunkEnd::More(Reply::new(250, "2.0.0", format!("{size} octets received")))
    }

    /// A chunk could not be had (a refused URL, a failed fetch, the spool):
    /// the transaction is over. Returns `reply`, to send.
    pub fn chunk_failed(&mut self, reply: Reply, policy: &mut dyn Policy) -> Reply {
        self.burl_url = None;
        self.reset(policy);
        reply
    }
}
