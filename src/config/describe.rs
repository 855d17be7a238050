//! `detad -t`: the effective configuration as `key = value` lines.

use std::path::Path;

use super::{Config, Network, show_duration};

impl Config {
    /// The effective settings as `key = value` lines (`detad -t`).
    pub fn describe(&self) -> String {
        let secs = show_duration;
        let mut out = String::new();
        // A key that is not set is left out, so the output reads back as a
        // configuration (an empty `postmaster =` would not parse).
        let mut kv = |k: &str, v: String| {
            if !v.is_empty() {
                out.push_str(&format!("{k} = {v}\n"));
            }
        };
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
        kv("relay_tls", self.relay_tls.to_string());
        let path = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
        kv("relay_ca", path(self.relay_ca.as_deref()));
        kv(
            "relay_auth",
            path(self.relay_auth.as_ref().map(|a| a.path.as_path())),
        );
        self.describe_submission(&mut kv);
        kv("postmaster", self.postmaster.clone().unwrap_or_default());
        kv("user", self.user.clone().unwrap_or_default());
        kv("pipe_user", self.pipe_user.clone().unwrap_or_default());
        kv("log", self.log.name().into());
        kv("syslog_socket", self.syslog_socket.display().to_string());
        out
    }
    /// TLS, AUTH, BURL and aliases.
    fn describe_submission(&self, kv: &mut dyn FnMut(&str, String)) {
        let path = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
        for l in &self.listen_tls {
            kv("listen_tls", l.to_string());
        }
        kv("tls_cert", path(self.tls_cert.as_deref()));
        kv("tls_key", path(self.tls_key.as_deref()));
        kv("auth_users", path(self.auth_users.as_deref()));
        kv("auth_plaintext", self.auth_plaintext.name().into());
        kv(
            "auth_required",
            if self.auth_required { "yes" } else { "no" }.into(),
        );
        kv(
            "burl_imap",
            self.burl_imap
                .as_ref()
                .map(|(h, p)| format!("{h}:{p}"))
                .unwrap_or_default(),
        );
        kv("burl_tls", self.burl_tls.to_string());
        kv("burl_ca", path(self.burl_ca.as_deref()));
        kv("burl_user", self.burl_user.clone());
        kv(
            "burl_password_file",
            path(self.burl_password.as_ref().map(|p| p.path.as_path())),
        );
        kv(
            "aliases",
            path(self.aliases.as_ref().map(|a| a.path.as_path())),
        );
    }
}
