//! At home on a gateway (issue 14): aliases for root and postmaster, and a
//! quoted local part that is the same mailbox as the bare one.

mod support;

use std::fs;

use support::{Server, TempDir, config, message, wait_for_mail};

#[test]
fn mail_for_root_reaches_the_people_the_aliases_name() {
    let dir = TempDir::new("aliases");
    fs::write(
        dir.join("aliases"),
        "# who reads root's mail\npostmaster: root\nroot: admin@example.com, ops\nops: alice,\n  root\n",
    )
    .unwrap();
    // Our own host name has no route of its own: the aliases make root ours.
    let server = Server::start(config(
        &dir,
        "aliases = {dir}/aliases\nroute = example.com maildir:{dir}/maildir\n\
         route = gw.test maildir:{dir}/local\n",
    ));
    let mut c = server.ehlo();
    let r = c.mail(
        "watchdog@gw.test",
        &["root@gw.test", "postmaster"],
        &message("disk full", "the disk is full"),
    );
    assert_eq!(r.code, 250, "{r}");
    c.quit();
    // root -> admin@example.com, ops -> alice + root (a loop: root itself).
    let admin = wait_for_mail(&dir.join("maildir"), "admin", 1);
    assert!(admin[0].contains("Subject: disk full"));
    wait_for_mail(&dir.join("local"), "alice", 1);
    wait_for_mail(&dir.join("local"), "root", 1);
    server.stop();
}

#[test]
fn a_dsn_for_an_aliased_recipient_names_the_original_one() {
    let dir = TempDir::new("aliases-dsn");
    fs::write(dir.join("aliases"), "root: admin@example.com\n").unwrap();
    let server = Server::start(config(
        &dir,
        "aliases = {dir}/aliases\nroute = * maildir:{dir}/maildir\n",
    ));
    let mut c = server.ehlo();
    c.mail_rcpt("<watchdog@example.com>", &["<root@gw.test> NOTIFY=SUCCESS"]);
    c.command("DATA", 354);
    c.send_content(&message("report", "x"));
    c.expect(250, "2.0.0");
    c.quit();
    wait_for_mail(&dir.join("maildir"), "admin", 1);
    let dsn = wait_for_mail(&dir.join("maildir"), "watchdog", 1).remove(0);
    assert!(
        dsn.contains("Original-Recipient: rfc822;root@gw.test"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822;admin@example.com"),
        "{dsn}"
    );
    server.stop();
}

#[test]
fn a_quoted_local_part_lands_in_the_bare_mailbox() {
    let dir = TempDir::new("quoted");
    let server = Server::start(config(&dir, "route = * maildir:{dir}/maildir\n"));
    let mut c = server.ehlo();
    let r = c.mail(
        "a@client.test",
        &["\"bob\"@example.com"],
        &message("quoted", "x"),
    );
    assert_eq!(r.code, 250, "{r}");
    c.quit();
    wait_for_mail(&dir.join("maildir"), "bob", 1);
    assert!(!dir.join("maildir").join("\"bob\"").exists());
    server.stop();
}
