//! The control socket's requests (`flush`, `retry ID`, `remove ID`), and
//! the answer saying what the manager actually did.

use super::api::{ControlAnswer, ControlReply};
use super::{Manager, Removal};
use crate::queue::envelope::Mode;
use crate::queue::spool::Spool;

impl Manager {
    pub(super) fn control(&mut self, line: &str, reply: ControlReply) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("flush"), None, None) => {
                let n = self.flush();
                log::info!("flush: retrying {n} queued message(s) now");
                reply(ControlAnswer::Done(format!("flushed {n} message(s)")));
            }
            (Some("retry" | "remove"), Some(id), None) if !Spool::is_valid_id(id) => {
                reply(ControlAnswer::Refused(format!("{id:?} is not a queue id")));
            }
            (Some("retry"), Some(id), None) => self.retry(id, reply),
            (Some("remove"), Some(id), None) => self.remove(id, reply),
            _ => reply(ControlAnswer::Refused(format!(
                "unknown request {line:?} (flush, retry ID, remove ID)"
            ))),
        }
    }

    fn retry(&mut self, id: &str, reply: ControlReply) {
        let Some(entry) = self.messages.get_mut(id) else {
            return reply(ControlAnswer::NotFound(format!("no message {id}")));
        };
        if entry.parked.is_some() {
            return reply(ControlAnswer::Busy(format!(
                "{id} is parked: its state cannot be written to the spool"
            )));
        }
        if entry.env.mode == Mode::Reliable {
            return reply(ControlAnswer::Busy(format!(
                "{id} is being processed while its client waits"
            )));
        }
        log::info!("id={id} retry requested");
        match entry.running.as_mut() {
            Some(r) => {
                r.again = Some(true);
                reply(ControlAnswer::Done(format!(
                    "retry {id}: a delivery is running; it runs again right after"
                )));
            }
            None => {
                entry.force = true;
                self.schedule.set(id, 0);
                reply(ControlAnswer::Done(format!("retry {id}: scheduled now")));
            }
        }
    }

    fn remove(&mut self, id: &str, reply: ControlReply) {
        let Some(entry) = self.messages.get_mut(id) else {
            return reply(ControlAnswer::NotFound(format!("no message {id}")));
        };
        if let Some(running) = entry.running.as_mut() {
            // Stopped at the worker's next safe point (a running program is
            // killed); the answer goes out once it is gone.
            running.stopped = true;
            running
                .cancel
                .store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(hold) = entry.hold.take() {
                hold.doorbell.ring(super::HoldEvent::Ended(
                    id.to_string(),
                    super::HoldEnd::Removed,
                ));
            }
            entry.removal = Some(Removal::Operator(Some(reply)));
            return;
        }
        log::info!("id={id} removed by the operator");
        self.drop_message(id);
        self.after_barrier(super::AfterBarrier::Sync);
        reply(ControlAnswer::Done(format!("removed {id}")));
    }
}
