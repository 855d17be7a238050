//! The flat-file spool: the truth about every message the server holds.
//!
//! ```text
//! <spool>/lock          held (flock) by the one daemon of this spool
//! <spool>/control       the daemon's control socket
//! <spool>/tmp/ID        content being received; purged at startup
//! <spool>/queue/ID      one file per message: the content, then envelope records
//! <spool>/spare/ID      emptied files of removed messages, for reuse
//! <spool>/corrupt/ID    files that failed their checks, for the operator
//! ```
//!
//! Files are recycled rather than unlinked and created anew (as PostgreSQL
//! recycles WAL segments): a removed message's file is renamed into
//! `spare/` and truncated, and the next message takes it. Creating an
//! inode costs more than renaming one, and much more on ext4 without a
//! journal, where every create skips over the inodes freed in the last
//! 30 s (`recently_deleted` in `fs/ext4/ialloc.c`): at 1,000 messages/s
//! that scan was 40 % of the daemon's CPU.
//!
//! A message file is the content (CRLF, dot-unstuffed) followed by
//! envelope records ([`super::codec`]), each ending in a trailer with its
//! offset and CRC-32; the last valid record is the message's state. The
//! commit is the rename of `tmp/ID` (content plus first record) into
//! `queue/`; later states are appended, never written over, so a crash
//! leaves the old state or the new one. Nothing here fsyncs on its own:
//! the queue manager calls [`Spool::barrier`] once for a batch of changes
//! (group commit) before it answers anyone. The barrier covers what changed
//! since the last one: one `syncfs(2)` when files were created, renamed or
//! removed or several were written, an `fdatasync(2)` of the one file when
//! only that was appended to (a DETA mark, an outcome), which does not wait
//! for whatever else is dirty on the same file system.
//!
//! Only the queue manager changes `queue/`: the writing methods are
//! visible to the `queue` module alone. Sessions write content into
//! `tmp/` through [`ContentWriter`]; anyone may read.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::codec::{MAX_TRAILER, decode_record, encode_record, parse_trailer};
use super::crc32::Crc32;
use super::envelope::Envelope;

/// The write buffer of content being received: a typical message and its
/// `Received:` line go out in one write; larger pieces bypass it.
const CONTENT_BUFFER: usize = 8 * 1024;

/// How many emptied files `spare/` keeps for reuse. Enough to take every
/// removal while a backlog of that many messages drains, so that a busy
/// spool frees no inode at all; an empty file costs an inode and a name,
/// no data blocks. Beyond it removed files are unlinked.
const SPARES: usize = 1024;

/// Where a torn record is looked for: records are small, this is plenty.
const SCAN_WINDOW: u64 = 16 << 20;

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
    /// A file did not pass its checks.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

impl SpoolError {
    /// Whether the file is simply not there (removed meanwhile).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            SpoolError::Corrupt { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io { source, .. } => Some(source),
            SpoolError::Corrupt { .. } => None,
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

/// The spool operations that can be made to fail in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolOp {
    /// Creating or writing content in `tmp/`.
    WriteContent,
    /// The commit of a new message.
    Commit,
    /// Appending a new state to a message.
    Append,
    /// The durability barrier.
    Barrier,
    /// Removing a message.
    Remove,
}

/// Makes chosen spool operations fail, to prove the failure paths: tests
/// install one; the daemon never does.
pub trait FaultInjector: Send + Sync + fmt::Debug {
    /// `Err` makes the operation fail with that error before it starts.
    fn check(&self, op: SpoolOp) -> io::Result<()>;
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    fsync: bool,
    seq: AtomicUsize,
    faults: Option<Arc<dyn FaultInjector>>,
    /// What changed since the last barrier.
    dirty: Mutex<Dirty>,
    /// The names (ids, as numbers) of the empty files in `spare/`.
    spares: Mutex<Vec<u64>>,
}

/// The changes a barrier must make durable.
#[derive(Debug, Default)]
struct Dirty {
    /// Message files appended to.
    files: HashSet<String>,
    /// `queue/` itself changed (a commit, a removal).
    dir: bool,
}

/// What a barrier does.
#[derive(Debug, PartialEq, Eq)]
enum SyncPlan {
    /// Nothing changed.
    Nothing,
    /// Only this message file was appended to: `fdatasync(2)` it.
    File(String),
    /// Anything else: `syncfs(2)`.
    FileSystem,
}

impl Dirty {
    fn plan(self) -> SyncPlan {
        match (self.dir, self.files.len()) {
            (false, 0) => SyncPlan::Nothing,
            (false, 1) => SyncPlan::File(self.files.into_iter().next().unwrap_or_default()),
            _ => SyncPlan::FileSystem,
        }
    }
}

/// Content being written into `tmp/`; [`ContentWriter::finish`] hands it
/// to the queue manager's commit. Dropped unfinished, it removes its file.
#[derive(Debug)]
pub struct ContentWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    id: String,
    len: u64,
    crc: Crc32,
    faults: Option<Arc<dyn FaultInjector>>,
}

/// Finished content in `tmp/`, waiting for its commit. Dropped uncommitted,
/// it removes its file.
#[derive(Debug)]
pub struct ContentFile {
    file: Option<File>,
    tmp: PathBuf,
    /// The queue id.
    pub id: String,
    /// Octets of content.
    pub len: u64,
    /// CRC-32 of the content.
    pub crc: u32,
}

impl Drop for ContentFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl ContentWriter {
    /// Appends content.
    ///
    /// # Errors
    /// The write failed (disk full, I/O error).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        check(&self.faults, SpoolOp::WriteContent, &self.tmp)?;
        let Some(file) = self.file.as_mut() else {
            return Err(io_err("write", &self.tmp)(io::ErrorKind::BrokenPipe.into()));
        };
        file.write_all(bytes).map_err(io_err("write", &self.tmp))?;
        self.len += bytes.len() as u64;
        self.crc.update(bytes);
        Ok(())
    }

    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes the content; the file waits in `tmp/` for its commit.
    ///
    /// # Errors
    /// The flush failed; the file is removed.
    pub fn finish(mut self) -> Result<ContentFile, SpoolError> {
        let Some(file) = self.file.take() else {
            return Err(io_err("flush", &self.tmp)(io::ErrorKind::BrokenPipe.into()));
        };
        let file = match file.into_inner() {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&self.tmp);
                return Err(io_err("flush", &self.tmp)(e.into_error()));
            }
        };
        Ok(ContentFile {
            file: Some(file),
            tmp: self.tmp.clone(),
            id: self.id.clone(),
            len: self.len,
            crc: self.crc.value(),
        })
    }
}

impl Drop for ContentWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn check(
    faults: &Option<Arc<dyn FaultInjector>>,
    op: SpoolOp,
    path: &Path,
) -> Result<(), SpoolError> {
    match faults {
        Some(f) => f.check(op).map_err(io_err("(injected)", path)),
        None => Ok(()),
    }
}

/// Files and directories of the spool: only the owner may read them
/// (messages are private mail).
fn private_dir(path: &Path) -> Result<(), SpoolError> {
    use std::os::unix::fs::PermissionsExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err("create directory", path))?;
    // An older spool may have been made with looser modes: tighten it, but
    // only when it differs (no needless metadata writes on flash).
    let meta = fs::metadata(path).map_err(io_err("stat", path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", path))?;
    }
    Ok(())
}

impl Spool {
    /// Opens (creating if needed, mode 0700) the spool at `root`.
    ///
    /// # Errors
    /// A directory could not be created.
    pub fn open(root: &Path, fsync: bool) -> Result<Spool, SpoolError> {
        private_dir(root)?;
        for sub in ["tmp", "queue", "spare", "corrupt"] {
            private_dir(&root.join(sub))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
            fsync,
            seq: AtomicUsize::new(0),
            faults: None,
            dirty: Mutex::new(Dirty::default()),
            spares: Mutex::new(Vec::new()),
        })
    }

    /// Installs a fault injector (tests).
    pub fn with_faults(mut self, faults: Arc<dyn FaultInjector>) -> Spool {
        self.faults = Some(faults);
        self
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn queue_path(&self, id: &str) -> PathBuf {
        self.root.join("queue").join(id)
    }

    /// A new queue id: the arrival time in microseconds and a sequence
    /// number, in upper-case hex; unique within this spool. The existence
    /// check is for boards without a real-time clock, which boot in 1970
    /// until NTP answers and may meet the ids of an earlier boot.
    pub fn new_id(&self, now_micros: u128) -> String {
        loop {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) & 0xfff;
            let id = format!("{:013X}{seq:03X}", now_micros & 0x1F_FFFF_FFFF_FFFF);
            if !self.queue_path(&id).exists() && !self.root.join("tmp").join(&id).exists() {
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

    /// Starts writing the content of message `id` into `tmp/` (mode 0600).
    ///
    /// # Errors
    /// The file could not be created.
    pub fn create_content(&self, id: &str) -> Result<ContentWriter, SpoolError> {
        let tmp = self.root.join("tmp").join(id);
        check(&self.faults, SpoolOp::WriteContent, &tmp)?;
        let file = match self.reuse_spare(&tmp) {
            Some(file) => file,
            None => OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?,
        };
        Ok(ContentWriter {
            // Per session receiving a message: kept small (20 sessions in
            // DATA at once hold 20 of these).
            file: Some(BufWriter::with_capacity(CONTENT_BUFFER, file)),
            tmp,
            id: id.to_string(),
            len: 0,
            crc: Crc32::new(),
            faults: self.faults.clone(),
        })
    }

    /// Takes an empty file from `spare/` and renames it to `tmp`; `None`
    /// when there is none (or it cannot be used: then a new one is made).
    fn reuse_spare(&self, tmp: &Path) -> Option<File> {
        let name = self
            .spares
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()?;
        let spare = self.root.join("spare").join(format!("{name:016X}"));
        fs::rename(&spare, tmp).ok()?;
        let file = OpenOptions::new().write(true).open(tmp).ok();
        // Empty by construction (`remove` truncates before it keeps one);
        // a file that is not is never written into, or the content would
        // end in stale octets.
        match file {
            Some(f) if f.metadata().is_ok_and(|m| m.len() == 0) => Some(f),
            _ => {
                let _ = fs::remove_file(tmp);
                None
            }
        }
    }

    /// Commits a new message: appends its first record to the content and
    /// renames the file into `queue/`. Durable after the next
    /// [`Spool::barrier`]. Returns the file's size.
    ///
    /// # Errors
    /// Nothing is committed and the file is gone.
    pub(super) fn commit(
        &self,
        mut content: ContentFile,
        env: &Envelope,
    ) -> Result<u64, SpoolError> {
        let dest = self.queue_path(&content.id);
        check(&self.faults, SpoolOp::Commit, &dest)?;
        let record = encode_record(env, content.len);
        let Some(mut file) = content.file.take() else {
            return Err(io_err("commit", &dest)(io::ErrorKind::BrokenPipe.into()));
        };
        let result = file
            .write_all(&record)
            .map_err(io_err("write", &content.tmp))
            .and_then(|()| fs::rename(&content.tmp, &dest).map_err(io_err("rename", &content.tmp)));
        if let Err(e) = result {
            let _ = fs::remove_file(&content.tmp);
            return Err(e);
        }
        self.mark(None);
        Ok(content.len + record.len() as u64)
    }

    /// Appends a new state of a committed message. Durable after the next
    /// [`Spool::barrier`]. Returns the file's new size.
    ///
    /// # Errors
    /// The state could not be appended; the old one stands.
    pub(super) fn append(&self, env: &Envelope) -> Result<u64, SpoolError> {
        let path = self.queue_path(&env.id);
        check(&self.faults, SpoolOp::Append, &path)?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let at = file.metadata().map_err(io_err("stat", &path))?.len();
        let record = encode_record(env, at);
        file.write_all(&record)
            .map_err(io_err("append to", &path))?;
        self.mark(Some(&env.id));
        Ok(at + record.len() as u64)
    }

    /// Removes message `id` (gone already is fine). Durable after the next
    /// [`Spool::barrier`].
    ///
    /// # Errors
    /// The file could not be removed.
    pub(super) fn remove(&self, id: &str) -> Result<(), SpoolError> {
        let path = self.queue_path(id);
        check(&self.faults, SpoolOp::Remove, &path)?;
        if self.recycle(id, &path) {
            self.mark(None);
            return Ok(());
        }
        let result = match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        };
        self.mark(None);
        result
    }

    /// Moves the file of a removed message into `spare/` and empties it
    /// there, while `spare/` has room. Renamed first, then truncated: a
    /// crash in between leaves a whole file in `spare/` (emptied at
    /// startup), never an empty one in `queue/` that would read as corrupt.
    /// The content is gone from the disk's view as with an unlink.
    fn recycle(&self, id: &str, path: &Path) -> bool {
        let Ok(number) = u64::from_str_radix(id, 16) else {
            return false;
        };
        // Only the queue manager removes, so the room seen here is still
        // there after the file work, which runs without the lock: sessions
        // taking spares do not wait for it.
        if self.spares.lock().unwrap_or_else(|e| e.into_inner()).len() >= SPARES {
            return false;
        }
        let Ok(file) = OpenOptions::new().write(true).open(path) else {
            return false;
        };
        let spare = self.root.join("spare").join(id);
        if fs::rename(path, &spare).is_err() {
            return false;
        }
        if file.set_len(0).is_ok() {
            self.spares
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(number);
        } else {
            let _ = fs::remove_file(&spare);
        }
        true
    }

    /// Notes a change for the next barrier: an append to `id`, or (`None`)
    /// a change of `queue/` itself. Called after the change is made, so a
    /// barrier that takes the note covers the change.
    fn mark(&self, id: Option<&str>) {
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        match id {
            Some(id) => {
                dirty.files.insert(id.to_string());
            }
            None => dirty.dir = true,
        }
    }

    /// Makes every change so far durable: an `fdatasync(2)` of the one
    /// message file when that is all that changed, else one `syncfs(2)` of
    /// the spool's file system, which covers every file written and renamed
    /// (the group commit). A no-op with `fsync = no`.
    ///
    /// # Errors
    /// The file system reported a write-back error: nothing in the batch
    /// may be acknowledged.
    pub(super) fn barrier(&self) -> Result<(), SpoolError> {
        let queue = self.root.join("queue");
        check(&self.faults, SpoolOp::Barrier, &queue)?;
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        if !self.fsync {
            return Ok(());
        }
        match dirty.plan() {
            SyncPlan::Nothing => return Ok(()),
            SyncPlan::File(id) => {
                let path = self.queue_path(&id);
                return match File::open(&path) {
                    Ok(file) => {
                        rustix::fs::fdatasync(&file).map_err(|e| io_err("sync", &path)(e.into()))
                    }
                    // Removed meanwhile: that removal's own note comes next.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io_err("open", &path)(e)),
                };
            }
            SyncPlan::FileSystem => {}
        }
        let dir = File::open(&queue).map_err(io_err("open", &queue))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_err("sync the file system of", &queue)(e.into()))
    }

    /// Moves a message file that failed its checks to `corrupt/`.
    pub(super) fn quarantine(&self, id: &str, why: &str) -> PathBuf {
        let dest = self.root.join("corrupt").join(id);
        let _ = fs::rename(self.queue_path(id), &dest);
        log::error!(
            "id={id} moved to {}: {why}; inspect it, then delete it",
            dest.display()
        );
        dest
    }

    /// Reads the current envelope of `id`: the last record that passes its
    /// CRC (a torn last record falls back to the one before it). No side
    /// effects, so the queue tools may call it beside a running daemon.
    ///
    /// # Errors
    /// Missing, unreadable, or no valid record.
    pub fn load(&self, id: &str) -> Result<Envelope, SpoolError> {
        let path = self.queue_path(id);
        let mut file = File::open(&path).map_err(io_err("open", &path))?;
        let len = file.metadata().map_err(io_err("stat", &path))?.len();
        let corrupt = |why: String| SpoolError::Corrupt {
            path: path.clone(),
            why,
        };
        let env = match last_record(&mut file, len) {
            Ok(env) => env,
            Err(_) => scan_back(&mut file, len).map_err(corrupt)?,
        };
        if env.id != id {
            return Err(corrupt("envelope id does not match the file name".into()));
        }
        Ok(env)
    }

    /// Opens the content of a message for reading (exactly `env.size`
    /// octets, the records after it excluded).
    ///
    /// # Errors
    /// It is missing or unreadable.
    pub fn open_content(&self, env: &Envelope) -> Result<io::Take<File>, SpoolError> {
        let path = self.queue_path(&env.id);
        let file = File::open(&path).map_err(io_err("open", &path))?;
        Ok(file.take(env.size))
    }

    /// Checks the content of a message against its CRC (startup recovery).
    ///
    /// # Errors
    /// Unreadable, or the content does not match.
    pub fn verify_content(&self, env: &Envelope) -> Result<(), SpoolError> {
        let path = self.queue_path(&env.id);
        let mut content = self.open_content(env)?;
        let mut crc = Crc32::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = 0u64;
        loop {
            let n = content.read(&mut buf).map_err(io_err("read", &path))?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            seen += n as u64;
        }
        if seen != env.size || crc.value() != env.content_crc {
            return Err(SpoolError::Corrupt {
                path,
                why: "content does not match its checksum (torn by a crash before its commit)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Empties `tmp/` (startup: what is there was never committed) and
    /// takes stock of `spare/`: the files there are kept for reuse, emptied
    /// if a crash came between a removal's rename and its truncation.
    ///
    /// # Errors
    /// A directory could not be read.
    pub(super) fn prepare_at_startup(&self) -> Result<(), SpoolError> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp)
            .map_err(io_err("read directory", &tmp))?
            .flatten()
        {
            let _ = fs::remove_file(entry.path());
        }
        let spare_dir = self.root.join("spare");
        let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        spares.clear();
        for entry in fs::read_dir(&spare_dir)
            .map_err(io_err("read directory", &spare_dir))?
            .flatten()
        {
            let path = entry.path();
            let number = entry
                .file_name()
                .to_str()
                .filter(|name| Spool::is_valid_id(name))
                .and_then(|name| u64::from_str_radix(name, 16).ok());
            // Opened only when a crash left content: a stat per file.
            let empty = || match entry.metadata()?.len() {
                0 => io::Result::Ok(()),
                _ => OpenOptions::new().write(true).open(&path)?.set_len(0),
            };
            match number {
                Some(n) if spares.len() < SPARES && empty().is_ok() => spares.push(n),
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(())
    }

    /// The size of a message file, 0 when it is gone.
    pub fn file_size(&self, id: &str) -> u64 {
        fs::metadata(self.queue_path(id))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The ids present in `queue/`, sorted.
    ///
    /// # Errors
    /// The directory could not be read.
    pub fn ids(&self) -> Result<Vec<String>, SpoolError> {
        let queue = self.root.join("queue");
        let mut ids: Vec<String> = fs::read_dir(&queue)
            .map_err(io_err("read directory", &queue))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| Spool::is_valid_id(name))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// The record the trailer at the very end of the file points to.
fn last_record(file: &mut File, len: u64) -> Result<Envelope, String> {
    let tail_len = len.min(MAX_TRAILER as u64 + 1);
    let tail = read_range(file, len - tail_len, tail_len)?;
    let body_end_in_tail = tail
        .strip_suffix(b"\n")
        .and_then(|t| t.iter().rposition(|&b| b == b'\n'))
        .ok_or("no trailer at the end")?;
    let trailer = &tail[body_end_in_tail + 1..tail.len() - 1];
    let (at, crc) = parse_trailer(trailer).ok_or("malformed trailer")?;
    let body_end = len - tail_len + body_end_in_tail as u64 + 1;
    if at >= body_end {
        return Err("trailer points past itself".into());
    }
    let body = read_range(file, at, body_end - at)?;
    decode_record(&body, crc)
}

/// After a torn append: the newest record, searched backwards from the
/// end, whose trailer and CRC check out.
fn scan_back(file: &mut File, len: u64) -> Result<Envelope, String> {
    let start = len.saturating_sub(SCAN_WINDOW);
    let window = read_range(file, start, len - start)?;
    let mut end = window.len();
    while let Some(nl_at) = window[..end].windows(2).rposition(|w| w == b"\n@") {
        let line_start = nl_at + 1;
        let line_end = match window[line_start..].iter().position(|&b| b == b'\n') {
            Some(i) => line_start + i,
            None => {
                end = nl_at;
                continue;
            }
        };
        if let Some((at, crc)) = parse_trailer(&window[line_start..line_end])
            && at >= start
            && at < start + line_start as u64
        {
            let body = &window[(at - start) as usize..line_start];
            if let Ok(env) = decode_record(body, crc) {
                return Ok(env);
            }
        }
        end = nl_at;
    }
    Err("no valid envelope record".into())
}

fn read_range(file: &mut File, at: u64, len: u64) -> Result<Vec<u8>, String> {
    let len = usize::try_from(len).map_err(|_| "record too large".to_string())?;
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(at))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| format!("read: {e}"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::codec::tests::sample;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("detad-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn committed(spool: &Spool, content: &[u8]) -> Envelope {
        let mut env = sample();
        env.id = spool.new_id(0x1234);
        let mut w = spool.create_content(&env.id).unwrap();
        w.write(content).unwrap();
        let file = w.finish().unwrap();
        env.size = file.len;
        env.content_crc = file.crc;
        spool.commit(file, &env).unwrap();
        spool.barrier().unwrap();
        env
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_removed_messages_file_is_emptied_and_taken_by_the_next_message() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp("recycle");
        let spool = Spool::open(&dir, false).unwrap();
        let first = committed(&spool, b"Subject: first\r\n\r\nsecret\r\n");
        let inode = fs::metadata(spool.queue_path(&first.id)).unwrap().ino();
        spool.remove(&first.id).unwrap();
        assert!(names_in(&dir.join("queue")).is_empty());
        assert_eq!(
            names_in(&dir.join("spare")),
            std::slice::from_ref(&first.id)
        );
        let spare = dir.join("spare").join(&first.id);
        assert_eq!(
            fs::metadata(&spare).unwrap().len(),
            0,
            "content left behind"
        );
        let second = committed(&spool, b"Subject: second\r\n\r\nhi\r\n");
        assert!(names_in(&dir.join("spare")).is_empty());
        let meta = fs::metadata(spool.queue_path(&second.id)).unwrap();
        assert_eq!(meta.ino(), inode, "a new inode was made");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(spool.load(&second.id).unwrap(), second);
        spool.verify_content(&second).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spare_keeps_at_most_its_bound_and_a_crash_leftover_is_emptied_at_startup() {
        let dir = temp("spares");
        let spool = Spool::open(&dir, false).unwrap();
        let ids: Vec<String> = (0..=SPARES)
            .map(|_| committed(&spool, b"x\r\n").id)
            .collect();
        for id in &ids {
            spool.remove(id).unwrap();
        }
        assert_eq!(names_in(&dir.join("spare")).len(), SPARES);
        assert!(names_in(&dir.join("queue")).is_empty());
        // A crash between a removal's rename and its truncation, and a
        // file that is none of ours.
        let leftover = dir.join("spare").join(&ids[0]);
        fs::write(&leftover, b"old content").unwrap();
        fs::write(dir.join("spare").join("stray"), b"?").unwrap();
        let spool = Spool::open(&dir, false).unwrap();
        spool.prepare_at_startup().unwrap();
        assert_eq!(fs::metadata(&leftover).unwrap().len(), 0);
        assert!(!dir.join("spare").join("stray").exists());
        let env = committed(&spool, b"new\r\n");
        assert_eq!(spool.load(&env.id).unwrap(), env);
        spool.verify_content(&env).unwrap();
        assert_eq!(names_in(&dir.join("spare")).len(), SPARES - 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_our_own_ids_are_valid() {
        assert!(Spool::is_valid_id("6618B38340047000"));
        for bad in [
            "",
            "6618b38340047000",
            "../../etc/passwd",
            "6618B3834004700",
        ] {
            assert!(!Spool::is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_committed_message_reads_back_with_its_content() {
        let dir = temp("commit");
        let spool = Spool::open(&dir, false).unwrap();
        let env = committed(&spool, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(spool.load(&env.id).unwrap(), env);
        let mut text = String::new();
        spool
            .open_content(&env)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "Subject: x\r\n\r\nhello\r\n");
        spool.verify_content(&env).unwrap();
        assert!(fs::read_dir(dir.join("tmp")).unwrap().next().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_newest_state_wins_and_a_torn_one_falls_back() {
        let dir = temp("append");
        let spool = Spool::open(&dir, false).unwrap();
        let mut env = committed(&spool, b"body\r\n");
        env.attempts = 7;
        spool.append(&env).unwrap();
        assert_eq!(spool.load(&env.id).unwrap().attempts, 7);
        // A power cut in the middle of the next append.
        let mut newer = env.clone();
        newer.attempts = 8;
        let record = encode_record(&newer, spool.file_size(&env.id));
        let mut f = OpenOptions::new()
            .append(true)
            .open(spool.queue_path(&env.id))
            .unwrap();
        f.write_all(&record[..record.len() / 2]).unwrap();
        drop(f);
        assert_eq!(spool.load(&env.id).unwrap().attempts, 7);
        // The next append after the torn one is found again.
        newer.attempts = 9;
        spool.append(&newer).unwrap();
        assert_eq!(spool.load(&env.id).unwrap().attempts, 9);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_content_fails_verification() {
        let dir = temp("torn");
        let spool = Spool::open(&dir, false).unwrap();
        let env = committed(&spool, b"aaaaaaaa\r\n");
        let mut bytes = fs::read(spool.queue_path(&env.id)).unwrap();
        bytes[2] = 0;
        fs::write(spool.queue_path(&env.id), &bytes).unwrap();
        assert!(spool.load(&env.id).is_ok(), "the record itself is intact");
        assert!(matches!(
            spool.verify_content(&env),
            Err(SpoolError::Corrupt { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_uncommitted_content_file_is_removed_when_dropped() {
        let dir = temp("drop");
        let spool = Spool::open(&dir, false).unwrap();
        let mut w = spool.create_content("0000000000000001").unwrap();
        w.write(b"x").unwrap();
        let file = w.finish().unwrap();
        drop(file);
        assert!(fs::read_dir(dir.join("tmp")).unwrap().next().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_barrier_syncs_one_appended_file_alone_and_anything_more_with_syncfs() {
        let dirty = |files: &[&str], dir| Dirty {
            files: files.iter().map(|f| f.to_string()).collect(),
            dir,
        };
        assert_eq!(dirty(&[], false).plan(), SyncPlan::Nothing);
        assert_eq!(dirty(&["A"], false).plan(), SyncPlan::File("A".into()));
        assert_eq!(dirty(&["A", "B"], false).plan(), SyncPlan::FileSystem);
        assert_eq!(dirty(&["A"], true).plan(), SyncPlan::FileSystem);
        assert_eq!(dirty(&[], true).plan(), SyncPlan::FileSystem);
        // What a change notes, the next barrier takes.
        let root = temp("dirty");
        let spool = Spool::open(&root, true).unwrap();
        let env = committed(&spool, b"x\r\n");
        spool.barrier().unwrap();
        spool.append(&env).unwrap();
        let taken = std::mem::take(&mut *spool.dirty.lock().unwrap());
        assert_eq!(taken.plan(), SyncPlan::File(env.id.clone()));
        spool.remove(&env.id).unwrap();
        assert!(spool.dirty.lock().unwrap().dir);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn spool_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("modes");
        let spool = Spool::open(&dir, false).unwrap();
        let env = committed(&spool, b"x\r\n");
        for d in ["", "tmp", "queue", "corrupt"] {
            let mode = fs::metadata(dir.join(d)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{d}");
        }
        let mode = fs::metadata(spool.queue_path(&env.id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
