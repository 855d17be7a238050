//! Delivery into a Maildir (the qmail convention, as Dovecot and Postfix's
//! virtual(8) expect): write into `tmp/` under a unique name, fsync, rename
//! into `new/`, fsync `new/`. The file gets LF line ends, as every Maildir
//! reader expects (the spool keeps CRLF for SMTP), and a `Return-Path` and
//! `Delivered-To` header. A `tmp/` file that is not finished is removed at
//! once; ones a crash left behind are removed at startup
//! ([`clean_stale_tmp`]).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::queue::delivery::Delivery;
use crate::smtp::status::EnhancedStatus;

/// The Maildir convention: a `tmp/` file untouched for 36 hours is stale.
const STALE_TMP: Duration = Duration::from_secs(36 * 3600);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The Maildir folder a local part names, if it can name one safely. A
/// quoted local part is the same mailbox as its unquoted content (RFC 5321
/// §4.1.2: `"bob"` and `bob` are the same local part), so the quotes and
/// backslash escapes never become part of a folder name.
pub fn mailbox_name(local: &str) -> Option<String> {
    let name = match local.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        Some(quoted) => {
            let mut out = String::with_capacity(quoted.len());
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                // quoted-pairSMTP = %d92 %d32-126 (RFC 5321 §4.1.2).
                out.push(if c == '\\' { chars.next()? } else { c });
            }
            out
        }
        None => local.to_string(),
    };
    is_safe_local_part(&name).then_some(name)
}

/// Whether a local part can name a Maildir folder safely: no `/`, no leading
/// `.`, no `..`, no control characters, not empty, at most 64 octets.
///
/// A UTF-8 local part (RFC 6531) names its folder as it is: non-ASCII
/// characters are fine, control characters are not, C1 (U+0080..U+009F)
/// included; a `&str` is valid UTF-8 by construction, so no folder name
/// is a broken sequence. The name is the address's octets: no Unicode
/// normalization and no case folding, so two spellings of one name are
/// two folders (RFC 6530 leaves the mailbox's identity to its owner).
pub fn is_safe_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.contains("..")
        && !local.contains('/')
        && !local.chars().any(char::is_control)
}

/// This host's name as it goes into Maildir file names (`/` and `:`
/// cannot stand there); read once.
fn host_part() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| crate::config::kernel_hostname().replace(['/', ':'], "_"))
}

/// A unique name: time, microseconds, our pid and a sequence number.
fn unique_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        host_part()
    )
}

/// Turns the spool's CRLF into LF while copying: the content has no bare
/// CR (the DATA decoder refused those), so a CR is always a CRLF's.
fn copy_as_lf(content: &mut dyn Read, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut lf = Vec::with_capacity(buf.len());
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lf.clear();
        lf.extend(buf[..n].iter().copied().filter(|&b| b != b'\r'));
        out.write_all(&lf)?;
    }
}

/// Delivers `content` (CRLF) into the Maildir folder `folder` (created if
/// missing, mode 0700), after `Return-Path` and `Delivered-To`.
pub fn deliver(
    folder: &Path,
    reverse_path: &str,
    recipient: &str,
    content: &mut dyn Read,
    fsync: bool,
) -> Delivery {
    match write_message(folder, reverse_path, recipient, content, fsync) {
        Ok(_) => Delivery::delivered(),
        Err(e) => {
            let status = match e.raw_os_error() {
                // ENOSPC, EDQUOT: "mailbox full" (RFC 3463 X.2.2), retried.
                Some(28) | Some(122) => EnhancedStatus::of(4, 2, 2),
                _ => EnhancedStatus::of(4, 3, 0),
            };
            Delivery::deferred(
                status,
                format!("cannot deliver into {}: {e}", folder.display()),
            )
        }
    }
}

/// Writes one message into `folder`; returns its path in `new/`.
///
/// # Errors
/// Any step failed; the `tmp/` file is gone.
pub fn write_message(
    folder: &Path,
    reverse_path: &str,
    recipient: &str,
    content: &mut dyn Read,
    fsync: bool,
) -> io::Result<PathBuf> {
    for sub in ["tmp", "new", "cur"] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder.join(sub))?;
    }
    let name = unique_name();
    let tmp = folder.join("tmp").join(&name);
    let dest = folder.join("new").join(&name);
    let result = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut file = BufWriter::new(file);
        write!(
            file,
            "Return-Path: <{reverse_path}>\nDelivered-To: {recipient}\n"
        )?;
        copy_as_lf(content, &mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        if fsync {
            file.sync_all()?;
        }
        fs::rename(&tmp, &dest)?;
        if fsync {
            File::open(folder.join("new"))?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| dest)
}

/// Whether `name` is a `tmp/` name we make and its writer is gone: our
/// pattern, and a pid that is not running or not this process... as far
/// as we can tell on this host.
fn ours_and_abandoned(name: &str) -> bool {
    let Some(rest) = name.split_once(".M").map(|(_, r)| r) else {
        return false;
    };
    let Some((_, after_p)) = rest.split_once('P') else {
        return false;
    };
    let Some((pid, after_q)) = after_p.split_once('Q') else {
        return false;
    };
    let ours = after_q
        .split_once('.')
        .is_some_and(|(_, host)| host == host_part());
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    ours && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what crashes left in the `tmp/` folders of the Maildirs under
/// `root` (each `root/<folder>/tmp`, and `root/tmp` itself): files we
/// wrote whose writer is gone, and, per the Maildir convention, any file
/// older than 36 hours. Returns how many were removed.
pub fn clean_stale_tmp(root: &Path) -> usize {
    let mut tmps = vec![root.join("tmp")];
    if let Ok(entries) = fs::read_dir(root) {
        tmps.extend(entries.flatten().map(|e| e.path().join("tmp")));
    }
    let now = SystemTime::now();
    let mut removed = 0;
    for tmp in tmps {
        let Ok(entries) = fs::read_dir(&tmp) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP);
            if (old || ours_and_abandoned(&name)) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("detad-maildir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_quoted_local_part_names_the_same_folder_as_the_bare_one() {
        assert_eq!(mailbox_name("\"bob\"").as_deref(), Some("bob"));
        assert_eq!(mailbox_name("\"b\\ob\"").as_deref(), Some("bob"));
        assert_eq!(mailbox_name("bob").as_deref(), Some("bob"));
        assert_eq!(mailbox_name("\"john doe\"").as_deref(), Some("john doe"));
        for bad in ["\"../x\"", "\"a/b\"", "\".hidden\"", "\"\""] {
            assert_eq!(mailbox_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsafe_local_parts_are_refused() {
        for bad in ["", ".hidden", "a/b", "a..b", "a\u{1}b", ".."] {
            assert!(!is_safe_local_part(bad), "{bad:?}");
        }
        assert!(is_safe_local_part("jones"));
        assert!(is_safe_local_part("first.last+tag"));
    }

    #[test]
    fn utf8_local_parts_are_safe_under_the_same_rules() {
        for good in [
            "j\u{f6}s\u{e9}",
            "\u{7528}\u{6237}",
            "\u{1f600}.x",
            "a\u{a0}b",
        ] {
            assert!(is_safe_local_part(good), "{good:?}");
        }
        let long = "\u{e9}".repeat(33);
        for bad in [
            ".j\u{f6}s\u{e9}",
            "j\u{f6}/s",
            "j\u{f6}..s",
            "a\u{85}b",
            "a\u{9f}",
            "a\u{7f}",
            long.as_str(),
        ] {
            assert!(!is_safe_local_part(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_utf8_recipient_is_delivered_into_its_utf8_folder() {
        let dir = temp_dir("utf8");
        let body = "Subject: Gr\u{fc}\u{df}e\r\n\r\nh\u{e9}\r\n".as_bytes();
        let folder = dir.join("j\u{f6}s\u{e9}");
        let path = write_message(
            &folder,
            "\u{7528}@x",
            "j\u{f6}s\u{e9}@c",
            &mut &body[..],
            false,
        )
        .unwrap();
        assert!(path.starts_with(dir.join("j\u{f6}s\u{e9}/new")), "{path:?}");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "Return-Path: <\u{7528}@x>\nDelivered-To: j\u{f6}s\u{e9}@c\nSubject: Gr\u{fc}\u{df}e\n\nh\u{e9}\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn delivery_lands_in_new_with_lf_line_ends() {
        let dir = temp_dir("new");
        let body = b"Subject: hi\r\n\r\nbody\r\n.dot\r\n";
        let path = write_message(&dir.join("bob"), "a@b", "bob@c", &mut &body[..], true).unwrap();
        assert!(path.starts_with(dir.join("bob/new")));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "Return-Path: <a@b>\nDelivered-To: bob@c\nSubject: hi\n\nbody\n.dot\n"
        );
        assert_eq!(fs::read_dir(dir.join("bob/tmp")).unwrap().count(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "mail is private");
        assert_eq!(mode(&dir.join("bob/new")), 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_in_tmp() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let dir = temp_dir("fail");
        let d = deliver(&dir.join("bob"), "a@b", "bob@c", &mut Broken, false);
        assert_eq!(d.kind, crate::queue::delivery::DeliveryKind::Deferred);
        assert_eq!(fs::read_dir(dir.join("bob/tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_tmp_files_of_a_dead_writer_are_removed_others_kept() {
        let dir = temp_dir("stale");
        let tmp = dir.join("bob/tmp");
        fs::create_dir_all(&tmp).unwrap();
        // pid 0x7ffffffe is never a running process.
        let dead = format!("1.M1P2147483646Q0.{}", host_part());
        let alive_elsewhere = format!("1.M1P1Q0.{}", host_part());
        let foreign = "1700000000.12345.other-host";
        for name in [&dead, &alive_elsewhere, &foreign.to_string()] {
            fs::write(tmp.join(name), b"x").unwrap();
        }
        assert_eq!(clean_stale_tmp(&dir), 1);
        assert!(!tmp.join(&dead).exists());
        assert!(tmp.join(&alive_elsewhere).exists(), "pid 1 is running");
        assert!(tmp.join(foreign).exists(), "not ours and not old");
        fs::remove_dir_all(&dir).unwrap();
    }
}
