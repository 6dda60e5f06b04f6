//! `claimd serve` as a child process for tests: start (reads the address it prints),
//! HTTP GET, SIGTERM, kill -9; and polling with a deadline.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_claimd");

pub struct Daemon {
    child: Child,
    pub addr: String,
    /// The line it printed when it started (its addresses).
    pub line: String,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_logging(config, None)
    }

    /// [`Daemon::start`], its log (stderr) written to `log`.
    pub fn start_logging(config: &Path, log: Option<&Path>) -> Daemon {
        Daemon::start_with(config, log, &[])
    }

    /// [`Daemon::start_logging`] with more arguments after `serve --config <file>`.
    pub fn start_with(config: &Path, log: Option<&Path>, args: &[&str]) -> Daemon {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        };
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Never a cluster from the machine: tests that want one name it in the config.
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .spawn()
            .expect("start claimd serve");
        Daemon::started(child)
    }

    /// A `claimd serve` started some other way (stdout piped): reads the address it prints.
    pub fn started(mut child: Child) -> Daemon {
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches(',')
            .to_string();
        Daemon { child, addr, line }
    }

    pub fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut r = String::new();
        s.read_to_string(&mut r).expect("read");
        r
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait")
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

/// A test that fails does not leave its daemon running.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds (deadline 60 s).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
