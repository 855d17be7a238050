//! The detad binary: options, configuration, logging, exit codes.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use detad::config::{Config, parse_listen};
use detad::server::listener::{Options, StartError};
use detad::spool::Spool;
use detad::{queue, server};

/// sysexits.h codes.
mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const NOINPUT: u8 = 66;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const OSERR: u8 = 71;
    pub const CANTCREAT: u8 = 73;
    pub const IOERR: u8 = 74;
    pub const CONFIG: u8 = 78;
}

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
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    match free.as_slice() {
        [] => run(config, &m),
        ["flush"] => flush(&config),
        ["queue"] => list(&config, m.opt_present(OPT_JSON)),
        ["queue", "remove", id] => change(&config, "remove", id),
        ["queue", "retry", id] => change(&config, "retry", id),
        _ => {
            eprintln!(
                "detad: unknown command {:?}\n{}",
                free.join(" "),
                options().usage(USAGE_BRIEF)
            );
            ExitCode::from(exit::USAGE)
        }
    }
}

fn run(config: Config, m: &getopts::Matches) -> ExitCode {
    let matches = m.clone();
    let reload = Box::new(move || load_config(&matches));
    // The main loop runs on this, the main thread.
    let server = match server::listener::bind(
        config,
        Options {
            signals: true,
            reload: Some(reload),
        },
    ) {
        Ok(server) => server,
        Err(e) => {
            log::error!("cannot start: {e}");
            let code = match e {
                StartError::Bind(..) => exit::OSERR,
                StartError::Spool(_) => exit::CANTCREAT,
                StartError::Setup(..) => exit::OSERR,
            };
            return ExitCode::from(code);
        }
    };
    server.run();
    ExitCode::from(exit::OK)
}

fn open_spool(config: &Config) -> Result<Spool, ExitCode> {
    if !config.spool.join("queue").is_dir() {
        eprintln!(
            "detad: no spool at {} (check -s or `spool`)",
            config.spool.display()
        );
        return Err(ExitCode::from(exit::NOINPUT));
    }
    Spool::open(&config.spool, config.fsync, 0).map_err(|e| {
        eprintln!("detad: {e}");
        ExitCode::from(exit::IOERR)
    })
}

fn flush(config: &Config) -> ExitCode {
    match queue::tell_daemon(&config.spool, "flush") {
        Ok(()) => {
            println!("flush requested");
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!(
                "detad: no running daemon on spool {} ({e}); start it to deliver",
                config.spool.display()
            );
            ExitCode::from(exit::UNAVAILABLE)
        }
    }
}

fn list(config: &Config, json: bool) -> ExitCode {
    let spool = match open_spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = detad::server::shared::unix_now();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match queue::list(&spool, json, now, &mut out) {
        Ok(n) => {
            if !json {
                let _ = writeln!(out, "{n} message(s) in the queue");
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("detad: {e}");
            ExitCode::from(exit::IOERR)
        }
    }
}

fn change(config: &Config, what: &str, id: &str) -> ExitCode {
    let spool = match open_spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let found = Spool::is_valid_id(id)
        .then(|| spool.peek(id).ok())
        .flatten();
    let Some(mut env) = found else {
        eprintln!("detad: no message {id} in the queue");
        return ExitCode::from(exit::NOINPUT);
    };
    if queue::tell_daemon(&config.spool, &format!("{what} {id}")).is_ok() {
        println!("{what} {id}: requested from the running daemon");
        return ExitCode::from(exit::OK);
    }
    // No daemon: change the spool directly.
    let result = if what == "remove" {
        spool.remove(id)
    } else {
        env.next_attempt = 0;
        spool.write_envelope(&env)
    };
    match result {
        Ok(()) => {
            println!("{what} {id}: done (no daemon running)");
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("detad: {e}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}
