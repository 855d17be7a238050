//! Who runs `sendmail`: the name that becomes the default sender, and the
//! full name for a generated `From:`.

use rustix::process::getuid;

/// The user `sendmail` submits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name, a valid local part.
    pub name: String,
    /// The full name from the passwd GECOS field, if any.
    pub full_name: Option<String>,
    /// The real uid.
    pub uid: u32,
}

/// An /etc/passwd entry: name and the GECOS full name (its first
/// comma-separated part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The login name.
    pub name: String,
    /// The full name, when the GECOS field has one.
    pub full_name: Option<String>,
}

/// Finds the entry of `uid` (or, when `name` is given, of that name) in
/// passwd-format `text`.
pub fn find_entry(text: &str, uid: u32, name: Option<&str>) -> Option<PasswdEntry> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 5 {
            return None;
        }
        let matches = match name {
            Some(n) => f[0] == n,
            None => f[2].parse::<u32>().ok() == Some(uid),
        };
        matches.then(|| PasswdEntry {
            name: f[0].to_string(),
            full_name: f[4]
                .split(',')
                .next()
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string),
        })
    })
}

/// A login name usable as a local part: letters, digits, `.`, `_`, `-`
/// (`$` for Samba machine accounts is not one), not starting with `-`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Picks the user's name: `$USER`, then `$LOGNAME` (what msmtp and mailx
/// look at first: `su` keeps the caller's), then the passwd name of the
/// uid, then `uid<N>`; a name that is not a plain local part is skipped.
pub fn choose(uid: u32, env: &[Option<String>], passwd: &str) -> User {
    let by_uid = find_entry(passwd, uid, None);
    let from_env = env.iter().flatten().find(|n| is_plain_name(n)).cloned();
    let name = from_env
        .or_else(|| {
            by_uid
                .as_ref()
                .map(|e| e.name.clone())
                .filter(|n| is_plain_name(n))
        })
        .unwrap_or_else(|| format!("uid{uid}"));
    let full_name = find_entry(passwd, uid, Some(&name)).and_then(|e| e.full_name);
    User {
        name,
        full_name,
        uid,
    }
}

/// The user of this process.
pub fn current() -> User {
    let env = [std::env::var("USER").ok(), std::env::var("LOGNAME").ok()];
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    choose(getuid().as_raw(), &env, &passwd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          ops:x:1000:1000:Ops Team,Room 1,,:/home/ops:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

    #[test]
    fn env_names_come_first_then_the_uid_s_passwd_name() {
        let some = |s: &str| Some(s.to_string());
        let u = choose(1000, &[None, None], PASSWD);
        assert_eq!(u.name, "ops");
        assert_eq!(u.full_name.as_deref(), Some("Ops Team"));
        assert_eq!(choose(0, &[some("ops"), some("root")], PASSWD).name, "ops");
        assert_eq!(choose(0, &[None, some("root")], PASSWD).name, "root");
        // A name that is no local part is not used.
        assert_eq!(choose(0, &[some("a b"), None], PASSWD).name, "root");
        assert_eq!(choose(4242, &[None, None], PASSWD).name, "uid4242");
        assert_eq!(choose(4242, &[None, None], PASSWD).full_name, None);
    }
}
