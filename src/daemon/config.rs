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
    /// A second, read-only listener (any address, e.g. `0.0.0.0:9090` in a pod) serving
    /// only GET /metrics, /healthz, /readyz, /v1/status and the status page.
    /// `CLAIMD_METRICS_LISTEN` overrides it.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
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
    pub registries: crate::oci::Settings,
    #[serde(default)]
    pub bot: Option<Bot>,
    /// The cluster claimd manages namespaces and preview builds in (kubeconfig,
    /// network policy, quota and build settings). No cluster found: dry-run.
    #[serde(default)]
    pub kubernetes: crate::kube::Settings,
    /// The Gitea next to claimd: its webhook receiver (listen address, secret).
    #[serde(default)]
    pub gitea: crate::gitea::Settings,
    /// Argo CD's webhooks, told of each bot commit (off unless `urls` are given).
    #[serde(default)]
    pub argocd: crate::argocd::Settings,
    /// Where claimd keeps its own data: mirrors of repositories that are not on its
    /// disk (`<dataDir>/mirrors/<owner>/<name>.git`). Default: `data` next to this file.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    /// Path of the bare repository (e.g. Gitea's `<root>/<owner>/<repo>.git`). Without
    /// one, the repository is Gitea's `giteaRepository`, not on claimd's disk: claimd
    /// keeps a mirror in `dataDir`, fetches it over Gitea's smart HTTP before each render
    /// and pushes its bot commits back through Gitea.
    #[serde(default)]
    pub path: PathBuf,
    /// Set when `path` is claimd's mirror of a Gitea repository.
    #[serde(skip)]
    pub mirror: bool,
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
    /// The repository's `owner/name` in Gitea (what its webhooks name it), when it is
    /// not `<owner>/<name>.git` as Gitea stores it.
    #[serde(default)]
    pub gitea_repository: Option<String>,
}

impl RepoConfig {
    /// The repository's `owner/name` in Gitea: `giteaRepository`, else from the path
    /// as Gitea stores it (`<root>/<owner>/<name>.git`, the path resolved as the daemon
    /// resolves it).
    pub fn gitea_name(&self) -> Option<String> {
        let path = self
            .path
            .canonicalize()
            .unwrap_or_else(|_| self.path.clone());
        self.gitea_repository
            .as_ref()
            .map(|n| n.to_lowercase())
            .or_else(|| crate::gitea::full_name_of(&path))
    }
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
    #[error("{path}: charts: {source}")]
    Charts {
        path: PathBuf,
        #[source]
        source: Box<crate::charts::Error>,
    },
    #[error("{path}: {source}")]
    Argocd {
        path: PathBuf,
        #[source]
        source: crate::argocd::Error,
    },
    #[error("{path}: a repository needs a path (a bare repository on this disk) or giteaRepository: OWNER/NAME with gitea.url and a token (claimd mirrors it)")]
    NoPath { path: PathBuf },
    #[error("{path}: kubernetes.leases.durationSeconds must be at least 1")]
    Leases { path: PathBuf },
    #[error("{path}: listen address {addr} is not a loopback address; claimd's hook endpoint is for this machine only")]
    NotLoopback { path: PathBuf, addr: SocketAddr },
    #[error("{path}: CLAIMD_METRICS_LISTEN={text} is not an address (e.g. 0.0.0.0:9090)")]
    MetricsListen { path: PathBuf, text: String },
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Read { .. } => "config_read",
            Error::Parse { .. } => "config_parse",
            Error::Charts { .. } => "config_charts",
            Error::NotLoopback { .. } => "not_loopback",
            Error::NoPath { .. } => "no_path",
            Error::Argocd { .. } => "config_argocd",
            Error::Leases { .. } => "config_leases",
            Error::MetricsListen { .. } => "metrics_listen",
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// The configuration in `text`, as read from `path` (relative paths in it are
    /// relative to the file's folder; `CLAIMD_LISTEN` overrides `listen`).
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let mut config: Config = serde_yaml::from_str(text).map_err(|source| Error::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(listen) = std::env::var("CLAIMD_LISTEN") {
            if let Ok(addr) = listen.parse() {
                config.listen = addr;
            }
        }
        if let Ok(listen) = std::env::var("CLAIMD_METRICS_LISTEN") {
            config.metrics_listen = match listen.trim() {
                "" => None,
                text => Some(text.parse().map_err(|_| Error::MetricsListen {
                    path: path.to_path_buf(),
                    text: text.to_string(),
                })?),
            };
        }
        if !config.listen.ip().is_loopback() {
            return Err(Error::NotLoopback {
                path: path.to_path_buf(),
                addr: config.listen,
            });
        }
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        let data = config
            .data_dir
            .get_or_insert_with(|| PathBuf::from("data"))
            .clone();
        let data = if data.is_relative() {
            base.join(data)
        } else {
            data
        };
        config.data_dir = Some(data.clone());
        for r in &mut config.repositories {
            if r.path.as_os_str().is_empty() {
                let Some(name) = r.gitea_repository.as_deref().filter(|n| {
                    n.split_once('/')
                        .is_some_and(|(o, r)| crate::gitea::is_name(o) && crate::gitea::is_name(r))
                }) else {
                    return Err(Error::NoPath {
                        path: path.to_path_buf(),
                    });
                };
                if config.gitea.url.is_none() {
                    return Err(Error::NoPath {
                        path: path.to_path_buf(),
                    });
                }
                r.path = data
                    .join("mirrors")
                    .join(format!("{}.git", name.to_lowercase()));
                r.mirror = true;
                // A mirror has no HEAD of its own to follow.
                r.branch.get_or_insert_with(|| "main".into());
                r.watch_refs = false;
            } else if r.path.is_relative() {
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
        let (gitea, argocd) = (&mut config.gitea, &mut config.argocd);
        for file in [
            &mut gitea.webhook_secret_file,
            &mut gitea.token_file,
            &mut gitea.ca_file,
            &mut argocd.secret_file,
            &mut argocd.ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if let Some(kubeconfig) = &mut config.kubernetes.kubeconfig {
            if kubeconfig.is_relative() {
                *kubeconfig = base.join(&*kubeconfig);
            }
        }
        if let Some(leases) = &config.kubernetes.leases {
            if leases.duration_seconds == 0 {
                return Err(Error::Leases {
                    path: path.to_path_buf(),
                });
            }
        }
        config.argocd.check().map_err(|source| Error::Argocd {
            path: path.to_path_buf(),
            source,
        })?;
        // A chart source that cannot be set up (an unreadable CA file) is a config error.
        if let Some(spec) = &config.charts {
            crate::charts::Source::parse(spec, &config.registries).map_err(|source| {
                Error::Charts {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                }
            })?;
        }
        Ok(config)
    }
}

/// What differs between two configurations, in the terms a reload acts on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Repositories only in the new configuration.
    pub added: Vec<PathBuf>,
    /// Repositories only in the old one.
    pub removed: Vec<PathBuf>,
    /// Repositories in both whose branch or push URL differ.
    pub changed: Vec<PathBuf>,
    /// Repositories in both whose only difference is `watchRefs`.
    pub watch: Vec<PathBuf>,
    /// Top-level settings that differ (they concern every repository).
    pub settings: Vec<&'static str>,
    /// `listen`, `gitea`, `argocd` or `kubernetes.leases` differ (take effect at the next
    /// start only).
    pub listen: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// The repositories to render again: added ones, changed ones, and all of them
    /// when a setting every repository uses changed.
    pub fn to_reconcile<'a>(&'a self, new: &'a Config) -> Vec<&'a Path> {
        if self.settings.is_empty() {
            self.added
                .iter()
                .chain(&self.changed)
                .map(|p| p.as_path())
                .collect()
        } else {
            new.repositories.iter().map(|r| r.path.as_path()).collect()
        }
    }
}

impl std::fmt::Display for Changes {
    /// One line: `repositories added: a; removed: b; settings changed: charts`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        for (what, list) in [
            ("repositories added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
            ("watchRefs changed", &self.watch),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what}: {}", paths(list)));
            }
        }
        if !self.settings.is_empty() {
            parts.push(format!("settings changed: {}", self.settings.join(", ")));
        }
        if self.listen {
            parts.push(
                "listen, metricsListen, gitea, argocd or kubernetes.leases changed (takes effect at the next start)"
                    .into(),
            );
        }
        if parts.is_empty() {
            parts.push("nothing that claimd acts on".into());
        }
        f.write_str(&parts.join("; "))
    }
}

impl Config {
    /// What changed from `self` to `new`. Repositories are matched by `key` (the daemon
    /// passes the canonical path, so `a/../b.git` and `b.git` are one repository).
    pub fn changes(&self, new: &Config, key: impl Fn(&Path) -> PathBuf) -> Changes {
        let old_repos: std::collections::BTreeMap<PathBuf, &RepoConfig> = self
            .repositories
            .iter()
            .map(|r| (key(&r.path), r))
            .collect();
        let new_repos: std::collections::BTreeMap<PathBuf, &RepoConfig> =
            new.repositories.iter().map(|r| (key(&r.path), r)).collect();
        let mut out = Changes::default();
        for (path, r) in &new_repos {
            match old_repos.get(path) {
                None => out.added.push(path.clone()),
                Some(old)
                    if old.branch != r.branch
                        || old.push_url != r.push_url
                        || old.gitea_repository != r.gitea_repository =>
                {
                    out.changed.push(path.clone())
                }
                Some(old) if old.watch_refs != r.watch_refs => out.watch.push(path.clone()),
                Some(_) => {}
            }
        }
        out.removed = old_repos
            .keys()
            .filter(|p| !new_repos.contains_key(*p))
            .cloned()
            .collect();
        let mut settings = Vec::new();
        if self.charts != new.charts {
            settings.push("charts");
        }
        if self.charts_repository != new.charts_repository {
            settings.push("chartsRepository");
        }
        if self.registries != new.registries {
            settings.push("registries");
        }
        if self.bot != new.bot {
            settings.push("bot");
        }
        let without_leases = |k: &crate::kube::Settings| crate::kube::Settings {
            leases: None,
            ..k.clone()
        };
        if without_leases(&self.kubernetes) != without_leases(&new.kubernetes) {
            settings.push("kubernetes");
        }

        out.settings = settings;
        // The listeners (and the webhook secret they check) are set up at start.
        out.listen = self.listen != new.listen
            || self.metrics_listen != new.metrics_listen
            || self.gitea != new.gitea
            || self.argocd != new.argocd
            || self.kubernetes.leases != new.kubernetes.leases;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("/etc/claimd/claimd.yaml"), text).expect("valid")
    }

    #[test]
    fn a_repository_by_gitea_name_only_is_a_mirror_in_the_data_folder() {
        let c = parse("repositories:\n  - giteaRepository: Platform/voltran\ngitea: {url: http://gitea:3000}\n");
        let r = &c.repositories[0];
        assert!(r.mirror && !r.watch_refs);
        assert_eq!(
            r.path,
            PathBuf::from("/etc/claimd/data/mirrors/platform/voltran.git")
        );
        let refused =
            |text: &str| Config::parse(Path::new("/etc/claimd/claimd.yaml"), text).expect_err(text);
        for text in [
            "repositories:\n  - branch: main\n",
            "repositories:\n  - giteaRepository: platform/voltran\n",
            "repositories:\n  - giteaRepository: ../etc\ngitea: {url: http://gitea:3000}\n",
            "repositories:\n  - giteaRepository: a/../../b\ngitea: {url: http://gitea:3000}\n",
        ] {
            let e = refused(text);
            assert_eq!(e.kind(), "no_path", "{text}: {e}");
            assert!(e.to_string().contains("giteaRepository: OWNER/NAME"), "{e}");
        }
    }

    #[test]
    fn changes_name_what_a_reload_acts_on() {
        let same = |p: &Path| p.to_path_buf();
        let a = parse("repositories:\n  - path: a.git\n  - path: b.git\n  - path: c.git\n");
        assert!(a.changes(&a.clone(), same).is_empty());
        let b = parse("repositories:\n  - path: a.git\n  - path: c.git\n    watchRefs: true\n  - path: d.git\n");
        let c = a.changes(&b, same);
        let p = |s: &str| PathBuf::from("/etc/claimd").join(s);
        assert_eq!(c.added, [p("d.git")]);
        assert_eq!(c.removed, [p("b.git")]);
        assert_eq!(c.watch, [p("c.git")]);
        assert!(c.changed.is_empty() && c.settings.is_empty() && !c.listen);
        assert_eq!(c.to_reconcile(&b), [p("d.git").as_path()]);
        assert_eq!(
            c.to_string(),
            "repositories added: /etc/claimd/d.git; removed: /etc/claimd/b.git; watchRefs changed: /etc/claimd/c.git"
        );
        let d = parse("repositories:\n  - path: a.git\n    branch: prod\n  - path: b.git\n  - path: c.git\nbot: {name: x, email: x@example.com}\n");
        let c = a.changes(&d, same);
        assert_eq!(c.changed, [p("a.git")]);
        assert_eq!(c.settings, ["bot"]);
        assert_eq!(c.to_reconcile(&d).len(), 3, "a setting of every repository");
        let f = parse("repositories:\n  - path: a.git\n  - path: b.git\n  - path: c.git\nkubernetes:\n  leases: {namespace: claimd, identity: claimd-0, durationSeconds: 4}\n");
        let l = f.kubernetes.leases.clone().expect("leases");
        assert_eq!(
            (l.namespace.as_deref(), l.identity(), l.duration_seconds),
            (Some("claimd"), "claimd-0".to_string(), 4)
        );
        let c = a.changes(&f, same);
        assert!(
            c.listen && c.settings.is_empty(),
            "leases take effect at the next start: {c:?}"
        );
        assert_eq!(
            parse("kubernetes: {leases: {}}\n")
                .kubernetes
                .leases
                .expect("on")
                .duration_seconds,
            15
        );
        let text = "kubernetes: {leases: {durationSeconds: 0}}\n";
        let e = Config::parse(Path::new("/etc/claimd/claimd.yaml"), text).expect_err(text);
        assert_eq!(e.kind(), "config_leases");
        let e = parse("listen: 127.0.0.1:9999\nrepositories:\n  - path: a.git\n  - path: b.git\n  - path: c.git\n");
        let c = a.changes(&e, same);
        assert!(c.listen && c.to_reconcile(&e).is_empty());
    }

    #[test]
    fn the_read_only_listener_may_listen_anywhere_and_needs_a_restart() {
        let a = parse(
            "repositories: []
",
        );
        assert_eq!(a.metrics_listen, None);
        let b = parse(
            "metricsListen: 0.0.0.0:9090
repositories: []
",
        );
        assert_eq!(
            b.metrics_listen,
            Some("0.0.0.0:9090".parse().expect("addr"))
        );
        let c = a.changes(&b, |p| p.to_path_buf());
        assert!(c.listen && c.settings.is_empty(), "{c:?}");
        assert!(c.to_string().contains("metricsListen"), "{c}");
    }

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
