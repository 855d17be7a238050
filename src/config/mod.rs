//! Configuration: defaults, then the `key = value` file, then command-line
//! flags; validated once, then shared read-only.

mod keys;
mod parse;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use parse::{
    parse_duration, parse_listen, parse_networks, parse_route, parse_size, show_duration,
    strip_comment,
};

/// A transport a route sends recipients to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `maildir:DIR`: deliver into `DIR/<local-part>/`.
    Maildir(PathBuf),
    /// `pipe:PROGRAM ARGS...`: run PROGRAM (no shell) with the message on stdin.
    Pipe(Vec<String>),
    /// `smtp:HOST:PORT`: relay to a smarthost.
    Smtp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Maildir(dir) => write!(f, "maildir:{}", dir.display()),
            Transport::Pipe(argv) => write!(f, "pipe:{}", argv.join(" ")),
            Transport::Smtp { host, port } => write!(f, "smtp:{host}:{port}"),
        }
    }
}

/// `route = <domain|*> <transport>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lower-cased domain, or `*` for every other domain.
    pub domain: String,
    /// Where its recipients go.
    pub transport: Transport,
}

/// An IP network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The whole configuration. Every field has a small-board default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our host name (greeting, Received, DSN Reporting-MTA).
    pub hostname: String,
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The spool directory.
    pub spool: PathBuf,
    /// Session threads (concurrent SMTP connections).
    pub sessions: usize,
    /// Worker threads (concurrent deliveries).
    pub workers: usize,
    /// Largest message accepted, octets.
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Wait for the next command (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    pub command_timeout: Duration,
    /// The content must arrive within this plus one second per
    /// `data_min_rate` octets received.
    pub data_timeout: Duration,
    /// The slowest transfer rate of the content, octets per second
    /// (Postfix's `smtpd_min_data_rate`).
    pub data_min_rate: u64,
    /// Concurrent sessions of one client address; `None` = half of
    /// `sessions` (at least 1).
    pub max_sessions_per_ip: Option<usize>,
    /// fsync files and directories before acknowledging (off for tmpfs).
    pub fsync: bool,
    /// Cap on spool content, octets (0 = none).
    pub spool_max_bytes: u64,
    /// Clients that may send to any routed domain.
    pub relay_networks: Vec<Network>,
    /// Routes, most specific first at lookup.
    pub routes: Vec<Route>,
    /// Longest a `pipe:` program may run.
    pub pipe_timeout: Duration,
    /// RDLV mintimer, seconds (1..600).
    pub rdlv_mintimer: u32,
    /// RDLV/DETA jobs one sender may have in processing at once.
    pub max_inflight_per_sender: usize,
    /// Detached jobs in processing at once.
    pub max_detached: usize,
    /// First retry after a temporary failure.
    pub retry_min: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
    /// Send a `delayed` DSN (NOTIFY=DELAY) after this long in the queue.
    pub delay_warning: Duration,
    /// Give up (FAILURE DSN) after this long in the queue.
    pub max_queue_lifetime: Duration,
    /// DSNs one sender may cause per hour (bounce-storm guard).
    pub dsn_per_sender_per_hour: u32,
    /// Maildir for DSNs that cannot be delivered; none = log and drop.
    pub double_bounce: Option<PathBuf>,
    /// Relay client: connect timeout.
    pub smtp_connect_timeout: Duration,
    /// Relay client: wait for each reply (RFC 5321 §4.5.3.2: 5 minutes).
    pub smtp_command_timeout: Duration,
    /// Relay client: wait for the reply to the final dot (§4.5.3.2.6: 10 minutes).
    pub smtp_data_timeout: Duration,
    /// Where mail to `postmaster` goes (RFC 5321 §4.5.1: always accepted);
    /// `None` = the Maildir `<spool>/../maildir/postmaster`.
    pub postmaster: Option<String>,
    /// The user detad switches to after binding when started as root.
    pub user: Option<String>,
    /// The user `pipe:` programs run as (default `user`, else `nobody`).
    pub pipe_user: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            hostname: kernel_hostname(),
            listen: vec!["127.0.0.1:2525".parse().expect("valid literal")],
            spool: PathBuf::from("/var/spool/detad"),
            sessions: 8,
            workers: 2,
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
            data_min_rate: 500,
            max_sessions_per_ip: None,
            fsync: true,
            spool_max_bytes: 64 * 1024 * 1024,
            relay_networks: vec![
                Network {
                    addr: "127.0.0.0".parse().expect("valid literal"),
                    prefix: 8,
                },
                Network {
                    addr: "::1".parse().expect("valid literal"),
                    prefix: 128,
                },
            ],
            routes: Vec::new(),
            pipe_timeout: Duration::from_secs(600),
            rdlv_mintimer: 30,
            max_inflight_per_sender: 4,
            max_detached: 32,
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            delay_warning: Duration::from_secs(4 * 3600),
            max_queue_lifetime: Duration::from_secs(5 * 86400),
            dsn_per_sender_per_hour: 20,
            double_bounce: None,
            smtp_connect_timeout: Duration::from_secs(30),
            smtp_command_timeout: Duration::from_secs(300),
            smtp_data_timeout: Duration::from_secs(600),
            postmaster: None,
            user: None,
            pipe_user: None,
        }
    }
}

/// The configuration in effect, replaced whole on SIGHUP; every thread
/// reads the current one when it starts a piece of work.
#[derive(Debug)]
pub struct LiveConfig(RwLock<Arc<Config>>);

impl LiveConfig {
    /// Starts with `config`.
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig(RwLock::new(Arc::new(config)))
    }

    /// The configuration in effect now.
    pub fn get(&self) -> Arc<Config> {
        Arc::clone(&self.0.read().expect("config lock poisoned"))
    }

    /// Installs a reloaded configuration.
    pub fn set(&self, config: Config) {
        *self.0.write().expect("config lock poisoned") = Arc::new(config);
    }
}

/// The host name from the kernel, or `localhost`.
pub fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A configuration error, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `command line`.
    pub source: String,
    /// Line number (0 for the command line).
    pub line: usize,
    /// The key concerned.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}: {}: {}",
                self.source, self.line, self.key, self.message
            )
        } else {
            write!(f, "{}: {}: {}", self.source, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Cross-field checks, after everything is applied.
    ///
    /// # Errors
    /// What is inconsistent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: &str| ConfigError {
            source: "configuration".into(),
            line: 0,
            key: key.into(),
            message: message.into(),
        };
        if self.listen.is_empty() {
            return Err(err("listen", "at least one address is needed"));
        }
        if self.retry_min > self.retry_max {
            return Err(err("retry_min", "must not exceed retry_max"));
        }
        if let (Some(user), Some(pipe_user)) = (&self.user, &self.pipe_user)
            && user != pipe_user
        {
            return Err(err(
                "pipe_user",
                "must equal `user` when `user` is set (detad keeps no root privilege to switch to another user)",
            ));
        }
        Ok(())
    }

    /// The routes in effect: the configured ones, or, with none, every
    /// domain into a Maildir beside the spool (`<spool>/../maildir`).
    pub fn effective_routes(&self) -> Vec<Route> {
        if !self.routes.is_empty() {
            return self.routes.clone();
        }
        vec![Route {
            domain: "*".into(),
            transport: self.default_transport(),
        }]
    }

    fn default_transport(&self) -> Transport {
        let parent = self
            .spool
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Transport::Maildir(parent.join("maildir"))
    }

    /// The route for a domain: an exact match first, then `*`. Called per
    /// RCPT and per delivery attempt, so it only scans.
    pub fn route_for(&self, domain: &str) -> Option<Transport> {
        if self.routes.is_empty() {
            return Some(self.default_transport());
        }
        let exact = self
            .routes
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(domain));
        exact
            .or_else(|| self.routes.iter().find(|r| r.domain == "*"))
            .map(|r| r.transport.clone())
    }

    /// A SIGHUP reload: `new` applies, except the keys that only take
    /// effect at start (sockets, threads, spool), which keep their current
    /// values; returns the configuration to install and the names of those
    /// keys that changed (the log says they need a restart).
    pub fn reloaded(&self, new: Config) -> (Config, Vec<&'static str>) {
        let mut restart = Vec::new();
        let mut applied = new;
        macro_rules! keep {
            ($($field:ident),*) => {$(
                if applied.$field != self.$field {
                    restart.push(stringify!($field));
                    applied.$field = self.$field.clone();
                }
            )*};
        }
        keep!(listen, spool, sessions, workers, fsync, hostname);
        (applied, restart)
    }

    /// Whether `address` is our postmaster (RFC 5321 §4.5.1): the local part
    /// `postmaster` in any case, bare or at our host name.
    pub fn is_postmaster(&self, address: &str) -> bool {
        let (local, domain) = match address.rsplit_once('@') {
            Some((l, d)) => (l, d),
            None => (address, ""),
        };
        local.eq_ignore_ascii_case("postmaster")
            && (domain.is_empty() || domain.eq_ignore_ascii_case(&self.hostname))
    }

    /// Where mail for `address` goes: its route, and the address to deliver
    /// to (our postmaster's mail goes to `postmaster`, by default the local
    /// Maildir `<spool>/../maildir/postmaster`).
    pub fn destination(&self, address: &str) -> (Option<Transport>, String) {
        if self.is_postmaster(address) {
            return match &self.postmaster {
                Some(target) => {
                    let domain = target.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                    (self.route_for(&domain.to_ascii_lowercase()), target.clone())
                }
                None => (
                    Some(self.default_transport()),
                    format!("postmaster@{}", self.hostname),
                ),
            };
        }
        let domain = match address.rsplit_once('@') {
            Some((_, d)) => d.to_ascii_lowercase(),
            None => self.hostname.to_ascii_lowercase(),
        };
        (self.route_for(&domain), address.to_string())
    }

    /// Concurrent sessions one client address may have.
    pub fn sessions_per_ip(&self) -> usize {
        self.max_sessions_per_ip
            .unwrap_or((self.sessions / 2).max(1))
    }

    /// Whether `ip` may relay.
    pub fn may_relay(&self, ip: IpAddr) -> bool {
        self.relay_networks.iter().any(|n| n.contains(ip))
    }

    /// The effective settings as `key = value` lines (`detad -t`).
    pub fn describe(&self) -> String {
        let secs = show_duration;
        let mut out = String::new();
        let mut kv = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
        kv("hostname", self.hostname.clone());
        for l in &self.listen {
            kv("listen", l.to_string());
        }
        kv("spool", self.spool.display().to_string());
        kv("sessions", self.sessions.to_string());
        kv("workers", self.workers.to_string());
        kv("max_message_size", self.max_message_size.to_string());
        kv("max_recipients", self.max_recipients.to_string());
        kv("command_timeout", secs(self.command_timeout));
        kv("data_timeout", secs(self.data_timeout));
        kv("data_min_rate", self.data_min_rate.to_string());
        kv("max_sessions_per_ip", self.sessions_per_ip().to_string());
        kv("fsync", if self.fsync { "yes" } else { "no" }.into());
        kv("spool_max_bytes", self.spool_max_bytes.to_string());
        let nets: Vec<String> = self.relay_networks.iter().map(Network::to_string).collect();
        kv("relay_networks", nets.join(" "));
        for r in self.effective_routes() {
            kv("route", format!("{} {}", r.domain, r.transport));
        }
        kv("pipe_timeout", secs(self.pipe_timeout));
        kv("rdlv_mintimer", self.rdlv_mintimer.to_string());
        kv(
            "max_inflight_per_sender",
            self.max_inflight_per_sender.to_string(),
        );
        kv("max_detached", self.max_detached.to_string());
        kv("retry_min", secs(self.retry_min));
        kv("retry_max", secs(self.retry_max));
        kv("delay_warning", secs(self.delay_warning));
        kv("max_queue_lifetime", secs(self.max_queue_lifetime));
        kv(
            "dsn_per_sender_per_hour",
            self.dsn_per_sender_per_hour.to_string(),
        );
        kv(
            "double_bounce",
            self.double_bounce
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        kv("smtp_connect_timeout", secs(self.smtp_connect_timeout));
        kv("smtp_command_timeout", secs(self.smtp_command_timeout));
        kv("smtp_data_timeout", secs(self.smtp_data_timeout));
        kv("postmaster", self.postmaster.clone().unwrap_or_default());
        kv("user", self.user.clone().unwrap_or_default());
        kv("pipe_user", self.pipe_user.clone().unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_applied_and_lists_repeat() {
        let mut c = Config::default();
        let text = "# gateway\nhostname = gw.example\nlisten = 127.0.0.1:25\nlisten = [::1]:25\n\
                    route = example.com smtp:relay.example:587\nroute = * maildir:/var/mail\nfsync = no\n\
                    max_message_size = 2M\ncommand_timeout = 5m\n";
        c.apply_file_text("t.conf", text).unwrap();
        assert_eq!(c.hostname, "gw.example");
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.routes.len(), 2);
        assert!(!c.fsync);
        assert_eq!(c.max_message_size, 2 << 20);
        assert_eq!(c.command_timeout, Duration::from_secs(300));
        assert_eq!(
            c.route_for("EXAMPLE.com"),
            Some(Transport::Smtp {
                host: "relay.example".into(),
                port: 587
            })
        );
        assert_eq!(
            c.route_for("other"),
            Some(Transport::Maildir("/var/mail".into()))
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = Config::default()
            .apply_file_text("gw.conf", "\n\nfrobnicate = 1\n")
            .unwrap_err();
        assert_eq!(err.to_string(), "gw.conf:3: frobnicate: unknown key");
    }

    #[test]
    fn bad_values_are_errors() {
        let mut c = Config::default();
        for line in [
            "sessions = 0",
            "fsync = maybe",
            "listen = nowhere",
            "route = x ftp:y",
            "rdlv_mintimer = 601",
            "relay_networks = 10.0.0.0/33",
            "max_recipients = 50",
            "route = x pipe:relative",
        ] {
            assert!(c.apply_file_text("t", line).is_err(), "{line}");
        }
    }

    #[test]
    fn default_route_is_a_maildir_beside_the_spool() {
        let c = Config {
            spool: PathBuf::from("var/spool"),
            ..Config::default()
        };
        assert_eq!(
            c.route_for("any.example"),
            Some(Transport::Maildir("var/maildir".into()))
        );
    }

    #[test]
    fn reload_applies_routes_and_keeps_start_only_keys() {
        let old = Config::default();
        let mut new = Config::default();
        new.apply_file_text(
            "t",
            "route = * maildir:/m\nworkers = 7\nmax_recipients = 200\n",
        )
        .unwrap();
        let (applied, restart) = old.reloaded(new);
        assert_eq!(restart, vec!["workers"]);
        assert_eq!(applied.workers, old.workers);
        assert_eq!(applied.max_recipients, 200);
        assert_eq!(applied.routes.len(), 1);
    }

    #[test]
    fn networks_match_v4_v6_and_mapped() {
        let nets = parse_networks("192.168.1.0/24, ::1/128").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(nets[0].contains(ip("192.168.1.77")));
        assert!(!nets[0].contains(ip("192.168.2.1")));
        assert!(nets[0].contains(ip("::ffff:192.168.1.5")));
        assert!(nets[1].contains(ip("::1")));
        assert!(parse_networks("0.0.0.0/0").unwrap()[0].contains(ip("8.8.8.8")));
    }

    #[test]
    fn pipe_words_honour_quotes_without_a_shell() {
        let r = parse_route("sms pipe:/bin/sh -c \"sleep 1; cat > '{recipient}'\" x").unwrap();
        assert_eq!(
            r.transport,
            Transport::Pipe(vec![
                "/bin/sh".into(),
                "-c".into(),
                "sleep 1; cat > '{recipient}'".into(),
                "x".into()
            ])
        );
    }
}
