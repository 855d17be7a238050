//! Startup: what the spool holds becomes the manager's state. Reads only,
//! rewrites nothing (flash wear); files that fail their checks go to
//! `corrupt/`.

use super::{Entry, Manager, unix_now};
use crate::queue::envelope::{Mode, RcptState};
use crate::queue::spool::SpoolError;

impl Manager {
    /// Purges `tmp/`, takes stock of `spare/`, loads every message, verifies its content, drops RDLV
    /// jobs whose session is gone (the client never heard a final reply and
    /// will send again), resumes detached ones and schedules the rest.
    ///
    /// # Errors
    /// The spool's directories could not be read.
    pub(super) fn recover(&mut self) -> Result<(), SpoolError> {
        self.spool.prepare_at_startup()?;
        let now = unix_now();
        for id in self.spool.ids()? {
            let env = match self.spool.load(&id) {
                Ok(env) => env,
                Err(e @ SpoolError::Corrupt { .. }) => {
                    self.spool.quarantine(&id, &e.to_string());
                    continue;
                }
                // One unreadable file (a bad flash sector) must not keep the
                // server from starting: leave it, say so, go on.
                Err(e) => {
                    log::error!("id={id} skipped at startup: {e}; check the storage, then restart");
                    continue;
                }
            };
            if let Err(e) = self.spool.verify_content(&env) {
                self.spool.quarantine(&id, &e.to_string());
                continue;
            }
            let bytes = self.limits.force_bytes(self.spool.file_size(&id));
            if env.mode == Mode::Reliable {
                drop(bytes);
                let delivered = delivered_list(&env);
                log::info!(
                    "id={id} aborted: server restarted before the final reply; delivered before: {delivered}"
                );
                if let Err(e) = self.spool.remove(&id) {
                    log::error!("id={id} cannot remove: {e}");
                }
                continue;
            }
            let pending = env
                .recipients
                .iter()
                .any(|r| r.state() == RcptState::Pending);
            let slot = (env.mode == Mode::Detached && pending).then(|| {
                log::info!("id={id} resuming detached job");
                self.limits.force_sender(&env.sender_key())
            });
            let at = if pending || env.next_attempt <= now {
                0
            } else {
                env.next_attempt
            };
            self.schedule.set(&id, at);
            self.messages.insert(
                id,
                Box::new(Entry {
                    env,
                    bytes,
                    slot,
                    running: None,
                    hold: None,
                    removal: None,
                    parked: None,
                    force: false,
                }),
            );
        }
        Ok(())
    }
}

/// The recipients delivered so far, for the log of an abort.
pub(super) fn delivered_list(env: &crate::queue::envelope::Envelope) -> String {
    let delivered: Vec<&str> = env
        .recipients
        .iter()
        .filter(|r| matches!(r.state(), RcptState::Delivered { .. }))
        .map(|r| r.address.as_str())
        .collect();
    if delivered.is_empty() {
        "nothing".into()
    } else {
        delivered.join(", ")
    }
}
