//! `claimd-bench`: the measurements behind BENCHMARKS.md, outside the shipped binary.
//! It drives the real `claimd` binary (hooks, daemon) and the library (charts, kube).
//!
//! ```text
//! cargo build --release && cargo run --release -p claimd-bench -- push --apps 10000
//! ```

mod charts;
mod daemon;
mod kube;
mod push;
mod scale;
mod webhook;

use anyhow::{ensure, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

#[derive(Parser, Debug)]
#[command(name = "claimd-bench", about = "Measurements for BENCHMARKS.md")]
struct Cli {
    /// The claimd binary to measure (default: `claimd` next to this binary, i.e. the
    /// same target folder: build it first with `cargo build --release`).
    #[arg(long, global = true)]
    claimd: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render on a synthetic repository.
    Render {
        /// Number of applications.
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where to generate the repository (kept afterwards; default: a temporary folder, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The push loop on a synthetic repository: hooks only, with the daemon, and the
    /// same pushes with no hooks at all.
    Push {
        /// Number of applications.
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Pushes of one changed claim file (P1).
        #[arg(long, default_value_t = 20)]
        pushes: usize,
        /// Where to create the repositories (kept afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Gitea's webhook into the daemon: push → signed webhook → bot commit, and the
    /// receiver's requests per second.
    Webhook {
        /// Number of applications.
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Pushes of one changed claim file.
        #[arg(long, default_value_t = 20)]
        pushes: usize,
        /// Signed requests for the receiver's throughput.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Where to create the repository (kept afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Scale (issue 17): applications in one repository (full render, first render and
    /// commit beside `git fast-import`, the daemon's push → bot commit beside the
    /// hook-less push, peak memory), then repositories on one daemon (time until ready,
    /// peak memory, idle CPU; first start and restart).
    Scale {
        /// Applications in one repository, one run each (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
        apps: Vec<usize>,
        /// Repositories on one daemon, one run each (comma-separated; 0 for none).
        #[arg(long, value_delimiter = ',', default_values_t = [100, 300, 1_000])]
        repos: Vec<usize>,
        /// Applications in each of the many repositories.
        #[arg(long, default_value_t = 30)]
        apps_per_repo: usize,
        /// Pushes of one changed claim file, with the daemon and without hooks.
        #[arg(long, default_value_t = 20)]
        pushes: usize,
        /// Where to create the repositories (kept afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Chart pulls from an OCI registry.
    Charts {
        /// Registry host:port, spoken to over plain HTTP (a registry on loopback).
        #[arg(long)]
        registry: String,
        /// Chart versions to publish and resolve.
        #[arg(long, default_value_t = 1000)]
        versions: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Namespace sync against the cluster of a kubeconfig (it creates and deletes
    /// namespaces `bench<pid>-shop-pr-*`).
    Kube {
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Preview Environments (one namespace each).
        #[arg(long, default_value_t = 200)]
        environments: usize,
        /// Repetitions of the no-change sync (the median is reported).
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

static CLAIMD: OnceLock<PathBuf> = OnceLock::new();

/// The claimd binary the measurements run.
pub fn claimd_binary() -> Result<PathBuf> {
    let path = CLAIMD.get().cloned().context("claimd binary not set")?;
    ensure!(
        path.is_file(),
        "{}: no claimd binary; build it first (`cargo build --release`) or pass --claimd PATH",
        path.display()
    );
    Ok(path)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let claimd = cli.claimd.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("claimd")))
            .unwrap_or_else(|| PathBuf::from("target/release/claimd"))
    });
    let _ = CLAIMD.set(claimd);
    let result = match cli.command {
        Command::Render { apps, runs, dir } => push::render(apps, runs, dir),
        Command::Push { apps, pushes, dir } => push::push(apps, pushes, dir),
        Command::Webhook {
            apps,
            pushes,
            requests,
            dir,
        } => webhook::run(apps, pushes, requests, dir),
        Command::Scale {
            apps,
            repos,
            apps_per_repo,
            pushes,
            dir,
        } => {
            let repos: Vec<usize> = repos.into_iter().filter(|&n| n > 0).collect();
            let apps: Vec<usize> = apps.into_iter().filter(|&n| n > 0).collect();
            scale::run(&apps, &repos, apps_per_repo, pushes, dir)
        }
        Command::Charts {
            registry,
            versions,
            runs,
        } => charts::run(&registry, versions, runs),
        Command::Kube {
            kubeconfig,
            environments,
            runs,
        } => kube::run(&kubeconfig, environments, runs),
    };
    result.unwrap_or_else(|e| {
        eprintln!("claimd-bench: {e:#}");
        ExitCode::from(2)
    })
}
