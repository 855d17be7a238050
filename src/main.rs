//! The detad binary: options, configuration, logging, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use detad::cli::{self, exit};
use detad::config::{Config, parse_listen};
use detad::delivery::exec;
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
    Ok(config)
}

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // The pipe trampoline: before anything else, no logging, no options.
    if raw.first().is_some_and(|a| a == exec::TRAMPOLINE) {
        return exec::run(&raw[1..]);
    }
    let args: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let free: Vec<&str> = m.free.iter().map(String::as_str).collect();
    let code = match free.as_slice() {
        [] => return run(config, &m),
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
            };
            return ExitCode::from(code);
        }
    };
    server.run();
    ExitCode::from(exit::OK)
}
