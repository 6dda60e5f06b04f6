//! The daemon's configuration file (YAML), with environment and flag overrides.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Loopback address for the hook hand-off, health and readiness endpoints.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Repositories to keep rendered.
    #[serde(default)]
    pub repositories: Vec<RepoConfig>,
    /// Where charts come from: `embedded` (the charts built into claimd, the default),
    /// `oci` (the chart repository each claim names), or a folder of charts.
    #[serde(default)]
    pub charts: Option<String>,
    /// OCI chart repository (`oci://host/path`) for claims whose BootstrapClaim names none.
    #[serde(default)]
    pub charts_repository: Option<String>,
    /// OCI registries: cache, tag refresh interval, offline mode, per-host transport
    /// and credentials (secrets from files or environment variables only).
    #[serde(default)]
    pub registries: crate::charts::oci::Settings,
    #[serde(default)]
    pub bot: Option<Bot>,
    /// The cluster claimd manages namespaces and preview builds in (kubeconfig,
    /// network policy, quota and build settings). No cluster found: dry-run.
    #[serde(default)]
    pub kubernetes: crate::kube::Settings,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    /// Path of the bare repository (e.g. Gitea's `<root>/<owner>/<repo>.git`).
    pub path: PathBuf,
    /// Branch to render (default: the repository's HEAD branch).
    #[serde(default)]
    pub branch: Option<String>,
    /// Also watch the repository's refs for changes (for servers that cannot run hooks).
    #[serde(default)]
    pub watch_refs: bool,
    /// Publish bot commits by `git push` to this URL (e.g. the Gitea clone URL, so Gitea
    /// sees the push) instead of updating the ref on disk. Credentials come from git's
    /// own configuration (credential helper, SSH agent), never from this file.
    #[serde(default)]
    pub push_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bot {
    pub name: String,
    pub email: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7462))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: charts: {detail}")]
    Charts { path: PathBuf, detail: String },
    #[error("{path}: listen address {addr} is not a loopback address; claimd's hook endpoint is for this machine only")]
    NotLoopback { path: PathBuf, addr: SocketAddr },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = serde_yaml::from_str(&text).map_err(|source| Error::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(listen) = std::env::var("CLAIMD_LISTEN") {
            if let Ok(addr) = listen.parse() {
                config.listen = addr;
            }
        }
        if !config.listen.ip().is_loopback() {
            return Err(Error::NotLoopback {
                path: path.to_path_buf(),
                addr: config.listen,
            });
        }
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for r in &mut config.repositories {
            if r.path.is_relative() {
                r.path = base.join(&r.path);
            }
        }
        if let Some(spec) = &mut config.charts {
            if !matches!(spec.as_str(), "embedded" | "oci") && Path::new(spec).is_relative() {
                *spec = base.join(&*spec).display().to_string();
            }
        }
        if let Some(cache) = &mut config.registries.cache {
            if cache.is_relative() {
                *cache = base.join(&*cache);
            }
        }
        if let Some(kubeconfig) = &mut config.kubernetes.kubeconfig {
            if kubeconfig.is_relative() {
                *kubeconfig = base.join(&*kubeconfig);
            }
        }
        // A chart source that cannot be set up (an unreadable CA file) is a config error.
        if let Some(spec) = &config.charts {
            crate::charts::Source::parse(spec, &config.registries).map_err(|e| Error::Charts {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("claimd.yaml");
        std::fs::write(&p, "listen: 127.0.0.1:0\nrepositories:\n  - path: repos/a.git\n    branch: main\n    watchRefs: true\nbot: {name: bot, email: bot@example.com}\n").expect("w");
        let c = Config::load(&p).expect("valid");
        assert_eq!(c.repositories[0].path, dir.path().join("repos/a.git"));
        assert!(c.repositories[0].watch_refs);
        assert_eq!(c.kubernetes, crate::kube::Settings::default());
        std::fs::write(&p, "kubernetes:\n  kubeconfig: kube/config\n  dryRun: true\n  egressAllow: [10.0.0.0/8]\n  ingressFromNamespaces: [team=monitoring]\n  buildEgressPorts: [443]\n").expect("w");
        let k = Config::load(&p).expect("valid").kubernetes;
        assert_eq!(k.kubeconfig, Some(dir.path().join("kube/config")));
        assert!(k.dry_run);
        assert_eq!(k.egress_allow, ["10.0.0.0/8"]);
        assert_eq!(k.ingress_from_namespaces, ["team=monitoring"]);
        assert_eq!(k.build_egress_ports, [443]);
        assert_eq!(k.quota_pods, "20", "unset keys keep their defaults");
        std::fs::write(&p, "kubernetes: {egress: []}\n").expect("w");
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field `egress`"), "{e}");
        std::fs::write(&p, "listen: 127.0.0.1:0\nrepos: []\n").expect("w");
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field `repos`"), "{e}");
        std::fs::write(&p, "listen: 0.0.0.0:7462\n").expect("w");
        assert!(Config::load(&p)
            .unwrap_err()
            .to_string()
            .contains("not a loopback"));
    }
}
