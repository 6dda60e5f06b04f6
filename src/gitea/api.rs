//! Gitea's REST API (`/api/v1`), the few calls claimd makes: webhooks and commit
//! statuses. The token goes in the `Authorization: token …` header only (never a URL,
//! never a log). Errors name the request and what to do about it.

use super::{Error, Secret};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A client of one Gitea.
#[derive(Clone)]
pub struct Client {
    api: String,
    token: Secret,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gitea::Client({})", self.api)
    }
}

/// A webhook as Gitea lists it (`Hook`).
#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    pub id: i64,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A commit status state (`CommitStatusState`: these four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Success,
    Failure,
    Error,
}

/// A commit status to post (`CreateStatusOption`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub context: String,
    pub state: State,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
}

impl Client {
    /// A client of the Gitea at `url` (its root URL, e.g. `https://gitea.example.com`),
    /// trusting the CA in `ca_file` too when given.
    pub fn new(url: &str, token: Secret, ca_file: Option<&Path>) -> Result<Client, Error> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("claimd/", env!("CARGO_PKG_VERSION")));
        let http = crate::https::trusting(builder, ca_file)?
            .build()
            .map_err(|source| Error::Client {
                what: "the HTTP client".into(),
                source,
            })?;
        Ok(Client {
            api: format!("{}/api/v1", url.trim_end_matches('/')),
            token,
            http,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        Ok(self.exchange(method, path, body).await?.0)
    }

    /// A request and its answer, with the answer's `Date` header (Gitea's clock).
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), Error> {
        let request = format!("{method} {path}");
        let mut token = b"token ".to_vec();
        token.extend_from_slice(self.token.expose());
        let mut header = reqwest::header::HeaderValue::from_bytes(&token)
            .map_err(|_| Error::Token("the token is not a valid header value".into()))?;
        header.set_sensitive(true);
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header(reqwest::header::AUTHORIZATION, header)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req.send().await.map_err(|source| Error::Request {
            request: request.clone(),
            source,
        })?;
        let status = response.status();
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.map_err(|source| Error::Request {
            request: request.clone(),
            source,
        })?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok((Value::Null, date));
            }
            return serde_json::from_str(&text)
                .map(|v| (v, date))
                .map_err(|source| Error::Answer { request, source });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
                request,
                status: status.as_u16(),
                message,
            },
            StatusCode::NOT_FOUND => Error::NotFound { request, message },
            StatusCode::UNPROCESSABLE_ENTITY => Error::Refused { request, message },
            _ => Error::Status {
                request,
                status: status.as_u16(),
                message,
            },
        })
    }

    /// Gitea's version (`GET /version`) and the `Date` its answer carries (for a clock
    /// comparison). The token is sent too, so a refused token shows here.
    pub async fn version(&self) -> Result<(String, Option<String>), Error> {
        let (value, date) = self.exchange(Method::GET, "/version", None).await?;
        let version = value
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        Ok((version, date))
    }

    /// Whether the repository `owner/repo` exists and the token can see it.
    pub async fn repository_exists(&self, owner: &str, repo: &str) -> Result<bool, Error> {
        self.exists(&format!("/repos/{owner}/{repo}")).await
    }

    /// The webhooks of `owner/repo` (every page).
    pub async fn hooks(&self, owner: &str, repo: &str) -> Result<Vec<Hook>, Error> {
        const PAGE: usize = 50;
        let mut all = Vec::new();
        for page in 1.. {
            let path = format!("/repos/{owner}/{repo}/hooks?page={page}&limit={PAGE}");
            let value = self.call(Method::GET, &path, None).await?;
            let hooks: Vec<Hook> =
                serde_json::from_value(value).map_err(|source| Error::Answer {
                    request: format!("GET {path}"),
                    source,
                })?;
            let last = hooks.len() < PAGE;
            all.extend(hooks);
            if last {
                break;
            }
        }
        Ok(all)
    }

    async fn hook_call(&self, method: Method, path: &str, body: &Value) -> Result<Hook, Error> {
        let value = self.call(method.clone(), path, Some(body)).await?;
        serde_json::from_value(value).map_err(|source| Error::Answer {
            request: format!("{method} {path}"),
            source,
        })
    }

    /// Whether `path` exists (200) or not (404).
    async fn exists(&self, path: &str) -> Result<bool, Error> {
        match self.call(Method::GET, path, None).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the organization `org` unless it exists. True: it was created.
    pub async fn ensure_org(&self, org: &str) -> Result<bool, Error> {
        if self.exists(&format!("/orgs/{org}")).await? {
            return Ok(false);
        }
        let body = serde_json::json!({ "username": org });
        self.call(Method::POST, "/orgs", Some(&body)).await?;
        Ok(true)
    }

    /// Creates the private repository `org/name` (empty, default branch `branch`) unless
    /// it exists. True: it was created.
    pub async fn ensure_repo(&self, org: &str, name: &str, branch: &str) -> Result<bool, Error> {
        if self.exists(&format!("/repos/{org}/{name}")).await? {
            return Ok(false);
        }
        let body = serde_json::json!({
            "name": name,
            "private": true,
            "auto_init": false,
            "default_branch": branch,
            "description": "GitOps repository managed with claimd",
        });
        self.call(Method::POST, &format!("/orgs/{org}/repos"), Some(&body))
            .await?;
        Ok(true)
    }

    /// Posts a commit status on `sha`.
    pub async fn post_status(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
        status: &Status,
    ) -> Result<(), Error> {
        let path = format!("/repos/{owner}/{repo}/statuses/{sha}");
        let body = serde_json::to_value(status).map_err(|source| Error::Answer {
            request: format!("POST {path}"),
            source,
        })?;
        self.call(Method::POST, &path, Some(&body)).await?;
        Ok(())
    }
}

/// What registering a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created(i64),
    Updated(i64),
    /// A hook with this URL and these settings was there already (nothing was written).
    Unchanged(i64),
}

/// claimd's hook among `hooks`: the one delivering to `url`.
pub fn hook_for<'a>(hooks: &'a [Hook], url: &str) -> Option<&'a Hook> {
    hooks
        .iter()
        .find(|h| h.config.get("url").map(String::as_str) == Some(url))
}

impl Hook {
    /// How this hook differs from what claimd wants (type `gitea`, active, push
    /// events, JSON); empty when it is as wanted. The secret cannot be seen.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != "gitea" {
            out.push(format!("its type is {:?}, not \"gitea\"", self.kind));
        }
        if !self.active {
            out.push("it is not active".to_string());
        }
        if !self.events.iter().any(|e| e == "push") {
            out.push("it is not sent on push events".to_string());
        }
        if self.config.get("content_type").map(String::as_str) != Some("json") {
            out.push("its content type is not json".to_string());
        }
        out
    }
}

/// The hook claimd wants: type `gitea`, JSON, push events, active, with the secret.
fn wanted(url: &str, secret: &Secret) -> Value {
    serde_json::json!({
        "content_type": "json",
        "url": url,
        "secret": String::from_utf8_lossy(secret.expose()),
    })
}

/// Creates claimd's webhook on `owner/repo`, or updates the one with the same URL:
/// never a second one. A hook already as wanted is left alone unless `rewrite_secret`
/// (Gitea never shows a hook's secret, so only a write can make sure it matches).
pub async fn register_webhook(
    client: &Client,
    owner: &str,
    repo: &str,
    url: &str,
    secret: &Secret,
    rewrite_secret: bool,
) -> Result<Registered, Error> {
    let hooks = client.hooks(owner, repo).await?;
    let config = wanted(url, secret);
    match hook_for(&hooks, url) {
        Some(h) => {
            if h.problems().is_empty() && !rewrite_secret {
                return Ok(Registered::Unchanged(h.id));
            }
            let body = serde_json::json!({
                "active": true,
                "events": ["push"],
                "config": config,
            });
            let path = format!("/repos/{owner}/{repo}/hooks/{}", h.id);
            let hook = client.hook_call(Method::PATCH, &path, &body).await?;
            Ok(Registered::Updated(hook.id))
        }
        None => {
            let body = serde_json::json!({
                "type": "gitea",
                "active": true,
                "events": ["push"],
                "config": config,
            });
            let path = format!("/repos/{owner}/{repo}/hooks");
            let hook = client.hook_call(Method::POST, &path, &body).await?;
            Ok(Registered::Created(hook.id))
        }
    }
}

/// When Gitea must be told to deliver to `url` (a loopback or private address: Gitea's
/// `[webhook] ALLOWED_HOST_LIST` is `external` by default since 1.16), the app.ini lines.
pub fn allowed_host_hint(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let ip: Option<std::net::IpAddr> = name.parse().ok();
    let setting = match ip {
        _ if name.eq_ignore_ascii_case("localhost") => "loopback",
        Some(ip) if ip.is_loopback() => "loopback",
        Some(std::net::IpAddr::V4(v4)) if v4.is_private() || v4.is_link_local() => "private",
        Some(std::net::IpAddr::V6(v6)) if (v6.segments()[0] & 0xfe00) == 0xfc00 => "private",
        _ => return None,
    };
    Some(format!(
        "{url} is a {setting} address: Gitea delivers there only if app.ini allows it:\n  [webhook]\n  ALLOWED_HOST_LIST = {setting}\n(or the exact host or CIDR; the default is `external`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_private_webhook_urls_get_the_app_ini_line() {
        let hint = allowed_host_hint("http://127.0.0.1:7463/hooks/gitea").expect("hint");
        assert!(hint.contains("ALLOWED_HOST_LIST = loopback"), "{hint}");
        assert!(allowed_host_hint("http://localhost:7463/hooks/gitea")
            .expect("hint")
            .contains("= loopback"));
        assert!(allowed_host_hint("http://[::1]:7463/hooks/gitea")
            .expect("hint")
            .contains("= loopback"));
        assert!(allowed_host_hint("http://10.1.2.3/hooks/gitea")
            .expect("hint")
            .contains("ALLOWED_HOST_LIST = private"));
        assert!(allowed_host_hint("http://192.168.1.9:80/hooks/gitea")
            .expect("hint")
            .contains("= private"));
        assert_eq!(
            allowed_host_hint("https://claimd.example.com/hooks/gitea"),
            None
        );
        assert_eq!(allowed_host_hint("https://8.8.8.8/hooks/gitea"), None);
    }

    #[test]
    fn states_are_the_four_of_the_contract() {
        let s = Status {
            context: "claimd/claims/a.yaml".into(),
            state: State::Failure,
            description: "x".into(),
            target_url: None,
        };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["state"], "failure");
        assert!(v.get("target_url").is_none());
    }
}
