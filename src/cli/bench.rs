//! `claimd bench`: reproducible measurements on a synthetic repository.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const ENVS: [&str; 4] = ["dev", "qa", "staging", "prod"];
const APPS_PER_CLAIM: usize = 100;

/// Writes a repository with `apps` applications (microservice chart) spread over four
/// environments, in claim files of 100 applications each, plus a BootstrapClaim.
pub fn generate(dir: &Path, apps: usize) -> Result<()> {
    let claims = dir.join("claims");
    std::fs::create_dir_all(&claims).with_context(|| format!("creating {}", claims.display()))?;
    std::fs::write(
        claims.join("bootstrap.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: BootstrapClaim\nmetadata:\n  name: bench\nspec:\n  giteaURL: http://gitea:3000\n  organization: platform\n  chartsRepository: {type: oci, url: oci://ghcr.io/nimbusprotch, version: \"1.0.0\"}\n  repositories: {voltran: voltran}\n  gitOps: {branch: main, clusterType: bench, environments: [dev, qa, staging, prod]}\n",
    )?;
    let mut i = 0;
    let mut file = 0;
    while i < apps {
        let env = ENVS[file % ENVS.len()];
        let mut text = format!(
            "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata:\n  name: apps-{file:05}\nspec:\n  environment: {env}\n  clusterType: bench\n  applications:\n"
        );
        for _ in 0..APPS_PER_CLAIM.min(apps - i) {
            let _ = write!(
                text,
                "    - name: app-{i:05}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: registry.example.com/app-{i:05}, tag: v1.{}.0}}\n      replicas: {}\n      resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}\n      ingress: {{enabled: true, host: app-{i:05}.{env}.example.com}}\n      env:\n        - {{name: APP_ID, value: \"{i}\"}}\n      values:\n        podAnnotations: {{team: team-{}}}\n",
                i % 7,
                1 + i % 3,
                i % 13
            );
            i += 1;
        }
        std::fs::write(claims.join(format!("apps-{file:05}.yaml")), text)?;
        file += 1;
    }
    Ok(())
}

/// Peak resident memory of finished child processes, in KiB (the largest one so far).
fn children_peak_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) == 0 {
            usage.ru_maxrss
        } else {
            -1
        }
    }
}

fn run_render(repo: &Path, out_dir: &Path) -> Result<Duration> {
    let exe = std::env::current_exe().context("locating the claimd binary")?;
    let start = Instant::now();
    let out = Command::new(exe)
        .arg("render")
        .arg("--repo")
        .arg(repo)
        .arg("--out")
        .arg(out_dir)
        .output()
        .context("running claimd render")?;
    let took = start.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn render(apps: usize, runs: usize, dir: Option<PathBuf>) -> Result<ExitCode> {
    let keep = dir.is_some();
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("claimd-bench-{}", std::process::id()))
    });
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    generate(&dir, apps)?;
    let runs = runs.max(1);
    let mut fresh = Vec::new();
    let mut noop = Vec::new();
    // Each run writes into a new, empty folder: deleting 20,000 files between runs
    // slows the file system down for a while and would be measured instead of claimd.
    for run in 0..runs {
        let out = dir.join(format!("out-{run}"));
        fresh.push(run_render(&dir, &out)?);
        noop.push(run_render(&dir, &out)?);
    }
    let peak_kib = children_peak_kib();
    println!(
        "claimd bench render: {apps} applications, {runs} run(s), repository {}",
        dir.display()
    );
    println!(
        "  full render into an empty tree (read claims, merge, render, write {} files): median {:.3} s, min {:.3} s",
        apps * 2,
        median(fresh.clone()).as_secs_f64(),
        fresh.iter().min().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "  re-render with nothing to change:                                            median {:.3} s, min {:.3} s",
        median(noop.clone()).as_secs_f64(),
        noop.iter().min().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "  peak resident memory of one render process: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    if !keep {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(ExitCode::SUCCESS)
}
