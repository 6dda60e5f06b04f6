//! Gitea (when `gitea.url` is set): it answers and takes the token, each repository
//! exists and has claimd's webhook (delivering to `webhookUrl`, active, push events,
//! JSON), and the webhook's secret is claimd's.
//!
//! Gitea never returns a hook's secret, and the API claimd is held to
//! (`/work/shared/contracts/gitea/swagger-subset.json`) has no test delivery. So the
//! secret is judged from what the daemon's receiver saw: deliveries whose signature
//! verified with claimd's secret, and deliveries it refused for a missing or wrong one
//! (`GET /v1/status`: `webhookVerified`, `webhookRefused` and when the last of each
//! came). Without a delivery since the daemon started, the line says it cannot be
//! checked and how to check it.

use super::{shell, Check};
use crate::daemon::config::Config;
use crate::daemon::DaemonStatus;
use crate::gitea::api::{self, Client};
use crate::gitea::Error;

/// The lines, and Gitea's `Date` with the local time it was read at (for the clock).
pub async fn check(
    c: &Config,
    daemon: Option<&DaemonStatus>,
) -> (Vec<Check>, Option<super::clock::Reading>) {
    let s = &c.gitea;
    let Some(url) = s.url.as_deref() else {
        return (
            vec![Check::skip(
                "gitea",
                "not configured (gitea.url): no webhooks, statuses or mirrors",
            )],
            None,
        );
    };
    let token_fix = match (&s.token_file, &s.token_env) {
        (Some(f), _) => format!(
            "write a valid access token (scope write:repository) into {}",
            shell(f)
        ),
        (None, Some(v)) => format!("set ${v} to a valid access token (scope write:repository)"),
        (None, None) => {
            "set gitea.tokenFile (or gitea.tokenEnv) to an access token with scope write:repository"
                .into()
        }
    };
    let client = match s.client() {
        Ok(Some(client)) => client,
        Ok(None) => unreachable!("gitea.url is set"),
        Err(e) => return (vec![Check::fail("gitea", e.to_string(), token_fix)], None),
    };
    let mut out = Vec::new();
    let (version, date) = match client.version().await {
        Ok(v) => v,
        Err(e) => {
            out.push(unanswered(url, &e, &token_fix));
            return (out, None);
        }
    };
    let reading = date.map(|d| super::clock::Reading::now("Gitea", d));
    out.push(Check::pass(
        "gitea",
        format!("Gitea {version} at {url} answers and takes the token"),
    ));
    for r in &c.repositories {
        let Some(name) = r.gitea_name() else {
            out.push(Check::warn(
                "webhook",
                format!("cannot tell {}'s name in Gitea", r.path.display()),
                Some("set giteaRepository: OWNER/NAME for it".into()),
            ));
            continue;
        };
        out.push(webhook(c, &client, &name, &token_fix).await);
    }
    out.push(secret(c, daemon));
    (out, reading)
}

/// Gitea did not answer `GET /version`, or refused the token.
fn unanswered(url: &str, e: &Error, token_fix: &str) -> Check {
    match e {
        Error::Unauthorized {
            status, message, ..
        } => Check::fail(
            "gitea",
            format!("Gitea at {url} refuses the token ({status}: {message})"),
            token_fix.to_string(),
        ),
        Error::Request { .. } => Check::fail(
            "gitea",
            format!("cannot reach Gitea: {}", super::chain(e)),
            "check gitea.url (and gitea.caFile for a private CA), and that Gitea runs".to_string(),
        ),
        other => Check::fail(
            "gitea",
            format!("Gitea at {url}: {other}"),
            "check gitea.url: Gitea's root URL, without /api/v1".to_string(),
        ),
    }
}

/// The command that registers claimd's webhook on `name` (writing claimd's secret into
/// it), when the token and the secret come from files.
fn register_command(c: &Config, name: &str) -> Option<String> {
    let s = &c.gitea;
    match (&s.url, &s.token_file, &s.webhook_secret_file, &s.webhook_url) {
        (Some(url), Some(token), Some(secret), Some(hook)) => Some(format!(
            "claimd gitea register-webhook {name} --gitea-url {url} --token-file {} --secret-file {} --webhook-url {hook}",
            shell(token),
            shell(secret)
        )),
        _ => None,
    }
}

/// What puts claimd's webhook on `name` (the daemon also does at start).
fn register_fix(c: &Config, name: &str) -> String {
    match register_command(c, name) {
        Some(command) => {
            format!("run: {command} (or restart claimd: it registers the webhook at start)")
        }
        None => {
            "restart claimd: it registers the webhook on every repository at start (see its log)"
                .into()
        }
    }
}

async fn webhook(c: &Config, client: &Client, name: &str, token_fix: &str) -> Check {
    let Some((owner, repo)) = name.split_once('/') else {
        return Check::warn("webhook", format!("{name} is not OWNER/NAME"), None);
    };
    match client.repository_exists(owner, repo).await {
        Ok(true) => {}
        Ok(false) => {
            return Check::fail(
                "webhook",
                format!("{name} does not exist in Gitea, or the token cannot see it"),
                "create it in Gitea (claimd bootstrap does), fix giteaRepository, or give the token's user access to it",
            )
        }
        Err(e) => return Check::fail("webhook", format!("{name}: {e}"), token_fix.to_string()),
    }
    let Some(url) = c.gitea.webhook_url.as_deref() else {
        return Check::warn(
            "webhook",
            format!("{name}: gitea.webhookUrl is not set, so claimd registers no webhook; pushes reach it through the hooks only"),
            Some("set gitea.webhookUrl (and webhookListen, webhookSecretFile) for webhooks".into()),
        );
    };
    let hooks = match client.hooks(owner, repo).await {
        Ok(h) => h,
        Err(e @ Error::Unauthorized { .. }) => {
            return Check::fail(
                "webhook",
                format!("{name}: {e}"),
                "give the token scope write:repository and admin rights on the repository (webhooks need them)",
            )
        }
        Err(e) => return Check::fail("webhook", format!("{name}: {e}"), token_fix.to_string()),
    };
    match api::hook_for(&hooks, url) {
        None => Check::fail(
            "webhook",
            format!("{name} has no webhook delivering to {url}"),
            register_fix(c, name),
        ),
        Some(h) => {
            let problems = h.problems();
            if problems.is_empty() {
                Check::pass(
                    "webhook",
                    format!(
                        "{name}: hook {} delivers push events to {url} (active, JSON)",
                        h.id
                    ),
                )
            } else {
                Check::fail(
                    "webhook",
                    format!("{name}: hook {} to {url}: {}", h.id, problems.join(", ")),
                    register_fix(c, name),
                )
            }
        }
    }
}

/// When a delivery came, as a person reads it.
fn at(ms: u64) -> String {
    crate::argocd::rfc3339((ms / 1000) as i64)
}

/// Whether Gitea signs with claimd's secret, from the receiver's counts.
pub fn secret(c: &Config, daemon: Option<&DaemonStatus>) -> Check {
    let s = &c.gitea;
    if s.webhook_url.is_none() {
        return Check::skip("webhook secret", "no webhook (gitea.webhookUrl) to check");
    }
    if s.webhook_listen.is_none() {
        return Check::warn(
            "webhook secret",
            "gitea.webhookListen is not set: the daemon runs no receiver, so Gitea's deliveries go nowhere",
            Some("set gitea.webhookListen to the address Gitea reaches (webhookUrl's host and port)".into()),
        );
    }
    if let Err(e) = s.webhook_secret() {
        return Check::fail(
            "webhook secret",
            e.to_string(),
            "write the secret into gitea.webhookSecretFile (or set webhookSecretEnv)",
        );
    }
    let manual = "in Gitea, press \"Test Delivery\" on the webhook (repository Settings → Webhooks), then run claimd doctor again; claimd's log says `gitea webhook with a wrong signature refused` when the secrets differ";
    let Some(d) = daemon else {
        return Check::warn(
            "webhook secret",
            "cannot be checked: Gitea never shows a hook's secret, and the daemon (which counts verified deliveries) does not answer",
            Some(format!("start the daemon, then {manual}")),
        );
    };
    if d.webhook_refused > 0 && d.webhook_last_refused_ms > d.webhook_last_verified_ms {
        return Check::fail(
            "webhook secret",
            format!(
                "the receiver refused the last delivery ({}; {} refused, {} verified since the daemon started) for a missing or wrong X-Gitea-Signature: the webhook's secret in Gitea differs from claimd's",
                at(d.webhook_last_refused_ms),
                d.webhook_refused,
                d.webhook_verified
            ),
            match register_command(c, "OWNER/NAME") {
                Some(command) => format!("write claimd's secret into each repository's webhook: {command} (or restart claimd: it does so at start)"),
                None => "restart claimd: it writes its secret into every repository's webhook at start".into(),
            },
        );
    }
    if d.webhook_verified > 0 {
        return Check::pass(
            "webhook secret",
            format!(
                "{} deliveries verified with claimd's secret since the daemon started (the last {})",
                d.webhook_verified,
                at(d.webhook_last_verified_ms)
            ),
        );
    }
    Check::warn(
        "webhook secret",
        "cannot be checked yet: Gitea never shows a hook's secret, its API here offers no test delivery, and no delivery reached the daemon since it started",
        Some(manual.into()),
    )
}
