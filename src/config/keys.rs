//! The configuration file's keys: each parsed and checked against its
//! documented range, so that no value can make the daemon misbehave later
//! (an overflow, a wrap into the past, a zero that divides).

use std::path::PathBuf;
use std::time::Duration;

use super::parse::{
    duration_in, non_empty_path, parse_address, parse_bool, parse_count, parse_hostname,
    parse_listen, parse_networks, parse_route, parse_user_name, size_in, strip_comment,
};
use super::{Config, ConfigError};

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

impl Config {
    /// Applies the `key = value` text of a configuration file. `#` starts a
    /// comment at the start of a line or after white space (outside quotes).
    ///
    /// # Errors
    /// The first bad line: unknown key, bad value, missing `=`.
    pub fn apply_file_text(&mut self, name: &str, text: &str) -> Result<(), ConfigError> {
        let mut listen_seen = false;
        for (i, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            let err = |key: &str, message: String| ConfigError {
                source: name.to_string(),
                line: i + 1,
                key: key.to_string(),
                message,
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(err(line, "expected `key = value`".into()));
            };
            let (key, value) = (key.trim(), value.trim());
            // The first `listen` in a file replaces the default; later ones add.
            if key == "listen" && !listen_seen {
                self.listen.clear();
                listen_seen = true;
            }
            self.set(key, value).map_err(|m| err(key, m))?;
        }
        Ok(())
    }

    /// Sets one key. `listen` and `route` add to their lists.
    ///
    /// # Errors
    /// A message for an unknown key or a value outside its range.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        if self.set_network(key, value)?
            || self.set_limit(key, value)?
            || self.set_time(key, value)?
        {
            return Ok(());
        }
        match key {
            "hostname" => self.hostname = parse_hostname(value)?,
            "spool" => self.spool = non_empty_path(value)?,
            "fsync" => self.fsync = parse_bool(value)?,
            "route" => self.routes.push(parse_route(value)?),
            "double_bounce" => {
                self.double_bounce = (!value.is_empty()).then(|| PathBuf::from(value))
            }
            "postmaster" => self.postmaster = Some(parse_address(value)?),
            "user" => self.user = Some(parse_user_name(value)?),
            "pipe_user" => self.pipe_user = Some(parse_user_name(value)?),
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }

    fn set_network(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "listen" => self.listen.push(parse_listen(value)?),
            "relay_networks" => self.relay_networks = parse_networks(value)?,
            "sessions" => self.sessions = parse_count(value, 1, 1024)?,
            "max_sessions_per_ip" => self.max_sessions_per_ip = Some(parse_count(value, 1, 1024)?),
            "workers" => self.workers = parse_count(value, 1, 256)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_limit(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            // RFC 5321 §4.5.3.1.7: at least 64K octets of content.
            "max_message_size" => self.max_message_size = size_in(value, 64 << 10, 1 << 32)?,
            // RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted.
            "max_recipients" => self.max_recipients = parse_count(value, 100, 100_000)?,
            "data_min_rate" => self.data_min_rate = parse_count(value, 1, 1 << 30)? as u64,
            "spool_max_bytes" => {
                let v = size_in(value, 0, 1 << 40)?;
                if v != 0 && v < 64 * 1024 {
                    return Err(format!("`{value}` is neither 0 (no cap) nor at least 64K"));
                }
                self.spool_max_bytes = v;
            }
            "rdlv_mintimer" => self.rdlv_mintimer = parse_count(value, 1, 600)? as u32,
            "max_inflight_per_sender" => {
                self.max_inflight_per_sender = parse_count(value, 1, 10_000)?
            }
            "max_detached" => self.max_detached = parse_count(value, 0, 100_000)?,
            "dsn_per_sender_per_hour" => {
                self.dsn_per_sender_per_hour = parse_count(value, 0, 1_000_000)? as u32
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_time(&mut self, key: &str, value: &str) -> Result<bool, String> {
        let d = |min, max| duration_in(value, min, max);
        match key {
            "command_timeout" => self.command_timeout = d(SECOND, HOUR)?,
            "data_timeout" => self.data_timeout = d(SECOND, HOUR)?,
            "pipe_timeout" => self.pipe_timeout = d(SECOND, DAY)?,
            "retry_min" => self.retry_min = d(SECOND, DAY)?,
            "retry_max" => self.retry_max = d(SECOND, 7 * DAY)?,
            "delay_warning" => self.delay_warning = d(SECOND, 30 * DAY)?,
            "max_queue_lifetime" => self.max_queue_lifetime = d(SECOND, 365 * DAY)?,
            "smtp_connect_timeout" => self.smtp_connect_timeout = d(SECOND, HOUR)?,
            "smtp_command_timeout" => self.smtp_command_timeout = d(SECOND, HOUR)?,
            "smtp_data_timeout" => self.smtp_data_timeout = d(SECOND, 2 * HOUR)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_their_range_are_refused_naming_file_line_and_key() {
        let err = Config::default()
            .apply_file_text("gw.conf", "\n\ncommand_timeout = 18446744073709551615\n")
            .unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (3, "command_timeout"));
        assert!(
            err.to_string().starts_with("gw.conf:3: command_timeout: "),
            "{err}"
        );
        for line in [
            "max_queue_lifetime = 100000d",
            "retry_max = 8d",
            "data_timeout = 0",
            "max_message_size = 10",
            "spool_max_bytes = 100",
            "sessions = 0",
            "data_min_rate = 0",
            "smtp_data_timeout = 3h",
            "delay_warning = 31d",
            "hostname = bad name",
            "user = root;rm",
        ] {
            assert!(
                Config::default().apply_file_text("t", line).is_err(),
                "{line}"
            );
        }
    }

    #[test]
    fn trailing_comments_work_outside_quotes() {
        let mut c = Config::default();
        c.apply_file_text(
            "t",
            "route = * maildir:/x  # the Maildir\nroute = sms pipe:/bin/send \"#tag\" # sms\n",
        )
        .unwrap();
        assert_eq!(
            c.routes[0].transport,
            super::super::Transport::Maildir("/x".into())
        );
        assert_eq!(
            c.routes[1].transport,
            super::super::Transport::Pipe(vec!["/bin/send".into(), "#tag".into()])
        );
    }

    #[test]
    fn random_values_never_panic_and_accepted_times_are_bounded() {
        const KEYS: &[&str] = &[
            "command_timeout",
            "data_timeout",
            "pipe_timeout",
            "retry_min",
            "retry_max",
            "delay_warning",
            "max_queue_lifetime",
            "smtp_connect_timeout",
            "smtp_command_timeout",
            "smtp_data_timeout",
            "max_message_size",
            "spool_max_bytes",
            "sessions",
            "workers",
            "data_min_rate",
            "rdlv_mintimer",
            "max_recipients",
            "max_detached",
            "max_inflight_per_sender",
            "listen",
            "route",
            "relay_networks",
            "hostname",
            "user",
            "postmaster",
            "max_sessions_per_ip",
        ];
        const PIECES: &[&str] = &[
            "0",
            "1",
            "9",
            "18446744073709551615",
            "99999999999",
            "s",
            "m",
            "h",
            "d",
            "K",
            "M",
            "G",
            "-",
            " ",
            "*",
            ":",
            "127.0.0.1",
            "pipe:",
            "maildir:",
            "/x",
            "\"",
            "#",
            "\u{e9}",
            "/",
            "33",
            "[::1]",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let key = KEYS[(next() % KEYS.len() as u64) as usize];
            let mut value = String::new();
            for _ in 0..(next() % 4 + 1) {
                value.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let mut c = Config::default();
            if c.set(key, &value).is_ok() {
                // Whatever is accepted can be added to any instant of the
                // next century without overflow.
                for d in [
                    c.command_timeout,
                    c.data_timeout,
                    c.pipe_timeout,
                    c.retry_max,
                    c.max_queue_lifetime,
                    c.smtp_data_timeout,
                    c.delay_warning,
                ] {
                    assert!(d <= 365 * DAY, "{key} = {value:?} gave {d:?}");
                    assert!(std::time::Instant::now().checked_add(d).is_some());
                }
                assert!(c.max_message_size <= 1 << 32);
            }
        }
    }
}
