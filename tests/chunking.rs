//! CHUNKING (RFC 3030) through the whole server: counted chunks, pipelined,
//! never taken for commands, judged like DATA, and RDLV on the last one.

mod support;

use support::{Server, TempDir, config, wait_for_mail};

fn maildir_server(dir: &TempDir, extra: &str) -> Server {
    Server::start(config(
        dir,
        &format!("route = * maildir:{{dir}}/maildir\n{extra}"),
    ))
}

#[test]
fn pipelined_chunks_arrive_byte_exact_with_dots_untouched() {
    let dir = TempDir::new("bdat");
    let server = maildir_server(&dir, "");
    let mut c = server.ehlo();
    let one = "Subject: chunks\r\n\r\n.leading dot stays\r\n.\r\n";
    let two = "MAIL FROM:<not-a-command@x.test>\r\nlast line without its CRLF";
    // MAIL, RCPT and both chunks in one write (RFC 3030 §4.2 pipelining).
    c.send_raw(
        format!(
            "MAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.com>\r\nBDAT {}\r\n{one}BDAT {} LAST\r\n{two}",
            one.len(),
            two.len()
        )
        .as_bytes(),
    );
    c.expect(250, "2.1.0");
    c.expect(250, "2.1.5");
    c.expect(250, &format!("2.0.0 {} octets received", one.len()));
    c.expect(250, "2.0.0 queued as");
    c.quit();
    let mail = wait_for_mail(&dir.join("maildir"), "bob", 1).remove(0);
    let body = mail
        .split_once("Subject: chunks\n\n")
        .expect("our header")
        .1;
    assert_eq!(
        body,
        ".leading dot stays\n.\nMAIL FROM:<not-a-command@x.test>\nlast line without its CRLF\n"
    );
    server.stop();
}

#[test]
fn the_octets_of_a_refused_bdat_are_never_run_as_commands() {
    let dir = TempDir::new("bdat-refused");
    let server = maildir_server(&dir, "");
    let mut c = server.ehlo();
    let smuggled = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<bob@example.com>\r\n";
    c.send_raw(format!("BDAT {} LAST\r\n{smuggled}", smuggled.len()).as_bytes());
    c.expect(503, "5.5.1");
    // Had the chunk run as commands, this RCPT would be accepted.
    c.command("RCPT TO:<bob@example.com>", 503);
    c.quit();
    server.stop();
}

#[test]
fn a_bare_lf_fails_the_transaction_and_later_chunks_are_discarded() {
    let dir = TempDir::new("bdat-lf");
    let server = maildir_server(&dir, "");
    let mut c = server.ehlo();
    c.mail_rcpt("<a@client.test>", &["<bob@example.com>"]);
    let bad = "Subject: x\n\nbare LF\r\n";
    let rest = "RCPT TO:<eve@example.com>\r\n";
    c.send_raw(
        format!(
            "BDAT {}\r\n{bad}BDAT {} LAST\r\n{rest}",
            bad.len(),
            rest.len()
        )
        .as_bytes(),
    );
    c.expect(550, "5.6.0");
    c.expect(503, "5.5.1");
    c.command("NOOP", 250);
    assert!(support::queue(&dir.spool()).is_empty());
    c.quit();
    server.stop();
}

#[test]
fn a_message_over_the_size_limit_is_refused_at_the_last_chunk() {
    let dir = TempDir::new("bdat-size");
    let server = maildir_server(&dir, "max_message_size = 64K\n");
    let mut c = server.ehlo();
    c.mail_rcpt("<a@client.test>", &["<bob@example.com>"]);
    let line = "x".repeat(70) + "\r\n";
    let chunk = line.repeat(1000);
    c.send_raw(format!("BDAT {} LAST\r\n{chunk}", chunk.len()).as_bytes());
    c.expect(552, "5.3.4");
    assert!(support::queue(&dir.spool()).is_empty());
    c.quit();
    server.stop();
}

#[test]
fn rdlv_holds_the_reply_to_the_last_chunk() {
    let dir = TempDir::new("bdat-rdlv");
    let server = Server::start(config(
        &dir,
        &format!("rdlv_mintimer = 1\n{}", support::gated_pipe_route("*")),
    ));
    let mut c = server.ehlo();
    c.mail_rcpt("<a@client.test>", &["<bob@example.com>"]);
    c.command("RDLV maxtimer=1", 200);
    let body = "Subject: held\r\n\r\nx\r\n";
    c.send_raw(format!("BDAT {} LAST\r\n{body}", body.len()).as_bytes());
    c.expect(120, "gw.test");
    support::open_gate(&dir);
    c.send("CONT");
    let (_, last) = c.cont_until_final();
    assert_eq!(last.code, 250, "{last}");
    c.quit();
    server.stop();
}
