//! The command line and the preparation of a message, without I/O.

use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn parse(list: &[&str]) -> Result<Invocation, String> {
    parse_args(&args(list), Personality::Sendmail)
}

#[test]
fn sendmail_flags_are_understood_and_historic_ones_ignored() {
    let inv = parse(&[
        "-oi",
        "-oem",
        "-odb",
        "-t",
        "-i",
        "-f",
        "ops@gw",
        "-F",
        "Ops",
        "-N",
        "success,delay",
        "-R",
        "HDRS",
        "-V",
        "env-1",
        "-B",
        "8BITMIME",
        "-h",
        "17",
        "-Ac",
        "-v",
        "-U",
        "root",
        "bob@x",
    ])
    .unwrap();
    assert_eq!(inv.action, Action::Submit);
    assert!(inv.extract && inv.verbose);
    assert_eq!(inv.sender.as_deref(), Some("ops@gw"));
    assert_eq!(inv.full_name.as_deref(), Some("Ops"));
    let notify = inv.notify.unwrap();
    assert!(notify.success && notify.delay && !notify.failure);
    assert_eq!(inv.ret, Some(Ret::Hdrs));
    assert_eq!(inv.envid.as_deref(), Some("env-1"));
    assert_eq!(inv.recipients, ["root", "bob@x"]);
    assert_eq!(parse(&["-N", "never"]).unwrap().notify, Some(Notify::NEVER));
    assert_eq!(
        parse(&["-r", "a@b"]).unwrap().sender.as_deref(),
        Some("a@b")
    );
    assert_eq!(
        parse(&["-Cx.conf"]).unwrap().config,
        Some(PathBuf::from("x.conf"))
    );
}

#[test]
fn modes_and_bad_values_are_usage_errors_or_actions() {
    assert_eq!(parse(&["-bp"]).unwrap().action, Action::List);
    assert_eq!(parse(&["-bm", "x"]).unwrap().action, Action::Submit);
    assert_eq!(parse(&["-q"]).unwrap().action, Action::Flush);
    assert_eq!(parse(&["-q30m"]).unwrap().action, Action::Flush);
    assert_eq!(parse(&["--help"]).unwrap().action, Action::Help);
    let mailq = parse_args(&args(&["-C", "c"]), Personality::Mailq).unwrap();
    assert_eq!(mailq.action, Action::List);
    for bad in [
        &["-bs"][..],
        &["-N", "never,success"],
        &["-N", "sometimes"],
        &["-R", "body"],
        &["-V", "has space"],
        &["-Z"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let long_envid = "e".repeat(101);
    assert!(parse(&["-V", &long_envid]).is_err());
}

fn config() -> Config {
    Config {
        hostname: "gw.test".into(),
        ..Config::default()
    }
}

fn ops() -> User {
    User {
        name: "ops".into(),
        full_name: Some("Ops Team".into()),
        uid: 1000,
    }
}

fn prepared(list: &[&str], input: &str) -> Result<Prepared, Failure> {
    let inv = parse(list).unwrap();
    prepare(&inv, &config(), &ops(), input.as_bytes(), 86_400, "ID.1")
}

fn text(p: &Prepared) -> String {
    String::from_utf8(p.content.clone()).unwrap()
}

#[test]
fn a_bare_body_gets_from_date_and_message_id() {
    let p = prepared(&["root"], "hello\n").unwrap();
    assert_eq!(p.sender, "ops@gw.test");
    assert_eq!(p.recipients, ["root@gw.test"]);
    assert_eq!(
        text(&p),
        "From: Ops Team <ops@gw.test>\r\nDate: Fri, 02 Jan 1970 00:00:00 +0000\r\n\
         Message-ID: <ID.1@gw.test>\r\n\r\nhello\r\n"
    );
}

#[test]
fn headers_present_are_kept_and_f_sets_sender_and_from() {
    let input = "From: Cron <cron@gw.test>\nDate: x\nMessage-ID: <m@x>\nSubject: s\n\nbody";
    let p = prepared(&["-f", "<>", "a@b"], input).unwrap();
    assert_eq!(p.sender, "");
    assert_eq!(
        text(&p),
        "From: Cron <cron@gw.test>\r\nDate: x\r\nMessage-ID: <m@x>\r\nSubject: s\r\n\r\nbody\r\n"
    );
    let p = prepared(
        &["-f", "alarm", "-F", "Alarm Box", "a@b"],
        "Subject: s\n\nx\n",
    )
    .unwrap();
    assert_eq!(p.sender, "alarm@gw.test");
    assert!(
        text(&p).contains("\r\nFrom: Alarm Box <alarm@gw.test>\r\n"),
        "{}",
        text(&p)
    );
    // Another address than the user's own does not get the user's name.
    let p = prepared(&["-f", "alarm@gw.test", "a@b"], "x\n").unwrap();
    assert!(
        text(&p).starts_with("From: alarm@gw.test\r\n"),
        "{}",
        text(&p)
    );
}

#[test]
fn t_takes_to_cc_and_bcc_and_removes_bcc() {
    let input =
        "To: Bob <bob@x>, root\nCc: carol@y (C)\nBcc: dave@z,\n bob@X\nSubject: s\n\nbody\n";
    let p = prepared(&["-t", "extra@w"], input).unwrap();
    assert_eq!(
        p.recipients,
        ["extra@w", "bob@x", "root@gw.test", "carol@y", "dave@z"]
    );
    let out = text(&p);
    assert!(!out.contains("Bcc") && !out.contains("dave"), "{out}");
    assert!(out.starts_with("To: Bob <bob@x>, root\r\nCc: carol@y (C)\r\nSubject: s\r\n"));
}

#[test]
fn bad_input_gives_the_sysexits_code() {
    let code = |r: Result<Prepared, Failure>| r.unwrap_err().code;
    assert_eq!(code(prepared(&["root"], "a\0b")), exit::DATAERR);
    assert_eq!(code(prepared(&[], "hello\n")), exit::USAGE);
    assert_eq!(code(prepared(&["-t"], "Subject: none\n\nx\n")), exit::USAGE);
    assert_eq!(code(prepared(&["a b@c"], "x\n")), exit::USAGE);
    assert_eq!(code(prepared(&["-f", "a b", "root"], "x\n")), exit::USAGE);
    assert_eq!(
        code(prepared(&["-t"], "To: Joe Bloggs\n\nx\n")),
        exit::DATAERR
    );
    let big = "x".repeat(70 * 1024);
    let inv = parse(&["root"]).unwrap();
    let small = Config {
        max_message_size: 64 * 1024,
        ..config()
    };
    let r = prepare(&inv, &small, &ops(), big.as_bytes(), 0, "u");
    assert_eq!(r.unwrap_err().code, exit::DATAERR);
}

#[test]
fn the_daemon_is_reached_on_loopback() {
    let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
    assert_eq!(
        daemon_address(&[a("192.168.1.1:25"), a("127.0.0.1:25")]),
        Some(a("127.0.0.1:25"))
    );
    assert_eq!(daemon_address(&[a("0.0.0.0:25")]), Some(a("127.0.0.1:25")));
    assert_eq!(daemon_address(&[a("[::]:2525")]), Some(a("[::1]:2525")));
    assert_eq!(
        daemon_address(&[a("192.168.1.1:25")]),
        Some(a("192.168.1.1:25"))
    );
    assert_eq!(daemon_address(&[]), None);
}
