//! Alias expansion (`aliases = FILE`): local recipients are replaced by
//! their targets when a message is committed, before anything is routed,
//! as Postfix's cleanup/local and OpenSMTPD's lookup do.
//!
//! - Local means at our own host name, at `localhost`, or without a domain.
//! - Targets are looked up again (`postmaster: root`, `root: admin@…`), with
//!   loop detection: a name met again on its own chain is delivered as it
//!   is (`root: root, admin` keeps a copy in root's mailbox), and the depth
//!   is bounded.
//! - The expansion is recorded in the spool: every target remembers the
//!   address the client gave as its ORCPT (RFC 3461 §4.2), unless the
//!   client gave one, so a DSN names the original recipient; NOTIFY is
//!   inherited.
//! - Duplicates among the results are dropped; a message never grows
//!   beyond [`MAX_EXPANDED`] recipients.

use std::collections::HashSet;

use super::envelope::{Orcpt, Recipient, domain_of};
use crate::config::{Aliases, Config};

/// The longest chain of names followed.
const MAX_DEPTH: usize = 16;
/// The most recipients a message may have after expansion.
pub const MAX_EXPANDED: usize = 10_000;

/// Whether `address` is at our own host: no domain, our host name, or
/// `localhost`.
pub fn is_local(config: &Config, address: &str) -> bool {
    let domain = domain_of(address);
    domain.is_empty() || domain.eq_ignore_ascii_case(&config.hostname) || domain == "localhost"
}

/// The local part of an address.
fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(l, _)| l)
}

/// Expands the local recipients that have aliases; returns the new list
/// and one line per expanded recipient for the log.
pub fn expand(config: &Config, recipients: Vec<Recipient>) -> (Vec<Recipient>, Vec<String>) {
    let Some(aliases) = config.aliases.as_ref() else {
        return (recipients, Vec::new());
    };
    let mut out: Vec<Recipient> = Vec::with_capacity(recipients.len());
    let mut seen: HashSet<String> = HashSet::new();
    let mut log = Vec::new();
    for r in recipients {
        if !is_local(config, &r.address) || aliases.get(local_part(&r.address)).is_none() {
            if seen.insert(r.address.to_ascii_lowercase()) {
                out.push(r);
            }
            continue;
        }
        let mut targets = Vec::new();
        let mut chain = Vec::new();
        walk(config, aliases, &r.address, &mut chain, &mut targets);
        log.push(format!("<{}> -> {}", r.address, targets.join(", ")));
        let orcpt = r.orcpt.clone().or_else(|| {
            Some(Orcpt {
                addr_type: "rfc822".into(),
                address: r.address.clone(),
            })
        });
        for target in targets {
            if out.len() >= MAX_EXPANDED {
                break;
            }
            if seen.insert(target.to_ascii_lowercase()) {
                out.push(Recipient::new(target, r.notify, orcpt.clone()));
            }
        }
    }
    (out, log)
}

/// Follows `address` through the aliases into `targets` (qualified).
fn walk(
    config: &Config,
    aliases: &Aliases,
    address: &str,
    chain: &mut Vec<String>,
    targets: &mut Vec<String>,
) {
    let name = local_part(address).to_ascii_lowercase();
    let expandable = is_local(config, address)
        && chain.len() < MAX_DEPTH
        && !chain.contains(&name)
        && aliases.get(&name).is_some();
    if !expandable {
        let qualified = match address.contains('@') {
            true => address.to_string(),
            false => format!("{address}@{}", config.hostname),
        };
        targets.push(qualified);
        return;
    }
    chain.push(name.clone());
    for target in aliases.get(&name).unwrap_or_default() {
        walk(config, aliases, target, chain, targets);
    }
    chain.pop();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(aliases: &str) -> Config {
        Config {
            hostname: "gw.test".into(),
            aliases: Some(Aliases::parse(aliases).unwrap()),
            ..Config::default()
        }
    }

    fn addresses(list: &[Recipient]) -> Vec<&str> {
        list.iter().map(|r| r.address.as_str()).collect()
    }

    #[test]
    fn local_names_expand_through_chains_and_remember_the_original() {
        let c = config("postmaster: root\nroot: admin@example.com, ops\nops: alice\n");
        let input = vec![
            Recipient::new("postmaster@gw.test".into(), None, None),
            Recipient::new("bob@elsewhere.test".into(), None, None),
        ];
        let (out, log) = expand(&c, input);
        assert_eq!(
            addresses(&out),
            ["admin@example.com", "alice@gw.test", "bob@elsewhere.test"]
        );
        assert_eq!(out[0].orcpt.as_ref().unwrap().address, "postmaster@gw.test");
        assert_eq!(out[2].orcpt, None);
        assert_eq!(
            log,
            ["<postmaster@gw.test> -> admin@example.com, alice@gw.test"]
        );
    }

    #[test]
    fn a_loop_delivers_the_name_itself_and_never_spins() {
        let c = config("root: root, admin\na: b\nb: a\n");
        let (out, _) = expand(&c, vec![Recipient::new("root".into(), None, None)]);
        assert_eq!(addresses(&out), ["root@gw.test", "admin@gw.test"]);
        let (out, _) = expand(&c, vec![Recipient::new("a@gw.test".into(), None, None)]);
        assert_eq!(addresses(&out), ["a@gw.test"]);
    }

    #[test]
    fn only_our_own_host_is_looked_up_and_duplicates_go() {
        let c = config("root: admin\n");
        let input = vec![
            Recipient::new("root@other.test".into(), None, None),
            Recipient::new("ROOT@GW.TEST".into(), None, None),
            Recipient::new("admin@gw.test".into(), None, None),
        ];
        let (out, _) = expand(&c, input);
        assert_eq!(addresses(&out), ["root@other.test", "admin@gw.test"]);
    }
}
