//! The whole session core, driven as src/server drives it. Input: one
//! octet N, then N octets of "world" decisions (size limit, mintimer, what
//! happens while an RDLV reply is held, upstream failure texts), then the
//! client's byte stream. An exhausted world answers 0: defaults, and
//! "send a 120 and read the client's answer" while processing.
//!
//! Checks: no panic; every line that needs a reply gets one (only CONT and
//! DETA, answering a 120, get none); every reply is legal on the wire (CRLF
//! lines of at most 512 octets, whatever the client or the next hop sent);
//! the actions fit the state; the reply to the end of data has a code RFC
//! 5321 §4.3.2 allows there.
#![no_main]

use detad::auth::sasl::Credentials;
use detad::smtp::address::Path;
use detad::smtp::data::{DataDecoder, Verdict};
use detad::smtp::reply::Reply;
use detad::smtp::session::{
    Action, AuthConfig, ChunkEnd, DetachRefusal, MAX_LINE_BUFFER, Outcome, Policy, Session,
    SessionConfig, Step,
};
use detad::smtp::status::EnhancedStatus;
use detad_fuzz::{Tape, assert_wire_reply};
use libfuzzer_sys::fuzz_target;

/// Accepts everything (the session's own rules are under test).
struct AcceptAll;

impl Policy for AcceptAll {
    fn check_sender(&mut self, _: &Path, _: Option<u64>) -> Result<(), Reply> {
        Ok(())
    }
    fn check_recipient(&mut self, _: &str) -> Result<(), Reply> {
        Ok(())
    }
    fn check_data(&mut self) -> Result<(), Reply> {
        Ok(())
    }
    fn reserve_reliable(&mut self, _: &str) -> Result<(), Reply> {
        Ok(())
    }
    fn end_transaction(&mut self) {}
    fn authenticate(&mut self, c: &Credentials) -> Result<(), Reply> {
        // Some credentials are good, the others get what the server sends.
        match c.password.first() {
            Some(b'!') => Err(Reply::new(
                535,
                "5.7.8",
                "authentication credentials invalid",
            )),
            _ => Ok(()),
        }
    }
    fn forget_identity(&mut self) {}
}

/// The client's bytes, read as the driver reads them.
struct Client<'a> {
    bytes: &'a [u8],
}

impl<'a> Client<'a> {
    /// The next line with its LF; `None` at EOF (a partial last line is
    /// never fed).
    fn line(&mut self) -> Option<&'a [u8]> {
        let lf = self.bytes.iter().position(|&b| b == b'\n')?;
        let (line, rest) = self.bytes.split_at(lf + 1);
        self.bytes = rest;
        Some(line)
    }
}

/// Whether the connection goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// RFC 5321 §4.3.2: the replies to the end of data.
const FINAL_CODES: [u16; 7] = [250, 450, 451, 452, 550, 552, 554];

struct Run<'a> {
    session: Session,
    policy: AcceptAll,
    world: Tape<'a>,
    client: Client<'a>,
    max_message_size: u64,
    /// The judge of a message assembled from BDAT/BURL chunks.
    chunks: Option<DataDecoder>,
}

fuzz_target!(|data: &[u8]| {
    let (&n, rest) = data.split_first().unwrap_or((&0, &[]));
    let (world, client) = rest.split_at(usize::from(n).min(rest.len()));
    let mut world = Tape::new(world);
    let max_message_size = match world.byte() {
        0 => 10_000,
        n => u64::from(n) * 16,
    };
    let rdlv_mintimer = match world.byte() {
        0 => 30,
        n => u32::from(n),
    };
    let flags = world.byte();
    let mut session = Session::new(SessionConfig {
        hostname: "gw.example.net".into(),
        max_message_size,
        max_recipients: 100,
        rdlv_mintimer,
        starttls: flags & 1 != 0,
        auth: AuthConfig {
            enabled: flags & 2 == 0,
            plaintext: flags & 4 != 0,
            required: flags & 8 != 0,
        },
        burl: flags & 16 == 0,
    });
    if flags & 32 != 0 {
        session.set_tls();
    }
    assert_wire_reply(&session.greeting());
    let mut run = Run {
        session,
        policy: AcceptAll,
        world,
        client: Client { bytes: client },
        max_message_size,
        chunks: None,
    };
    while run.next() == Flow::Continue {}
});

impl Run<'_> {
    /// One command, or one event while an RDLV reply is held.
    fn next(&mut self) -> Flow {
        if self.session.is_processing() {
            return self.processing();
        }
        let Some(line) = self.client.line() else {
            return Flow::Close;
        };
        let step = if line.len() > MAX_LINE_BUFFER {
            self.session.line_too_long()
        } else {
            self.session.feed(line, &mut self.policy)
        };
        let flow = match step.action {
            Action::ReceiveChunk { size, last } => {
                assert_eq!(step.reply, None, "{line:?}");
                self.chunk(size, last)
            }
            Action::FetchUrl { last } => {
                assert_eq!(step.reply, None, "{line:?}");
                self.fetch(last)
            }
            action => self.replied_action(&step, action, line),
        };
        if !self.session.in_chunks() {
            self.chunks = None;
        }
        flow
    }

    /// The actions that come with a reply.
    fn replied_action(&mut self, step: &Step, action: Action, line: &[u8]) -> Flow {
        let reply = replied(step, line);
        match action {
            Action::Continue => Flow::Continue,
            Action::Close => Flow::Close,
            Action::ReceiveData => {
                assert_eq!(reply.code, 354, "{reply:?}");
                self.data()
            }
            Action::DiscardChunk(size) => {
                assert!(reply.code >= 400, "{reply:?}");
                self.take(size);
                Flow::Continue
            }
            Action::StartTls => {
                assert_eq!(reply.code, 220, "{reply:?}");
                // The handshake works, or fails and the connection closes.
                if self.world.byte() % 4 == 3 {
                    return Flow::Close;
                }
                self.session.tls_started(&mut self.policy);
                assert!(self.session.is_tls() && self.session.identity().is_none());
                Flow::Continue
            }
            other => panic!("{other:?} outside processing, after {line:?}"),
        }
    }

    /// Takes up to `size` octets of the client's stream.
    fn take(&mut self, size: u64) -> &[u8] {
        let n = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(self.client.bytes.len());
        let (taken, rest) = self.client.bytes.split_at(n);
        self.client.bytes = rest;
        taken
    }

    /// A BDAT chunk: its octets through the judge, then what it came to.
    fn chunk(&mut self, size: u64, last: bool) -> Flow {
        let max = self.max_message_size;
        let bytes = self.take(size).to_vec();
        if (bytes.len() as u64) < size {
            // EOF inside the chunk: nothing kept, the driver closes.
            self.session.aborted();
            return Flow::Close;
        }
        let decoder = self.chunks.get_or_insert_with(|| DataDecoder::raw(max));
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&bytes, &mut out), (bytes.len(), false));
        self.end_chunk(size, last)
    }

    /// A BURL chunk: the world decides how the fetch went.
    fn fetch(&mut self, last: bool) -> Flow {
        assert!(self.session.take_url().is_some());
        if self.world.byte() % 3 == 2 {
            let reply = self.session.chunk_failed(
                Reply::new(554, "5.6.6", "IMAP URL resolution failed"),
                &mut self.policy,
            );
            assert_wire_reply(&reply);
            assert!(!self.session.in_chunks());
            return Flow::Continue;
        }
        let max = self.max_message_size;
        let fetched = self.world.take(64).to_vec();
        let decoder = self.chunks.get_or_insert_with(|| DataDecoder::raw(max));
        decoder.decode(&fetched, &mut Vec::new());
        self.end_chunk(fetched.len() as u64, last)
    }

    fn end_chunk(&mut self, size: u64, last: bool) -> Flow {
        let decoder = self.chunks.as_mut().expect("a chunk was judged");
        if last {
            decoder.finish(&mut Vec::new());
        }
        let verdict = decoder.verdict();
        match self
            .session
            .chunk_end(size, last, verdict, &mut self.policy)
        {
            ChunkEnd::More(reply) => {
                assert!(!last && verdict == Verdict::Ok, "{reply:?}");
                assert_eq!(reply.code, 250);
                assert_wire_reply(&reply);
            }
            ChunkEnd::Failed(reply) => {
                assert!(reply.code >= 500, "{reply:?}");
                assert_wire_reply(&reply);
            }
            ChunkEnd::Last(txn) => {
                assert!(last && verdict == Verdict::Ok);
                let step = self.session.spooled("0000000000001000", txn.rdlv);
                if let Some(reply) = &step.reply {
                    assert_eq!(reply.code, 250);
                    assert_wire_reply(reply);
                }
            }
        }
        Flow::Continue
    }

    /// The content, the verdict, and the reply or the hold that follows.
    fn data(&mut self) -> Flow {
        let mut decoder = DataDecoder::new(self.max_message_size);
        let mut content = Vec::new();
        let (n, done) = decoder.decode(self.client.bytes, &mut content);
        self.client.bytes = &self.client.bytes[n..];
        if !done {
            // EOF before the terminator: nothing kept, the driver closes.
            self.session.aborted();
            return Flow::Close;
        }
        let verdict = decoder.verdict();
        match self.session.data_end(verdict, &mut self.policy) {
            Ok(txn) => {
                assert_eq!(verdict, Verdict::Ok);
                assert!(!txn.recipients.is_empty() && txn.recipients.len() <= 100);
                let step = self.session.spooled("0000000000001000", txn.rdlv);
                match txn.rdlv {
                    Some(_) => {
                        assert_eq!(
                            step,
                            Step {
                                reply: None,
                                action: Action::Wait
                            }
                        );
                        assert!(self.session.is_processing());
                    }
                    None => {
                        let reply = step.reply.expect("250 after spooling");
                        assert_eq!((reply.code, step.action), (250, Action::Continue));
                        assert_wire_reply(&reply);
                    }
                }
            }
            Err(reply) => {
                assert_ne!(verdict, Verdict::Ok, "{reply:?}");
                assert!(FINAL_CODES.contains(&reply.code) || reply.code == 500);
                assert_wire_reply(&reply);
            }
        }
        Flow::Continue
    }

    /// An RDLV reply is held: the world decides what happens next.
    fn processing(&mut self) -> Flow {
        match self.world.byte() % 6 {
            0 => self.keepalive(),
            1 => {
                let outcome = Outcome::Done {
                    delivered: usize::from(self.world.byte() % 3),
                    deferred: usize::from(self.world.byte() % 3),
                    first_failure: None,
                };
                self.outcome(&outcome)
            }
            2 => {
                let outcome = Outcome::Done {
                    delivered: usize::from(self.world.byte() % 2),
                    deferred: usize::from(self.world.byte() % 2),
                    first_failure: Some(self.upstream_reply()),
                };
                self.outcome(&outcome)
            }
            3 => {
                let why = self.text();
                self.outcome(&Outcome::Failed(why))
            }
            // The operator removed the job, or the client went away.
            4 => {
                self.session.aborted();
                Flow::Continue
            }
            _ => {
                self.session.aborted();
                Flow::Close
            }
        }
    }

    fn outcome(&mut self, outcome: &Outcome) -> Flow {
        let reply = self.session.outcome(outcome, "0000000000001000");
        assert!(FINAL_CODES.contains(&reply.code), "{reply:?}");
        assert!(!self.session.is_processing());
        assert_wire_reply(&reply);
        Flow::Continue
    }

    /// A 120, then the client's answer: lines until one ends the wait for
    /// an answer. The first few may have been buffered before the 120.
    fn keepalive(&mut self) -> Flow {
        let reply = self.session.keepalive();
        assert_eq!(reply.code, 120);
        assert_wire_reply(&reply);
        let mut early = self.world.byte() % 3;
        loop {
            let Some(line) = self.client.line() else {
                self.session.aborted();
                return Flow::Close;
            };
            if line.len() > MAX_LINE_BUFFER {
                // src/server/hold.rs: an over-long answer aborts the job.
                self.session.aborted();
                return Flow::Continue;
            }
            let step = if early > 0 {
                early -= 1;
                self.session.feed_early(line, &mut self.policy)
            } else {
                self.session.feed(line, &mut self.policy)
            };
            match step.action {
                // CONT: no reply, wait again.
                Action::Wait => {
                    assert_eq!(step.reply, None);
                    assert!(self.session.is_processing());
                    return Flow::Continue;
                }
                Action::Detach => {
                    assert_eq!(step.reply, None);
                    return self.detach();
                }
                Action::Continue => {
                    replied(&step, line);
                    assert!(self.session.is_processing());
                }
                Action::Abort { close } => {
                    replied(&step, line);
                    assert!(!self.session.is_processing());
                    return if close { Flow::Close } else { Flow::Continue };
                }
                other => panic!("{other:?} while processing, after {line:?}"),
            }
        }
    }

    fn detach(&mut self) -> Flow {
        match self.world.byte() % 3 {
            0 => {
                let reply = self.session.detached();
                assert_eq!(reply.code, 221);
                assert_wire_reply(&reply);
                Flow::Close
            }
            n => {
                let why = if n == 1 {
                    DetachRefusal::Limit
                } else {
                    DetachRefusal::Spool
                };
                let reply = self.session.detach_refused(why);
                assert_wire_reply(&reply);
                assert!(self.session.is_processing());
                Flow::Continue
            }
        }
    }

    /// A failure as the queue reports it: the next hop's reply (code,
    /// status and text of any length) or a local diagnostic.
    fn upstream_reply(&mut self) -> Reply {
        let code = 100 + self.world.u16() % 500;
        let status = EnhancedStatus::parse(&format!(
            "{}.{}.{}",
            [2, 4, 5][usize::from(self.world.byte() % 3)],
            self.world.byte(),
            self.world.byte()
        ));
        let lines = (0..=self.world.byte() % 4).map(|_| self.text()).collect();
        Reply {
            code,
            status,
            lines,
        }
    }

    /// Text of up to 4 KiB: a pattern from the world, repeated.
    fn text(&mut self) -> String {
        let len = usize::from(self.world.u16() % 4096);
        let pattern = self.world.take(16);
        let bytes: Vec<u8> = match pattern {
            [] => vec![b'x'; len],
            p => p.iter().copied().cycle().take(len).collect(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The reply a fed line got, which every line but CONT and DETA needs.
#[track_caller]
fn replied<'s>(step: &'s Step, line: &[u8]) -> &'s Reply {
    let reply = step
        .reply
        .as_ref()
        .unwrap_or_else(|| panic!("no reply to {:?}", String::from_utf8_lossy(line)));
    assert_wire_reply(reply);
    reply
}
