//! `claimd serve` run by the measurements: started on a config, its address, `GET`,
//! readiness, memory and CPU from `/proc`, a clean stop.

use anyhow::{ensure, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `claimd serve` and its address.
pub struct Daemon {
    child: Child,
    pub addr: String,
    /// The first line it printed (its addresses).
    pub banner: String,
}

impl Daemon {
    /// `claimd serve` for the one repository `bare`, with its config and log in `dir`.
    pub fn serve(dir: &Path, bare: &Path) -> Result<Daemon> {
        let config = dir.join("claimd.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:0\nrepositories:\n  - path: {}\n",
                bare.display()
            ),
        )?;
        Daemon::start(&config, &dir.join("daemon.log"))
    }

    pub fn start(config: &Path, log: &Path) -> Result<Daemon> {
        let exe = crate::claimd_binary()?;
        let mut child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .context("daemon address")?
            .trim_end_matches(',')
            .to_string();
        Ok(Daemon {
            child,
            addr,
            banner: line,
        })
    }

    pub fn get(&self, path: &str) -> Result<String> {
        let mut s = std::net::TcpStream::connect(&self.addr)?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok(r)
    }

    /// Polls `/readyz` (every 20 ms) until it answers 200; the time since `start`.
    pub fn wait_ready(&self, start: Instant, limit: Duration) -> Result<Duration> {
        loop {
            if self.get("/readyz")?.starts_with("HTTP/1.1 200") {
                return Ok(start.elapsed());
            }
            ensure!(start.elapsed() < limit, "daemon not ready after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status_field(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Peak resident memory so far (VmHWM), KiB.
    pub fn peak_kib(&self) -> i64 {
        self.status_field("VmHWM:").map_or(-1, |v| v as i64)
    }

    /// Resident memory now (VmRSS), KiB.
    pub fn rss_kib(&self) -> i64 {
        self.status_field("VmRSS:").map_or(-1, |v| v as i64)
    }

    pub fn threads(&self) -> u64 {
        self.status_field("Threads:").unwrap_or(0)
    }

    /// CPU time (user + system) used so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 12th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(11) + field(12)
    }

    /// The share of one core used over `window` (the daemon left alone).
    pub fn idle_cpu(&self, window: Duration) -> f64 {
        let before = self.cpu_ticks();
        std::thread::sleep(window);
        let ticks = self.cpu_ticks() - before;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz / window.as_secs_f64() * 100.0
    }

    pub fn stop(mut self) -> Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        Ok(())
    }
}
