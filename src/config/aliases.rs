//! The aliases file (`aliases = FILE`), in the `/etc/aliases` form that
//! Postfix, OpenSMTPD and sendmail read:
//!
//! ```text
//! # comment
//! root: admin@example.com, ops
//! postmaster: root
//! ops: alice,
//!      bob@example.net          <- a line starting with white space continues
//! ```
//!
//! A name is a local part of our own host name (case-insensitive); a target
//! is a local name (then an address at our host name, itself looked up
//! again) or an address. `:include:`, `|command` and `/file` targets are
//! refused with a message: mail for a program goes through a `pipe:` route,
//! under the same unprivileged rules as any other.

use std::collections::HashMap;
use std::path::Path;

/// At most this many names (the file is read into memory).
const MAX_NAMES: usize = 10_000;
/// At most this many targets per name.
const MAX_TARGETS: usize = 1_000;

/// The parsed file: lower-cased name -> its targets, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    map: HashMap<String, Vec<String>>,
    /// The file it was read from (empty when parsed from text).
    pub path: std::path::PathBuf,
}

impl Aliases {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// The file cannot be read, or a line is malformed (named with its
    /// number).
    pub fn load(path: &Path) -> Result<Aliases, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut aliases = Aliases::parse(&text).map_err(|e| format!("{}:{e}", path.display()))?;
        aliases.path = path.to_path_buf();
        Ok(aliases)
    }

    /// Parses the text of an aliases file.
    ///
    /// # Errors
    /// `LINE: what is wrong`.
    pub fn parse(text: &str) -> Result<Aliases, String> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let mut current: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let continued = line.starts_with([' ', '\t']);
            let rest = if continued {
                let Some((_, name)) = &current else {
                    return Err(format!("{n}: a continuation line with no name before it"));
                };
                (name.clone(), line.trim())
            } else {
                let Some((name, targets)) = line.split_once(':') else {
                    return Err(format!("{n}: expected `name: target, ...`"));
                };
                let name = name.trim().to_ascii_lowercase();
                check_name(&name).map_err(|e| format!("{n}: {e}"))?;
                if map.contains_key(&name) {
                    return Err(format!("{n}: `{name}` is listed twice"));
                }
                if map.len() >= MAX_NAMES {
                    return Err(format!("{n}: more than {MAX_NAMES} names"));
                }
                map.insert(name.clone(), Vec::new());
                current = Some((n, name.clone()));
                (name, targets.trim())
            };
            let (name, targets) = rest;
            let list = map.get_mut(&name).expect("inserted above");
            for target in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                check_target(target).map_err(|e| format!("{n}: {e}"))?;
                if list.len() >= MAX_TARGETS {
                    return Err(format!("{n}: more than {MAX_TARGETS} targets for `{name}`"));
                }
                list.push(target.to_string());
            }
        }
        if let Some((name, _)) = map.iter().find(|(_, t)| t.is_empty()) {
            return Err(format!(" `{name}` has no target"));
        }
        Ok(Aliases {
            map,
            path: std::path::PathBuf::new(),
        })
    }

    /// The targets of `name` (a local part, any case).
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.map.get(&name.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// How many names the file has.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file has no names.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.contains(['@', '"', ' ', '\t', ','])
        && !name.bytes().any(|b| b < 32 || b == 127);
    match ok {
        true => Ok(()),
        false => Err(format!("`{name}` is not a name (a local part without @)")),
    }
}

fn check_target(target: &str) -> Result<(), String> {
    if target.starts_with(":include:") {
        return Err(format!(
            "`{target}`: :include: is not supported; list the addresses"
        ));
    }
    if target.starts_with('|') {
        return Err(format!(
            "`{target}`: program targets are not supported; route the address to a pipe: transport"
        ));
    }
    if target.starts_with('/') {
        return Err(format!("`{target}`: file targets are not supported"));
    }
    let ok = target.len() <= 254
        && !target.contains([' ', '\t', '<', '>', '"'])
        && !target.starts_with('@')
        && !target.ends_with('@')
        && target.matches('@').count() <= 1;
    match ok {
        true => Ok(()),
        false => Err(format!("`{target}` is not an address or a local name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_targets_comments_and_continuations() {
        let a = Aliases::parse(
            "# who reads root's mail\nRoot: admin@example.com, ops\nops: alice,\n  bob@example.net\n\npostmaster: root\n",
        )
        .unwrap();
        assert_eq!(a.get("ROOT").unwrap(), ["admin@example.com", "ops"]);
        assert_eq!(a.get("ops").unwrap(), ["alice", "bob@example.net"]);
        assert_eq!(a.get("postmaster").unwrap(), ["root"]);
        assert_eq!(a.get("nobody"), None);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_its_line() {
        for (text, want) in [
            ("root admin\n", "1: expected"),
            ("root: :include:/etc/list\n", ":include:"),
            ("root: |/usr/bin/procmail\n", "pipe: transport"),
            ("root: /var/mail/root\n", "file targets"),
            ("root: a\nroot: b\n", "2: `root` is listed twice"),
            ("  a@b\n", "1: a continuation"),
            ("root:\n", "has no target"),
            ("a@b: c\n", "not a name"),
            ("root: <a@b>\n", "not an address"),
        ] {
            let err = Aliases::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
