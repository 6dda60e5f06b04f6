//! `POST /hooks/gitea`: Gitea's push webhook, on a listener of its own (Gitea must reach
//! it, so it may listen beyond loopback; the `/v1` API never does).
//!
//! 401: no or a wrong `X-Gitea-Signature` (checked over the raw body before anything is
//! parsed); 413: a body over 1 MiB (refused from its `Content-Length`, not read); 411:
//! no `Content-Length` (a chunked body; Gitea always sends the length); 400:
//! not a push event; 404: a repository this daemon does not serve; 200: nothing to do
//! (a tag, another branch, claimd's own bot commit, a redelivery, another event);
//! 202: queued for a render, or (another branch) for a branch preview.
//!
//! `GET /previews/<commit>`: a branch preview's unified diff; `GET /claims/<owner>/<name>/
//! <claim path>`: a claim file's last result (what statuses link to).

use crate::daemon::{Daemon, Event};
use crate::gitea::webhook::{self, Deliveries, Verdict};
use crate::gitea::Secret;
use crate::metrics::Webhook;
use std::future::Future;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::Filter;

/// Delivery ids remembered for redeliveries.
const DELIVERIES: usize = 4096;

/// Serves the receiver on `listener` until `shutdown` resolves.
pub async fn run(
    daemon: Arc<Daemon>,
    secret: Secret,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let deliveries = Arc::new(Deliveries::new(DELIVERIES));
    let metrics = daemon.metrics.clone();
    metrics.webhooks();
    let daemon_for_previews = daemon.clone();
    let daemon_for_claims = daemon.clone();
    let secret = Arc::new(secret);
    let hook = warp::path!("hooks" / "gitea")
        .and(warp::post())
        .and(warp::body::content_length_limit(webhook::MAX_BODY))
        .and(warp::header::optional::<String>("x-gitea-signature"))
        .and(warp::header::optional::<String>("x-gitea-delivery"))
        .and(warp::header::optional::<String>("x-gitea-event"))
        .and(warp::body::bytes())
        .map(
            move |signature: Option<String>,
                  delivery: Option<String>,
                  event: Option<String>,
                  body: bytes::Bytes| {
                let request = Request {
                    signature: signature.as_deref(),
                    delivery: delivery.as_deref(),
                    event: event.as_deref(),
                    body: &body,
                };
                let (status, text) = receive(&daemon, &secret, &deliveries, &request);
                if let Some(verdict) = Webhook::of_status(status.as_u16()) {
                    daemon.metrics.webhook(verdict);
                }
                warp::reply::with_status(text, status)
            },
        )
        // A body over the limit is refused before `receive` sees it.
        .with(warp::log::custom(move |info| {
            if info.status() == StatusCode::PAYLOAD_TOO_LARGE {
                metrics.webhook(Webhook::TooLarge);
            }
        }));
    let d = daemon_for_previews;
    let previews =
        warp::path!("previews" / String)
            .and(warp::get())
            .map(move |sha: String| match d.preview_diff(&sha) {
                Some(diff) => warp::reply::with_status(
                    warp::reply::with_header(
                        diff.to_string(),
                        "content-type",
                        "text/plain; charset=utf-8",
                    ),
                    StatusCode::OK,
                ),
                None => warp::reply::with_status(
                    warp::reply::with_header(
                        format!("no preview of {sha} (rendering, or no longer kept)\n"),
                        "content-type",
                        "text/plain; charset=utf-8",
                    ),
                    StatusCode::NOT_FOUND,
                ),
            });
    let d = daemon_for_claims;
    let claims = warp::path(String::from("claims"))
        .and(warp::path::tail())
        .and(warp::get())
        .map(move |tail: warp::path::Tail| claim_reply(&d, tail.as_str().to_string()));
    warp::serve(hook.or(previews).or(claims))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// `GET /claims/<owner>/<name>/<claim path>`: the claim file's last result.
fn claim_reply(
    daemon: &Daemon,
    tail: String,
) -> warp::reply::WithStatus<warp::reply::WithHeader<String>> {
    let found = match tail.splitn(3, '/').collect::<Vec<_>>()[..] {
        [owner, name, path] => daemon.claim_page(&format!("{owner}/{name}"), &percent_decode(path)),
        _ => None,
    };
    let (status, body) = match found {
        Some(body) => (StatusCode::OK, body),
        None => (
            StatusCode::NOT_FOUND,
            format!("no claim file {tail} here (not rendered since claimd started)\n"),
        ),
    };
    warp::reply::with_status(
        warp::reply::with_header(body, "content-type", "text/plain; charset=utf-8"),
        status,
    )
}

/// `%2F` and the like in a path (claim paths are ASCII in practice; anything that
/// does not decode is taken as it is).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| path.to_string())
}

/// One webhook request, as received.
pub struct Request<'a> {
    pub signature: Option<&'a str>,
    pub delivery: Option<&'a str>,
    pub event: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the receiver answers, and does (queues a render) for one request.
pub fn receive(
    daemon: &Daemon,
    secret: &Secret,
    deliveries: &Deliveries,
    r: &Request<'_>,
) -> (StatusCode, String) {
    let Some(signature) = r.signature else {
        daemon.stats.webhook_signature(false);
        tracing::warn!(delivery = ?r.delivery, "gitea webhook without a signature refused");
        return (
            StatusCode::UNAUTHORIZED,
            "missing X-Gitea-Signature: give the webhook in Gitea the secret claimd has\n".into(),
        );
    };
    if !webhook::verify(secret, r.body, signature) {
        daemon.stats.webhook_signature(false);
        tracing::warn!(delivery = ?r.delivery, "gitea webhook with a wrong signature refused");
        return (
            StatusCode::UNAUTHORIZED,
            "wrong X-Gitea-Signature: the webhook's secret in Gitea differs from claimd's\n".into(),
        );
    }
    daemon.stats.webhook_signature(true);
    if let Some(event) = r.event.filter(|e| *e != "push") {
        return (
            StatusCode::OK,
            format!("ignored: claimd acts on push events, not {event}\n"),
        );
    }
    let push = match webhook::parse(r.body) {
        Ok(push) => push,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let name = &push.repository.full_name;
    let label = daemon.gitea_label(name);
    let span = tracing::info_span!(
        "push",
        repository = label.as_deref().unwrap_or(name.as_str()),
        r#ref = %push.reference,
        old = %push.before,
        new = %push.after
    );
    let _in_span = span.enter();
    if let Some(id) = r.delivery {
        if !deliveries.first(id) {
            tracing::info!(delivery = id, "gitea webhook redelivered: already handled");
            return (StatusCode::OK, "ignored: already delivered\n".into());
        }
    }
    let Some((repo, branch, bot)) = daemon.gitea_repository(name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("{name} is not a repository this claimd serves: add it to the config (its path, or giteaRepository)\n"),
        );
    };
    match push.verdict(&branch, &bot) {
        Verdict::Preview => {
            let branch = push.reference.trim_start_matches("refs/heads/");
            if daemon.preview(&repo, branch, &push.after) {
                tracing::info!(repository = %name, %branch, after = %push.after, "gitea push queued for a preview");
                (StatusCode::ACCEPTED, "queued for a preview\n".into())
            } else {
                (
                    StatusCode::OK,
                    "ignored: a branch claimd does not render (previews need gitea.url and a token)\n"
                        .into(),
                )
            }
        }
        Verdict::Ignore(why) => {
            tracing::debug!(repository = %name, reference = %push.reference, why, "gitea push ignored");
            (StatusCode::OK, format!("ignored: {why}\n"))
        }
        Verdict::Render => {
            tracing::info!(repository = %name, reference = %push.reference, after = %push.after, delivery = ?r.delivery, "gitea push queued");
            let claim_files = push.claim_files();
            if daemon.send(Event::Push { repo: repo.clone() }) {
                daemon.pending(&repo, &push.after, &claim_files);
                (StatusCode::ACCEPTED, "queued\n".into())
            } else {
                (
                    StatusCode::NOT_FOUND,
                    format!("{name} is no longer served\n"),
                )
            }
        }
    }
}
