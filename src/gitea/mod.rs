//! Gitea (adapter): what claimd needs of the Gitea next to it: the webhook receiver's
//! side ([`webhook`]: the signature, the push event and what to do with it) and the
//! REST API ([`api`]: webhook registration, commit statuses). No Gitea type reaches the
//! core: a push becomes a repository to reconcile, a reconcile's report statuses.

pub mod api;
pub mod bootstrap;
pub mod status;
pub mod webhook;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The `gitea:` block of the daemon's configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Gitea's root URL (`https://gitea.example.com`): webhook registration, statuses.
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding an access token (scope `write:repository`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the token (instead of a file).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A CA certificate (PEM) Gitea's HTTPS certificate is signed by, if not a public one.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The URL Gitea delivers webhooks to (this daemon's receiver, as Gitea reaches it):
    /// registered on every repository at start when set.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The daemon's pages as Gitea's users reach them (the webhook listener's public
    /// URL): statuses link to `<pageUrl>/previews/<commit>` (a branch preview's diff)
    /// and `<pageUrl>/claims/<claim path>`.
    #[serde(default)]
    pub page_url: Option<String>,
    /// Where the webhook receiver (`POST /hooks/gitea`) listens. Gitea must reach it, so
    /// it may be a non-loopback address (the `/v1` API stays on loopback).
    #[serde(default)]
    pub webhook_listen: Option<SocketAddr>,
    /// A file holding the webhook secret (the hook's `secret` in Gitea).
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    /// An environment variable holding the webhook secret (instead of a file).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("gitea.webhookListen is set but no webhook secret is: set gitea.webhookSecretFile or gitea.webhookSecretEnv (a receiver without a secret would render for anyone who can reach it)")]
    NoSecret,
    #[error("cannot read the secret in {path}: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the environment variable {name} (a secret) is not set or empty")]
    SecretEnv { name: String },
    #[error("the secret in {0} is empty")]
    EmptySecret(String),
    #[error("the push event does not read: {0}")]
    Payload(#[source] serde_json::Error),
    #[error("no Gitea token: set gitea.tokenFile or gitea.tokenEnv (an access token with scope write:repository)")]
    NoToken,
    #[error("the Gitea token: {0}")]
    Token(String),
    #[error(transparent)]
    CaFile(#[from] crate::https::TrustError),
    #[error("setting up {what}: {source}")]
    Client {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{request}: Gitea did not answer: {source}")]
    Request {
        request: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{request}: Gitea answered {status} ({message}): the token needs scope write:repository and access to the repository")]
    Unauthorized {
        request: String,
        status: u16,
        message: String,
    },
    #[error("{request}: not found ({message}): the organization or repository does not exist, or the token cannot see it")]
    NotFound { request: String, message: String },
    #[error("{request}: Gitea refused the request body ({message})")]
    Refused { request: String, message: String },
    #[error("{request}: Gitea answered {status} ({message})")]
    Status {
        request: String,
        status: u16,
        message: String,
    },
    #[error("{request}: Gitea's answer does not read: {source}")]
    Answer {
        request: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoSecret => "no_secret",
            Error::SecretFile { .. } => "secret_file",
            Error::SecretEnv { .. } => "secret_env",
            Error::EmptySecret(_) => "empty_secret",
            Error::Payload(_) => "payload",
            Error::NoToken => "no_token",
            Error::Token(_) => "token",
            Error::CaFile(_) => "ca_file",
            Error::Client { .. } => "client",
            Error::Request { .. } => "unreachable",
            Error::Unauthorized { .. } => "unauthorized",
            Error::NotFound { .. } => "not_found",
            Error::Refused { .. } => "refused",
            Error::Status { .. } => "status",
            Error::Answer { .. } => "answer",
        }
    }
}

/// A secret: never printed (its `Debug` says `Secret(..)`).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// From a file (one trailing newline is not part of it, as `echo secret > file`
    /// writes it) or an environment variable.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Secret, Error> {
        let bytes = match (file, env) {
            (Some(path), _) => {
                let mut bytes = std::fs::read(path).map_err(|source| Error::SecretFile {
                    path: path.to_path_buf(),
                    source,
                })?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                if bytes.is_empty() {
                    return Err(Error::EmptySecret(path.display().to_string()));
                }
                bytes
            }
            (None, Some(name)) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => v.into_bytes(),
                _ => {
                    return Err(Error::SecretEnv {
                        name: name.to_string(),
                    })
                }
            },
            (None, None) => return Err(Error::NoSecret),
        };
        Ok(Secret(bytes))
    }
}

impl Settings {
    /// A client of the Gitea these settings name; None without a `url`.
    pub fn client(&self) -> Result<Option<api::Client>, Error> {
        let Some((url, token)) = self.token()? else {
            return Ok(None);
        };
        api::Client::new(&url, token, self.ca_file.as_deref()).map(Some)
    }

    /// Gitea's URL and the token, when these settings name a Gitea.
    pub fn token(&self) -> Result<Option<(String, Secret)>, Error> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        match Secret::load(self.token_file.as_deref(), self.token_env.as_deref()) {
            Err(Error::NoSecret) => Err(Error::NoToken),
            Err(e) => Err(e),
            Ok(token) => Ok(Some((url.trim_end_matches('/').to_string(), token))),
        }
    }

    /// Where a bot commit of `owner/name` is pushed: Gitea's smart HTTP.
    pub fn clone_url(url: &str, full_name: &str) -> String {
        format!("{}/{full_name}.git", url.trim_end_matches('/'))
    }

    /// The webhook secret these settings name.
    pub fn webhook_secret(&self) -> Result<Secret, Error> {
        Secret::load(
            self.webhook_secret_file.as_deref(),
            self.webhook_secret_env.as_deref(),
        )
    }
}

/// A user, organization or repository name as Gitea allows it (letters, digits, `-`,
/// `_`, `.`; not `.` or `..`): nothing in it can leave a folder.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The `owner/name` Gitea gives a repository stored at `path` (Gitea keeps
/// `<repository root>/<owner>/<name>.git`, lower-cased).
pub fn full_name_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".git").unwrap_or(name);
    let owner = path.parent()?.file_name()?.to_str()?;
    Some(format!("{owner}/{name}").to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_follow_giteas_layout() {
        assert_eq!(
            full_name_of(Path::new(
                "/var/lib/gitea/repositories/platform/voltran.git"
            ))
            .as_deref(),
            Some("platform/voltran")
        );
        assert_eq!(
            full_name_of(Path::new("/srv/Platform/Voltran.git")).as_deref(),
            Some("platform/voltran")
        );
    }

    #[test]
    fn a_secret_is_never_printed_and_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").expect("write");
        let s = Secret::load(Some(&file), None).expect("secret");
        assert_eq!(s.expose(), b"s3cret");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            Secret::load(Some(&file), None),
            Err(Error::EmptySecret(_))
        ));
        assert!(matches!(Secret::load(None, None), Err(Error::NoSecret)));
        assert!(matches!(
            Secret::load(None, Some("CLAIMD_TEST_NO_SUCH_VARIABLE")),
            Err(Error::SecretEnv { .. })
        ));
    }
}
