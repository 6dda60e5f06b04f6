//! Argo CD refresh (adapter, optional, off by default): after a bot commit, claimd
//! POSTs a GitHub-format push event of its own to the configured URLs (argocd-server's
//! `/api/webhook`, the ApplicationSet controller's webhook `/api/webhook`), so Argo CD
//! refreshes the Applications and Git generators that use the repository at once
//! instead of at its next poll.
//!
//! Why claimd sends its own event: the ApplicationSet controller's webhook reads GitHub,
//! GitLab and Azure DevOps events only, and Gitea's push event (which carries
//! `X-GitHub-Event: push` too) fails its GitHub parser: go-playground/webhooks v6
//! `github.PushPayload` declares `repository.created_at` and `pushed_at` as `int64`
//! (unix seconds) and Gitea sends RFC 3339 strings there.
//!
//! What Argo CD reads of a GitHub push (argo-cd `util/webhook/webhook.go`
//! `affectedRevisionInfo`, `applicationset/webhook/webhook.go` `getGitGeneratorInfo`):
//! `repository.html_url` (the only URL; matched against an Application's or a Git
//! generator's `repoURL` by host and path, any scheme, user, port and `.git` suffix),
//! `ref` (the branch: the last part of `refs/heads/<branch>`),
//! `repository.default_branch` (a `HEAD` target revision), `before` / `after` (argocd-
//! server moves its manifest cache from `before` to `after` for an Application none of
//! whose paths changed) and `commits[].added/modified/removed` (the changed paths,
//! compared with an Application's `manifest-generate-paths`; an empty list refreshes
//! everything). The signature is `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
//! body>` keyed with `webhook.github.secret` of `argocd-secret`, checked only when that
//! secret is set. No User-Agent check.

use crate::gitea::Secret;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one POST may take (connect included): a refresh that does not arrive in time
/// is left to Argo CD's polling.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The `argocd:` block of the daemon's configuration. No `urls`: no refresh.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Where the push event goes: argocd-server's `https://<argocd-server>/api/webhook`,
    /// the ApplicationSet controller's `http://<applicationset-controller>:7000/api/webhook`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// A file holding Argo CD's `webhook.github.secret` (in the `argocd-secret` Secret):
    /// the events are signed with it (`X-Hub-Signature-256`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding that secret (instead of a file).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// A CA certificate (PEM) argocd-server's HTTPS certificate is signed by, if not a
    /// public one (argocd-server's default certificate is self-signed).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Settings {
    /// Whether anything is to be notified.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    /// Every URL is an `http` or `https` URL.
    pub fn check(&self) -> Result<(), Error> {
        for url in &self.urls {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => {
                    return Err(Error::Url {
                        url: url.clone(),
                        reason: "not an http or https URL".into(),
                    })
                }
                Err(e) => {
                    return Err(Error::Url {
                        url: url.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// The webhook secret, when `secretFile` or `secretEnv` is set.
    pub fn secret(&self) -> Result<Option<Secret>, Error> {
        match Secret::load(self.secret_file.as_deref(), self.secret_env.as_deref()) {
            Ok(secret) => Ok(Some(secret)),
            Err(crate::gitea::Error::NoSecret) => Ok(None),
            Err(e) => Err(Error::Secret(e)),
        }
    }
}

/// A bot commit, as the push event tells Argo CD about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Push {
    /// The URLs the Applications and ApplicationSets name the repository by (the
    /// BootstrapClaim's GitOps repository: clone URL, web URL, `git@host:owner/name.git`).
    /// One event goes out per distinct repository they name ([`web_urls`]).
    pub repo_urls: Vec<String>,
    /// The branch committed to (`main`, not `refs/heads/main`).
    pub branch: String,
    /// The repository's default branch: Argo CD refreshes a `targetRevision: HEAD` source
    /// only when the pushed branch is this one.
    pub default_branch: String,
    /// The branch's commit before the bot commit (40 hex).
    pub before: String,
    /// The bot commit (40 hex).
    pub after: String,
    /// The generated paths the bot commit added, changed or deleted, relative to the
    /// repository's root (Argo CD compares them with `manifest-generate-paths`; it
    /// reads added, modified and removed alike, so all go to `modified`). Empty: Argo CD
    /// refreshes every Application of the repository.
    pub changed: Vec<String>,
    pub pusher_name: String,
    pub pusher_email: String,
    /// The bot commit's time (unix seconds).
    pub time: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("argocd.urls: {url} is not a webhook URL: {reason}")]
    Url { url: String, reason: String },
    #[error("the Argo CD webhook secret: {0}")]
    Secret(#[source] crate::gitea::Error),
    #[error(transparent)]
    CaFile(#[from] crate::https::TrustError),
    #[error("setting up {what}: {source}")]
    Client {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "no repository URL to name in the push event (none of {0:?} is a URL Argo CD can match)"
    )]
    NoRepoUrl(Vec<String>),
    #[error("the push event does not serialize: {0}")]
    Body(#[source] serde_json::Error),
    #[error("POST {url}: Argo CD did not answer: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("POST {url}: Argo CD answered {status} ({message}){hint}", hint = status_hint(*.status))]
    Status {
        url: String,
        status: u16,
        message: String,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        400 => ": a wrong or missing signature is answered 400 too: check that argocd.secretFile holds webhook.github.secret of argocd-secret",
        404 => ": the webhook path is /api/webhook",
        503 => ": Argo CD's webhook queue is full; it refreshes at its next poll",
        _ => "",
    }
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Url { .. } => "url",
            Error::Secret(_) => "secret",
            Error::CaFile(_) => "ca_file",
            Error::Client { .. } => "client",
            Error::NoRepoUrl(_) => "no_repo_url",
            Error::Body(_) => "body",
            Error::Request { source, .. } if source.is_timeout() => "timeout",
            Error::Request { .. } => "request",
            Error::Status { .. } => "status",
        }
    }
}

/// `X-Hub-Signature-256` of `body`: `sha256=` and the lowercase hex HMAC-SHA256 keyed
/// with `secret` (go-playground/webhooks compares exactly this text).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The web URL Argo CD is to match for a repository URL: `https://host/owner/name`
/// for `https://host/owner/name.git`, `git@host:owner/name.git` or
/// `ssh://git@host:2222/owner/name.git` (http and its port kept for an http URL). Argo CD
/// builds a regular expression of its host and path (`GetWebURLRegex`), so every form of
/// the same repository matches it. `None` for what is not a repository URL.
pub fn web_url(repo_url: &str) -> Option<String> {
    let repo_url = repo_url.trim();
    let (scheme, authority, path) = if let Some((scheme, rest)) = repo_url.split_once("://") {
        let (authority, path) = rest.split_once('/')?;
        (scheme.to_ascii_lowercase(), authority, path)
    } else {
        // scp-like: [user@]host:path
        let (authority, path) = repo_url.split_once(':')?;
        if authority.contains('/') {
            return None;
        }
        ("ssh".to_string(), authority, path)
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    if host_port.is_empty() || path.is_empty() {
        return None;
    }
    match scheme.as_str() {
        "http" | "https" => Some(format!("{scheme}://{host_port}/{path}")),
        "ssh" | "git" => {
            let host = match host_port.strip_prefix('[') {
                Some(v6) => &host_port[..v6.find(']')? + 2],
                None => host_port.split(':').next()?,
            };
            Some(format!("https://{host}/{path}"))
        }
        _ => None,
    }
}

/// The distinct repositories `push.repo_urls` name, as [`web_url`]s (first spelling
/// kept; host and path compared without regard to case, as Argo CD does).
pub fn web_urls(push: &Push) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for url in &push.repo_urls {
        let Some(web) = web_url(url) else { continue };
        let key = match_key(&web);
        if !seen.contains(&key) {
            seen.push(key);
            out.push(web);
        }
    }
    out
}

/// Host (without port) and path, lower-cased: what Argo CD's regular expression matches.
fn match_key(web: &str) -> String {
    let rest = web.split_once("://").map_or(web, |(_, r)| r);
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match host_port.strip_prefix('[') {
        Some(_) => host_port.split(']').next().unwrap_or(host_port),
        None => host_port.split(':').next().unwrap_or(host_port),
    };
    format!("{host}/{path}").to_lowercase()
}

/// The push event for the first repository of [`web_urls`] (an empty `html_url` when
/// there is none).
pub fn github_push_event(push: &Push) -> Value {
    let web = web_urls(push).into_iter().next().unwrap_or_default();
    github_push_event_for(push, &web)
}

/// The GitHub push event (`X-GitHub-Event: push`) for `push` naming the repository at
/// `web` (a [`web_url`]). Every field has the JSON type of go-playground/webhooks v6
/// `github.PushPayload` (Go's `encoding/json`: `int64` fields are numbers, `time.Time`
/// an RFC 3339 string, `*string` a string or null); the ids are 0 (Argo CD reads none).
pub fn github_push_event_for(push: &Push, web: &str) -> Value {
    let path = web
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, path)| path);
    let (owner, name) = path.rsplit_once('/').unwrap_or(("", path));
    let clone_url = if web.is_empty() {
        String::new()
    } else {
        format!("{web}.git")
    };
    let key = match_key(web);
    let ssh_url = push
        .repo_urls
        .iter()
        .find(|u| {
            let u = u.trim();
            (u.starts_with("ssh://") || !u.contains("://"))
                && web_url(u).is_some_and(|w| match_key(&w) == key)
        })
        .cloned()
        .unwrap_or_default();
    let timestamp = rfc3339(push.time);
    let created = push.before.bytes().all(|b| b == b'0');
    let commit = json!({
        "id": push.after,
        "tree_id": "",
        "distinct": true,
        "message": "claimd: generated files",
        "timestamp": timestamp,
        "url": format!("{web}/commit/{}", push.after),
        "author": {"name": push.pusher_name, "email": push.pusher_email, "username": ""},
        "committer": {"name": push.pusher_name, "email": push.pusher_email, "username": ""},
        "added": [],
        "removed": [],
        "modified": push.changed,
    });
    let user = |login: &str, html_url: &str, kind: &str| {
        json!({
            "login": login,
            "id": 0,
            "html_url": html_url,
            "type": kind,
            "site_admin": false,
        })
    };
    let owner_url = web.strip_suffix(&format!("/{name}")).unwrap_or("");
    json!({
        "ref": format!("refs/heads/{}", push.branch),
        "before": push.before,
        "after": push.after,
        "created": created,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": if created || web.is_empty() {
            String::new()
        } else {
            format!("{web}/compare/{}...{}", push.before, push.after)
        },
        "commits": [commit.clone()],
        "head_commit": commit,
        "repository": {
            "id": 0,
            "name": name,
            "full_name": path,
            "owner": user(owner, owner_url, "Organization"),
            "private": false,
            "html_url": web,
            "fork": false,
            "created_at": 0,
            "updated_at": timestamp,
            "pushed_at": push.time,
            "ssh_url": ssh_url,
            "clone_url": clone_url,
            "homepage": null,
            "size": 0,
            "default_branch": push.default_branch,
            "master_branch": push.default_branch,
        },
        "pusher": {"name": push.pusher_name, "email": push.pusher_email},
        "sender": user(&push.pusher_name, "", "Bot"),
    })
}

/// Tells Argo CD's webhooks of bot commits: the settings checked, the secret and the
/// HTTP client made once (not for every commit).
pub struct Notifier {
    urls: Vec<String>,
    secret: Option<Secret>,
    client: reqwest::Client,
}

impl Notifier {
    /// For `settings` (None: no URLs, nothing to tell), signing with `secret` if any.
    pub fn new(settings: &Settings, secret: Option<Secret>) -> Result<Option<Notifier>, Error> {
        if !settings.enabled() {
            return Ok(None);
        }
        settings.check()?;
        let builder = reqwest::Client::builder()
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("GitHub-Hookshot/claimd");
        let client = crate::https::trusting(builder, settings.ca_file.as_deref())?
            .build()
            .map_err(|source| Error::Client {
                what: "the HTTP client".into(),
                source,
            })?;
        Ok(Some(Notifier {
            urls: settings.urls.clone(),
            secret,
            client,
        }))
    }

    /// POSTs the push event to every URL (one event per repository of [`web_urls`]),
    /// signed when there is a secret. One result per URL and repository, in that order:
    /// the HTTP status of a 2xx answer, or why not. Each POST gives up after
    /// [`TIMEOUT`]; nothing is retried (the caller logs; Argo CD polls anyway).
    pub async fn notify(&self, push: &Push) -> Vec<Result<u16, Error>> {
        notify_with(&self.client, &self.urls, self.secret.as_ref(), push).await
    }
}

async fn notify_with(
    client: &reqwest::Client,
    urls: &[String],
    secret: Option<&Secret>,
    push: &Push,
) -> Vec<Result<u16, Error>> {
    let webs = web_urls(push);
    if webs.is_empty() {
        return vec![Err(Error::NoRepoUrl(push.repo_urls.clone()))];
    }
    let mut bodies = Vec::new();
    for web in &webs {
        match serde_json::to_vec(&github_push_event_for(push, web)) {
            Ok(body) => bodies.push((web.as_str(), body)),
            Err(e) => return vec![Err(Error::Body(e))],
        }
    }
    let posts = urls.iter().flat_map(|url| {
        bodies
            .iter()
            .map(|(web, body)| post(client, url, secret, web, push, body.clone()))
    });
    futures_util::future::join_all(posts).await
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&Secret>,
    web: &str,
    push: &Push,
    body: Vec<u8>,
) -> Result<u16, Error> {
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", delivery_id(push, web, url));
    if let Some(secret) = secret {
        request = request.header("X-Hub-Signature-256", sign(secret.expose(), &body));
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|source| Error::Request {
            url: url.to_string(),
            source,
        })?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(status);
    }
    let text = response.text().await.unwrap_or_default();
    let mut message: String = text.trim().chars().take(200).collect();
    if message.is_empty() {
        message = "no message".into();
    }
    Err(Error::Status {
        url: url.to_string(),
        status,
        message,
    })
}

/// A unique id in the UUID v4 layout, as GitHub's `X-GitHub-Delivery` (a hash of the
/// commit, the target, the clock, the process and a counter).
fn delivery_id(push: &Push, web: &str, url: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hash = Sha256::new();
    hash.update(push.after.as_bytes());
    hash.update(web.as_bytes());
    hash.update(url.as_bytes());
    hash.update(nanos.to_le_bytes());
    hash.update(std::process::id().to_le_bytes());
    hash.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut b: [u8; 16] = hash.finalize()[..16].try_into().expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` of unix seconds (what Go's `time.Time` reads).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push() -> Push {
        Push {
            repo_urls: vec![
                "http://gitea.local:3000/platform/voltran.git".into(),
                "http://gitea.local:3000/platform/voltran".into(),
                "git@gitea.local:platform/voltran.git".into(),
            ],
            branch: "main".into(),
            default_branch: "main".into(),
            before: "1".repeat(40),
            after: "2".repeat(40),
            changed: vec!["apps/web/values.yaml".into(), "appsets/web.yaml".into()],
            pusher_name: "claimd".into(),
            pusher_email: "claimd@example.com".into(),
            time: 1_715_682_068,
        }
    }

    #[test]
    fn signature_is_rfc_4231_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn web_urls_are_what_argocd_matches() {
        for (repo, web) in [
            (
                "https://gitea.example.com/platform/voltran.git",
                "https://gitea.example.com/platform/voltran",
            ),
            (
                "https://gitea.example.com/platform/voltran/",
                "https://gitea.example.com/platform/voltran",
            ),
            (
                "http://gitea.local:3000/platform/voltran.git",
                "http://gitea.local:3000/platform/voltran",
            ),
            (
                "git@gitea.example.com:platform/voltran.git",
                "https://gitea.example.com/platform/voltran",
            ),
            (
                "ssh://git@gitea.example.com:2222/platform/voltran.git",
                "https://gitea.example.com/platform/voltran",
            ),
        ] {
            assert_eq!(web_url(repo).as_deref(), Some(web), "{repo}");
        }
        assert_eq!(web_url("voltran"), None);
        assert_eq!(web_url("file:///srv/git/voltran.git"), None);
        // the clone URL, the web URL and the SSH URL of one repository: one event
        assert_eq!(
            web_urls(&push()),
            ["http://gitea.local:3000/platform/voltran"]
        );
        let mut two = push();
        two.repo_urls
            .push("https://mirror.example.com/platform/voltran.git".into());
        assert_eq!(web_urls(&two).len(), 2);
    }

    #[test]
    fn the_event_says_what_argocd_reads() {
        let e = github_push_event(&push());
        assert_eq!(e["ref"], "refs/heads/main");
        assert_eq!(e["before"], "1".repeat(40));
        assert_eq!(e["after"], "2".repeat(40));
        assert_eq!(e["created"], false);
        let repo = &e["repository"];
        assert_eq!(repo["html_url"], "http://gitea.local:3000/platform/voltran");
        assert_eq!(
            repo["clone_url"],
            "http://gitea.local:3000/platform/voltran.git"
        );
        assert_eq!(repo["ssh_url"], "git@gitea.local:platform/voltran.git");
        assert_eq!(repo["full_name"], "platform/voltran");
        assert_eq!(repo["name"], "voltran");
        assert_eq!(repo["owner"]["login"], "platform");
        assert_eq!(repo["default_branch"], "main");
        assert!(repo["created_at"].is_i64() && repo["pushed_at"].is_i64());
        assert_eq!(repo["pushed_at"], 1_715_682_068);
        assert_eq!(repo["updated_at"], "2024-05-14T10:21:08Z");
        assert_eq!(
            e["commits"][0]["modified"],
            json!(["apps/web/values.yaml", "appsets/web.yaml"])
        );
        assert_eq!(e["head_commit"], e["commits"][0]);
        assert_eq!(
            e["compare"],
            format!(
                "http://gitea.local:3000/platform/voltran/compare/{}...{}",
                "1".repeat(40),
                "2".repeat(40)
            )
        );
    }

    #[test]
    fn dates_and_delivery_ids() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_715_682_068), "2024-05-14T10:21:08Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        let p = push();
        let a = delivery_id(&p, "w", "u");
        let b = delivery_id(&p, "w", "u");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn settings_read_and_check() {
        let s: Settings = serde_yaml::from_str(
            "urls: [https://argocd.example.com/api/webhook]\nsecretEnv: ARGOCD_WEBHOOK_SECRET\n",
        )
        .unwrap();
        assert!(s.enabled());
        assert!(s.check().is_ok());
        assert!(serde_yaml::from_str::<Settings>("url: x\n").is_err());
        assert!(!Settings::default().enabled());
        assert_eq!(Settings::default().secret().unwrap().map(|_| ()), None);
        let bad = Settings {
            urls: vec!["argocd-server/api/webhook".into()],
            ..Settings::default()
        };
        assert_eq!(bad.check().unwrap_err().kind(), "url");
    }

    #[test]
    fn nothing_configured_nothing_sent() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(Notifier::new(&Settings::default(), None).unwrap().is_none());
        let settings = Settings {
            urls: vec!["http://127.0.0.1:9/api/webhook".into()],
            ..Settings::default()
        };
        let notifier = Notifier::new(&settings, None).unwrap().expect("a notifier");
        let no_repo = Push {
            repo_urls: vec!["voltran".into()],
            ..push()
        };
        let r = rt.block_on(notifier.notify(&no_repo));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].as_ref().unwrap_err().kind(), "no_repo_url");
    }
}
