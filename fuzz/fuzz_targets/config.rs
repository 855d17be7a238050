//! The configuration file parser: no text makes `apply_file_text`,
//! `validate` or the accessors the server calls panic, and a configuration
//! that validates keeps later arithmetic in range: every duration can be
//! added to `Instant::now()` (deadlines are computed that way) and every
//! size to the spool's byte count.
//!
//! With `FUZZ_CONFIG_READBACK=1` it also checks that what `detad -t` prints
//! (`Config::describe`) reads back as the same configuration. Off by
//! default: it does not yet (unset `postmaster`, `user` and `pipe_user` are
//! printed as empty values, which the parser refuses; `pipe:` words lose
//! their quotes, so `pipe:/bin/sh -c "a; b"` reads back as other words).
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use detad::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut config = Config::default();
    if config.apply_file_text("fuzz.conf", &text).is_err() || config.validate().is_err() {
        return;
    }
    // What the server does with a configuration that validated.
    let _ = config.effective_routes();
    for address in ["a@example.org", "postmaster", "POSTMASTER@gw", "@", ""] {
        let _ = config.route_for(address.rsplit('@').next().unwrap_or(""));
        let _ = config.is_postmaster(address);
        let _ = config.destination(address);
    }
    let _ = config.sessions_per_ip();
    for ip in ["127.0.0.1", "192.0.2.1", "::1", "::ffff:10.0.0.1"] {
        let _ = config.may_relay(ip.parse::<IpAddr>().expect("valid literal"));
    }
    let (_, _) = Config::default().reloaded(config.clone());
    assert_in_range(&config);
    if check_readback() {
        assert_reads_back(&config);
    }
});

fn check_readback() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_CONFIG_READBACK").is_some_and(|v| v == "1"))
}

fn assert_reads_back(config: &Config) {
    let described = config.describe();
    let mut again = Config::default();
    let read = again
        .apply_file_text("detad -t", &described)
        .and_then(|()| again.validate());
    assert_eq!(
        read,
        Ok(()),
        "`detad -t` output does not read back:\n{described}"
    );
    assert_eq!(
        again.describe(),
        described,
        "`detad -t` output reads back different"
    );
    assert_eq!(
        again.effective_routes(),
        config.effective_routes(),
        "`detad -t` output reads back with other routes:\n{described}"
    );
}

fn assert_in_range(c: &Config) {
    let durations: [(&str, Duration); 10] = [
        ("command_timeout", c.command_timeout),
        ("data_timeout", c.data_timeout),
        ("pipe_timeout", c.pipe_timeout),
        ("retry_min", c.retry_min),
        ("retry_max", c.retry_max),
        ("delay_warning", c.delay_warning),
        ("max_queue_lifetime", c.max_queue_lifetime),
        ("smtp_connect_timeout", c.smtp_connect_timeout),
        ("smtp_command_timeout", c.smtp_command_timeout),
        ("smtp_data_timeout", c.smtp_data_timeout),
    ];
    let now = Instant::now();
    for (key, d) in durations {
        assert!(
            now.checked_add(d).is_some(),
            "{key} = {}s was accepted but Instant::now() + it overflows",
            d.as_secs()
        );
    }
    assert!(
        c.spool_max_bytes.checked_add(c.max_message_size).is_some(),
        "spool_max_bytes + max_message_size overflows"
    );
}
