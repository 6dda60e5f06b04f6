//! Subcommands. clap types stay here; the core gets its own option types.

mod bench;
mod bench_charts;
mod bench_kube;
mod chart;
mod demo;
mod hooks;
mod namespaces;
mod serve;
mod worktree;

use crate::charts;
use crate::claims::Diagnostic;
use crate::pipeline::{self, snapshot, Previews, Request};
use crate::render::{ChangeKind, Plan, Settings};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "claimd",
    version,
    about = "Turns claims pushed to a GitOps repository into the files Argo CD deploys from"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    /// The preview Environments the daemon manages: phase, URL, conditions.
    Status {
        /// The daemon's address.
        #[arg(long, env = "CLAIMD_DAEMON", default_value = "127.0.0.1:7462")]
        daemon: String,
        /// Print JSON (as `GET /v1/status` returns it) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: keep the configured repositories rendered (hooks hand off to it).
    Serve {
        /// The configuration file (YAML).
        #[arg(long, default_value = "/etc/claimd/claimd.yaml")]
        config: PathBuf,
        /// Loopback address to listen on (overrides the file and CLAIMD_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Install claimd's git hooks into a bare repository.
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Run as a git hook (called by the installed hook scripts).
    #[command(hide = true)]
    Hook {
        #[arg(value_parser = ["pre-receive", "post-receive"])]
        name: String,
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
    /// Measure the push loop on a synthetic repository (numbers for BENCHMARKS.md).
    BenchPush {
        /// Number of applications.
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Pushes of one changed claim file (P1).
        #[arg(long, default_value_t = 20)]
        pushes: usize,
        /// Where to create the repositories (kept afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Measure chart pulls from an OCI registry (numbers for BENCHMARKS.md).
    BenchCharts {
        /// Registry host:port, spoken to over plain HTTP (a registry on loopback).
        #[arg(long)]
        registry: String,
        /// Chart versions to publish and resolve.
        #[arg(long, default_value_t = 1000)]
        versions: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Measure namespace sync against the cluster of a kubeconfig (it creates and
    /// deletes namespaces `bench<pid>-shop-pr-*`; numbers for BENCHMARKS.md).
    BenchKube {
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Preview Environments (one namespace each).
        #[arg(long, default_value_t = 200)]
        environments: usize,
        /// Repetitions of the no-change sync (the median is reported).
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Measure render on a synthetic repository (numbers for BENCHMARKS.md).
    Bench {
        /// Number of applications.
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where to generate the repository (kept afterwards; default: a temporary folder, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
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
    fn settings(&self) -> Settings {
        Settings {
            repo_url: self.repo_url.clone(),
            charts_repository: self.charts_repository.clone(),
            ..Settings::default()
        }
    }

    fn chart_source(&self) -> Result<charts::Source> {
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
    pub fn settings(&self) -> Result<charts::oci::Settings> {
        // Without clap (the hooks), the file comes from the environment only.
        let from_env = std::env::var_os("CLAIMD_REGISTRY_CONFIG").map(PathBuf::from);
        let base = match self.registry_config.as_ref().or(from_env.as_ref()) {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_yaml::from_str(&text).with_context(|| format!("{}", path.display()))?
            }
            None => charts::oci::Settings::default(),
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

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate {
            paths,
            charts,
            charts_repository,
            registry,
        } => {
            let source = charts::Source::parse(&charts, &registry.settings()?)?;
            let settings = Settings {
                charts_repository,
                ..Settings::default()
            };
            validate(&paths, &source, &settings)
        }
        Command::Render(args) => render_cmd(&args, false),
        Command::Plan(args) => render_cmd(&args, true),
        Command::Demo { dir } => demo::run(dir),
        Command::Serve { config, listen } => serve::run(&config, listen),
        Command::Status { daemon, json } => serve::status(&daemon, json),
        Command::Namespaces {
            repo,
            config,
            preview_domain,
        } => namespaces::run(&repo, config.as_deref(), &preview_domain),
        Command::Reconcile {
            repo,
            branch,
            push_url,
        } => hooks::reconcile_cmd(&repo, branch, push_url),
        Command::Hooks {
            action:
                HooksAction::Install {
                    repo,
                    gitea,
                    binary,
                },
        } => hooks::install(&repo, binary, gitea),
        Command::Hook { name } => match name.as_str() {
            "pre-receive" => hooks::pre_receive(),
            _ => hooks::post_receive(),
        },
        Command::Chart { action } => chart::run(action),
        Command::Image { action } => chart::image(action),
        Command::BenchPush { apps, pushes, dir } => bench::push(apps, pushes, dir),
        Command::BenchCharts {
            registry,
            versions,
            runs,
        } => bench_charts::run(&registry, versions, runs),
        Command::Bench { apps, runs, dir } => bench::render(apps, runs, dir),
        Command::BenchKube {
            kubeconfig,
            environments,
            runs,
        } => bench_kube::run(&kubeconfig, environments, runs),
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

fn validate(paths: &[PathBuf], source: &charts::Source, settings: &Settings) -> Result<ExitCode> {
    let default = [PathBuf::from("claims")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let (snap, objects) = snapshot::of_work_tree(paths, None, None)?;
    let mut memo = pipeline::core::Memo::default();
    let claims = pipeline::core::load(&snap, &objects, &mut memo)?;
    // The values each valid claim makes, against its chart (as `helm install` would).
    let request = Request {
        settings,
        charts: source,
        previews: &Previews::All,
        branch: None,
    };
    let mut diagnostics = match pipeline::run(&snap, &objects, &request, &mut memo) {
        // A chart that cannot be had (or no chart repository named, when validating
        // some files only) is not the claim's fault: a warning, as at push time.
        Ok(planned) => planned.push_diagnostics(),
        Err(pipeline::core::Error::Render(why)) => {
            eprintln!("claimd: warning: the values were not checked against the charts: {why}");
            let mut d = claims.diagnostics.clone();
            d.extend(claims.loaded.diagnostics.iter().cloned());
            d
        }
        Err(e) => return Err(e.into()),
    };
    let (files, docs) = (snap.claim_files.len(), claims.loaded.claims.len());
    diagnostics.sort();
    print_diagnostics(&diagnostics);
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        let mut failed: Vec<&str> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.file.as_str())
            .collect();
        failed.dedup();
        eprintln!("{errors} error(s) in {} file(s)", failed.len());
        return Ok(ExitCode::from(1));
    }
    println!("{files} file(s), {docs} claim(s): valid");
    Ok(ExitCode::SUCCESS)
}

/// What one render run produced.
pub struct Outcome {
    pub plan: Plan,
    pub diagnostics: Vec<Diagnostic>,
    pub files: usize,
}

/// Reads the claims of `repo`, renders with charts from `source`, and plans the changes
/// against the generated files currently in `out`.
pub fn render_repo(
    repo: &Path,
    out: &Path,
    source: &charts::Source,
    settings: &Settings,
) -> Result<Outcome> {
    let t = std::time::Instant::now();
    let (snap, objects) = snapshot::of_work_tree(&[repo.join("claims")], Some(repo), Some(out))?;
    tracing::debug!(elapsed = ?t.elapsed(), claim_files = snap.claim_files.len(), generated = snap.entries.len(), "read the work tree");
    let request = Request {
        settings,
        charts: source,
        previews: &Previews::All,
        branch: None,
    };
    let planned = pipeline::run(&snap, &objects, &request, &mut Default::default())?;
    Ok(Outcome {
        files: planned.rendered,
        plan: planned.plan,
        diagnostics: planned.diagnostics,
    })
}

fn render_cmd(args: &RenderArgs, dry_run: bool) -> Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| args.repo.clone());
    let outcome = if dry_run && is_bare(&args.repo) {
        plan_bare(args)?
    } else {
        render_repo(&args.repo, &out, &args.chart_source()?, &args.settings())?
    };
    print_diagnostics(&outcome.diagnostics);
    let mut stdout = std::io::stdout().lock();
    if dry_run {
        write!(stdout, "{}", plan_diff(&outcome.plan))?;
    } else {
        let t = std::time::Instant::now();
        worktree::apply(&out, &outcome.plan)
            .with_context(|| format!("writing into {}", out.display()))?;
        tracing::debug!(elapsed = ?t.elapsed(), "written");
    }
    writeln!(stdout, "{}", summary(&outcome, dry_run))?;
    let failed = outcome.diagnostics.iter().any(Diagnostic::is_error);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A bare git repository (no work tree to read claims from).
fn is_bare(path: &Path) -> bool {
    !path.join("claims").exists() && path.join("objects").is_dir() && path.join("HEAD").is_file()
}

/// `claimd plan` of a bare repository: what a reconcile would commit on its branch
/// (the HEAD branch, or `CLAIMD_BRANCH`), read from git; nothing is written.
fn plan_bare(args: &RenderArgs) -> Result<Outcome> {
    let repo = crate::git::Repo::open(&args.repo)?;
    let mut opts = hooks::options_from_env();
    opts.charts = args.chart_source()?;
    opts.settings = args.settings();
    let branch = crate::reconcile::branch_of(&repo, &opts);
    let tip = repo
        .branch_tip(&branch)?
        .with_context(|| format!("{}: no branch {branch}", args.repo.display()))?;
    let request = crate::reconcile::request(&opts, &branch);
    let planned = pipeline::at_commit(&repo, tip, &request, &mut Default::default())?;
    Ok(Outcome {
        files: planned.rendered,
        plan: planned.plan,
        diagnostics: planned.diagnostics,
    })
}

pub fn summary(outcome: &Outcome, dry_run: bool) -> String {
    let count = |k: ChangeKind| outcome.plan.changes.iter().filter(|c| c.kind == k).count();
    let verb = if dry_run { "would change" } else { "changed" };
    let mut s = format!(
        "{} generated file(s); {verb}: {} added, {} modified, {} removed",
        outcome.files,
        count(ChangeKind::Add),
        count(ChangeKind::Modify),
        count(ChangeKind::Delete)
    );
    if !outcome.plan.kept.is_empty() {
        s.push_str(&format!(
            "; {} file(s) of failed claims left untouched",
            outcome.plan.kept.len()
        ));
    }
    s
}

/// Unified diff of a plan.
pub fn plan_diff(plan: &Plan) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        let old = c.old.as_deref().unwrap_or("");
        let new = c.new.as_deref().unwrap_or("");
        let (a, b) = match c.kind {
            ChangeKind::Add => ("/dev/null".to_string(), format!("b/{}", c.path)),
            ChangeKind::Delete => (format!("a/{}", c.path), "/dev/null".to_string()),
            ChangeKind::Modify => (format!("a/{}", c.path), format!("b/{}", c.path)),
        };
        let diff = similar::TextDiff::from_lines(old, new);
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string(),
        );
    }
    out
}
