//! `claimd-bench webhook`: Gitea's path into the daemon. A repository stored as Gitea
//! stores it (`platform/voltran.git`, no hooks), `claimd serve` with the webhook
//! receiver; (1) a push changing one claim file, then its signed webhook, until the bot
//! commit is on the branch; (2) the receiver's requests per second for signed pushes.

use crate::daemon::Daemon;
use crate::push::{generate, git, median, percentile};
use anyhow::{Context, Result};
use claimd::examples::APPS_PER_CLAIM;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-webhook-secret";

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn event(reference: &str, after: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "ref": reference, "before": "0".repeat(40), "after": after,
        "repository": {"full_name": "platform/voltran"},
        "head_commit": {"id": after, "message": "change\n", "author": {"email": "bench@example.com"}},
        "commits": [{"id": after, "message": "change\n", "author": {"email": "bench@example.com"},
                     "added": [], "removed": [], "modified": ["claims/apps-00000.yaml"]}],
    }))
    .expect("json")
}

/// One request on a kept-alive connection; the status code.
fn request(
    stream: &mut BufReader<std::net::TcpStream>,
    body: &[u8],
    delivery: &str,
) -> Result<u16> {
    let head = format!(
        "POST /hooks/gitea HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Gitea-Event: push\r\nX-Gitea-Delivery: {delivery}\r\nX-Gitea-Signature: {}\r\n\r\n",
        body.len(),
        sign(body)
    );
    // One write: a header and a body in two segments would wait for a delayed ACK.
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    stream.get_mut().write_all(&message)?;
    let mut status = String::new();
    stream.read_line(&mut status)?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse()?;
        }
    }
    let mut rest = vec![0; length];
    stream.read_exact(&mut rest)?;
    Ok(code)
}

fn connect(addr: &str) -> Result<BufReader<std::net::TcpStream>> {
    let s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

pub fn run(apps: usize, pushes: usize, requests: usize, dir: Option<PathBuf>) -> Result<ExitCode> {
    let keep = dir.is_some();
    let root = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("claimd-bench-webhook-{}", std::process::id()))
    });
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(root.join("platform"))?;
    git(
        &root.join("platform"),
        &["init", "-q", "--bare", "-b", "main", "voltran.git"],
    )?;
    let bare = root.join("platform/voltran.git");
    git(
        &root,
        &["clone", "-q", &format!("file://{}", bare.display()), "work"],
    )?;
    let work = root.join("work");
    generate(&work, apps)?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "claims"])?;
    git(&work, &["push", "-q", "origin", "main"])?;
    std::fs::write(root.join("secret"), SECRET)?;
    let config = root.join("claimd.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: platform/voltran.git\ngitea:\n  webhookListen: 127.0.0.1:0\n  webhookSecretFile: secret\n",
    )?;
    let daemon = Daemon::start(&config, &root.join("daemon.log"))?;
    let result = measure(&bare, &work, &daemon, apps, pushes, requests);
    let _ = daemon.stop();
    if !keep {
        std::fs::remove_dir_all(&root).ok();
    }
    result
}

fn measure(
    bare: &Path,
    work: &Path,
    daemon: &Daemon,
    apps: usize,
    pushes: usize,
    requests: usize,
) -> Result<ExitCode> {
    let hooks = daemon
        .banner
        .split("gitea webhooks on ")
        .nth(1)
        .context("webhook address")?
        .trim()
        .to_string();
    daemon.wait_ready(Instant::now(), Duration::from_secs(600))?;
    println!(
        "claimd bench webhook: {apps} applications, repository {}",
        bare.display()
    );

    // (1) A push, then its webhook, until the bot commit is on the branch.
    let mut times = Vec::new();
    let mut conn = connect(&hooks)?;
    for i in 0..pushes {
        git(work, &["pull", "-q", "--rebase", "origin", "main"])?;
        let file = work.join(format!(
            "claims/apps-{:05}.yaml",
            i % apps.div_ceil(APPS_PER_CLAIM)
        ));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text.replacen("tag: v1.", &format!("tag: w{i}."), 1))?;
        git(
            work,
            &["commit", "-q", "-am", &format!("webhook change {i}")],
        )?;
        git(work, &["push", "-q", "origin", "main"])?;
        let repo = claimd::git::Repo::open(bare)?;
        let pushed = repo.branch_tip("main")?.context("main")?;
        let body = event("refs/heads/main", &pushed.to_string());

        let start = Instant::now();
        let code = request(&mut conn, &body, &format!("push-{i}"))?;
        anyhow::ensure!(code == 202, "webhook answered {code}");
        // The loose ref the bot commit moves (read directly: opening the repository
        // each time would take CPU from the daemon being measured).
        let head = bare.join("refs/heads/main");
        let pushed = pushed.to_string();
        while std::fs::read_to_string(&head)?.trim() == pushed {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "no bot commit");
            std::thread::sleep(Duration::from_micros(500));
        }
        times.push(start.elapsed());
    }
    times.sort();
    if !times.is_empty() {
        println!(
            "  webhook → bot commit ({pushes} pushes of one changed claim file): p50 {:.0} ms, p99 {:.0} ms",
            median(times.clone()).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0
        );
    }

    // (2) The receiver alone: signed pushes of a branch claimd does not render (each is
    // verified, parsed, looked up and answered; none is rendered), 4 kept-alive clients.
    let body = event("refs/heads/feature", &"a".repeat(40));
    let clients = 4;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (hooks, body) = (hooks.clone(), body.clone());
            std::thread::spawn(move || -> Result<usize> {
                let mut conn = connect(&hooks)?;
                let mut ok = 0;
                for i in 0..requests / clients {
                    if request(&mut conn, &body, &format!("rps-{c}-{i}"))? == 200 {
                        ok += 1;
                    }
                }
                Ok(ok)
            })
        })
        .collect();
    let mut answered = 0;
    for h in handles {
        answered += h.join().map_err(|_| anyhow::anyhow!("client thread"))??;
    }
    let elapsed = start.elapsed();
    println!(
        "  receiver: {answered} signed pushes answered in {:.2} s by {clients} clients: {:.0} requests/s",
        elapsed.as_secs_f64(),
        answered as f64 / elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
