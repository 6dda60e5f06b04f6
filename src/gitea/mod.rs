//! Gitea (adapter): what claimd needs of the Gitea next to it. Today the webhook
//! receiver's side ([`webhook`]): the signature, the push event and what to do with it.
//! No Gitea type reaches the core: a push becomes a repository to reconcile.

pub mod webhook;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The `gitea:` block of the daemon's configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
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
    #[error("cannot read the webhook secret from {path}: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook secret variable {name} is not set or empty")]
    SecretEnv { name: String },
    #[error("the webhook secret in {0} is empty")]
    EmptySecret(String),
    #[error("the push event does not read: {0}")]
    Payload(#[source] serde_json::Error),
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
    /// The webhook secret these settings name.
    pub fn webhook_secret(&self) -> Result<Secret, Error> {
        Secret::load(
            self.webhook_secret_file.as_deref(),
            self.webhook_secret_env.as_deref(),
        )
    }
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
