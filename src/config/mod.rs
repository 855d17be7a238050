//! Configuration: defaults, then the `key = value` file, then command-line
//! flags; validated once, then shared read-only.

mod aliases;
mod burl;
mod describe;
mod keys;
mod parse;
mod relay;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use aliases::Aliases;
pub use burl::{Burl, BurlPassword, BurlTls, parse_host_port};
pub use parse::{
    parse_duration, parse_listen, parse_networks, parse_route, parse_size, show_duration,
    strip_comment,
};
pub use relay::{RelayAuth, RelayTls};

/// A transport a route sends recipients to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `maildir:DIR`: deliver into `DIR/<local-part>/`.
    Maildir(PathBuf),
    /// `pipe:PROGRAM ARGS...`: run PROGRAM (no shell) with the message on stdin.
    Pipe(Vec<String>),
    /// `smtp:HOST:PORT`: relay to a smarthost; `smtps:HOST:PORT`: the same
    /// over implicit TLS (RFC 8314 §3.3, e.g. port 465).
    Smtp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// `smtps:`: TLS from the first byte, before the greeting.
        implicit_tls: bool,
    },
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Maildir(dir) => write!(f, "maildir:{}", dir.display()),
            // Quoted as the route parser reads them, so `detad -t` output
            // can be pasted back into a configuration.
            Transport::Pipe(argv) => {
                let words: Vec<String> = argv.iter().map(|a| quote_word(a)).collect();
                write!(f, "pipe:{}", words.join(" "))
            }
            Transport::Smtp {
                host,
                port,
                implicit_tls,
            } => {
                let scheme = if *implicit_tls { "smtps" } else { "smtp" };
                write!(f, "{scheme}:{host}:{port}")
            }
        }
    }
}

/// A `pipe:` argument as the route parser reads it back: bare when it
/// has no blank or quote, else in the quote it does not contain.
fn quote_word(word: &str) -> String {
    if !word.is_empty() && !word.contains([' ', '\t', '"', '\'']) {
        word.to_string()
    } else if word.contains('"') {
        format!("'{word}'")
    } else {
        format!("\"{word}\"")
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

/// Where the log goes (`log = stderr | syslog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// Standard error, through env_logger's own format.
    #[default]
    Stderr,
    /// RFC 3164 datagrams to `syslog_socket`, facility mail.
    Syslog,
}

impl LogTarget {
    /// The configuration file's word for it.
    pub fn name(self) -> &'static str {
        match self {
            LogTarget::Stderr => "stderr",
            LogTarget::Syslog => "syslog",
        }
    }
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
    /// Relay client: the STARTTLS policy.
    pub relay_tls: RelayTls,
    /// Relay client: the CA file server certificates are verified against;
    /// `None` = the system's bundle.
    pub relay_ca: Option<PathBuf>,
    /// Relay client: the credentials for AUTH, read from `relay_auth`.
    pub relay_auth: Option<RelayAuth>,
    /// BURL: the one IMAP server URLs may name (`burl_imap`).
    pub burl_imap: Option<(String, u16)>,
    /// BURL: how the IMAP connection is protected.
    pub burl_tls: BurlTls,
    /// BURL: trust anchors for the IMAP server's certificate.
    pub burl_ca: Option<PathBuf>,
    /// BURL: detad's IMAP login (RFC 4468 §3.3's "submit").
    pub burl_user: String,
    /// BURL: its password, read from `burl_password_file`.
    pub burl_password: Option<BurlPassword>,
    /// Local aliases (`aliases = FILE`), read with the configuration.
    pub aliases: Option<Aliases>,
    /// Where mail to `postmaster` goes (RFC 5321 §4.5.1: always accepted);
    /// `None` = the Maildir `<spool>/../maildir/postmaster`.
    pub postmaster: Option<String>,
    /// The user detad switches to after binding when started as root.
    pub user: Option<String>,
    /// The user `pipe:` programs run as (default `user`, else `nobody`).
    pub pipe_user: Option<String>,
    /// The server's certificate chain (PEM): enables STARTTLS.
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert` (PEM, unencrypted).
    pub tls_key: Option<PathBuf>,
    /// Addresses for implicit TLS (RFC 8314, port 465 style).
    pub listen_tls: Vec<SocketAddr>,
    /// Users for SMTP AUTH, a Dovecot passwd-file.
    pub auth_users: Option<PathBuf>,
    /// Where AUTH is offered without TLS.
    pub auth_plaintext: AuthPlaintext,
    /// Nothing but EHLO/STARTTLS/AUTH/NOOP/RSET/QUIT before AUTH, for
    /// clients outside `relay_networks`.
    pub auth_required: bool,
    /// Where the log goes.
    pub log: LogTarget,
    /// The syslog daemon's datagram socket (`log = syslog`).
    pub syslog_socket: PathBuf,
}

/// `auth_plaintext`: where passwords may cross an unencrypted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPlaintext {
    /// Only inside TLS (the default).
    No,
    /// Also on loopback connections (127.0.0.0/8, ::1).
    Loopback,
    /// Everywhere (a trusted link, e.g. a point-to-point cable).
    Yes,
}

impl AuthPlaintext {
    /// The configuration value.
    pub fn name(self) -> &'static str {
        match self {
            AuthPlaintext::No => "no",
            AuthPlaintext::Loopback => "loopback",
            AuthPlaintext::Yes => "yes",
        }
    }

    /// Whether a client at `peer` may authenticate without TLS.
    pub fn allows(self, peer: IpAddr) -> bool {
        let loopback = match peer {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            IpAddr::V4(v4) => v4.is_loopback(),
        };
        match self {
            AuthPlaintext::No => false,
            AuthPlaintext::Loopback => loopback,
            AuthPlaintext::Yes => true,
        }
    }
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
            relay_tls: RelayTls::default(),
            relay_ca: None,
            relay_auth: None,
            burl_imap: None,
            burl_tls: BurlTls::StartTls,
            burl_ca: None,
            // RFC 4468 §3.3: "submit" is the suggested default.
            burl_user: "submit".into(),
            burl_password: None,
            aliases: None,
            postmaster: None,
            user: None,
            pipe_user: None,
            tls_cert: None,
            tls_key: None,
            listen_tls: Vec::new(),
            auth_users: None,
            auth_plaintext: AuthPlaintext::No,
            auth_required: false,
            log: LogTarget::Stderr,
            syslog_socket: PathBuf::from("/dev/log"),
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
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(err("tls_cert", "tls_cert and tls_key go together"));
        }
        if !self.listen_tls.is_empty() && self.tls_cert.is_none() {
            return Err(err("listen_tls", "needs tls_cert and tls_key"));
        }
        if self.tls_cert.is_some() && !cfg!(feature = "tls") {
            return Err(err(
                "tls_cert",
                "this detad was built without TLS (cargo feature `tls`); remove tls_cert, tls_key and listen_tls, or use a build with it",
            ));
        }
        if self.burl_imap.is_some() {
            if !cfg!(feature = "burl") {
                return Err(err(
                    "burl_imap",
                    "this detad was built without BURL (cargo feature `burl`)",
                ));
            }
            if self.burl_password.is_none() {
                return Err(err("burl_imap", "needs burl_password_file"));
            }
            if self.auth_users.is_none() {
                return Err(err(
                    "burl_imap",
                    "needs auth_users: BURL is only for authenticated clients (RFC 4468 §3.1)",
                ));
            }
            if self.burl_tls != BurlTls::None && !cfg!(feature = "tls") {
                return Err(err(
                    "burl_tls",
                    "this detad was built without TLS (cargo feature `tls`): only burl_tls = none",
                ));
            }
        }
        if self.auth_required && self.auth_users.is_none() {
            return Err(err("auth_required", "needs auth_users"));
        }
        if let (Some(user), Some(pipe_user)) = (&self.user, &self.pipe_user)
            && user != pipe_user
        {
            return Err(err(
                "pipe_user",
                "must equal `user` when `user` is set (detad keeps no root privilege to switch to another user)",
            ));
        }
        self.validate_uplink()
            .map_err(|(key, message)| err(key, &message))
    }

    /// The uplink's settings against each other and the build: what could
    /// only fail at delivery time fails here instead.
    fn validate_uplink(&self) -> Result<(), (&'static str, String)> {
        let smtp_routes = self.routes.iter().filter_map(|r| match r.transport {
            Transport::Smtp { implicit_tls, .. } => Some(implicit_tls),
            _ => None,
        });
        let (mut smtps, mut starttls) = (false, false);
        for implicit in smtp_routes {
            smtps |= implicit;
            starttls |= !implicit;
        }
        if !cfg!(feature = "tls") {
            const NO_TLS: &str = "detad was built without TLS (cargo feature `tls`)";
            if self.relay_tls == RelayTls::Require {
                return Err((
                    "relay_tls",
                    format!("`require` cannot be met: {NO_TLS}; rebuild with the default features"),
                ));
            }
            if smtps {
                return Err(("route", format!("smtps: routes need TLS: {NO_TLS}")));
            }
            if self.relay_auth.is_some() {
                return Err((
                    "relay_auth",
                    format!("credentials are only ever sent over TLS: {NO_TLS}"),
                ));
            }
        }
        if self.relay_auth.is_some() && self.relay_tls == RelayTls::None && starttls {
            return Err((
                "relay_auth",
                "credentials are only ever sent over TLS, and relay_tls = none turns STARTTLS off \
                 (set relay_tls = opportunistic or require)"
                    .into(),
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
        // The log is set up once, at start.
        keep!(
            listen,
            listen_tls,
            spool,
            sessions,
            workers,
            fsync,
            hostname,
            log,
            syslog_socket
        );
        (applied, restart)
    }

    /// The BURL settings, when `burl_imap` is set.
    pub fn burl(&self) -> Option<Burl> {
        let (host, port) = self.burl_imap.clone()?;
        Some(Burl {
            host,
            port,
            tls: self.burl_tls,
            ca: self.burl_ca.clone(),
            user: self.burl_user.clone(),
            password: self.burl_password.clone(),
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_detad_t_prints_reads_back_the_same() {
        let mut c = Config::default();
        c.apply_file_text(
            "t.conf",
            "hostname = gw.test\nroute = x.test pipe:/bin/sh -c \"cat; echo 'done'\"\n\
             route = * smtp:[::1]:2525\nrelay_networks = 192.0.2.0/24 ::1/128\n",
        )
        .unwrap();
        let printed = c.describe();
        let mut back = Config::default();
        back.apply_file_text("printed", &printed).unwrap();
        assert_eq!(back.describe(), printed);
    }

    #[test]
    fn a_printed_pipe_route_reads_back_the_same() {
        for text in [
            "* pipe:/bin/sh -c \"sleep 3; echo done\"",
            "x.test pipe:/usr/bin/printf '%s \"q\"' {recipient}",
        ] {
            let route = parse_route(text).unwrap();
            let printed = format!("{} {}", route.domain, route.transport);
            assert_eq!(parse_route(&printed).unwrap(), route, "{printed}");
        }
    }

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
                port: 587,
                implicit_tls: false
            })
        );
        assert_eq!(
            c.route_for("other"),
            Some(Transport::Maildir("/var/mail".into()))
        );
    }

    #[test]
    fn smtps_routes_and_uplink_keys_are_read_and_described() {
        let mut c = Config::default();
        c.apply_file_text(
            "t",
            "route = a.example smtps:[2001:db8::1]:465\nroute = * smtp:mx.example:25\n\
             relay_tls = require\nrelay_ca = /etc/detad/ca.pem\n",
        )
        .unwrap();
        let smtps = Transport::Smtp {
            host: "2001:db8::1".into(),
            port: 465,
            implicit_tls: true,
        };
        assert_eq!(c.route_for("a.example"), Some(smtps.clone()));
        assert_eq!(smtps.to_string(), "smtps:2001:db8::1:465");
        assert_eq!(c.relay_tls, RelayTls::Require);
        let described = c.describe();
        for line in [
            "route = * smtp:mx.example:25\n",
            "relay_tls = require\n",
            "relay_ca = /etc/detad/ca.pem\n",
        ] {
            assert!(described.contains(line), "{line:?} in\n{described}");
        }
        // Not set: left out, so the output reads back.
        assert!(!described.contains("relay_auth"), "{described}");
        assert!(c.apply_file_text("t", "relay_tls = maybe").is_err());
        assert!(c.apply_file_text("t", "route = x smtps:nohost").is_err());
    }

    /// Without the `tls` feature, what needs TLS fails the configuration
    /// check, never a delivery.
    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_tls_require_and_smtps_fail_the_check() {
        for text in ["relay_tls = require", "route = * smtps:mx.example:465"] {
            let mut c = Config::default();
            c.apply_file_text("t", text).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.message.contains("built without TLS"), "{e}");
        }
        let mut c = Config::default();
        c.apply_file_text("t", "route = * smtp:mx.example:25")
            .unwrap();
        assert!(c.validate().is_ok(), "opportunistic degrades to plaintext");
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
    fn log_keys_are_parsed_shown_and_need_a_restart() {
        let old = Config::default();
        assert_eq!(old.log, LogTarget::Stderr);
        assert_eq!(old.syslog_socket, PathBuf::from("/dev/log"));
        let mut new = Config::default();
        new.apply_file_text("t", "log = syslog\nsyslog_socket = /run/log\n")
            .unwrap();
        assert_eq!(new.log, LogTarget::Syslog);
        let shown = new.describe();
        assert!(
            shown.contains("\nlog = syslog\nsyslog_socket = /run/log\n"),
            "{shown}"
        );
        let (applied, restart) = old.reloaded(new);
        assert_eq!(restart, vec!["log", "syslog_socket"]);
        assert_eq!(applied.log, LogTarget::Stderr);
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
