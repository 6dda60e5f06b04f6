//! HTTP on loopback (warp): the hooks' hand-off, health and readiness.
//!
//! - `POST /v1/push` with body `{"repo": "<path of the bare repository>"}` → 202 (queued)
//!   or 404 (not a configured repository: the hook renders inline instead);
//! - `GET /healthz` → 200 while the process serves;
//! - `GET /readyz` → 200 once every repository was reconciled since start-up, else 503.

use crate::daemon::{Daemon, Event};
use serde::Deserialize;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::Filter;

#[derive(Debug, Deserialize)]
struct PushBody {
    repo: PathBuf,
    /// Answer only when the reconcile for this push is done, with its result.
    #[serde(default)]
    wait: bool,
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(
    daemon: Arc<Daemon>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let health = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let d = daemon.clone();
    let ready = warp::path!("readyz").and(warp::get()).map(move || {
        if d.ready() {
            warp::reply::with_status("ready", StatusCode::OK)
        } else {
            warp::reply::with_status("starting", StatusCode::SERVICE_UNAVAILABLE)
        }
    });
    let d = daemon.clone();
    let push = warp::path!("v1" / "push")
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::json())
        .then(move |body: PushBody| {
            let d = d.clone();
            async move {
                if body.wait {
                    return match d.send_and_wait(body.repo).await {
                        Some(result) => warp::reply::with_status(result, StatusCode::OK),
                        None => warp::reply::with_status(
                            "unknown repository".to_string(),
                            StatusCode::NOT_FOUND,
                        ),
                    };
                }
                if d.send(Event::Push { repo: body.repo }) {
                    warp::reply::with_status("queued".to_string(), StatusCode::ACCEPTED)
                } else {
                    warp::reply::with_status(
                        "unknown repository".to_string(),
                        StatusCode::NOT_FOUND,
                    )
                }
            }
        });
    warp::serve(health.or(ready).or(push))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// The hooks' side of the hand-off: a tiny HTTP/1.1 POST over loopback, with short
/// timeouts (the push must not wait on a stuck daemon). Ok(true) when queued.
pub fn hand_off(addr: &str, repo: &std::path::Path) -> std::io::Result<bool> {
    Ok(post_push(addr, repo, false, std::time::Duration::from_secs(2))?.0 == 202)
}

/// Hands off and waits for the reconcile (`--wait`): the daemon's one-line result, or
/// None when the daemon does not serve this repository.
pub fn hand_off_and_wait(addr: &str, repo: &std::path::Path) -> std::io::Result<Option<String>> {
    let (status, body) = post_push(addr, repo, true, std::time::Duration::from_secs(120))?;
    Ok((status == 200).then_some(body))
}

fn post_push(
    addr: &str,
    repo: &std::path::Path,
    wait: bool,
    read_timeout: std::time::Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let timeout = std::time::Duration::from_secs(2);
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(read_timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = serde_json::json!({ "repo": repo, "wait": wait }).to_string();
    write!(
        stream,
        "POST /v1/push HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}
