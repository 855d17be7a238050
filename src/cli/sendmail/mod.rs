//! `detad sendmail` (also `sendmail`, a link to the binary): the
//! submission command scripts, cron and mail user agents expect. It reads
//! a message from stdin, adds the headers a submission needs, and hands it
//! to the running daemon over SMTP on loopback (a `250` means durable),
//! or, with no daemon, commits it into the spool itself when it may.
//! Exit 0 means the message is durable in the spool.
//!
//! The options are sendmail's; historic ones that make no sense here
//! (`-oem`, `-odb`, `-B 8BITMIME`, `-h N`, `-L tag`, ...) are accepted
//! and ignored. `mailq` (a link too) is `detad queue`; `-bp` the same,
//! `-q` is `detad flush`.
//!
//! Parts: `message` (pure: line ends, headers, `-t` addresses), `user`
//! (the default sender), `submit` (to the daemon or into the spool).

mod message;
mod submit;
mod user;

use std::io::Read;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::queue::envelope::{Notify, Ret};
use crate::smtp::address::{Path, parse_path};
use crate::time_fmt::rfc5322_date;

use super::exit;
use super::logging::{self, LogSetup};
use message::{InputError, Message, address_list, mailbox, normalize};
use user::User;

pub use submit::daemon_address;

/// Where the configuration is when neither `-C` nor `$DETAD_CONF` says.
pub const DEFAULT_CONFIG: &str = "/etc/detad.conf";

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "DETAD_CONF";

/// How the binary was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personality {
    /// `sendmail` or `detad sendmail`.
    Sendmail,
    /// `mailq`.
    Mailq,
}

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Submit the message on stdin (`-bm`, the default).
    Submit,
    /// List the queue (`mailq`, `-bp`).
    List,
    /// Retry deferred mail now (`-q`).
    Flush,
    /// Print the usage (`--help`).
    Help,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// What to do.
    pub action: Action,
    /// `-C FILE`.
    pub config: Option<PathBuf>,
    /// `-t`: recipients from To, Cc and Bcc as well.
    pub extract: bool,
    /// `-f` (or `-r`): the envelope sender; `""` or `<>` is the null path.
    pub sender: Option<String>,
    /// `-F`: the full name for a generated `From:`.
    pub full_name: Option<String>,
    /// `-N`: RFC 3461 NOTIFY for every recipient.
    pub notify: Option<Notify>,
    /// `-R`: RFC 3461 RET.
    pub ret: Option<Ret>,
    /// `-V`: RFC 3461 ENVID.
    pub envid: Option<String>,
    /// `-v`: say where the message went.
    pub verbose: bool,
    /// The recipients named on the command line.
    pub recipients: Vec<String>,
}

/// A failure: what to print and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// sysexits code.
    pub code: u8,
    /// What went wrong, for stderr (and syslog).
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        "C",
        "",
        "configuration file (default $DETAD_CONF, else /etc/detad.conf)",
        "FILE",
    );
    o.optflag(
        "t",
        "",
        "recipients from the To, Cc and Bcc headers too (Bcc is removed)",
    );
    o.optflag(
        "i",
        "",
        "a line with a single dot does not end the message (always so)",
    );
    o.optmulti(
        "o",
        "",
        "-oi as -i; other historic -o options are ignored",
        "OPTION",
    );
    o.optopt(
        "f",
        "",
        "envelope sender (default: the user at `hostname`; <> for none)",
        "FROM",
    );
    o.optopt("r", "", "the same as -f (historic)", "FROM");
    o.optopt("F", "", "full name for a generated From:", "NAME");
    o.optopt(
        "N",
        "",
        "DSN: never, or success,failure,delay",
        "DSN-NOTIFY",
    );
    o.optopt("R", "", "DSN: return full or hdrs", "RET");
    o.optopt("V", "", "DSN: the envelope id", "ENVID");
    o.optopt("b", "", "m: submit (default), p: list the queue", "MODE");
    o.optflagopt("q", "", "retry deferred mail now (detad flush)", "TIME");
    o.optflag("v", "", "say where the message went");
    o.optflag("", "help", "print this help");
    // Historic options with a value, accepted and ignored.
    for name in ["A", "B", "d", "h", "L", "O", "p", "X"] {
        o.optmulti(name, "", "ignored", "VALUE");
    }
    for name in ["G", "m", "n", "U"] {
        o.optflagmulti(name, "", "ignored");
    }
    o
}

const USAGE_BRIEF: &str = "Usage: sendmail [-C FILE] [-t] [-i|-oi] [-f FROM] [-F NAME] [-N DSN-NOTIFY] [-R RET] [-V ENVID] [RCPT...]
       detad sendmail [the same]
       mailq [-C FILE]
Reads a message from stdin and queues it with detad; exit 0 means it is in the spool.";

fn parse_notify(value: &str) -> Result<Notify, String> {
    let words: Vec<String> = value
        .split(',')
        .map(|w| w.trim().to_ascii_lowercase())
        .collect();
    if words == ["never"] {
        return Ok(Notify::NEVER);
    }
    let mut notify = Notify::default();
    for w in &words {
        match w.as_str() {
            "success" => notify.success = true,
            "failure" => notify.failure = true,
            "delay" => notify.delay = true,
            _ => {
                return Err(format!(
                    "-N {value}: expected never, or a list of success, failure, delay"
                ));
            }
        }
    }
    Ok(notify)
}

fn parse_ret(value: &str) -> Result<Ret, String> {
    match value.to_ascii_lowercase().as_str() {
        "full" => Ok(Ret::Full),
        "hdrs" => Ok(Ret::Hdrs),
        _ => Err(format!("-R {value}: expected full or hdrs")),
    }
}

/// RFC 3461 §4.4: ENVID is printable ASCII, at most 100 characters.
fn parse_envid(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 100 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "-V {value}: an envelope id is 1 to 100 printable ASCII characters"
        ));
    }
    Ok(value.to_string())
}

fn parse_action(m: &getopts::Matches, personality: Personality) -> Result<Action, String> {
    if m.opt_present("help") {
        return Ok(Action::Help);
    }
    if personality == Personality::Mailq {
        return Ok(Action::List);
    }
    if m.opt_present("q") {
        return Ok(Action::Flush);
    }
    match m.opt_str("b").as_deref() {
        None | Some("m") => Ok(Action::Submit),
        Some("p") => Ok(Action::List),
        Some(other) => Err(format!("-b{other} is not supported (only -bm, -bp)")),
    }
}

/// Parses the arguments after the program name.
///
/// # Errors
/// A usage error, in words.
pub fn parse_args(args: &[String], personality: Personality) -> Result<Invocation, String> {
    let m = options().parse(args).map_err(|e| e.to_string())?;
    Ok(Invocation {
        action: parse_action(&m, personality)?,
        config: m.opt_str("C").map(PathBuf::from),
        extract: m.opt_present("t"),
        sender: m.opt_str("f").or_else(|| m.opt_str("r")),
        full_name: m.opt_str("F"),
        notify: m.opt_str("N").as_deref().map(parse_notify).transpose()?,
        ret: m.opt_str("R").as_deref().map(parse_ret).transpose()?,
        envid: m.opt_str("V").as_deref().map(parse_envid).transpose()?,
        verbose: m.opt_present("v"),
        recipients: m.free.clone(),
    })
}

/// The configuration: `-C`, else `$DETAD_CONF`, else `/etc/detad.conf`
/// when it exists, else the defaults.
fn load_config(inv: &Invocation) -> Result<Config, String> {
    let named = inv
        .config
        .clone()
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
    let path = named
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let mut config = Config::default();
    match std::fs::read_to_string(&path) {
        Ok(text) => config
            .apply_file_text(&path.display().to_string(), &text)
            .map_err(|e| e.to_string())?,
        Err(e) if named.is_none() && e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// `sendmail ARGS` / `mailq ARGS` (without the program name): the exit
/// code.
pub fn main(args: &[String], personality: Personality) -> u8 {
    let inv = match parse_args(args, personality) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("sendmail: {e}\n{}", options().usage(USAGE_BRIEF));
            return exit::USAGE;
        }
    };
    if inv.action == Action::Help {
        print!("{}", options().usage(USAGE_BRIEF));
        return exit::OK;
    }
    let config = match load_config(&inv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sendmail: configuration error: {e}");
            return exit::CONFIG;
        }
    };
    // Quiet unless something is wrong; a missing syslog socket falls back
    // to stderr without a word (cron would mail the warning every time).
    let syslog = matches!(logging::init(&config, "warn"), LogSetup::Syslog);
    match inv.action {
        Action::List => super::list(&config, false),
        Action::Flush => super::flush(&config),
        Action::Submit | Action::Help => match submit_stdin(&inv, &config) {
            Ok(note) => {
                if inv.verbose {
                    println!("{note}");
                }
                exit::OK
            }
            Err(f) => {
                eprintln!("sendmail: {}", f.message);
                if syslog {
                    log::error!("sendmail: {}", f.message);
                }
                f.code
            }
        },
    }
}

/// Reads the message (bounded by `max_message_size`), prepares it and
/// hands it over; what happened, for `-v`.
fn submit_stdin(inv: &Invocation, config: &Config) -> Result<String, Failure> {
    let mut input = Vec::new();
    let limit = config.max_message_size;
    std::io::stdin()
        .lock()
        .take(limit.saturating_add(1))
        .read_to_end(&mut input)
        .map_err(|e| Failure::new(exit::IOERR, format!("cannot read the message: {e}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let unique = format!("{:X}.{}", now.as_micros(), std::process::id());
    let user = user::current();
    let prepared = prepare(inv, config, &user, &input, now.as_secs() as i64, &unique)?;
    submit::submit(config, &prepared)
}

/// The message and its envelope, ready to hand over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The reverse-path; empty for `<>`.
    pub sender: String,
    /// The forward-paths, qualified, without duplicates.
    pub recipients: Vec<String>,
    /// `-N`.
    pub notify: Option<Notify>,
    /// `-R`.
    pub ret: Option<Ret>,
    /// `-V`.
    pub envid: Option<String>,
    /// The message: CRLF, headers completed, Bcc removed.
    pub content: Vec<u8>,
    /// Who submitted it (the spool's `Received:` line says so).
    pub uid: u32,
    /// Unix time of the submission.
    pub now: i64,
}

/// `addr` as a mailbox: angle brackets dropped, `@hostname` added to a
/// bare name; `Err` when it is not a valid RFC 5321 mailbox.
fn qualify(addr: &str, hostname: &str) -> Result<String, String> {
    let bare = addr.trim();
    let bare = bare
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(bare);
    let full = if bare.contains('@') {
        bare.to_string()
    } else {
        format!("{bare}@{hostname}")
    };
    match parse_path(&format!("<{full}>")) {
        Ok(Path::Mailbox(m)) => Ok(m),
        _ => Err(format!("`{addr}` is not a mail address")),
    }
}

/// The recipients: the command line's, and with `-t` those of To, Cc and
/// Bcc; qualified, each once.
fn recipients(inv: &Invocation, message: &Message<'_>, host: &str) -> Result<Vec<String>, Failure> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |addr: String| {
        if !out.iter().any(|a| a.eq_ignore_ascii_case(&addr)) {
            out.push(addr);
        }
    };
    for r in &inv.recipients {
        add(qualify(r, host).map_err(|e| Failure::new(exit::USAGE, e))?);
    }
    if inv.extract {
        for value in message.values(&["to", "cc", "bcc"]) {
            let list = address_list(&value).map_err(|e| Failure::new(exit::DATAERR, e))?;
            for a in list {
                add(qualify(&a, host).map_err(|e| Failure::new(exit::DATAERR, e))?);
            }
        }
    }
    if out.is_empty() {
        let hint = if inv.extract {
            "none in To, Cc or Bcc either"
        } else {
            "name them, or use -t"
        };
        return Err(Failure::new(exit::USAGE, format!("no recipients ({hint})")));
    }
    Ok(out)
}

/// Makes the message to send out of the raw input: CRLF line ends, the
/// recipients, the sender, `From:`, `Date:` and `Message-ID:` when they
/// are missing, no `Bcc:`.
///
/// # Errors
/// A NUL in the input or a message over `max_message_size` (EX_DATAERR), a
/// bad address (EX_USAGE on the command line, EX_DATAERR in a header).
pub fn prepare(
    inv: &Invocation,
    config: &Config,
    user: &User,
    input: &[u8],
    now: i64,
    unique: &str,
) -> Result<Prepared, Failure> {
    let too_large = || {
        let limit = config.max_message_size;
        Failure::new(
            exit::DATAERR,
            format!("the message is larger than max_message_size ({limit} octets)"),
        )
    };
    if input.len() as u64 > config.max_message_size {
        return Err(too_large());
    }
    let content = normalize(input).map_err(|e: InputError| {
        Failure::new(exit::DATAERR, format!("{e}; the message was not sent"))
    })?;
    let message = Message::parse(&content);
    let host = &config.hostname;
    let recipients = recipients(inv, &message, host)?;
    let own = format!("{}@{host}", user.name);
    let sender = match inv.sender.as_deref().map(str::trim) {
        None => own.clone(),
        Some("" | "<>") => String::new(),
        Some(s) => qualify(s, host).map_err(|e| Failure::new(exit::USAGE, format!("-f: {e}")))?,
    };
    // The full name is the user's own only on the user's own address.
    let name = inv
        .full_name
        .clone()
        .or_else(|| user.full_name.clone().filter(|_| inv.sender.is_none()));
    let from = if sender.is_empty() { &own } else { &sender };
    let missing = [
        ("From", mailbox(name.as_deref(), from)),
        ("Date", rfc5322_date(now)),
        ("Message-ID", format!("<{unique}@{host}>")),
    ];
    // RFC 5322 §3.6.3: Bcc recipients are not shown to the others.
    let content = message.assemble("", &missing, &["Bcc"]);
    if content.len() as u64 > config.max_message_size {
        return Err(too_large());
    }
    Ok(Prepared {
        sender,
        recipients,
        notify: inv.notify,
        ret: inv.ret,
        envid: inv.envid.clone(),
        content,
        uid: user.uid,
        now,
    })
}

#[cfg(test)]
mod tests;
