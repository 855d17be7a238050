//! The detad binary: options, configuration, logging, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use detad::cli::logging::{self, LogSetup};
#[cfg(feature = "sendmail")]
use detad::cli::sendmail::{self, Personality};
use detad::cli::{self, exit};
use detad::config::{Config, parse_listen};
use detad::delivery::exec;
use detad::delivery::relay::Security;
use detad::server::{self, Options, StartError};

const OPT_CONFIG: &str = "c";
const OPT_LISTEN: &str = "l";
const OPT_SPOOL: &str = "s";
const OPT_TEST: &str = "t";
const OPT_HELP: &str = "h";
const OPT_VERSION: &str = "V";
const OPT_JSON: &str = "json";

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        OPT_CONFIG,
        "config",
        "configuration file (key = value lines)",
        "FILE",
    );
    o.optmulti(
        OPT_LISTEN,
        "listen",
        "listen on ADDRESS:PORT (repeatable; replaces the file's)",
        "ADDR",
    );
    o.optopt(OPT_SPOOL, "spool", "spool directory", "DIR");
    o.optflag(
        OPT_TEST,
        "test",
        "check the configuration, print the effective settings, exit",
    );
    o.optflag("", OPT_JSON, "with `queue`: one JSON object per line");
    o.optflag(OPT_HELP, "help", "print this help");
    o.optflag(OPT_VERSION, "version", "print the version");
    o
}

const USAGE_BRIEF: &str = "Usage: detad [options]                 run the server (foreground)
       detad sendmail [sendmail options] [RCPT...]  submit a message (stdin); also as `sendmail`
       detad [options] flush           retry all deferred mail now
       detad [options] queue [--json]  list the queue
       detad [options] queue remove ID remove a message
       detad [options] queue retry ID  retry a message now";

/// Builds the configuration: defaults, then the file, then the flags.
fn load_config(m: &getopts::Matches) -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(path) = m.opt_str(OPT_CONFIG) {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{path}: cannot read: {e}"))?;
        config
            .apply_file_text(&path, &text)
            .map_err(|e| e.to_string())?;
    }
    let listen = m.opt_strs(OPT_LISTEN);
    if !listen.is_empty() {
        config.listen.clear();
        for l in listen {
            config
                .listen
                .push(parse_listen(&l).map_err(|e| format!("command line: -l: {e}"))?);
        }
    }
    if let Some(dir) = m.opt_str(OPT_SPOOL) {
        config.spool = PathBuf::from(dir);
    }
    config.validate().map_err(|e| e.to_string())?;
    // The relay's trust anchors load now, so `-t` and a reload catch a bad
    // relay_ca (start would too, later).
    Security::from_config(&config).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Who the binary is by the name it was called by: `sendmail` and `mailq`
/// (links to it, as other MTAs install them) are the submission command.
#[cfg(feature = "sendmail")]
fn personality(argv0: Option<&std::ffi::OsStr>) -> Option<Personality> {
    let name = std::path::Path::new(argv0?).file_name()?;
    match name.to_str()? {
        "sendmail" => Some(Personality::Sendmail),
        "mailq" => Some(Personality::Mailq),
        _ => None,
    }
}

/// `sendmail`/`mailq` by name, or `detad sendmail …`: that command's exit
/// code; `None` for the daemon and the other commands.
#[cfg(feature = "sendmail")]
fn submission_command(argv0: Option<&std::ffi::OsStr>, args: &[String]) -> Option<ExitCode> {
    if let Some(who) = personality(argv0) {
        return Some(ExitCode::from(sendmail::main(args, who)));
    }
    if args.first().is_some_and(|a| a == "sendmail") {
        return Some(ExitCode::from(sendmail::main(
            &args[1..],
            Personality::Sendmail,
        )));
    }
    None
}

#[cfg(not(feature = "sendmail"))]
fn submission_command(argv0: Option<&std::ffi::OsStr>, args: &[String]) -> Option<ExitCode> {
    let name = argv0
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .and_then(|n| n.to_str());
    let wanted =
        matches!(name, Some("sendmail" | "mailq")) || args.first().is_some_and(|a| a == "sendmail");
    wanted.then(|| {
        eprintln!("detad: this build has no sendmail command (cargo feature `sendmail`)");
        ExitCode::from(exit::UNAVAILABLE)
    })
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next();
    let raw: Vec<std::ffi::OsString> = argv.collect();
    // The pipe trampoline: before anything else, no logging, no options.
    if raw.first().is_some_and(|a| a == exec::TRAMPOLINE) {
        return exec::run(&raw[1..]);
    }
    let args: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(code) = submission_command(argv0.as_deref(), &args) {
        return code;
    }
    let m = match options().parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("detad: {e}\n{}", options().usage(USAGE_BRIEF));
            return ExitCode::from(exit::USAGE);
        }
    };
    if m.opt_present(OPT_HELP) {
        print!("{}", options().usage(USAGE_BRIEF));
        return ExitCode::from(exit::OK);
    }
    if m.opt_present(OPT_VERSION) {
        println!("detad {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::from(exit::OK);
    }
    let config = match load_config(&m) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("detad: configuration error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if m.opt_present(OPT_TEST) {
        print!("{}", config.describe());
        return ExitCode::from(exit::OK);
    }
    let free: Vec<&str> = m.free.iter().map(String::as_str).collect();
    if free.is_empty() {
        // The daemon logs where the configuration says.
        if let LogSetup::Fallback(e) = logging::init(&config, "info") {
            log::warn!(
                "log = syslog, but {}: {e}; logging to stderr",
                config.syslog_socket.display()
            );
        }
        return run(config, &m);
    }
    // The commands beside it talk to the person who runs them.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let code = match free.as_slice() {
        ["flush"] => cli::flush(&config),
        ["queue"] => cli::list(&config, m.opt_present(OPT_JSON)),
        ["queue", "remove", id] => cli::change(&config, "remove", id),
        ["queue", "retry", id] => cli::change(&config, "retry", id),
        _ => {
            eprintln!(
                "detad: unknown command {:?}\n{}",
                free.join(" "),
                options().usage(USAGE_BRIEF)
            );
            exit::USAGE
        }
    };
    ExitCode::from(code)
}

fn run(config: Config, m: &getopts::Matches) -> ExitCode {
    // Private by default: what detad creates is for its own user only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let matches = m.clone();
    let reload = Box::new(move || load_config(&matches));
    // The main loop runs on this, the main thread.
    let options = Options {
        signals: true,
        reload: Some(reload),
        ..Options::default()
    };
    let server = match server::bind(config, options) {
        Ok(server) => server,
        Err(e) => {
            log::error!("cannot start: {e}");
            let code = match e {
                StartError::Bind(..) | StartError::Setup(..) => exit::OSERR,
                StartError::Lock(_) => exit::TEMPFAIL,
                StartError::Spool(_) => exit::CANTCREAT,
                StartError::Privileges(_) => exit::NOPERM,
                StartError::Secrets(_) => exit::CONFIG,
                StartError::Uplink(_) => exit::CONFIG,
            };
            return ExitCode::from(code);
        }
    };
    server.run();
    ExitCode::from(exit::OK)
}
