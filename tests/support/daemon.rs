//! The built binary as a child process, for tests that need the real
//! daemon: signals, `kill -9`, the command line beside it.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Client, TempDir, WAIT};

/// A detad process with its log.
pub struct Daemon {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `detad -c conf` and waits for its "listening on" line.
    #[track_caller]
    pub fn start(conf: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_detad"))
            .arg("-c")
            .arg(conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run detad");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let first = rest.split([' ', ',']).next().unwrap_or("");
                        break first
                            .parse()
                            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "detad did not start ({status:?}):\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            }
        };
        Daemon { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects and reads the 220.
    #[track_caller]
    pub fn ehlo(&self) -> Client {
        let mut c = Client::connect(self.addr);
        c.expect(220, super::HOSTNAME);
        c.command("EHLO client.test", 250);
        c
    }

    /// Sends a signal with kill(1) (this crate has no unsafe code).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGKILL: no chance to clean up, as a power cut.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(super::POLL);
        }
    }

    /// Waits for the process to exit.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "detad still running {timeout:?} after the signal:\n{}",
                self.log()
            ),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then exit status 0.
    #[track_caller]
    pub fn terminate(mut self) {
        self.signal("TERM");
        let status = self.wait_exit(WAIT);
        assert!(status.success(), "exit {status:?}:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes the configuration file; `{dir}` stands for the test directory.
pub fn write_conf(dir: &TempDir, routes: &str) -> PathBuf {
    let text = format!(
        "hostname = {}\nlisten = 127.0.0.1:0\nspool = {{dir}}/spool\nfsync = yes\n\
         rdlv_mintimer = 1\nretry_min = 1\nretry_max = 2\n{routes}",
        super::HOSTNAME
    )
    .replace("{dir}", &dir.path().display().to_string());
    let path = dir.join("detad.conf");
    fs::write(&path, text).expect("write the configuration");
    path
}

/// Runs `detad -c conf ARGS` to its end.
pub fn run_cli(conf: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_detad"))
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("run detad")
}
