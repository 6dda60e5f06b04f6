//! `claimd serve`: the daemon's wiring (runtime, listener, signals, file watching).

use crate::daemon::{self, config::Config, Daemon, Event};
use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(
    config_path: &Path,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
) -> Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    let as_written = config.clone();
    if let Some(addr) = listen {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "--listen {addr}: only loopback addresses are allowed"
        );
        config.listen = addr;
    }
    if metrics_listen.is_some() {
        config.metrics_listen = metrics_listen;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let daemon = Daemon::new();
        daemon.configure(&as_written);
        daemon.send(Event::All);
        tokio::spawn(super::gitea::register_all(
            as_written.gitea.clone(),
            daemon.gitea_names(),
        ));
        if let Err(e) = daemon::watch(daemon.clone(), config_path, &as_written) {
            tracing::warn!(error = %e, "not watching the config file or refs");
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut webhooks = String::new();
        let receiver = match config.gitea.webhook_listen {
            None => None,
            Some(at) => {
                let secret = config.gitea.webhook_secret()?;
                let listener = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("listening for Gitea webhooks on {at}"))?;
                webhooks = format!(", gitea webhooks on {}", listener.local_addr()?);
                let mut stopped = stopped.clone();
                let until = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                Some(tokio::spawn(crate::server::gitea::run(
                    daemon.clone(),
                    secret,
                    listener,
                    until,
                )))
            }
        };
        let mut read_only = String::new();
        let metrics = match config.metrics_listen {
            None => None,
            Some(at) => {
                let listener = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("listening for metrics on {at}"))?;
                read_only = format!(", metrics on {}", listener.local_addr()?);
                let mut stopped = stopped.clone();
                let until = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                Some(tokio::spawn(crate::server::run_read_only(
                    daemon.clone(),
                    listener,
                    until,
                )))
            }
        };
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "claimd: listening on {addr}, {} repositories{webhooks}{read_only}",
                daemon.repositories().len()
            )?;
            out.flush()?;
        }
        crate::server::run(daemon.clone(), listener, shutdown_signal()).await;
        let _ = stop.send(true);
        for server in [receiver, metrics].into_iter().flatten() {
            let _ = server.await;
        }
        tracing::info!("shutting down: finishing the running reconciles");
        daemon.shutdown();
        anyhow::Ok(())
    })?;
    // Lets a reconcile in progress finish (its ref update is atomic either way).
    runtime.shutdown_timeout(Duration::from_secs(30));
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `claimd status`: the daemon's `GET /v1/status`, as a table per repository or JSON.
pub fn status(addr: &str, json: bool) -> Result<ExitCode> {
    let (code, body) = crate::server::status(addr)
        .with_context(|| format!("asking the daemon at {addr} (is `claimd serve` running?)"))?;
    anyhow::ensure!(code == 200, "the daemon at {addr} answered {code}: {body}");
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let status: daemon::Status = serde_json::from_str(&body).context("the daemon's answer")?;
    let mut out = std::io::stdout().lock();
    for r in &status.repositories {
        let (w, envs) = (&r.work, &r.environments);
        writeln!(out, "{}", r.repository.display())?;
        writeln!(
            out,
            "  {} renders, {} looks that found the branch unmoved, tip {}: {}",
            w.reconciles,
            w.unchanged,
            w.tip.as_deref().map_or("-", |t| &t[..t.len().min(12)]),
            w.last
        )?;
        if envs.is_empty() {
            writeln!(out, "  (no preview environments)")?;
            continue;
        }
        for line in crate::kube::status::table(envs).lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
