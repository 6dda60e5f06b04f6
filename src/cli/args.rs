//! The command line: clap's types. What each command does is in its own module.

use super::chart;
use crate::charts;
use crate::render::Settings;
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "claimd",
    version,
    about = "Turns claims pushed to a GitOps repository into the files Argo CD deploys from"
)]
pub struct Cli {
    /// How log lines are written to stderr: `text` for a person, `json` (one object a
    /// line, with the fields of the push or reconcile it belongs to) for a log pipeline.
    #[arg(
        long,
        global = true,
        env = "CLAIMD_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// `claimd serve`: logs at info level by default.
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, Command::Serve { .. })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check claim files, and the values they make against each chart (its
    /// values.schema.json, requests within limits); prints one `file:line:col: message`
    /// per problem, exit 1 on errors.
    Validate {
        /// Claim files or folders (default: claims/).
        paths: Vec<PathBuf>,
        /// Where charts come from: `embedded` (default), `oci`, or a folder of charts.
        #[arg(long, env = "CLAIMD_CHARTS", default_value = "embedded")]
        charts: String,
        /// OCI charts repository when neither claims nor a BootstrapClaim name one.
        #[arg(long)]
        charts_repository: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Render the generated files into the repository's working tree.
    Render(RenderArgs),
    /// Show what render would add, change and remove, as a diff. Writes nothing.
    Plan(RenderArgs),
    /// Render the bundled example claims into a fresh temporary repository and show it.
    Demo {
        /// Where to create the demo repository (default: a new temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Render a git repository's branch and write one bot commit (what the hooks run).
    Reconcile {
        /// The repository (bare or not).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Branch to render (default: the repository's HEAD branch).
        #[arg(long)]
        branch: Option<String>,
        /// Publish the bot commit with `git push` to this URL instead of moving the ref.
        #[arg(long)]
        push_url: Option<String>,
    },
    /// Print the Kubernetes objects the claims ask for (namespaces with their quota,
    /// limit range and network policies; preview build Jobs), without a cluster.
    Namespaces {
        /// The GitOps repository (its claims/ folder is read).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The daemon's configuration, for its `kubernetes:` settings.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Preview hosts are `<namespace>.<domain>`.
        #[arg(long, default_value = "preview.example.com")]
        preview_domain: String,
    },
    /// What the daemon did per repository: last push, last bot commit, each claim file's
    /// state and first error (`file:line:col`), preview Environments (phase, URL). With
    /// `--repo`, the claim files' states at a repository's branch tip, without a daemon.
    Status(StatusArgs),
    /// Check a setup: git, the configuration and its repositories, the hooks, the
    /// daemon, Gitea and its webhooks, the chart registry, Kubernetes permissions, the
    /// clock. One line per check with what to fix; exit 1 if a check fails (warnings
    /// do not).
    Doctor {
        /// The daemon's configuration file (environment overrides apply, as for serve).
        #[arg(long, default_value = "/etc/claimd/claimd.yaml")]
        config: PathBuf,
        /// `text` (one line per check) or `json`.
        #[arg(long, value_enum, default_value = "text")]
        output: super::doctor::Output,
    },
    /// Run the daemon: keep the configured repositories rendered (hooks hand off to it).
    Serve {
        /// The configuration file (YAML).
        #[arg(long, default_value = "/etc/claimd/claimd.yaml")]
        config: PathBuf,
        /// Loopback address to listen on (overrides the file and CLAIMD_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A second, read-only listener for GET /metrics, /healthz, /readyz, /v1/status
        /// (any address, e.g. 0.0.0.0:9090; overrides the file's metricsListen and
        /// CLAIMD_METRICS_LISTEN).
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Install claimd's git hooks into a bare repository.
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Run as a git hook: `pre-receive`, `post-receive`, or the path of a hook file
    /// `claimd hooks install` wrote (its first line runs `claimd hook <the file>`).
    #[command(hide = true)]
    Hook {
        #[arg(value_parser = |s: &str| crate::handoff::HookFile::from_arg(s))]
        file: crate::handoff::HookFile,
    },
    /// Make a BootstrapClaim real on Gitea: the organization, the repositories, the
    /// scaffold of an empty GitOps repository, the hooks, the webhook. A second run
    /// only reads.
    Bootstrap(super::bootstrap::BootstrapArgs),
    /// Speak to the Gitea next to claimd.
    Gitea {
        #[command(subcommand)]
        action: super::gitea::GiteaAction,
    },
    /// Package, publish and pull charts (OCI registries).
    Chart {
        #[command(subcommand)]
        action: chart::ChartAction,
    },
    /// Container images in registries.
    Image {
        #[command(subcommand)]
        action: chart::ImageAction,
    },
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The daemon's address.
    #[arg(
        long,
        visible_alias = "addr",
        env = "CLAIMD_DAEMON",
        default_value = "127.0.0.1:7462"
    )]
    pub daemon: String,
    /// How to print it: a table per repository, or `GET /v1/status` as JSON or YAML.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The same as `--output json`.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
    /// Ask no daemon: render this repository's branch tip (read only) and show its claim
    /// files' states.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// With `--repo`: the branch (default: the repository's HEAD branch).
    #[arg(long, requires = "repo")]
    pub branch: Option<String>,
    /// With `--repo`: where charts come from (`embedded`, `oci`, or a folder of charts).
    #[arg(long, env = "CLAIMD_CHARTS", default_value = "embedded")]
    pub charts: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum HooksAction {
    /// Write pre-receive and post-receive (plain layout, or Gitea's `<hook>.d/claimd`).
    Install {
        /// The bare repository.
        repo: PathBuf,
        /// Use Gitea's hook layout even if not detected.
        #[arg(long)]
        gitea: bool,
        /// The claimd binary the hooks call (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The daemon the hooks hand pushes to (its `listen` address); written into the
        /// hooks as CLAIMD_DAEMON. When it does not answer, the hooks render inline.
        #[arg(long)]
        daemon: Option<String>,
    },
    /// Remove the hooks claimd installed (both layouts); other hooks are left alone.
    Uninstall {
        /// The bare repository.
        repo: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// The GitOps repository (its claims/ folder is read).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Where charts come from: `embedded` (the charts built into claimd; default), `oci`
    /// (pull from the chart repository the claims name), or a folder of charts.
    #[arg(long, env = "CLAIMD_CHARTS", default_value = "embedded")]
    pub charts: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Where to write the generated files (default: the repository itself).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// GitOps repository URL when no BootstrapClaim names one.
    #[arg(long)]
    pub repo_url: Option<String>,
    /// OCI charts repository when neither claims nor a BootstrapClaim name one.
    #[arg(long)]
    pub charts_repository: Option<String>,
}

impl RenderArgs {
    pub(super) fn settings(&self) -> Settings {
        Settings {
            repo_url: self.repo_url.clone(),
            charts_repository: self.charts_repository.clone(),
            ..Settings::default()
        }
    }

    pub(super) fn chart_source(&self) -> Result<charts::Source> {
        Ok(charts::Source::parse(
            &self.charts,
            &self.registry.settings()?,
        )?)
    }
}

/// How to reach OCI registries (also from `CLAIMD_CACHE`, `CLAIMD_OFFLINE`,
/// `CLAIMD_REFRESH`, `CLAIMD_PLAIN_HTTP`; credentials from the Docker config file).
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Registry settings file: the daemon config's `registries:` section on its own
    /// (cache, refresh, offline, hosts with plainHttp, caFile and credential files).
    #[arg(long, env = "CLAIMD_REGISTRY_CONFIG", value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Chart cache folder (default: ~/.cache/claimd).
    #[arg(long)]
    pub chart_cache: Option<PathBuf>,
    /// Use only the chart cache; never contact a registry.
    #[arg(long)]
    pub offline: bool,
    /// Talk plain HTTP to this registry host (repeatable), e.g. 127.0.0.1:5000.
    #[arg(long = "plain-http", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Seconds before a tag is asked again (default 300; 0: ask now, tags can move).
    #[arg(long, value_name = "SECONDS")]
    pub refresh: Option<u64>,
}

impl RegistryArgs {
    pub fn settings(&self) -> Result<crate::oci::Settings> {
        // Without clap (the hooks), the file comes from the environment only.
        let from_env = std::env::var_os("CLAIMD_REGISTRY_CONFIG").map(PathBuf::from);
        let base = match self.registry_config.as_ref().or(from_env.as_ref()) {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_yaml::from_str(&text).with_context(|| format!("{}", path.display()))?
            }
            None => crate::oci::Settings::default(),
        };
        let mut s = base.with_env();
        if let Some(c) = &self.chart_cache {
            s.cache = Some(c.clone());
        }
        s.offline |= self.offline;
        if self.refresh.is_some() {
            s.refresh = self.refresh;
        }
        for host in &self.plain_http {
            s.hosts.entry(host.clone()).or_default().plain_http = true;
        }
        Ok(s)
    }
}
