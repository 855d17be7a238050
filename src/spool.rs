//! The flat-file spool: the truth about every message the server holds.
//!
//! ```text
//! <spool>/tmp/        files being written; purged at startup
//! <spool>/queue/ID.msg   the content (CRLF, dot-unstuffed), written first
//! <spool>/queue/ID.env   the envelope; its rename into queue/ is the commit
//! <spool>/corrupt/    envelopes that failed to parse, with their content
//! ```
//!
//! Every write is tmp → write → fsync → rename → fsync(dir) (RFC 5321 §6.1:
//! a 250 is a promise). An envelope is never rewritten in place: each update
//! is a new file renamed over the old one, so a crash leaves either the old or
//! the new state. An envelope is self-checking: a version line first and an
//! `end` line last; anything else moves to `corrupt/`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::envelope::{BodyType, Envelope, Mode, Notify, Orcpt, RcptState, Recipient, Ret};
use crate::smtp::xtext;

const VERSION_LINE: &str = "detad-envelope 1";
const END_LINE: &str = "end";

/// A spool operation failed.
#[derive(Debug)]
pub enum SpoolError {
    /// A file system call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The spool is at `spool_max_bytes`.
    Full,
    /// An envelope did not parse; it was moved to `corrupt/`.
    Corrupt {
        /// Where it is now.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            SpoolError::Full => write!(f, "spool is full (spool_max_bytes)"),
            SpoolError::Corrupt { path, why } => {
                write!(f, "corrupt envelope moved to {}: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    fsync: bool,
    /// `(used, max)` content octets. A mutex, not atomics: 32-bit MIPS
    /// routers have no 64-bit atomics, and this is taken once per message.
    bytes: Mutex<(u64, u64)>,
    seq: AtomicUsize,
}

/// Content being written into `tmp/`; [`ContentWriter::finish`] moves it
/// into `queue/`. Dropped unfinished, it removes its file.
#[derive(Debug)]
pub struct ContentWriter {
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    fsync: bool,
}

impl ContentWriter {
    /// Appends content.
    ///
    /// # Errors
    /// The write failed (disk full, I/O error).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        let file = self.file.as_mut().expect("writer used after finish");
        file.write_all(bytes).map_err(io_err("write", &self.tmp))
    }

    /// Flushes, fsyncs and renames the content into `queue/`. The caller
    /// commits the envelope next, which fsyncs the directory.
    ///
    /// # Errors
    /// Any step failed; the temporary file is removed.
    pub fn finish(mut self) -> Result<u64, SpoolError> {
        let file = self.file.take().expect("finish called once");
        let result = self.seal(file);
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    fn seal(&self, file: io::BufWriter<File>) -> Result<u64, SpoolError> {
        let file = file.into_inner().map_err(|e| SpoolError::Io {
            op: "flush",
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        if self.fsync {
            file.sync_all().map_err(io_err("fsync", &self.tmp))?;
        }
        let len = file.metadata().map_err(io_err("stat", &self.tmp))?.len();
        fs::rename(&self.tmp, &self.dest).map_err(io_err("rename", &self.tmp))?;
        Ok(len)
    }
}

impl Drop for ContentWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `root`.
    ///
    /// # Errors
    /// A directory could not be created.
    pub fn open(root: &Path, fsync: bool, max_bytes: u64) -> Result<Spool, SpoolError> {
        for sub in ["tmp", "queue", "corrupt"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
            fsync,
            bytes: Mutex::new((0, max_bytes)),
            seq: AtomicUsize::new(0),
        })
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.bytes.lock().expect("spool byte counter poisoned")
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Changes the size cap (SIGHUP).
    pub fn set_max_bytes(&self, max: u64) {
        self.bytes().1 = max;
    }

    /// Whether `more` octets fit under the cap.
    pub fn has_room(&self, more: u64) -> bool {
        let (used, max) = *self.bytes();
        max == 0 || used.saturating_add(more) <= max
    }

    fn queue_path(&self, id: &str, ext: &str) -> PathBuf {
        self.root.join("queue").join(format!("{id}.{ext}"))
    }

    /// A new queue id: the arrival time in microseconds and a sequence
    /// number, in upper-case hex; unique within this spool. The existence
    /// checks are for boards without a real-time clock, which boot in 1970
    /// until NTP answers and may meet the ids of an earlier boot.
    pub fn new_id(&self, now_micros: u128) -> String {
        loop {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) & 0xfff;
            let id = format!("{now_micros:013X}{seq:03X}");
            if !self.queue_path(&id, "env").exists() && !self.queue_path(&id, "msg").exists() {
                return id;
            }
        }
    }

    /// Whether `id` has the form [`Spool::new_id`] makes (16 upper-case
    /// hex digits), so that one from outside (control socket, command line)
    /// can never name a path outside `queue/`.
    pub fn is_valid_id(id: &str) -> bool {
        id.len() == 16
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    }

    /// Starts writing the content of message `id`.
    ///
    /// # Errors
    /// The temporary file could not be created.
    pub fn create_content(&self, id: &str) -> Result<ContentWriter, SpoolError> {
        let tmp = self.root.join("tmp").join(format!("{id}.msg"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        Ok(ContentWriter {
            file: Some(io::BufWriter::with_capacity(16 * 1024, file)),
            tmp,
            dest: self.queue_path(id, "msg"),
            fsync: self.fsync,
        })
    }

    /// Commits a new message: writes its envelope (the content must be in
    /// place) and counts its size against the cap.
    ///
    /// # Errors
    /// The envelope could not be written durably; nothing is committed and
    /// both files are gone.
    pub fn commit(&self, env: &Envelope) -> Result<(), SpoolError> {
        if let Err(e) = self.write_envelope(env) {
            // Not committed (or not durably): drop both files; they were
            // never counted against the cap.
            for path in [
                self.queue_path(&env.id, "env"),
                self.queue_path(&env.id, "msg"),
            ] {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        self.bytes().0 += env.size;
        Ok(())
    }

    /// Persists a changed envelope (atomic replace, never in place).
    ///
    /// # Errors
    /// The new state could not be written; the old one stands.
    pub fn write_envelope(&self, env: &Envelope) -> Result<(), SpoolError> {
        let tmp = self.root.join("tmp").join(format!("{}.env", env.id));
        let dest = self.queue_path(&env.id, "env");
        let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let result = file
            .write_all(encode_envelope(env).as_bytes())
            .and_then(|()| if self.fsync { file.sync_all() } else { Ok(()) });
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write", &tmp)(e));
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("rename", &tmp)(e));
        }
        self.sync_queue_dir()
    }

    fn sync_queue_dir(&self) -> Result<(), SpoolError> {
        if self.fsync {
            let dir = self.root.join("queue");
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsync directory", &dir))?;
        }
        Ok(())
    }

    /// Reads the envelope of `id`; a file that does not parse is moved to
    /// `corrupt/` (with its content) and reported as [`SpoolError::Corrupt`].
    ///
    /// # Errors
    /// Missing, unreadable or corrupt.
    pub fn load(&self, id: &str) -> Result<Envelope, SpoolError> {
        let path = self.queue_path(id, "env");
        let text = fs::read(&path).map_err(io_err("read", &path))?;
        let parsed = std::str::from_utf8(&text)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(decode_envelope);
        match parsed {
            Ok(env) if env.id == id => Ok(env),
            Ok(_) => Err(self.quarantine(id, "id does not match the file name".into())),
            Err(why) => Err(self.quarantine(id, why)),
        }
    }

    /// Like [`Spool::load`], but a message that is gone (removed by the
    /// operator, finished meanwhile) is `Ok(None)`, not an error.
    ///
    /// # Errors
    /// Unreadable or corrupt.
    pub fn load_if_present(&self, id: &str) -> Result<Option<Envelope>, SpoolError> {
        match self.load(id) {
            Ok(env) => Ok(Some(env)),
            Err(SpoolError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the envelope of `id` without side effects (for the queue tools,
    /// which must not move files under a running daemon).
    ///
    /// # Errors
    /// Missing or unreadable; a parse failure as its message.
    pub fn peek(&self, id: &str) -> Result<Envelope, String> {
        let path = self.queue_path(id, "env");
        let text = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        std::str::from_utf8(&text)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(decode_envelope)
    }

    fn quarantine(&self, id: &str, why: String) -> SpoolError {
        let dir = self.root.join("corrupt");
        for ext in ["env", "msg"] {
            let _ = fs::rename(self.queue_path(id, ext), dir.join(format!("{id}.{ext}")));
        }
        let path = dir.join(format!("{id}.env"));
        log::error!(
            "id={id} corrupt envelope moved to {}: {why}; inspect it, then delete it",
            path.display()
        );
        SpoolError::Corrupt { path, why }
    }

    /// Opens the content of `id` for reading.
    ///
    /// # Errors
    /// It is missing or unreadable.
    pub fn open_content(&self, id: &str) -> Result<File, SpoolError> {
        let path = self.queue_path(id, "msg");
        File::open(&path).map_err(io_err("open", &path))
    }

    /// Removes message `id`: the envelope first (that is the commit of the
    /// removal), then the content.
    ///
    /// # Errors
    /// The envelope could not be removed.
    pub fn remove(&self, id: &str) -> Result<(), SpoolError> {
        let env = self.queue_path(id, "env");
        let msg = self.queue_path(id, "msg");
        let size = fs::metadata(&msg).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&env) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &env)(e)),
        }
        let _ = fs::remove_file(&msg);
        {
            let mut bytes = self.bytes();
            bytes.0 = bytes.0.saturating_sub(size);
        }
        self.sync_queue_dir()
    }

    /// Startup: purges `tmp/`, removes content whose envelope never got
    /// committed, and returns every committed envelope (corrupt ones are
    /// quarantined and skipped). Reads only; rewrites nothing (flash wear).
    ///
    /// # Errors
    /// A directory could not be read.
    pub fn recover(&self) -> Result<Vec<Envelope>, SpoolError> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp)
            .map_err(io_err("read directory", &tmp))?
            .flatten()
        {
            let _ = fs::remove_file(entry.path());
        }
        let mut envelopes = Vec::new();
        let mut used = 0;
        for id in self.ids()? {
            let msg = self.queue_path(&id, "msg");
            if !self.queue_path(&id, "env").exists() {
                // Content without an envelope: the commit never happened.
                let _ = fs::remove_file(&msg);
                continue;
            }
            match self.load(&id) {
                Ok(env) if msg.exists() => {
                    used += fs::metadata(&msg).map(|m| m.len()).unwrap_or(0);
                    envelopes.push(env);
                }
                Ok(_) => {
                    let _ = self.quarantine(&id, "content file missing".into());
                }
                Err(SpoolError::Corrupt { .. }) => {}
                // One unreadable file (a bad flash sector) must not keep the
                // server from starting: leave it, say so, go on.
                Err(e) => {
                    log::error!("id={id} skipped at startup: {e}; check the storage, then restart")
                }
            }
        }
        self.bytes().0 = used;
        envelopes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(envelopes)
    }

    /// The ids present in `queue/` (from either file), sorted.
    ///
    /// # Errors
    /// The directory could not be read.
    pub fn ids(&self) -> Result<Vec<String>, SpoolError> {
        let queue = self.root.join("queue");
        let mut ids: Vec<String> = fs::read_dir(&queue)
            .map_err(io_err("read directory", &queue))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (id, ext) = name.rsplit_once('.')?;
                (ext == "env" || ext == "msg").then(|| id.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// Marks an absent value; xtext never produces `=`, so it cannot clash.
const NONE: &str = "=";

/// Spool text is printable ASCII: anything else in free text (a remote
/// reply in UTF-8, a tab) becomes `?` before it is xtext-encoded.
fn printable(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn opt_xtext(v: Option<&str>) -> String {
    v.map(|v| xtext::encode(&printable(v)))
        .unwrap_or_else(|| NONE.into())
}

fn encode_notify(n: Option<Notify>) -> String {
    match n {
        None => "-".into(),
        Some(n) if n == Notify::NEVER => "never".into(),
        Some(n) => {
            let mut parts = Vec::new();
            if n.success {
                parts.push("success");
            }
            if n.failure {
                parts.push("failure");
            }
            if n.delay {
                parts.push("delay");
            }
            parts.join(",")
        }
    }
}

/// The spool's (and the queue tools') name of a recipient state.
pub fn state_name(s: &RcptState) -> &'static str {
    match s {
        RcptState::Pending => "pending",
        RcptState::Delivered { relayed: false } => "delivered",
        RcptState::Delivered { relayed: true } => "relayed",
        RcptState::Deferred => "deferred",
        RcptState::Failed => "failed",
    }
}

/// The envelope as spool text.
pub fn encode_envelope(env: &Envelope) -> String {
    let mut out = String::with_capacity(256 + 128 * env.recipients.len());
    let mut line = |k: &str, v: &str| {
        out.push_str(k);
        out.push(' ');
        out.push_str(v);
        out.push('\n');
    };
    line("id", &env.id);
    line("reverse-path", &opt_xtext(Some(&env.reverse_path)));
    line(
        "ret",
        match env.ret {
            None => "-",
            Some(Ret::Full) => "full",
            Some(Ret::Hdrs) => "hdrs",
        },
    );
    line("envid", &opt_xtext(env.envid.as_deref()));
    line(
        "body",
        match env.body {
            BodyType::SevenBit => "7bit",
            BodyType::EightBitMime => "8bitmime",
        },
    );
    line("size", &env.size.to_string());
    line("eight-bit", if env.eight_bit { "1" } else { "0" });
    line("arrival", &env.arrival.to_string());
    line("client", &opt_xtext(Some(&env.client_ip)));
    line("helo", &opt_xtext(Some(&env.helo)));
    line(
        "mode",
        match env.mode {
            Mode::Queued => "queued",
            Mode::Reliable => "reliable",
            Mode::Detached => "detached",
        },
    );
    line("attempts", &env.attempts.to_string());
    line("next-attempt", &env.next_attempt.to_string());
    line("delay-warned", if env.delay_warned { "1" } else { "0" });
    line("is-dsn", if env.is_dsn { "1" } else { "0" });
    for r in &env.recipients {
        let orcpt = r.orcpt.as_ref().map(|o| {
            format!(
                "{};{}",
                xtext::encode(&o.addr_type),
                xtext::encode(&o.address)
            )
        });
        let fields = [
            state_name(&r.state).to_string(),
            if r.dsn_done { "1" } else { "0" }.to_string(),
            r.last_attempt.to_string(),
            encode_notify(r.notify),
            orcpt.unwrap_or_else(|| "-".into()),
            opt_xtext(Some(&r.status)),
            opt_xtext(r.remote_mta.as_deref()),
            xtext::encode(&printable(&r.address)),
            opt_xtext(Some(&r.diagnostic)),
        ];
        line("rcpt", &fields.join(" "));
    }
    format!("{VERSION_LINE}\n{out}{END_LINE}\n")
}

fn dec(v: &str) -> Result<String, String> {
    xtext::decode(v).map_err(|e| format!("bad xtext `{v}`: {e}"))
}

fn opt_dec(v: &str) -> Result<Option<String>, String> {
    if v == NONE {
        Ok(None)
    } else {
        dec(v).map(Some)
    }
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("bad number in `{k}`"))
}

fn flag(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("bad flag in `{k}`")),
    }
}

fn decode_recipient(v: &str) -> Result<Recipient, String> {
    let f: Vec<&str> = v.split(' ').collect();
    let [
        state,
        dsn_done,
        last,
        notify,
        orcpt,
        status,
        remote,
        address,
        diag,
    ] = f[..]
    else {
        return Err("rcpt line needs 9 fields".into());
    };
    let state = match state {
        "pending" => RcptState::Pending,
        "delivered" => RcptState::Delivered { relayed: false },
        "relayed" => RcptState::Delivered { relayed: true },
        "deferred" => RcptState::Deferred,
        "failed" => RcptState::Failed,
        _ => return Err(format!("bad recipient state `{state}`")),
    };
    let notify = match notify {
        "-" => None,
        "never" => Some(Notify::NEVER),
        list => {
            let mut n = Notify::default();
            for item in list.split(',') {
                match item {
                    "success" => n.success = true,
                    "failure" => n.failure = true,
                    "delay" => n.delay = true,
                    _ => return Err(format!("bad notify `{item}`")),
                }
            }
            Some(n)
        }
    };
    let orcpt = match orcpt {
        "-" => None,
        o => {
            let (t, a) = o.split_once(';').ok_or("bad orcpt")?;
            Some(Orcpt {
                addr_type: dec(t)?,
                address: dec(a)?,
            })
        }
    };
    Ok(Recipient {
        address: dec(address)?,
        notify,
        orcpt,
        state,
        status: opt_dec(status)?.unwrap_or_default(),
        diagnostic: opt_dec(diag)?.unwrap_or_default(),
        remote_mta: opt_dec(remote)?,
        last_attempt: num("rcpt", last)?,
        dsn_done: flag("rcpt", dsn_done)?,
    })
}

/// Parses spool text into an envelope.
///
/// # Errors
/// What is wrong: version, a missing or malformed field, no end marker.
pub fn decode_envelope(text: &str) -> Result<Envelope, String> {
    let mut lines = text.lines();
    if lines.next() != Some(VERSION_LINE) {
        return Err("missing or unknown version line".into());
    }
    let mut env = Envelope::new(String::new(), String::new(), 0, Vec::new());
    let mut ended = false;
    for line in lines {
        if ended {
            return Err("data after end marker".into());
        }
        if line == END_LINE {
            ended = true;
            continue;
        }
        let (k, v) = line
            .split_once(' ')
            .ok_or_else(|| format!("malformed line `{line}`"))?;
        match k {
            "id" => env.id = v.to_string(),
            "reverse-path" => env.reverse_path = dec(v)?,
            "ret" => {
                env.ret = match v {
                    "-" => None,
                    "full" => Some(Ret::Full),
                    "hdrs" => Some(Ret::Hdrs),
                    _ => return Err("bad ret".into()),
                }
            }
            "envid" => env.envid = opt_dec(v)?,
            "body" => {
                env.body = match v {
                    "7bit" => BodyType::SevenBit,
                    "8bitmime" => BodyType::EightBitMime,
                    _ => return Err("bad body".into()),
                }
            }
            "size" => env.size = num(k, v)?,
            "eight-bit" => env.eight_bit = flag(k, v)?,
            "arrival" => env.arrival = num(k, v)?,
            "client" => env.client_ip = dec(v)?,
            "helo" => env.helo = dec(v)?,
            "mode" => {
                env.mode = match v {
                    "queued" => Mode::Queued,
                    "reliable" => Mode::Reliable,
                    "detached" => Mode::Detached,
                    _ => return Err("bad mode".into()),
                }
            }
            "attempts" => env.attempts = num(k, v)?,
            "next-attempt" => env.next_attempt = num(k, v)?,
            "delay-warned" => env.delay_warned = flag(k, v)?,
            "is-dsn" => env.is_dsn = flag(k, v)?,
            "rcpt" => env.recipients.push(decode_recipient(v)?),
            _ => return Err(format!("unknown field `{k}`")),
        }
    }
    if !ended {
        return Err("no end marker (truncated)".into());
    }
    if env.id.is_empty() || env.recipients.is_empty() {
        return Err("no id or no recipients".into());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Envelope {
        let mut r1 = Recipient::new(
            "jones@example.net".into(),
            Some(Notify {
                success: false,
                failure: true,
                delay: true,
            }),
            Some(Orcpt {
                addr_type: "rfc822".into(),
                address: "jones@example.com".into(),
            }),
        );
        r1.state = RcptState::Failed;
        r1.status = "5.1.1".into();
        r1.diagnostic = "550 5.1.1 no such user here".into();
        r1.remote_mta = Some("mx.example.net".into());
        r1.last_attempt = 1_700_000_100;
        let r2 = Recipient::new("\"odd one\"@example.org".into(), Some(Notify::NEVER), None);
        Envelope {
            id: "0000000000001000".into(),
            reverse_path: "handset@example.com".into(),
            ret: Some(Ret::Hdrs),
            envid: Some("A123 bzq+".into()),
            body: BodyType::EightBitMime,
            size: 1234,
            eight_bit: true,
            arrival: 1_700_000_000,
            client_ip: "127.0.0.1".into(),
            helo: "client example".into(),
            mode: Mode::Detached,
            attempts: 2,
            next_attempt: 1_700_000_500,
            delay_warned: true,
            is_dsn: false,
            recipients: vec![r1, r2],
        }
    }

    #[test]
    fn only_our_own_ids_are_valid() {
        assert!(Spool::is_valid_id("6618B38340047000"));
        for bad in [
            "",
            "6618b38340047000",
            "../../etc/passwd",
            "6618B3834004700",
            "6618B38340047000/",
        ] {
            assert!(!Spool::is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn envelope_round_trips() {
        let env = sample();
        assert_eq!(decode_envelope(&encode_envelope(&env)), Ok(env));
    }

    #[test]
    fn truncated_envelope_is_rejected() {
        let text = encode_envelope(&sample());
        for cut in 0..text.len() - 1 {
            assert!(
                decode_envelope(&text[..cut]).is_err(),
                "accepted a prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn free_text_is_made_printable_and_dash_is_a_value() {
        let mut env = sample();
        env.envid = Some("-".into());
        env.recipients[0].diagnostic = "550-first\r\n550 caf\u{e9}\tend".into();
        let back = decode_envelope(&encode_envelope(&env)).unwrap();
        assert_eq!(back.envid.as_deref(), Some("-"));
        assert_eq!(back.recipients[0].diagnostic, "550-first??550 caf??end");
    }

    #[test]
    fn null_reverse_path_round_trips() {
        let mut env = sample();
        env.reverse_path.clear();
        assert_eq!(
            decode_envelope(&encode_envelope(&env))
                .unwrap()
                .reverse_path,
            ""
        );
    }
}
