//! HTTP on loopback (warp): the hooks' hand-off, health and readiness.
//!
//! [`gitea`]: the Gitea webhook receiver, on a listener of its own.
//!
//! - `POST /v1/push` with body `{"repo": "<path of the bare repository>"}` → 202 (queued)
//!   or 404 (not a configured repository: the hook renders inline instead);
//! - `GET /healthz` → 200 while the process serves;
//! - `GET /readyz` → 200 once every repository was reconciled since start-up, else 503;
//! - `GET /v1/status` → the daemon's counters (file events, configuration reloads) and
//!   every repository's work (requests, renders, unchanged looks, tip), last push, last
//!   bot commit, last reconcile, claim files' states with their first error, and preview
//!   Environments (phase, URL, conditions), as JSON;
//! - `GET /` → the same as an HTML page for a browser ([`page`]);
//! - `GET /metrics` → the daemon's metrics ([`crate::metrics`]): OpenMetrics text when
//!   the scraper accepts it (Prometheus does), else the classic Prometheus text format.
//!
//! [`run_read_only`]: the same GET endpoints (never the hand-off or validation) on a
//! listener of their own (`metricsListen`), which may listen beyond loopback (a pod's
//! port for Prometheus and probes).

pub mod gitea;
pub mod page;

use crate::daemon::{Daemon, Event};
use serde::Deserialize;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;
use warp::http::StatusCode;
use warp::{Filter, Reply};

#[derive(Debug, Deserialize)]
struct ValidateBody {
    repo: PathBuf,
    /// The push's ref updates: the daemon does what pre-receive does (answer: the lines
    /// for the pusher and whether the push is refused).
    updates: Vec<Update>,
    #[serde(default)]
    quarantine: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct PushBody {
    repo: PathBuf,
    /// Answer only when the reconcile for this push is done, with its result.
    #[serde(default)]
    wait: bool,
    /// The branch update the hook saw, for the log (an older hook sends none).
    #[serde(flatten)]
    update: Option<Update>,
}

/// One ref update a hook hands off: `<old> <new> <ref>` as git gave it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Update {
    #[serde(rename = "ref")]
    pub reference: String,
    pub old: String,
    pub new: String,
}

/// The read-only endpoints: health, readiness, status and metrics. Served on the
/// hand-off listener and, with `metricsListen`, on a listener of their own.
pub fn read_only_routes(
    daemon: Arc<Daemon>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
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
    let status = warp::path!("v1" / "status")
        .and(warp::get())
        .map(move || warp::reply::json(&d.status()));
    let d = daemon.clone();
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::optional::<String>("accept"))
        .map(move |accept: Option<String>| {
            let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
            let (text, content_type) = d.metrics_text(openmetrics);
            warp::reply::with_header(text, "content-type", content_type)
        });
    health
        .or(ready)
        .or(status)
        .or(metrics)
        .or(page::routes(daemon))
}

/// Serves the read-only endpoints ([`read_only_routes`]) on `listener` until `shutdown`.
pub async fn run_read_only(
    daemon: Arc<Daemon>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(read_only_routes(daemon))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(
    daemon: Arc<Daemon>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let d = daemon.clone();
    let push = warp::path!("v1" / "push")
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::json())
        .then(move |body: PushBody| {
            let d = d.clone();
            let span = push_span(&d, &body.repo, body.update.as_ref());
            async move {
                tracing::info!("push handed off by a hook");
                if let Some(update) = &body.update {
                    if d.nothing_to_do(&body.repo, update).await {
                        tracing::debug!("not the rendered branch, or claimd's own commit");
                        return warp::reply::with_status(String::new(), StatusCode::NO_CONTENT);
                    }
                }
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
            .instrument(span)
        });
    let d = daemon.clone();
    let validate = warp::path!("v1" / "validate")
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::header::optional::<String>("accept"))
        .and(warp::body::json())
        .then(move |accept: Option<String>, body: ValidateBody| {
            let d = d.clone();
            async move {
                // claimd-hook asks for the verdict as plain lines (it parses no JSON).
                let text = accept.is_some_and(|a| a.contains(crate::handoff::VERDICT_TEXT));
                let json = |value: serde_json::Value, status| {
                    warp::reply::with_status(warp::reply::json(&value), status).into_response()
                };
                let parsed: Option<Vec<_>> = body
                    .updates
                    .iter()
                    .map(|u| crate::reconcile::RefUpdate::parse(&u.old, &u.new, &u.reference))
                    .collect();
                let Some(updates) = parsed else {
                    return json("bad commit id".into(), StatusCode::BAD_REQUEST);
                };
                match d.pre_receive(body.repo, updates, body.quarantine).await {
                    None => json("unknown repository".into(), StatusCode::NOT_FOUND),
                    Some(Err(e)) => json(e.to_string().into(), StatusCode::INTERNAL_SERVER_ERROR),
                    Some(Ok(v)) if text => warp::reply::with_header(
                        crate::handoff::verdict_text(&v),
                        "content-type",
                        "text/plain; charset=utf-8",
                    )
                    .into_response(),
                    Some(Ok(v)) => json(
                        serde_json::json!({"refused": v.refused, "lines": v.lines}),
                        StatusCode::OK,
                    ),
                }
            }
        });
    warp::serve(read_only_routes(daemon).or(push).or(validate))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// The span of a push handed to the daemon (a hook's, Gitea's webhook): its log lines
/// carry the repository, the ref, the old and the new commit.
pub(crate) fn push_span(
    daemon: &Daemon,
    repo: &std::path::Path,
    update: Option<&Update>,
) -> tracing::Span {
    let repository = daemon.repository_label(repo);
    let repository = repository.as_deref().unwrap_or("(not served)");
    match update {
        Some(u) => tracing::info_span!(
            "push",
            repository,
            r#ref = %u.reference,
            old = %u.old,
            new = %u.new
        ),
        None => tracing::info_span!("push", repository),
    }
}

/// The hooks' side of the hand-off ([`crate::handoff`]): Ok(true) when queued.
pub fn hand_off(addr: &str, repo: &std::path::Path) -> std::io::Result<bool> {
    hand_off_update(addr, repo, None)
}

fn ref_line(u: &Update) -> crate::handoff::RefLine {
    crate::handoff::RefLine {
        old: u.old.clone(),
        new: u.new.clone(),
        name: u.reference.clone(),
    }
}

/// [`hand_off`] with the branch update the hook saw (for the daemon's log).
pub fn hand_off_update(
    addr: &str,
    repo: &std::path::Path,
    update: Option<&Update>,
) -> std::io::Result<bool> {
    let update = update.map(ref_line);
    let timeout = std::time::Duration::from_secs(2);
    Ok(crate::handoff::push(addr, repo, update.as_ref(), false, timeout)?.0 == 202)
}

/// Hands off and waits for the reconcile (`--wait`): the daemon's one-line result, or
/// None when the daemon does not serve this repository.
pub fn hand_off_and_wait(
    addr: &str,
    repo: &std::path::Path,
    update: Option<&Update>,
) -> std::io::Result<Option<String>> {
    let update = update.map(ref_line);
    let timeout = std::time::Duration::from_secs(120);
    let (status, body) = crate::handoff::push(addr, repo, update.as_ref(), true, timeout)?;
    Ok((status == 200).then_some(body))
}

/// pre-receive's side: the daemon checks the push ([`crate::reconcile::pre_receive`]) with
/// its memo. Some(verdict), or None when it does not serve this repository or failed
/// (check here then).
pub fn pre_receive_remote(
    addr: &str,
    repo: &std::path::Path,
    updates: &[(String, String, String)],
    quarantine: Option<&std::path::Path>,
) -> std::io::Result<Option<crate::reconcile::Verdict>> {
    let updates: Vec<crate::handoff::RefLine> = updates
        .iter()
        .map(|(old, new, name)| crate::handoff::RefLine {
            old: old.clone(),
            new: new.clone(),
            name: name.clone(),
        })
        .collect();
    crate::handoff::validate(addr, repo, &updates, quarantine)
}

/// `GET <path>` of the daemon at `addr` (`/readyz`): (HTTP status, body).
pub fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let timeout = std::time::Duration::from_secs(10);
    crate::handoff::request(addr, "GET", path, None, None, timeout)
}

/// `GET /v1/status` of the daemon at `addr`: (HTTP status, JSON body).
pub fn status(addr: &str) -> std::io::Result<(u16, String)> {
    get(addr, "/v1/status")
}
