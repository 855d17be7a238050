//! One command line to a [`Command`], or the reply that refuses it.
//!
//! Stateless: sequence rules live in the session. Verbs are case-insensitive
//! and trailing white space is tolerated (RFC 5321 §4.1.1, §2.4).
//!
//! A line is UTF-8. Non-ASCII characters are only parsed in MAIL and RCPT
//! (an address, RFC 6531 §3.3, or an RFC 6533 `ORCPT=utf-8;` value); in
//! any other command the line is not recognized. Whether the transaction
//! may use a non-ASCII address (`SMTPUTF8` on MAIL) is the session's
//! question: RCPT cannot know it here.

use super::address::{AddressError, Path, parse_path, split_path};
use super::params::{BodyType, Notify, Orcpt, Ret};
use super::reply::Reply;
use super::{utf8_addr, xtext};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail(Path, MailParams),
    /// `RCPT TO:<path> [params]`.
    Rcpt(Path, RcptParams),
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy,
    /// `HELP [string]`.
    Help,
    /// `RDLV [maxtimer=N]` (draft-burger-smtp-rdlv, reconstructed).
    Rdlv(Option<u32>),
    /// `CONT`: keep waiting after a 120.
    Cont,
    /// `DETA`: detach after a 120 (draft-burger-smtp-deta §2.2.1).
    Deta,
    /// `STARTTLS` (RFC 3207 §4).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4); the mechanism as
    /// sent, the response still base64 (or `=`).
    Auth(String, Option<String>),
    /// `BDAT size [LAST]` (RFC 3030 §2): `size` octets of content follow
    /// the line.
    Bdat(u64, bool),
    /// `BURL url [LAST]` (RFC 4468 §3.5): content to fetch from the URL.
    Burl(String, bool),
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 `SIZE=`.
    pub size: Option<u64>,
    /// RFC 6152 `BODY=`.
    pub body: BodyType,
    /// RFC 3461 `RET=`.
    pub ret: Option<Ret>,
    /// RFC 3461 `ENVID=`, decoded.
    pub envid: Option<String>,
    /// RFC 4954 §5 `AUTH=`, decoded (`<>` when the submitter is unknown).
    /// Accepted and kept for the log; the identity that counts is the one
    /// the session authenticated.
    pub auth: Option<String>,
    /// RFC 6531 §3.4 `SMTPUTF8`: the transaction may use UTF-8 addresses
    /// and the message may have UTF-8 header fields (RFC 6532).
    pub smtputf8: bool,
    /// Whether any parameter was given (all are extensions: none may follow
    /// HELO, RFC 5321 §4.1.1.1).
    pub given: bool,
}

/// Parameters of RCPT TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// RFC 3461 `NOTIFY=`.
    pub notify: Option<Notify>,
    /// RFC 3461 `ORCPT=`, decoded.
    pub orcpt: Option<Orcpt>,
    /// Whether any parameter was given.
    pub given: bool,
}

/// RFC 3461 §4.4: ENVID is at most 100 characters.
const MAX_ENVID: usize = 100;
/// RFC 3461 §4.2: ORCPT's value is at most 500 characters.
const MAX_ORCPT: usize = 500;

fn syntax(text: &str) -> Reply {
    Reply::new(501, "5.5.4", text)
}

fn unknown_param(keyword: &str) -> Reply {
    Reply::new(
        555,
        "5.5.4",
        format!("unsupported parameter {}", quoted(keyword)),
    )
}

/// The most of a client's parameter keyword that a reply repeats: MAIL and
/// RCPT lines may be 1536 octets, a reply line only 512 (RFC 5321
/// §4.5.3.1.5).
const MAX_QUOTED_KEYWORD: usize = 64;

/// A parameter keyword (ASCII, checked before) as a reply may repeat it.
fn quoted(keyword: &str) -> &str {
    keyword.get(..MAX_QUOTED_KEYWORD).unwrap_or(keyword)
}

/// Parses one command line, without its CRLF.
///
/// # Errors
/// The reply to send instead: 500 5.5.2 for an unknown verb, a line that
/// is not UTF-8 or has control characters, and non-ASCII text outside MAIL
/// and RCPT; 501 for bad arguments, 555 for unknown parameters.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let unknown = || Reply::new(500, "5.5.2", "command not recognized");
    let line = std::str::from_utf8(line)
        .map_err(|_| Reply::new(500, "5.5.2", "command line is not UTF-8"))?;
    if line.bytes().any(|b| (b < 32 && b != b'\t') || b == 127) {
        return Err(unknown());
    }
    let line = line.trim_end();
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v, a.trim_start()),
        None => (line, ""),
    };
    // RFC 6531 §3.3 extends only the paths (and RFC 6533 the ORCPT value).
    let verb_upper = verb.to_ascii_uppercase();
    if !line.is_ascii() && verb_upper != "MAIL" && verb_upper != "RCPT" {
        return Err(unknown());
    }
    let no_arg = |cmd: Command| {
        if arg.is_empty() {
            Ok(cmd)
        } else {
            Err(syntax("no parameters allowed"))
        }
    };
    match verb_upper.as_str() {
        "EHLO" | "HELO" if arg.is_empty() => Err(syntax("domain name required")),
        "EHLO" => Ok(Command::Ehlo(arg.to_string())),
        "HELO" => Ok(Command::Helo(arg.to_string())),
        "MAIL" => {
            let rest =
                strip_keyword(arg, "FROM:").ok_or_else(|| syntax("syntax: MAIL FROM:<address>"))?;
            let (path, params) = parse_path_params(rest)?;
            Ok(Command::Mail(path, parse_mail_params(params)?))
        }
        "RCPT" => {
            let rest =
                strip_keyword(arg, "TO:").ok_or_else(|| syntax("syntax: RCPT TO:<address>"))?;
            let (path, params) = parse_path_params(rest)?;
            if path == Path::Null {
                return Err(syntax("null forward-path not allowed"));
            }
            Ok(Command::Rcpt(path, parse_rcpt_params(params)?))
        }
        "DATA" => no_arg(Command::Data),
        "RSET" => no_arg(Command::Rset),
        "QUIT" => no_arg(Command::Quit),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" if arg.is_empty() => Err(syntax("syntax: VRFY <address>")),
        "VRFY" => Ok(Command::Vrfy),
        "RDLV" => parse_rdlv(arg),
        "CONT" => no_arg(Command::Cont),
        "DETA" => no_arg(Command::Deta),
        "STARTTLS" => no_arg(Command::StartTls),
        "AUTH" => parse_auth(arg),
        "BDAT" => parse_bdat(arg),
        "BURL" => parse_burl(arg),
        _ => Err(unknown()),
    }
}

/// `AUTH mechanism [initial-response]` (RFC 4954 §4): one or two words.
fn parse_auth(arg: &str) -> Result<Command, Reply> {
    let mut words = arg.split_ascii_whitespace();
    let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
        return Err(syntax("syntax: AUTH mechanism [initial-response]"));
    };
    Ok(Command::Auth(
        mechanism.to_string(),
        initial.map(str::to_string),
    ))
}

/// `[SP "LAST"]` after a BDAT size or a BURL URL.
fn end_marker(word: Option<&str>, usage: &str) -> Result<bool, Reply> {
    match word {
        None => Ok(false),
        Some(w) if w.eq_ignore_ascii_case("LAST") => Ok(true),
        Some(_) => Err(syntax(usage)),
    }
}

/// `BDAT chunk-size [SP end-marker]` (RFC 3030 §2): the size is digits.
fn parse_bdat(arg: &str) -> Result<Command, Reply> {
    const USAGE: &str = "syntax: BDAT size [LAST]";
    let mut words = arg.split_ascii_whitespace();
    let size = words
        .next()
        .filter(|w| !w.is_empty() && w.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or_else(|| syntax(USAGE))?;
    let last = end_marker(words.next(), USAGE)?;
    if words.next().is_some() {
        return Err(syntax(USAGE));
    }
    Ok(Command::Bdat(size, last))
}

/// `BURL absolute-URI [SP end-marker]` (RFC 4468 §3.5).
fn parse_burl(arg: &str) -> Result<Command, Reply> {
    const USAGE: &str = "syntax: BURL url [LAST]";
    let mut words = arg.split_ascii_whitespace();
    let url = words
        .next()
        .ok_or_else(|| syntax("missing chunk URL parameter"))?;
    let last = end_marker(words.next(), USAGE)?;
    if words.next().is_some() {
        return Err(syntax(USAGE));
    }
    Ok(Command::Burl(url.to_string(), last))
}

/// The verb of a command line (its first word), whatever follows it.
pub fn verb_of(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    &line[..end]
}

/// Strips `FROM:` / `TO:` case-insensitively, tolerating a space after the
/// colon (seen from real clients; RFC 5321 §4.1.2 has none).
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start())
}

/// Parameters as `(upper-cased keyword, value)`, in order.
type Params<'a> = Vec<(String, Option<&'a str>)>;

fn parse_path_params(rest: &str) -> Result<(Path, Params<'_>), Reply> {
    let address_error = |e| match e {
        AddressError::Syntax => syntax("bad address syntax"),
        AddressError::TooLong => Reply::new(501, "5.1.3", "address too long"),
    };
    let (path, params) = split_path(rest).map_err(address_error)?;
    let path = parse_path(path).map_err(address_error)?;
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(syntax("bad address syntax"));
    }
    let mut out = Vec::new();
    for param in params.split_ascii_whitespace() {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        // RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
        if keyword.is_empty()
            || !keyword
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(syntax("bad parameter syntax"));
        }
        let keyword = keyword.to_ascii_uppercase();
        if out.iter().any(|(k, _)| *k == keyword) {
            return Err(syntax(&format!("duplicate parameter {}", quoted(&keyword))));
        }
        out.push((keyword, value));
    }
    Ok((path, out))
}

fn parse_mail_params(params: Params<'_>) -> Result<MailParams, Reply> {
    let mut out = MailParams {
        given: !params.is_empty(),
        ..MailParams::default()
    };
    for (keyword, raw) in params {
        let value = raw.ok_or_else(|| syntax(&format!("{keyword} needs a value")));
        match keyword.as_str() {
            // RFC 6531 §3.4: the parameter has no value.
            "SMTPUTF8" if raw.is_some() => return Err(syntax("SMTPUTF8 takes no value")),
            "SMTPUTF8" => out.smtputf8 = true,
            "SIZE" => {
                let v = value?;
                let n = v
                    .parse()
                    .ok()
                    .filter(|_| v.bytes().all(|c| c.is_ascii_digit()));
                out.size = Some(n.ok_or_else(|| syntax("bad SIZE value"))?);
            }
            "BODY" => {
                out.body = match value?.to_ascii_uppercase().as_str() {
                    "7BIT" => BodyType::SevenBit,
                    "8BITMIME" => BodyType::EightBitMime,
                    _ => return Err(Reply::new(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")),
                }
            }
            "RET" => {
                out.ret = Some(match value?.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Hdrs,
                    _ => return Err(syntax("RET must be FULL or HDRS")),
                })
            }
            "ENVID" => {
                let decoded = xtext::decode(value?).map_err(|_| syntax("bad ENVID xtext"))?;
                if decoded.len() > MAX_ENVID {
                    return Err(syntax("ENVID too long"));
                }
                out.envid = Some(decoded);
            }
            "AUTH" => {
                let decoded = xtext::decode(value?).map_err(|_| syntax("bad AUTH xtext"))?;
                out.auth = Some(decoded);
            }
            _ => return Err(unknown_param(&keyword)),
        }
    }
    Ok(out)
}

fn parse_rcpt_params(params: Params<'_>) -> Result<RcptParams, Reply> {
    let mut out = RcptParams {
        given: !params.is_empty(),
        ..RcptParams::default()
    };
    for (keyword, value) in params {
        let value = value.ok_or_else(|| syntax(&format!("{keyword} needs a value")));
        match keyword.as_str() {
            "NOTIFY" => out.notify = Some(parse_notify(value?)?),
            "ORCPT" => out.orcpt = Some(parse_orcpt(value?)?),
            _ => return Err(unknown_param(&keyword)),
        }
    }
    Ok(out)
}

/// RFC 3461 §4.1: `NEVER` alone, or a comma list of SUCCESS, FAILURE, DELAY.
fn parse_notify(value: &str) -> Result<Notify, Reply> {
    if value.eq_ignore_ascii_case("NEVER") {
        return Ok(Notify::NEVER);
    }
    let mut notify = Notify::default();
    for item in value.split(',') {
        let slot = match item.to_ascii_uppercase().as_str() {
            "SUCCESS" => &mut notify.success,
            "FAILURE" => &mut notify.failure,
            "DELAY" => &mut notify.delay,
            _ => {
                return Err(syntax(
                    "NOTIFY must be NEVER or a list of SUCCESS,FAILURE,DELAY",
                ));
            }
        };
        if *slot {
            return Err(syntax("repeated NOTIFY value"));
        }
        *slot = true;
    }
    Ok(notify)
}

/// RFC 3461 §4.2: `ORCPT=addr-type ";" xtext`. For the RFC 6533 §3
/// `utf-8` type the value is `utf-8-addr-xtext` or, since we advertise
/// SMTPUTF8, `utf-8-addr-unitext`, decoded by [`utf8_addr::decode`].
fn parse_orcpt(value: &str) -> Result<Orcpt, Reply> {
    let (addr_type, encoded) = value
        .split_once(';')
        .ok_or_else(|| syntax("ORCPT needs addr-type;address"))?;
    let atom = !addr_type.is_empty()
        && addr_type
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-');
    if !atom || value.len() > MAX_ORCPT {
        return Err(syntax("bad ORCPT value"));
    }
    let mut orcpt = Orcpt {
        addr_type: addr_type.to_string(),
        address: String::new(),
    };
    orcpt.address = if orcpt.is_utf8() {
        utf8_addr::decode(encoded).map_err(|_| syntax("bad ORCPT utf-8 address"))?
    } else {
        xtext::decode(encoded).map_err(|_| syntax("bad ORCPT xtext"))?
    };
    Ok(orcpt)
}

/// RDLV's only parameter, `maxtimer=N` (reconstructed from the DETA draft's
/// examples; range checks against mintimer are the session's).
fn parse_rdlv(arg: &str) -> Result<Command, Reply> {
    if arg.is_empty() {
        return Ok(Command::Rdlv(None));
    }
    let bad = || syntax("syntax: RDLV [maxtimer=<seconds>]");
    let (keyword, value) = arg.split_once('=').ok_or_else(bad)?;
    if !keyword.eq_ignore_ascii_case("maxtimer") || value.is_empty() || value.len() > 5 {
        return Err(bad());
    }
    if !value.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    value
        .parse()
        .map(|n| Command::Rdlv(Some(n)))
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> u16 {
        parse(line.as_bytes()).expect_err(line).code
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse(b"ehlo gw.example"),
            Ok(Command::Ehlo("gw.example".into()))
        );
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
        assert_eq!(parse(b"data  "), Ok(Command::Data));
    }

    #[test]
    fn null_reverse_path_is_accepted() {
        assert_eq!(
            parse(b"MAIL FROM:<>"),
            Ok(Command::Mail(Path::Null, MailParams::default()))
        );
    }

    #[test]
    fn mail_params_are_parsed() {
        let cmd =
            parse(b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=A123+2Bbzq")
                .unwrap();
        let want = MailParams {
            size: Some(1000),
            body: BodyType::EightBitMime,
            ret: Some(Ret::Hdrs),
            envid: Some("A123+bzq".into()),
            auth: None,
            smtputf8: false,
            given: true,
        };
        assert_eq!(
            cmd,
            Command::Mail(Path::Mailbox("a@b.example".into()), want)
        );
    }

    #[test]
    fn rcpt_dsn_params_are_parsed_and_decoded() {
        let cmd = parse(
            b"RCPT TO:<jones@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;jones+40example.com",
        )
        .unwrap();
        let want = RcptParams {
            notify: Some(Notify {
                success: false,
                failure: true,
                delay: true,
            }),
            orcpt: Some(Orcpt {
                addr_type: "rfc822".into(),
                address: "jones@example.com".into(),
            }),
            given: true,
        };
        assert_eq!(
            cmd,
            Command::Rcpt(Path::Mailbox("jones@example.net".into()), want)
        );
    }

    #[test]
    fn bad_parameters_get_the_rfc_codes() {
        assert_eq!(code("MAIL FROM:<a@b> FOO=1"), 555);
        assert_eq!(code("MAIL FROM:<a@b> SIZE=1 SIZE=2"), 501);
        assert_eq!(code("MAIL FROM:<a@b> SIZE=x"), 501);
        assert_eq!(code("MAIL FROM:<a@b> RET=ALL"), 501);
        assert_eq!(code("MAIL FROM:<a@b> ENVID=a+2b"), 501);
        assert_eq!(code("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS"), 501);
        assert_eq!(code("RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS"), 501);
        assert_eq!(code("RCPT TO:<a@b> ORCPT=rfc822"), 501);
        assert_eq!(code("RCPT TO:<a@b> XYZ"), 555);
        assert_eq!(code("RCPT TO:<>"), 501);
    }

    #[test]
    fn starttls_and_auth_are_parsed_with_their_arguments() {
        assert_eq!(parse(b"starttls"), Ok(Command::StartTls));
        assert_eq!(code("STARTTLS now"), 501);
        assert_eq!(
            parse(b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth(
                "PLAIN".into(),
                Some("AGFsaWNlAHNlY3JldA==".into())
            ))
        );
        assert_eq!(
            parse(b"auth login"),
            Ok(Command::Auth("login".into(), None))
        );
        assert_eq!(code("AUTH"), 501);
        assert_eq!(code("AUTH PLAIN a b"), 501);
    }

    #[test]
    fn mail_auth_parameter_is_accepted_and_decoded() {
        // RFC 4954 §5: AUTH=<> or an xtext addr-spec.
        let Ok(Command::Mail(_, p)) = parse(b"MAIL FROM:<a@b.example> AUTH=alice+40b.example")
        else {
            panic!("not parsed");
        };
        assert_eq!(p.auth.as_deref(), Some("alice@b.example"));
        let Ok(Command::Mail(_, p)) = parse(b"MAIL FROM:<a@b.example> AUTH=<>") else {
            panic!("not parsed");
        };
        assert_eq!(p.auth.as_deref(), Some("<>"));
    }

    #[test]
    fn bdat_and_burl_take_a_size_or_url_and_an_optional_last() {
        assert_eq!(parse(b"BDAT 10"), Ok(Command::Bdat(10, false)));
        assert_eq!(parse(b"bdat 0 last"), Ok(Command::Bdat(0, true)));
        for bad in [
            "BDAT",
            "BDAT -1",
            "BDAT 1x",
            "BDAT 10 FIRST",
            "BDAT 1 LAST x",
        ] {
            assert_eq!(code(bad), 501, "{bad}");
        }
        assert_eq!(
            parse(b"BURL imap://a@h/x;urlauth=submit+a:internal:00 LAST"),
            Ok(Command::Burl(
                "imap://a@h/x;urlauth=submit+a:internal:00".into(),
                true
            ))
        );
        assert_eq!(code("BURL"), 501);
        assert_eq!(code("BURL imap://x NOW"), 501);
    }

    #[test]
    fn long_parameter_keywords_are_cut_in_the_reply() {
        let long = "X".repeat(1500);
        for line in [
            format!("MAIL FROM:<a@b> {long}=1"),
            format!("MAIL FROM:<a@b> {long}=1 {long}=2"),
            format!("RCPT TO:<a@b> {long}"),
        ] {
            let reply = parse(line.as_bytes()).unwrap_err();
            assert!(reply.to_bytes().len() <= 512, "{reply}");
            assert!(
                reply.text().contains(&long[..MAX_QUOTED_KEYWORD]),
                "{reply}"
            );
        }
    }

    #[test]
    fn unknown_and_non_ascii_lines_are_500() {
        assert_eq!(code("XBDAT 10"), 500);
        assert_eq!(code("MAIL\u{e9}"), 500);
        assert_eq!(parse(b"\xff\xfe").unwrap_err().code, 500);
        // Non-ASCII is only ever an address (or ORCPT) in MAIL and RCPT.
        assert_eq!(code("VRFY j\u{f6}rg"), 500);
        assert_eq!(code("EHLO b\u{fc}cher.example"), 500);
        assert_eq!(code("NOOP \u{e9}"), 500);
        // A line must be UTF-8: Latin-1 is not taken for an address.
        assert_eq!(
            parse(b"RCPT TO:<j\xf6rg@example.org>").unwrap_err().code,
            500
        );
        // C0 and DEL stay refused; C1 are the address parser's to refuse.
        assert_eq!(code("RCPT TO:<a\u{7f}@b>"), 500);
        assert_eq!(code("RCPT TO:<a\u{85}@b>"), 501);
    }

    #[test]
    fn utf8_paths_and_the_smtputf8_parameter_are_parsed() {
        let Ok(Command::Mail(path, p)) =
            parse("MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8 BODY=8BITMIME".as_bytes())
        else {
            panic!("not parsed");
        };
        assert_eq!(path, Path::Mailbox("j\u{f6}rg@b\u{fc}cher.example".into()));
        assert!(p.smtputf8 && p.given && p.body == BodyType::EightBitMime);
        let Ok(Command::Mail(_, p)) = parse(b"mail from:<a@b.example> smtputf8") else {
            panic!("not parsed");
        };
        assert!(p.smtputf8);
        assert_eq!(code("MAIL FROM:<a@b> SMTPUTF8=yes"), 501);
        assert_eq!(code("MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8"), 501);
        // The stateless parser takes a UTF-8 RCPT; the session decides.
        assert_eq!(
            parse("RCPT TO:<\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}>".as_bytes()),
            Ok(Command::Rcpt(
                Path::Mailbox("\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}".into()),
                RcptParams::default()
            ))
        );
        // Non-ASCII in any other parameter is a syntax error.
        assert_eq!(code("MAIL FROM:<a@b> ENVID=\u{e9}"), 501);
        assert_eq!(code("MAIL FROM:<a@b> SIZE=1\u{e9}"), 501);
    }

    #[test]
    fn orcpt_of_the_utf8_type_is_decoded_per_rfc6533() {
        for value in [
            "utf-8;j\\x{F6}rg\\x{2B}x@example.org",
            "UTF-8;j\u{f6}rg\\x{2B}x@example.org",
        ] {
            let line = format!("RCPT TO:<a@b> ORCPT={value}");
            let Ok(Command::Rcpt(_, p)) = parse(line.as_bytes()) else {
                panic!("{line} not parsed");
            };
            let orcpt = p.orcpt.expect("ORCPT");
            assert!(orcpt.is_utf8(), "{line}");
            assert_eq!(orcpt.address, "j\u{f6}rg+x@example.org", "{line}");
        }
        assert_eq!(code("RCPT TO:<a@b> ORCPT=utf-8;a+2Bb@x"), 501);
        assert_eq!(code("RCPT TO:<a@b> ORCPT=utf-8;"), 501);
        assert_eq!(code("RCPT TO:<a@b> ORCPT=rfc822;j\u{f6}rg@x"), 501);
    }

    #[test]
    fn rdlv_takes_an_optional_maxtimer() {
        assert_eq!(parse(b"RDLV"), Ok(Command::Rdlv(None)));
        assert_eq!(parse(b"RDLV maxtimer=30"), Ok(Command::Rdlv(Some(30))));
        assert_eq!(parse(b"rdlv MAXTIMER=5"), Ok(Command::Rdlv(Some(5))));
        assert_eq!(code("RDLV maxtimer="), 501);
        assert_eq!(code("RDLV maxtimer=abc"), 501);
        assert_eq!(code("RDLV timer=3"), 501);
        assert_eq!(code("RDLV maxtimer=123456"), 501);
    }

    #[test]
    fn space_after_colon_is_tolerated() {
        assert!(matches!(
            parse(b"MAIL FROM: <a@b.example>"),
            Ok(Command::Mail(..))
        ));
    }
}
