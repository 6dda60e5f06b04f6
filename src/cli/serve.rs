//! `claimd serve`: the daemon's wiring (runtime, listener, signals, file watching), and
//! systemd's readiness protocol: READY=1 once every repository is reconciled (what
//! `GET /readyz` answers), STOPPING=1 on SIGTERM, STATUS= lines.

use crate::daemon::{self, config::Config, Daemon, Event};
use anyhow::{Context, Result};
use sd_notify::NotifyState;
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
        let repositories = daemon.repositories().len();
        notify(&[NotifyState::Status(&format!(
            "reconciling {repositories} repositories"
        ))]);
        let readiness = tokio::spawn({
            let daemon = daemon.clone();
            async move {
                daemon.wait_ready().await;
                notify(&[
                    NotifyState::Ready,
                    NotifyState::Status(&format!(
                        "ready: {repositories} repositories reconciled; listening on {addr}"
                    )),
                ]);
            }
        });
        let stopping = async {
            shutdown_signal().await;
            notify(&[
                NotifyState::Stopping,
                NotifyState::Status("stopping: finishing the running reconciles"),
            ]);
        };
        crate::server::run(daemon.clone(), listener, stopping).await;
        readiness.abort();
        let _ = stop.send(true);
        for server in [receiver, metrics].into_iter().flatten() {
            let _ = server.await;
        }
        tracing::info!("shutting down: finishing the running reconciles");
        daemon.shutdown();
        daemon.release_leases().await;
        anyhow::Ok(())
    })?;
    // Lets a reconcile in progress finish (its ref update is atomic either way).
    runtime.shutdown_timeout(Duration::from_secs(30));
    Ok(ExitCode::SUCCESS)
}

/// Tells systemd (`Type=notify`) how the service is; nothing without `NOTIFY_SOCKET`.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
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
