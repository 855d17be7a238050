//! The server's answers to the session core's questions: relay access,
//! routes, spool room, and the per-sender reservation taken at RDLV.

use std::net::IpAddr;

use crate::config::{Config, Transport};
use crate::delivery::maildir::is_safe_local_part;
use crate::queue::envelope::{domain_of, sender_key};
use crate::queue::limits::{Limits, SenderSlot};
use crate::smtp::address::Path;
use crate::smtp::reply::Reply;
use crate::smtp::session::Policy;

/// draft-burger-smtp-deta §5: the sender has its limit of jobs in processing.
pub fn sender_busy() -> Reply {
    Reply::new(
        452,
        "4.7.1",
        "too many messages of this sender in processing, try again later",
    )
}

/// The spool is at `spool_max_bytes`.
pub fn storage_full() -> Reply {
    Reply::new(452, "4.3.1", "insufficient system storage")
}

/// The policy of one connection.
#[derive(Debug)]
pub struct ServerPolicy<'a> {
    /// The configuration of this connection.
    pub config: &'a Config,
    /// The reservation ledger.
    pub limits: &'a std::sync::Arc<Limits>,
    /// The client's address.
    pub peer: IpAddr,
    /// The identity the client authenticated as, if any.
    pub auth: Option<String>,
    /// The sender's place in processing, taken at RDLV.
    slot: Option<SenderSlot>,
}

impl<'a> ServerPolicy<'a> {
    /// A policy for a client at `peer`.
    pub fn new(config: &'a Config, limits: &'a std::sync::Arc<Limits>, peer: IpAddr) -> Self {
        ServerPolicy {
            config,
            limits,
            peer,
            auth: None,
            slot: None,
        }
    }

    /// Hands the reservation taken at RDLV on to the queue.
    pub fn take_slot(&mut self) -> Option<SenderSlot> {
        self.slot.take()
    }
}

impl Policy for ServerPolicy<'_> {
    fn check_sender(&mut self, reverse_path: &Path, size: Option<u64>) -> Result<(), Reply> {
        let sender = match reverse_path {
            Path::Null => "",
            Path::Mailbox(m) => m.as_str(),
        };
        // A first check; the reservation at RDLV decides (draft §5).
        let key = sender_key(self.auth.as_deref(), sender);
        if self.limits.sender_count(&key) >= self.config.max_inflight_per_sender {
            return Err(sender_busy());
        }
        if !self.limits.has_room(size.unwrap_or(0)) {
            return Err(storage_full());
        }
        Ok(())
    }

    fn check_recipient(&mut self, address: &str) -> Result<(), Reply> {
        // RFC 5321 §4.5.1: postmaster is always accepted, from anyone.
        if self.config.is_postmaster(address) {
            return Ok(());
        }
        if !self.config.may_relay(self.peer) {
            return Err(Reply::new(
                554,
                "5.7.1",
                format!("<{address}>: relay access denied"),
            ));
        }
        let domain = match domain_of(address) {
            d if d.is_empty() => self.config.hostname.to_ascii_lowercase(),
            d => d,
        };
        match self.config.route_for(&domain) {
            None => Err(Reply::new(
                550,
                "5.1.2",
                format!("<{address}>: no route to domain {domain}"),
            )),
            Some(Transport::Maildir(_)) => {
                let local = address.rsplit_once('@').map(|(l, _)| l).unwrap_or(address);
                if is_safe_local_part(local) {
                    Ok(())
                } else {
                    Err(Reply::new(
                        550,
                        "5.1.3",
                        format!("<{address}>: local part is not a valid mailbox name"),
                    ))
                }
            }
            Some(_) => Ok(()),
        }
    }

    fn check_data(&mut self) -> Result<(), Reply> {
        if self.limits.has_room(0) {
            Ok(())
        } else {
            Err(storage_full())
        }
    }

    fn reserve_reliable(&mut self, reverse_path: &str) -> Result<(), Reply> {
        let key = sender_key(self.auth.as_deref(), reverse_path);
        match self.limits.reserve_sender(&key) {
            Some(slot) => {
                self.slot = Some(slot);
                Ok(())
            }
            None => Err(sender_busy()),
        }
    }

    fn end_transaction(&mut self) {
        self.slot = None;
    }
}
