//! The command parser: any line gives a command or a reply that refuses it;
//! a refusal is a legal reply line; a parsed command written back in
//! canonical form parses to the same command.
#![no_main]

use detad::smtp::address::Path;
use detad::smtp::command::{Command, MailParams, RcptParams, parse};
use detad::smtp::params::{BodyType, Ret};
use detad::smtp::{utf8_addr, xtext};
use detad_fuzz::assert_wire_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    match parse(line) {
        Err(reply) => {
            assert!(
                matches!(reply.code, 500 | 501 | 555),
                "undocumented code {reply:?}"
            );
            assert_wire_reply(&reply);
        }
        Ok(command) => {
            let canonical = render(&command);
            assert_eq!(
                parse(canonical.as_bytes()),
                Ok(command),
                "canonical form {canonical:?} of {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
});

/// The command as a well-behaved client would send it (without CRLF).
fn render(command: &Command) -> String {
    match command {
        Command::Ehlo(domain) => format!("EHLO {domain}"),
        Command::Helo(domain) => format!("HELO {domain}"),
        Command::Mail(path, params) => format!("MAIL FROM:{}{}", path_text(path), mail(params)),
        Command::Rcpt(path, params) => format!("RCPT TO:{}{}", path_text(path), rcpt(params)),
        Command::Data => "DATA".into(),
        Command::Rset => "RSET".into(),
        Command::Noop => "NOOP".into(),
        Command::Quit => "QUIT".into(),
        Command::Vrfy => "VRFY x".into(),
        Command::Help => "HELP".into(),
        Command::Rdlv(None) => "RDLV".into(),
        Command::Rdlv(Some(n)) => format!("RDLV maxtimer={n}"),
        Command::Cont => "CONT".into(),
        Command::Deta => "DETA".into(),
        Command::StartTls => "STARTTLS".into(),
        Command::Auth(mechanism, None) => format!("AUTH {mechanism}"),
        Command::Auth(mechanism, Some(initial)) => format!("AUTH {mechanism} {initial}"),
        Command::Bdat(size, last) => format!("BDAT {size}{}", if *last { " LAST" } else { "" }),
        Command::Burl(url, last) => format!("BURL {url}{}", if *last { " LAST" } else { "" }),
    }
}

fn path_text(path: &Path) -> String {
    match path {
        Path::Null => "<>".into(),
        Path::Mailbox(m) => format!("<{m}>"),
    }
}

fn mail(p: &MailParams) -> String {
    let mut out = String::new();
    if let Some(size) = p.size {
        out += &format!(" SIZE={size}");
    }
    // BODY=7BIT is the default value, so it is only written when given.
    match p.body {
        BodyType::EightBitMime => out += " BODY=8BITMIME",
        BodyType::SevenBit
            if p.given
                && out.is_empty()
                && p.ret.is_none()
                && p.envid.is_none()
                && p.auth.is_none()
                && !p.smtputf8 =>
        {
            out += " BODY=7BIT"
        }
        BodyType::SevenBit => {}
    }
    match p.ret {
        Some(Ret::Full) => out += " RET=FULL",
        Some(Ret::Hdrs) => out += " RET=HDRS",
        None => {}
    }
    if let Some(envid) = &p.envid {
        out += &format!(" ENVID={}", xtext::encode(envid));
    }
    if let Some(auth) = &p.auth {
        out += &format!(" AUTH={}", xtext::encode(auth));
    }
    if p.smtputf8 {
        out += " SMTPUTF8";
    }
    out
}

fn rcpt(p: &RcptParams) -> String {
    let mut out = String::new();
    if let Some(n) = p.notify {
        let mut list = Vec::new();
        if n.success {
            list.push("SUCCESS");
        }
        if n.failure {
            list.push("FAILURE");
        }
        if n.delay {
            list.push("DELAY");
        }
        if list.is_empty() {
            list.push("NEVER");
        }
        out += &format!(" NOTIFY={}", list.join(","));
    }
    if let Some(o) = &p.orcpt {
        let address = match o.is_utf8() {
            true => utf8_addr::encode_xtext(&o.address),
            false => xtext::encode(&o.address),
        };
        out += &format!(" ORCPT={};{address}", o.addr_type);
    }
    out
}
