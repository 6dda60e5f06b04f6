//! `claimd serve`: keeps configured repositories rendered. One work slot per
//! repository+branch with a single writer; requests for a busy slot coalesce (the worker
//! re-reads the newest tip when it runs); every repository is reconciled at start-up so
//! a crash or a missed event heals; failures retry with backoff; shutdown lets the
//! running reconcile finish.
//!
//! What makes a worker render: a push (hook or webhook), start-up, a configuration
//! change that concerns the repository, a retry after a failure, or a preview whose
//! image appeared. A ref change seen on disk (`watchRefs`) only says "look again": the
//! worker renders when the branch tip differs from the last tip it saw, so its own bot
//! commit and anybody's reads cost nothing. A build Job that changed runs the
//! Kubernetes step alone.

mod cluster;
pub mod config;
mod gitea;
use gitea::{bootstrap_on_gitea, fetch_mirror, gitea_name, refresh_argocd};
mod statuses;
mod watch;

pub use watch::watch;

use crate::charts;
use crate::git::{Identity, Repo};
use crate::reconcile::{self, Options, Outcome};
use config::{Changes, Config, RepoConfig};
use gix::ObjectId;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch as channel, Notify};

/// What went wrong in the daemon's own work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reconcile(#[from] reconcile::Error),
    #[error(transparent)]
    Git(#[from] crate::git::Error),
    #[error("the worker task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Reconcile(e) => e.kind(),
            Error::Git(_) => "git",
            Error::Task(_) => "task",
        }
    }
}

/// Everything that can ask for work on a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A hook (or webhook) says this repository was pushed to: render.
    Push { repo: PathBuf },
    /// A watched repository's refs changed on disk: render if its branch moved.
    RefsChanged { repo: PathBuf },
    /// The repository was added to the configuration, or its settings changed: render.
    Configured { repo: PathBuf },
    /// Start-up: render every repository.
    All,
}

/// What a worker is asked to do; requests merge until it runs.
mod want {
    /// Render and commit.
    pub const RENDER: u8 = 1;
    /// Render if the branch tip is not the one the last render saw.
    pub const LOOK: u8 = 2;
    /// Run the Kubernetes step (a build Job changed).
    pub const KUBE: u8 = 4;
}

impl Event {
    fn want(&self) -> u8 {
        match self {
            Event::RefsChanged { .. } => want::LOOK,
            Event::Push { .. } | Event::Configured { .. } | Event::All => want::RENDER,
        }
    }
}

/// How a repository is set up; replaced as a whole when the configuration changes.
struct Setup {
    options: Options,
    /// The repository's `owner/name` in Gitea, lower-cased (what its webhooks name).
    gitea_name: Option<String>,
    /// Commit statuses in Gitea (when the config names Gitea and a token).
    statuses: Option<Arc<statuses::Statuses>>,
    /// Gitea's API (when the config names Gitea and a token): BootstrapClaims.
    gitea: Option<Arc<crate::gitea::api::Client>>,
    /// Argo CD's webhooks to tell of bot commits, with the secret to sign with.
    argocd: Option<Arc<crate::argocd::Notifier>>,
    /// Namespaces and preview builds of this repository.
    kube: Arc<cluster::Kube>,
}

/// Counters of one repository's worker (`GET /v1/status`).
#[derive(Default)]
struct Work {
    /// Renders run (successful or not).
    reconciles: AtomicU64,
    /// Requests to look again that found the branch where the last render left it.
    unchanged: AtomicU64,
    /// Kubernetes steps run.
    kube_steps: AtomicU64,
}

/// A repository's counters, as `GET /v1/status` shows them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkStatus {
    /// Requests routed to this repository (pushes, ref changes, configuration, start-up).
    pub requests: u64,
    /// Requests the worker has finished with.
    pub served: u64,
    pub reconciles: u64,
    pub unchanged: u64,
    pub kube_steps: u64,
    /// The branch tip the last render saw (None: not known, or no branch yet).
    pub tip: Option<String>,
    /// The one-line result of the last request served.
    pub last: String,
}

/// The branch tip a render left, or that the branch did not exist.
type Seen = Option<Option<ObjectId>>;

struct Slot {
    repo: PathBuf,
    setup: Mutex<Arc<Setup>>,
    want: AtomicU8,
    wake: Notify,
    removed: AtomicBool,
    /// Generation of the newest request; the worker publishes the generation each run
    /// served, with a one-line result, so a caller can wait for "its" request.
    requested: AtomicU64,
    served: channel::Sender<(u64, String)>,
    /// The tip the last successful render saw (None: render on the next look).
    seen: Mutex<Seen>,
    work: Work,
    /// Parsed claims and rendered applications of the last run (incremental rendering).
    cache: Arc<Mutex<reconcile::Memo>>,
    /// What the BootstrapClaims asked of Gitea when it was last made sure of.
    bootstrapped: Arc<Mutex<Option<Vec<crate::gitea::bootstrap::Wanted>>>>,
}

impl Slot {
    fn setup(&self) -> Arc<Setup> {
        self.setup.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn ask(&self, want: u8) {
        self.want.fetch_or(want, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn seen(&self) -> Seen {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_seen(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }
}

/// Counters of the daemon's own machinery (`GET /v1/status`).
#[derive(Debug, Default)]
pub struct Stats {
    /// File events received from the watcher.
    pub watch_events: AtomicU64,
    /// Of those, events that cannot change content (reads, opens, metadata) or concern
    /// no file claimd watches: dropped at once.
    pub watch_ignored: AtomicU64,
    /// Coalesced batches of the remaining events that were handled.
    pub watch_batches: AtomicU64,
    /// Times the configuration file was read because something in its folder changed
    /// (counted once the check, and any reload it made, is done: every file event
    /// before it has been handled by then).
    pub config_checks: AtomicU64,
    /// Of those, times its content had changed and the new configuration was applied.
    pub config_reloads: AtomicU64,
    /// Of those, times the new content was refused (the running configuration stays).
    pub config_errors: AtomicU64,
}

/// The daemon's counters, as `GET /v1/status` shows them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    pub watch_events: u64,
    pub watch_ignored: u64,
    pub watch_batches: u64,
    pub config_checks: u64,
    pub config_reloads: u64,
    pub config_errors: u64,
}

/// One repository in `GET /v1/status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RepositoryStatus {
    pub repository: PathBuf,
    pub work: WorkStatus,
    pub environments: Vec<crate::kube::EnvironmentStatus>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Status {
    pub daemon: DaemonStatus,
    pub repositories: Vec<RepositoryStatus>,
}

/// The daemon's shared state.
pub struct Daemon {
    slots: Mutex<HashMap<PathBuf, Arc<Slot>>>,
    /// The configuration applied last (what a reload compares with).
    config: Mutex<Option<Config>>,
    stop: channel::Sender<bool>,
    pub stats: Stats,
    /// The diffs of the last branch previews, by commit.
    previews: Arc<PreviewDiffs>,
}

/// (commit, unified diff) of branch previews, oldest first.
type PreviewDiffs = Mutex<std::collections::VecDeque<(String, Arc<String>)>>;

/// Branch previews whose diff is kept (the oldest go first).
const PREVIEWS: usize = 64;

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Gitea's URL and token, when the configuration names a Gitea.
type GiteaToken = Option<(String, crate::gitea::Secret)>;

fn options_for(config: &Config, repo: &RepoConfig, gitea: (&GiteaToken, Option<&str>)) -> Options {
    let mut o = Options {
        branch: repo.branch.clone(),
        push_url: repo.push_url.clone(),
        mirror: repo.mirror,
        ..Options::default()
    };
    // A Gitea repository: bot commits go through Gitea (see git::push for why), with
    // the token in a header; an explicit pushUrl (with git's own credentials) wins.
    if let ((Some((url, token)), Some(name)), None) = (gitea, &repo.push_url) {
        o.push_url = Some(crate::gitea::Settings::clone_url(url, name));
        o.push_auth = Some(crate::git::push::Auth::token("claimd", token.expose()));
    }
    o.settings.charts_repository = config.charts_repository.clone();
    if let Some(spec) = &config.charts {
        o.charts = charts::Source::parse_or_broken(spec, &config.registries.clone().with_env());
    }
    if let Some(bot) = &config.bot {
        o.bot = Identity {
            name: bot.name.clone(),
            email: bot.email.clone(),
        };
    }
    o
}

fn kube_for(config: &Config) -> cluster::Kube {
    let registry = match crate::oci::Registry::new(config.registries.clone().with_env()) {
        Ok(r) => Some(Arc::new(r) as Arc<dyn crate::kube::ImageLookup>),
        Err(e) => {
            tracing::warn!(error = %e, "preview images cannot be looked up");
            None
        }
    };
    let argocd = crate::render::Settings::default().argocd_namespace;
    cluster::Kube::new(config.kubernetes.clone(), argocd, registry)
}

impl Daemon {
    pub fn new() -> Arc<Daemon> {
        let (stop, _) = channel::channel(false);
        Arc::new(Daemon {
            slots: Mutex::new(HashMap::new()),
            config: Mutex::new(None),
            stop,
            stats: Stats::default(),
            previews: Arc::default(),
        })
    }

    /// Applies a configuration: starts workers for new repositories, stops those of
    /// removed ones, gives changed ones their new settings. Returns what changed; the
    /// caller decides what to render (start-up: everything; a reload: what changed).
    pub fn configure(self: &Arc<Daemon>, config: &Config) -> Changes {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        let changes = current
            .as_ref()
            .unwrap_or(&Config {
                repositories: Vec::new(),
                ..config.clone()
            })
            .changes(config, canonical);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for path in &changes.removed {
            if let Some(slot) = slots.remove(path) {
                slot.removed.store(true, Ordering::SeqCst);
                slot.wake.notify_one();
            }
        }
        let kube_changed = changes
            .settings
            .iter()
            .any(|s| matches!(*s, "kubernetes" | "registries"));
        let shared_kube = || Arc::new(kube_for(config));
        let gitea = match config.gitea.client() {
            Ok(client) => client.map(Arc::new),
            Err(e) => {
                tracing::warn!(error = %e, "no commit statuses in Gitea, bot commits written on disk");
                None
            }
        };
        let token = config.gitea.token().unwrap_or_default();
        let argocd = config
            .argocd
            .secret()
            .and_then(|secret| crate::argocd::Notifier::new(&config.argocd, secret))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "Argo CD is not told of bot commits");
                None
            })
            .map(Arc::new);
        let setup = |r: &RepoConfig, path: &Path, kube: Arc<cluster::Kube>| {
            let gitea_name = gitea_name(r, path);
            Arc::new(Setup {
                options: options_for(config, r, (&token, gitea_name.as_deref())),
                statuses: statuses::Statuses::new(
                    gitea.as_ref(),
                    gitea_name.as_deref(),
                    config.gitea.page_url.as_deref(),
                ),
                gitea_name,
                gitea: gitea.clone(),
                argocd: argocd.clone(),
                kube,
            })
        };
        for r in &config.repositories {
            let path = canonical(&r.path);
            match slots.get(&path) {
                Some(slot) => {
                    let concerned = !changes.settings.is_empty() || changes.changed.contains(&path);
                    if concerned {
                        let old = slot.setup();
                        let kube = if kube_changed {
                            old.kube.retire();
                            shared_kube()
                        } else {
                            old.kube.clone()
                        };
                        *slot.setup.lock().unwrap_or_else(|p| p.into_inner()) =
                            setup(r, &path, kube);
                    }
                }
                None => {
                    let slot = Arc::new(Slot {
                        repo: path.clone(),
                        setup: Mutex::new(setup(r, &path, shared_kube())),
                        want: AtomicU8::new(0),
                        wake: Notify::new(),
                        removed: AtomicBool::new(false),
                        requested: AtomicU64::new(0),
                        served: channel::channel((0, String::new())).0,
                        seen: Mutex::new(None),
                        work: Work::default(),
                        cache: Arc::new(Mutex::new(reconcile::Memo::batched())),
                        bootstrapped: Arc::default(),
                    });
                    slots.insert(path, slot.clone());
                    tokio::spawn(worker(slot, self.stop.subscribe()));
                }
            }
        }
        *current = Some(config.clone());
        changes
    }

    /// Routes an event to the slots it concerns. Returns false for an unknown repository.
    pub fn send(&self, event: Event) -> bool {
        !self.enqueue(&event).is_empty()
    }

    fn enqueue(&self, event: &Event) -> Vec<(Arc<Slot>, u64)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let targets: Vec<&Arc<Slot>> = match event {
            Event::All => slots.values().collect(),
            Event::Push { repo } | Event::RefsChanged { repo } | Event::Configured { repo } => {
                slots.get(&canonical(repo)).into_iter().collect()
            }
        };
        targets
            .into_iter()
            .map(|slot| {
                let generation = slot.requested.fetch_add(1, Ordering::SeqCst) + 1;
                slot.ask(event.want());
                (slot.clone(), generation)
            })
            .collect()
    }

    /// Like [`Daemon::send`] for one repository, then waits for the reconcile that serves
    /// this request and returns its one-line result (None: unknown repository).
    pub async fn send_and_wait(&self, repo: PathBuf) -> Option<String> {
        let (slot, generation) = self.enqueue(&Event::Push { repo }).into_iter().next()?;
        let mut served = slot.served.subscribe();
        loop {
            {
                let (done, result) = &*served.borrow_and_update();
                if *done >= generation {
                    return Some(result.clone());
                }
            }
            if served.changed().await.is_err() {
                return Some("daemon stopping".into());
            }
        }
    }

    /// Validates the claims of a pushed commit (pre-receive) with the repository's parse
    /// cache. None: not a repository this daemon serves.
    pub async fn validate(
        &self,
        repo: PathBuf,
        commit: gix::ObjectId,
        quarantine: Option<PathBuf>,
    ) -> Option<Result<Vec<crate::claims::Diagnostic>, Error>> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&canonical(&repo))
            .cloned()?;
        let result = tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            let r = Repo::open_for_hook(&slot.repo, quarantine.as_deref())?;
            let options = slot.setup().options.clone();
            let mut cache = slot
                .cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let v = reconcile::validate_cached(&r, commit, &options, &mut cache);
            tracing::debug!(elapsed = ?t.elapsed(), "validated a pushed commit");
            Ok(v?)
        })
        .await;
        Some(result.unwrap_or_else(|e| Err(Error::Task(e))))
    }

    /// Every repository has been reconciled at least once since start-up.
    pub fn ready(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .all(|s| s.work.reconciles.load(Ordering::SeqCst) > 0)
    }

    /// Asks workers to stop after their current reconcile.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// The counters, and every repository's work and preview Environments.
    pub fn status(&self) -> Status {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut repositories: Vec<RepositoryStatus> = slots
            .iter()
            .map(|(path, slot)| {
                let environments = slot
                    .setup()
                    .kube
                    .statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let (served, last) = slot.served.borrow().clone();
                let w = &slot.work;
                RepositoryStatus {
                    repository: path.clone(),
                    work: WorkStatus {
                        requests: slot.requested.load(Ordering::SeqCst),
                        served,
                        reconciles: w.reconciles.load(Ordering::SeqCst),
                        unchanged: w.unchanged.load(Ordering::SeqCst),
                        kube_steps: w.kube_steps.load(Ordering::SeqCst),
                        tip: slot.seen().flatten().map(|t| t.to_string()),
                        last,
                    },
                    environments,
                }
            })
            .collect();
        repositories.sort_by(|a, b| a.repository.cmp(&b.repository));
        let s = &self.stats;
        Status {
            daemon: DaemonStatus {
                watch_events: s.watch_events.load(Ordering::SeqCst),
                watch_ignored: s.watch_ignored.load(Ordering::SeqCst),
                watch_batches: s.watch_batches.load(Ordering::SeqCst),
                config_checks: s.config_checks.load(Ordering::SeqCst),
                config_reloads: s.config_reloads.load(Ordering::SeqCst),
                config_errors: s.config_errors.load(Ordering::SeqCst),
            },
            repositories,
        }
    }

    pub fn repositories(&self) -> Vec<PathBuf> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<PathBuf> = slots.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The tip of the branch a repository's worker renders (None: no such branch).
fn branch_tip(repo: &Path, options: &Options) -> Result<Option<ObjectId>, reconcile::Error> {
    let r = Repo::open(repo)?;
    Ok(r.branch_tip(&reconcile::branch_of(&r, options))?)
}

/// Backoff after `failures` failures in a row: 0.5 s doubling, at most 8 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64 << failures.clamp(1, 5))
}

async fn worker(slot: Arc<Slot>, mut stop: channel::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() || slot.removed.load(Ordering::SeqCst) {
            return;
        }
        let want = slot.want.swap(0, Ordering::SeqCst);
        if want == 0 {
            tokio::select! {
                _ = slot.wake.notified() => continue,
                _ = stop.changed() => return,
            }
        }
        let serving = slot.requested.load(Ordering::SeqCst);
        let setup = slot.setup();
        let mut render = want & want::RENDER != 0;
        if !render && want & want::LOOK != 0 {
            // An event on disk only says "look again": render if the branch moved.
            let (repo, options) = (slot.repo.clone(), setup.options.clone());
            let tip = tokio::task::spawn_blocking(move || branch_tip(&repo, &options)).await;
            render = match (tip, slot.seen()) {
                (Ok(Ok(tip)), Some(seen)) => tip != seen,
                _ => true,
            };
        }
        if !render && want & want::KUBE == 0 {
            slot.work.unchanged.fetch_add(1, Ordering::SeqCst);
            slot.served
                .send_replace((serving, "up to date (the branch did not move)".into()));
            continue;
        }
        let repo = slot.repo.display().to_string();
        let mut report = None;
        // The reconcile commits the previews whose image the last Kubernetes step found;
        // the step runs after it (off the push's path) and asks for another render when
        // that set changed.
        let used = setup.kube.previews().await;
        if render {
            let mut options = setup.options.clone();
            options.previews = used.clone();
            let (path, cache) = (slot.repo.clone(), slot.cache.clone());
            let result = tokio::task::spawn_blocking(move || {
                fetch_mirror(&path, &options, None)?;
                let r = Repo::open(&path).map_err(reconcile::Error::from)?;
                let mut cache = cache
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                Ok::<_, Error>(reconcile::reconcile_cached(&r, &options, &mut cache)?)
            })
            .await;
            slot.work.reconciles.fetch_add(1, Ordering::SeqCst);
            let result = result.unwrap_or_else(|e| Err(Error::Task(e)));
            let summary = match &result {
                Ok(report) => {
                    let mut line = match &report.outcome {
                        Outcome::Committed { commit, .. } => {
                            format!("bot commit {commit} on {}", report.branch)
                        }
                        Outcome::UpToDate { .. } => "generated files are up to date".to_string(),
                        Outcome::NoBranch => format!("branch {} does not exist", report.branch),
                    };
                    // What could not be rendered is said, not only what was.
                    if report.kept > 0 || report.retry {
                        line.push_str(&format!(
                            "; {} generated file(s) kept as they were{}",
                            report.kept,
                            if report.retry { ", trying again" } else { "" }
                        ));
                        if let Some(d) = report.diagnostics.iter().find(|d| d.is_error()) {
                            line.push_str(&format!(": {d}"));
                        }
                    }
                    line
                }
                Err(e) => format!("reconcile failed: {e}"),
            };
            slot.set_seen(match &result {
                Ok(report) => Some(match report.outcome {
                    Outcome::Committed { commit, .. } => Some(commit),
                    Outcome::UpToDate { tip } => Some(tip),
                    Outcome::NoBranch => None,
                }),
                Err(_) => None,
            });
            slot.served.send_replace((serving, summary));
            match &result {
                Ok(report) => {
                    if let Some(statuses) = &setup.statuses {
                        statuses.report(report);
                    }
                    if let Some(client) = &setup.gitea {
                        bootstrap_on_gitea(&slot, client.clone(), setup.options.clone());
                    }
                    if let (Some(argocd), Outcome::Committed { commit, parent, .. }) =
                        (&setup.argocd, &report.outcome)
                    {
                        refresh_argocd(argocd.clone(), report, *parent, *commit, &setup.options);
                    }
                    for d in report.diagnostics.iter().filter(|d| d.is_error()) {
                        tracing::warn!(%repo, "{d}");
                    }
                    match &report.outcome {
                        Outcome::Committed { commit, files, .. } => {
                            tracing::info!(%repo, branch = %report.branch, %commit, files, "bot commit")
                        }
                        Outcome::UpToDate { tip } => tracing::debug!(%repo, %tip, "up to date"),
                        Outcome::NoBranch => tracing::debug!(%repo, "no branch yet"),
                    }
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff(failures);
                    tracing::error!(%repo, error = %e, retry_in = ?delay, "reconcile failed");
                    retry_later(&slot, delay, want::RENDER);
                    continue;
                }
            }
            report = result.ok();
        } else {
            slot.served
                .send_replace((serving, "up to date (the branch did not move)".into()));
        }
        // The Kubernetes step: after every render, and when a build Job changed.
        slot.work.kube_steps.fetch_add(1, Ordering::SeqCst);
        let weak = Arc::downgrade(&slot);
        let kube = Arc::downgrade(&setup.kube);
        let wake = move || match (weak.upgrade(), kube.upgrade()) {
            (Some(s), Some(k)) if !s.removed.load(Ordering::SeqCst) && !k.retired() => {
                s.ask(want::KUBE);
                true
            }
            _ => false,
        };
        let step = setup
            .kube
            .step(&slot.repo, &setup.options, slot.cache.clone(), wake)
            .await;
        if step.previews != used {
            slot.ask(want::RENDER);
        }
        let render_retry = report.as_ref().is_some_and(|r| r.retry);
        if render_retry || step.retry {
            failures += 1;
            let delay = backoff(failures);
            tracing::warn!(%repo, retry_in = ?delay, "a registry, the cluster or a build is not done; trying again");
            retry_later(
                &slot,
                delay,
                if render_retry {
                    want::RENDER
                } else {
                    want::KUBE
                },
            );
        } else {
            failures = 0;
            if step.building {
                // The Job watch wakes us; this is the fallback if it cannot.
                retry_later(&slot, Duration::from_secs(30), want::KUBE);
            }
        }
    }
}

fn retry_later(slot: &Arc<Slot>, delay: Duration, want: u8) {
    let slot = Arc::downgrade(slot);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Some(slot) = slot.upgrade() {
            slot.ask(want);
        }
    });
}
