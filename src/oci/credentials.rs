//! Registry credentials: from claimd's config (files or environment variables named
//! there), else from the Docker config file (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, `auths.<host>`), else anonymous. Secrets are never logged:
//! [`Credentials`] prints as `***`.

use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostSettings {
    /// Talk plain HTTP to this host (a registry on loopback or a trusted network).
    #[serde(default)]
    pub plain_http: bool,
    /// PEM file of a CA to trust for this host, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (secrets come from files or the environment only).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding a bearer token (instead of username and password).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
}

/// What to present to a registry.
#[derive(Clone, PartialEq)]
pub enum Credentials {
    Anonymous,
    Basic { username: String, password: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Token(_) => write!(f, "Token(***)"),
        }
    }
}

impl From<&Credentials> for oci_client::secrets::RegistryAuth {
    fn from(c: &Credentials) -> Self {
        use oci_client::secrets::RegistryAuth;
        match c {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Token(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the secret file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the environment variable {0} named in the config is not set")]
    Env(String),
    #[error("{path}: {detail}")]
    DockerConfig { path: PathBuf, detail: String },
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Read { .. } => "secret_file",
            Error::Env(_) => "secret_env",
            Error::DockerConfig { .. } => "docker_config",
        }
    }
}

/// The credentials for `host`.
pub fn for_host(host: &str, settings: Option<&HostSettings>) -> Result<Credentials, Error> {
    if let Some(s) = settings {
        if let Some(token) = secret(s.token_file.as_deref(), s.token_env.as_deref())? {
            return Ok(Credentials::Token(token));
        }
        if let Some(username) = &s.username {
            let password =
                secret(s.password_file.as_deref(), s.password_env.as_deref())?.unwrap_or_default();
            return Ok(Credentials::Basic {
                username: username.clone(),
                password,
            });
        }
    }
    match docker_config_path() {
        Some(path) if path.is_file() => from_docker_config(&path, host),
        _ => Ok(Credentials::Anonymous),
    }
}

fn secret(file: Option<&Path>, env: Option<&str>) -> Result<Option<String>, Error> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| Error::Env(var.to_string()));
    }
    Ok(None)
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// `auths.<host>` of a Docker config file: `auth` (base64 `user:password`), or
/// `username` + `password`, or `registrytoken`. Hosts match with or without a scheme.
pub fn from_docker_config(path: &Path, host: &str) -> Result<Credentials, Error> {
    let bad = |detail: String| Error::DockerConfig {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(Credentials::Anonymous);
    };
    let entry = auths.iter().find_map(|(key, value)| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key = key.split('/').next().unwrap_or(key);
        (key == host).then_some(value)
    });
    let Some(entry) = entry else {
        return Ok(Credentials::Anonymous);
    };
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or("");
    if !field("registrytoken").is_empty() {
        return Ok(Credentials::Token(field("registrytoken").to_string()));
    }
    if !field("auth").is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(field("auth"))
            .map_err(|_| bad(format!("auths.{host}.auth is not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad(format!("auths.{host}.auth is not UTF-8")))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{host}.auth is not user:password")))?;
        return Ok(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    if !field("username").is_empty() {
        return Ok(Credentials::Basic {
            username: field("username").to_string(),
            password: field("password").to_string(),
        });
    }
    Ok(Credentials::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auth_field_and_scheme_prefixed_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {
                "https://reg.example.com/v1/": {"auth": "Ym90OnMzY3JldDpwYXJ0"},
                "other.example.com": {"username": "u", "password": "p"},
                "tok.example.com": {"registrytoken": "t0k"}
            }}"#,
        )
        .unwrap();
        assert_eq!(
            from_docker_config(&path, "reg.example.com").unwrap(),
            Credentials::Basic {
                username: "bot".into(),
                password: "s3cret:part".into()
            }
        );
        assert_eq!(
            from_docker_config(&path, "other.example.com").unwrap(),
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            from_docker_config(&path, "tok.example.com").unwrap(),
            Credentials::Token("t0k".into())
        );
        assert_eq!(
            from_docker_config(&path, "nope.example.com").unwrap(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials::Basic {
            username: "bot".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Token("abc".into())).contains("abc"));
    }

    #[test]
    fn config_files_win_over_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        let s = HostSettings {
            username: Some("bot".into()),
            password_file: Some(pw),
            ..HostSettings::default()
        };
        assert_eq!(
            for_host("x", Some(&s)).unwrap(),
            Credentials::Basic {
                username: "bot".into(),
                password: "from-file".into()
            }
        );
        let missing = HostSettings {
            token_env: Some("CLAIMD_TEST_SURELY_UNSET_VAR".into()),
            ..HostSettings::default()
        };
        assert!(matches!(for_host("x", Some(&missing)), Err(Error::Env(_))));
    }
}
