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
pub mod record;
use gitea::{bootstrap_on_gitea, fetch_mirror, gitea_name, refresh_argocd};
pub mod leases;
mod ready;
mod statuses;
mod watch;

pub use watch::watch;

use crate::charts;
use crate::git::{Identity, Repo};
use crate::metrics::{self, Metrics};
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
use tracing::Instrument;

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
    /// The repository's name in metrics and logs (see [`metrics::repository_label`]).
    label: Arc<str>,
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
    /// The repository's page on Gitea, `<gitea.url>/<owner>/<name>` (status page links).
    web: Option<String>,
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
    /// The worker is serving a request (for `claimd_queue_depth`; a clean stop waits
    /// for it before letting the Lease go).
    busy: AtomicBool,
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
    /// The memo is in the repository's claimd folder, not in memory (see [`Slot::park`]).
    parked: AtomicBool,
    /// The repository's git handle while it has work (dropped with the memo at rest).
    handle: Mutex<Option<gix::ThreadSafeRepository>>,
    /// What the BootstrapClaims asked of Gitea when it was last made sure of.
    bootstrapped: Arc<Mutex<Option<Vec<crate::gitea::bootstrap::Wanted>>>>,
    /// The last push, bot commit, reconcile and claim files' states (`GET /v1/status`).
    record: Mutex<record::Record>,
    /// The repository's Lease: whether this replica may work on it (always, without
    /// `kubernetes.leases`).
    lease: leases::Hold,
}

/// How long a repository's memo stays in memory after its last work.
const IDLE: Duration = Duration::from_secs(60);

impl Slot {
    /// Keeps the memo in the repository's claimd folder (`pipeline::store`, what the hooks
    /// use too) and lets it go: a repository at rest costs next to nothing, and a
    /// restart finds what it knew. The status record keeps the generated folders.
    fn park(&self) {
        let mut memo = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if self.parked.load(Ordering::SeqCst) || memo.core.is_empty() {
            return;
        }
        record::fill_folders(
            &mut self.record.lock().unwrap_or_else(|p| p.into_inner()),
            &memo,
        );
        if let Ok(repo) = Repo::open(&self.repo) {
            reconcile::save_memo(&repo, &memo);
        }
        *memo = reconcile::Memo::batched();
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.parked.store(true, Ordering::SeqCst);
        tracing::debug!(repo = %self.repo.display(), "memo kept on disk while idle");
    }

    /// Brings the memo back from the repository's claimd folder if it was parked (at
    /// start-up: whatever the last daemon or the hooks left).
    fn unpark(&self) {
        let mut memo = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !self.parked.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Ok(repo) = Repo::open(&self.repo) {
            let mut stored = crate::pipeline::store::load(repo.path());
            stored.core.batch();
            *memo = stored;
        }
    }

    /// Lets the kept git handle go: the next use opens the repository afresh (after a
    /// failed reconcile: a handle's view of the object database, its table of packs
    /// included, is not trusted to recover by itself).
    fn forget_handle(&self) {
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The repository, through the handle kept while it has work.
    fn open(&self) -> Result<Repo, crate::git::Error> {
        let mut handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = handle.as_ref() {
            return Ok(Repo::from_shared(shared));
        }
        let repo = Repo::open(&self.repo)?;
        *handle = Some(repo.shared());
        Ok(repo)
    }

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
    /// Gitea webhook deliveries whose signature verified with claimd's secret, and
    /// those refused for a missing or wrong one (`claimd doctor` tells from these
    /// whether Gitea's secret matches: Gitea never shows it).
    pub webhook_verified: AtomicU64,
    pub webhook_refused: AtomicU64,
    /// When the last of each came, in milliseconds since the epoch (0: never).
    pub webhook_last_verified_ms: AtomicU64,
    pub webhook_last_refused_ms: AtomicU64,
}

impl Stats {
    /// Counts a webhook delivery whose signature verified (`true`) or was refused.
    pub fn webhook_signature(&self, verified: bool) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (count, last) = if verified {
            (&self.webhook_verified, &self.webhook_last_verified_ms)
        } else {
            (&self.webhook_refused, &self.webhook_last_refused_ms)
        };
        count.fetch_add(1, Ordering::SeqCst);
        last.store(now, Ordering::SeqCst);
    }
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
    #[serde(default)]
    pub webhook_verified: u64,
    #[serde(default)]
    pub webhook_refused: u64,
    #[serde(default)]
    pub webhook_last_verified_ms: u64,
    #[serde(default)]
    pub webhook_last_refused_ms: u64,
}

/// One repository in `GET /v1/status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RepositoryStatus {
    pub repository: PathBuf,
    pub work: WorkStatus,
    pub environments: Vec<crate::kube::EnvironmentStatus>,
    /// Last push, last bot commit, last reconcile, each claim file's state.
    #[serde(flatten)]
    pub record: record::Record,
    /// The repository's Lease (only with `kubernetes.leases`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<leases::LeaseStatus>,
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
    /// What `GET /metrics` shows.
    pub metrics: Arc<Metrics>,
    /// The diffs of the last branch previews, by commit.
    previews: Arc<PreviewDiffs>,
    /// Woken when a configuration is applied (see [`Daemon::wait_ready`]).
    configured: Notify,
    /// Several replicas (`kubernetes.leases`, set by the first configuration).
    leases: std::sync::OnceLock<Arc<leases::Leases>>,
    /// How much runs at once across repositories.
    limits: Arc<Limits>,
}

/// How much runs at once across repositories: one of each per core.
struct Limits {
    /// Renders, each from loading its repository's memo to putting it back in outline.
    /// A render already uses every core for a big change; with a thousand repositories
    /// at start-up, more at once would only hold more of them in memory.
    renders: tokio::sync::Semaphore,
    /// Memos written to the repositories' claimd folders and let go ([`Slot::park`]).
    /// Not behind the renders: with a thousand repositories waiting to render at
    /// start-up, each one's memo goes as soon as its own work is done, not after all
    /// the others' renders (which held every memo and git handle at once: the peak).
    parks: tokio::sync::Semaphore,
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

/// The chart source of a configuration: one for every repository, so that a chart is
/// pulled and parsed once per digest however many repositories use it.
fn charts_for(config: &Config) -> Option<charts::Source> {
    config
        .charts
        .as_ref()
        .map(|spec| charts::Source::parse_or_broken(spec, &config.registries.clone().with_env()))
}

fn options_for(
    config: &Config,
    repo: &RepoConfig,
    gitea: (&GiteaToken, Option<&str>),
    charts: Option<&charts::Source>,
) -> Options {
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
    if let Some(source) = charts {
        o.charts = source.clone();
    }
    if let Some(bot) = &config.bot {
        o.bot = Identity {
            name: bot.name.clone(),
            email: bot.email.clone(),
        };
    }
    o
}

/// The registry client the Kubernetes step looks preview images up with: one for every
/// repository.
fn image_lookup_for(config: &Config) -> Option<Arc<dyn crate::kube::ImageLookup>> {
    match crate::oci::Registry::new(config.registries.clone().with_env()) {
        Ok(r) => Some(Arc::new(r) as Arc<dyn crate::kube::ImageLookup>),
        Err(e) => {
            tracing::warn!(error = %e, "preview images cannot be looked up");
            None
        }
    }
}

fn kube_for(config: &Config, registry: Option<Arc<dyn crate::kube::ImageLookup>>) -> cluster::Kube {
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
            metrics: {
                let m = Arc::new(Metrics::new());
                // The adapters (chart cache, registries, Kubernetes) count into the
                // first daemon's metrics: a process has one.
                metrics::install(&m);
                m
            },
            previews: Arc::default(),
            configured: Notify::new(),
            leases: std::sync::OnceLock::new(),
            limits: {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                Arc::new(Limits {
                    renders: tokio::sync::Semaphore::new(cores),
                    parks: tokio::sync::Semaphore::new(cores),
                })
            },
        })
    }

    /// `GET /metrics`: the registry, with the queue depth as it is now. Reads only.
    pub fn metrics_text(&self, openmetrics: bool) -> (String, &'static str) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let depth = slots
            .values()
            .filter(|s| s.want.load(Ordering::SeqCst) != 0 || s.busy.load(Ordering::SeqCst))
            .count();
        if self.leases.get().is_some() {
            for slot in slots.values() {
                self.metrics
                    .set_lease_held(&slot.setup().label, slot.lease.held());
            }
        }
        drop(slots);
        self.metrics
            .queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.metrics.encode(openmetrics)
    }

    /// The name a served repository has in metrics and logs (None: not served).
    pub fn repository_label(&self, repo: &Path) -> Option<Arc<str>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(&canonical(repo)).map(|s| s.setup().label.clone())
    }

    /// [`Daemon::repository_label`] of the repository Gitea calls `full_name`.
    pub fn gitea_label(&self, full_name: &str) -> Option<Arc<str>> {
        let wanted = full_name.to_lowercase();
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .map(|s| s.setup())
            .find(|s| s.gitea_name.as_deref() == Some(wanted.as_str()))
            .map(|s| s.label.clone())
    }

    /// Applies a configuration: starts workers for new repositories, stops those of
    /// removed ones, gives changed ones their new settings. Returns what changed; the
    /// caller decides what to render (start-up: everything; a reload: what changed).
    pub fn configure(self: &Arc<Daemon>, config: &Config) -> Changes {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none() {
            if let Some(settings) = &config.kubernetes.leases {
                let leases = leases::Leases::new(&config.kubernetes, settings);
                if self.leases.set(leases.clone()).is_ok() {
                    tokio::spawn(leases::run(Arc::downgrade(self), leases));
                }
            }
        }
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
        let lookup = image_lookup_for(config);
        let shared_kube = || Arc::new(kube_for(config, lookup.clone()));
        let charts = charts_for(config);
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
        // Repositories are named by their folder in metrics unless two share one.
        let mut folders: HashMap<std::ffi::OsString, usize> = HashMap::new();
        for r in &config.repositories {
            let folder = r.path.file_name().unwrap_or_default().to_os_string();
            *folders.entry(folder).or_default() += 1;
        }
        let setup = |r: &RepoConfig, path: &Path, kube: Arc<cluster::Kube>| {
            let gitea_name = gitea_name(r, path);
            let unique = folders.get(r.path.file_name().unwrap_or_default()) == Some(&1);
            let label = metrics::repository_label(r.gitea_repository.as_deref(), path, unique);
            self.metrics.repository(&label);
            Arc::new(Setup {
                options: options_for(config, r, (&token, gitea_name.as_deref()), charts.as_ref()),
                label,
                statuses: statuses::Statuses::new(
                    gitea.as_ref(),
                    gitea_name.as_deref(),
                    config.gitea.page_url.as_deref(),
                ),
                web: config
                    .gitea
                    .url
                    .as_ref()
                    .zip(gitea_name.as_ref())
                    .map(|(url, name)| format!("{}/{name}", url.trim_end_matches('/'))),
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
                    // The repository's identity on every replica: its Gitea name when
                    // configured, else its canonical path.
                    let identity = r
                        .gitea_repository
                        .as_ref()
                        .map(|n| n.to_lowercase())
                        .unwrap_or_else(|| path.display().to_string());
                    let slot = Arc::new(Slot {
                        repo: path.clone(),
                        setup: Mutex::new(setup(r, &path, shared_kube())),
                        want: AtomicU8::new(0),
                        busy: AtomicBool::new(false),
                        wake: Notify::new(),
                        removed: AtomicBool::new(false),
                        requested: AtomicU64::new(0),
                        served: channel::channel((0, String::new())).0,
                        seen: Mutex::new(None),
                        work: Work::default(),
                        cache: Arc::new(Mutex::new(reconcile::Memo::batched())),
                        parked: AtomicBool::new(true),
                        handle: Mutex::new(None),
                        bootstrapped: Arc::default(),
                        record: Mutex::default(),
                        lease: leases::Hold::new(&identity, self.leases.get().is_some()),
                    });
                    slots.insert(path, slot.clone());
                    tokio::spawn(worker(
                        slot,
                        self.stop.subscribe(),
                        self.metrics.clone(),
                        self.limits.clone(),
                    ));
                }
            }
        }
        *current = Some(config.clone());
        self.configured.notify_waiters();
        changes
    }

    /// Routes an event to the slots it concerns. Returns false for an unknown repository.
    pub fn send(&self, event: Event) -> bool {
        !self.enqueue(&event).is_empty()
    }

    /// The slots an event concerns, each with the generation of the request it made
    /// (None: another replica holds the repository's Lease; a push is handed to it).
    fn enqueue(&self, event: &Event) -> Vec<(Arc<Slot>, Option<u64>)> {
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
                if !slot.lease.held() {
                    // Start-up, configuration and ref changes reach the holder itself
                    // (same configuration, same disk); a push reached only us.
                    if let (Event::Push { .. }, Some(leases)) = (event, self.leases.get()) {
                        leases.forward(slot);
                    }
                    return (slot.clone(), None);
                }
                let generation = slot.requested.fetch_add(1, Ordering::SeqCst) + 1;
                slot.ask(event.want());
                (slot.clone(), Some(generation))
            })
            .collect()
    }

    /// Like [`Daemon::send`] for one repository, then waits for the reconcile that serves
    /// this request and returns its one-line result (None: unknown repository).
    pub async fn send_and_wait(&self, repo: PathBuf) -> Option<String> {
        let (slot, generation) = self.enqueue(&Event::Push { repo }).into_iter().next()?;
        let Some(generation) = generation else {
            let holder = self
                .leases
                .get()
                .and_then(|l| l.status(&slot.lease).holder)
                .unwrap_or_else(|| "the next holder".into());
            return Some(format!(
                "handed to {holder}, the replica holding the repository's lease"
            ));
        };
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

    fn slot(&self, repo: &Path) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&canonical(repo))
            .cloned()
    }

    /// pre-receive for a push to a repository this daemon serves
    /// ([`reconcile::pre_receive`]), with the repository's memo. None: not served.
    pub async fn pre_receive(
        &self,
        repo: PathBuf,
        updates: Vec<reconcile::RefUpdate>,
        quarantine: Option<PathBuf>,
    ) -> Option<Result<reconcile::Verdict, Error>> {
        let slot = self.slot(&repo)?;
        // The verdict goes back as soon as it is known; an accepted push's bot commit is
        // then written while git finishes the push (the memo stays locked meanwhile, so
        // the reconcile at post-receive finds it).
        let (answer, verdict) = tokio::sync::oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            slot.unpark();
            let opened = || -> Result<Repo, Error> {
                Ok(slot.open()?.with_quarantine(quarantine.as_deref())?)
            };
            let r = match opened() {
                Ok(r) => r,
                Err(e) => {
                    let _ = answer.send(Err(e));
                    return;
                }
            };
            let options = slot.setup().options.clone();
            let mut cache = slot
                .cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let verdict = reconcile::pre_receive(&r, &updates, &options, |id| {
                reconcile::validate_cached(&r, id, &options, &mut cache)
            });
            tracing::debug!(elapsed = ?t.elapsed(), "checked a push");
            let accepted = matches!(&verdict, Ok(v) if !v.refused);
            let _ = answer.send(verdict.map_err(Error::from));
            if accepted {
                match reconcile::write_ahead(&r, &updates, &options, &mut cache) {
                    Ok(Some(commit)) => {
                        tracing::debug!(elapsed = ?t.elapsed(), %commit, "bot commit written ahead")
                    }
                    Ok(None) => {}
                    // Only slower: the reconcile writes it.
                    Err(e) => tracing::debug!(error = %e, "could not write the bot commit ahead"),
                }
                // The reconcile at post-receive, which waits for the memo, shrinks it.
            } else {
                cache.core.shrink();
            }
        });
        match verdict.await {
            Ok(result) => Some(result),
            // Every path of the task answers: no answer means it panicked.
            Err(_) => match task.await {
                Err(e) => Some(Err(Error::Task(e))),
                Ok(()) => None,
            },
        }
    }

    /// Whether a hook's ref update asks for nothing: another branch, or claimd's own
    /// commit (pushed through the git server). False when it cannot tell.
    pub async fn nothing_to_do(&self, repo: &Path, update: &crate::server::Update) -> bool {
        let (Some(slot), Some(update)) = (
            self.slot(repo),
            reconcile::RefUpdate::parse(&update.old, &update.new, &update.reference),
        ) else {
            return false;
        };
        let options = slot.setup().options.clone();
        let wants = tokio::task::spawn_blocking(move || {
            let r = slot.open().ok()?;
            reconcile::wants_render(&r, &update, &options).ok()
        })
        .await;
        matches!(wants, Ok(Some(false)))
    }

    /// Every repository has been reconciled at least once since start-up.
    pub fn ready(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(leases) = self.leases.get() {
            // Only the repositories this replica holds.
            return leases.ready(&slots);
        }
        slots
            .values()
            .all(|s| s.work.reconciles.load(Ordering::SeqCst) > 0)
    }

    /// Asks workers to stop after their current reconcile.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// After [`Daemon::shutdown`], with `kubernetes.leases`: waits for the running
    /// reconciles, then lets every Lease go so another replica takes over at once.
    pub async fn release_leases(self: &Arc<Daemon>) {
        if let Some(leases) = self.leases.get().cloned() {
            leases.release_all(self).await;
        }
    }

    /// The counters, and every repository's work and preview Environments.
    pub fn status(&self) -> Status {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut repositories: Vec<RepositoryStatus> = slots
            .iter()
            .map(|(path, slot)| {
                let setup = slot.setup();
                let mut record = slot
                    .record
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                record.gitea = setup.web.clone();
                // A render holds the memo: its folders are shown once it is done,
                // rather than holding up the status.
                if let Ok(memo) = slot.cache.try_lock() {
                    if !slot.parked.load(Ordering::SeqCst) {
                        record::fill_folders(&mut record, &memo);
                    }
                }
                let environments = setup
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
                    record,
                    lease: self.leases.get().map(|l| l.status(&slot.lease)),
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
                webhook_verified: s.webhook_verified.load(Ordering::SeqCst),
                webhook_refused: s.webhook_refused.load(Ordering::SeqCst),
                webhook_last_verified_ms: s.webhook_last_verified_ms.load(Ordering::SeqCst),
                webhook_last_refused_ms: s.webhook_last_refused_ms.load(Ordering::SeqCst),
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

/// The branch a repository's worker renders and its tip (None: no such branch).
fn branch_tip(
    repo: &Path,
    options: &Options,
) -> Result<(String, Option<ObjectId>), reconcile::Error> {
    let r = Repo::open(repo)?;
    let branch = reconcile::branch_of(&r, options);
    let tip = r.branch_tip(&branch)?;
    Ok((branch, tip))
}

/// Backoff after `failures` failures in a row: 0.5 s doubling, at most 8 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64 << failures.clamp(1, 5))
}

/// The span of one piece of a worker's work: every log line of it carries the
/// repository, the branch's ref, the tip the last render saw (`old`) and the one this
/// work renders (`new`, once read).
fn work_span(slot: &Slot, setup: &Setup) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "reconcile",
        repository = %setup.label,
        r#ref = Empty,
        old = Empty,
        new = Empty
    );
    if let Some(Some(old)) = slot.seen() {
        span.record("old", tracing::field::display(old));
    }
    span
}

/// Puts the branch and the tip the work is about in its span.
fn record_tip(span: &tracing::Span, branch: &str, tip: Option<ObjectId>) {
    span.record(
        "ref",
        tracing::field::display(format_args!("refs/heads/{branch}")),
    );
    if let Some(tip) = tip {
        span.record("new", tracing::field::display(tip));
    }
}

async fn worker(
    slot: Arc<Slot>,
    mut stop: channel::Receiver<bool>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() || slot.removed.load(Ordering::SeqCst) {
            return;
        }
        let want = slot.want.swap(0, Ordering::SeqCst);
        if want == 0 {
            slot.busy.store(false, Ordering::SeqCst);
            // After the start-up reconcile at once (a repository nobody pushes to holds
            // nothing), else after a while without work; at a stop, for the restart.
            let idle = if slot.work.reconciles.load(Ordering::SeqCst) <= 1 {
                Duration::ZERO
            } else {
                IDLE
            };
            let parked = slot.parked.load(Ordering::SeqCst);
            tokio::select! {
                _ = slot.wake.notified() => continue,
                _ = stop.changed() => {
                    park(&slot, &limits.parks).await;
                    return;
                }
                _ = tokio::time::sleep(idle), if !parked => {
                    park(&slot, &limits.parks).await;
                    continue;
                }
            }
        }
        if !slot.lease.held() {
            // Another replica works on it; taking the Lease asks for a render.
            continue;
        }
        slot.busy.store(true, Ordering::SeqCst);
        let span = work_span(&slot, &slot.setup());
        serve(&slot, &metrics, &limits.renders, want, &mut failures)
            .instrument(span)
            .await;
    }
}

/// [`Slot::park`] off the runtime's threads (it writes the memo), within its limit.
async fn park(slot: &Arc<Slot>, parks: &tokio::sync::Semaphore) {
    let _permit = parks.acquire().await;
    let slot = slot.clone();
    let _ = tokio::task::spawn_blocking(move || slot.park()).await;
}

/// How a reconcile's result counts in `claimd_reconcile_total`.
fn reconcile_outcome(result: &Result<reconcile::Report, Error>) -> metrics::Outcome {
    match result {
        Ok(report) => match report.outcome {
            Outcome::Committed { .. } => metrics::Outcome::Committed,
            Outcome::UpToDate { .. } | Outcome::NoBranch => metrics::Outcome::Unchanged,
        },
        Err(Error::Reconcile(reconcile::Error::Contended { .. } | reconcile::Error::Push(_))) => {
            metrics::Outcome::Rejected
        }
        Err(_) => metrics::Outcome::Failed,
    }
}

/// Refused publications of a bot commit in a reconcile.
fn push_rejections(result: &Result<reconcile::Report, Error>) -> u64 {
    match result {
        Ok(report) => u64::from(report.rejected),
        Err(Error::Reconcile(reconcile::Error::Contended { attempts, .. })) => u64::from(*attempts),
        Err(Error::Reconcile(reconcile::Error::Push(_))) => 1,
        Err(_) => 0,
    }
}

/// The claim files that failed in a reconcile, each with its reason: its chart could
/// not be had (`chart_unavailable`), else the claim is wrong (`invalid_claim`).
fn claim_failures(report: &reconcile::Report) -> Vec<&'static str> {
    let mut failed: std::collections::BTreeMap<&str, &'static str> = report
        .claims
        .iter()
        .filter(|c| c.chart_unavailable)
        .map(|c| (c.file.as_str(), "chart_unavailable"))
        .collect();
    for d in report.diagnostics.iter().filter(|d| d.is_error()) {
        failed.entry(d.file.as_str()).or_insert("invalid_claim");
    }
    failed.into_values().collect()
}

/// One request of a worker: look, render, the Kubernetes step (in the work's span).
async fn serve(
    slot: &Arc<Slot>,
    metrics: &Metrics,
    renders: &tokio::sync::Semaphore,
    want: u8,
    failures: &mut u32,
) {
    let serving = slot.requested.load(Ordering::SeqCst);
    let setup = slot.setup();
    let span = tracing::Span::current();
    let mut render = want & want::RENDER != 0;
    if !render && want & want::LOOK != 0 {
        // An event on disk only says "look again": render if the branch moved.
        let (repo, options) = (slot.repo.clone(), setup.options.clone());
        let tip = tokio::task::spawn_blocking(move || branch_tip(&repo, &options)).await;
        if let Ok(Ok((branch, tip))) = &tip {
            record_tip(&span, branch, *tip);
        }
        render = match (tip, slot.seen()) {
            (Ok(Ok((_, tip))), Some(seen)) => tip != seen,
            _ => true,
        };
    }
    if !render && want & want::KUBE == 0 {
        slot.work.unchanged.fetch_add(1, Ordering::SeqCst);
        metrics.noop_reconciles.inc();
        slot.served
            .send_replace((serving, "up to date (the branch did not move)".into()));
        return;
    }
    // The reconcile commits the previews whose image the last Kubernetes step found;
    // the step runs after it (off the push's path) and asks for another render when
    // that set changed.
    let used = setup.kube.previews().await;
    // One permit from loading the memo to putting it back in outline: a thousand
    // repositories starting at once hold their memos a core's worth at a time (a
    // permit for the load and another for the render let every memo load first).
    let parked = slot.parked.load(Ordering::SeqCst);
    let permit = if render || parked {
        renders.acquire().await.ok()
    } else {
        None
    };
    if parked {
        let slot = slot.clone();
        let _ = tokio::task::spawn_blocking(move || slot.unpark()).await;
    }
    // Only the Kubernetes step wanted the memo: it runs outside the limit.
    let permit = permit.filter(|_| render);
    let repo = slot.repo.display().to_string();
    let mut report = None;
    if render {
        let mut options = setup.options.clone();
        options.previews = used.clone();
        let (path, cache, in_slot) = (slot.repo.clone(), slot.cache.clone(), slot.clone());
        let timer = metrics.reconcile_timer();
        let in_span = span.clone();
        let result = tokio::task::spawn_blocking(move || {
            in_span.in_scope(|| {
                fetch_mirror(&path, &options, None)?;
                let r = in_slot.open().map_err(reconcile::Error::from)?;
                let branch = reconcile::branch_of(&r, &options);
                record_tip(&in_span, &branch, r.branch_tip(&branch).ok().flatten());
                let mut cache = cache
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                // The memo goes back to outline once the push has its answer (below).
                let report = reconcile::reconcile_cached(&r, &options, &mut cache)?;
                let seen = record::observe(&r, &report, &options.bot);
                Ok::<_, Error>((report, seen))
            })
        })
        .await;
        drop(timer);
        slot.work.reconciles.fetch_add(1, Ordering::SeqCst);
        let (result, seen) = match result.unwrap_or_else(|e| Err(Error::Task(e))) {
            Ok((report, seen)) => (Ok(report), Some(seen)),
            Err(e) => {
                slot.forget_handle();
                (Err(e), None)
            }
        };
        metrics.reconciled(&setup.label, reconcile_outcome(&result));
        metrics.push_rejections(&setup.label, push_rejections(&result));
        // Counted before the answer below: a caller waiting for this reconcile (a hook
        // with CLAIMD_WAIT) then finds it in the metrics.
        if let Ok(report) = &result {
            for reason in claim_failures(report) {
                metrics.claim_failed(reason);
            }
        }
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
        {
            let mut record = slot.record.lock().unwrap_or_else(|p| p.into_inner());
            match seen {
                Some(seen) => record.reconciled(seen, &summary),
                None => record.failed(&summary),
            }
        }
        slot.served.send_replace((serving, summary));
        // The memo back to outline off the push's path (the hook waiting for this
        // reconcile has its answer), within the renders' limit still: a thousand
        // repositories starting at once hold their claims complete a core's worth at a
        // time.
        let in_slot = slot.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut memo = in_slot.cache.lock().unwrap_or_else(|p| p.into_inner());
            memo.core.shrink();
        })
        .await;
        drop(permit);
        match &result {
            Ok(report) => {
                if let Some(statuses) = &setup.statuses {
                    statuses.report(report);
                }
                if let Some(client) = &setup.gitea {
                    bootstrap_on_gitea(slot, client.clone(), setup.options.clone());
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
                *failures += 1;
                let delay = backoff(*failures);
                tracing::error!(%repo, error = %e, kind = e.kind(), retry_in = ?delay, "reconcile failed");
                retry_later(slot, delay, want::RENDER);
                return;
            }
        }
        report = result.ok();
    } else {
        slot.served
            .send_replace((serving, "up to date (the branch did not move)".into()));
    }
    if !slot.lease.held() {
        return; // the Lease was lost meanwhile: the new holder does the rest
    }
    // The Kubernetes step: after every render, and when a build Job changed.
    slot.work.kube_steps.fetch_add(1, Ordering::SeqCst);
    let weak = Arc::downgrade(slot);
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
    if let Some(jobs) = step.jobs {
        metrics.set_build_jobs(jobs);
    }
    if step.previews != used {
        slot.ask(want::RENDER);
    }
    let render_retry = report.as_ref().is_some_and(|r| r.retry);
    if render_retry || step.retry {
        *failures += 1;
        let delay = backoff(*failures);
        tracing::warn!(%repo, retry_in = ?delay, "a registry, the cluster or a build is not done; trying again");
        retry_later(
            slot,
            delay,
            if render_retry {
                want::RENDER
            } else {
                want::KUBE
            },
        );
    } else {
        *failures = 0;
        if step.building {
            // The Job watch wakes us; this is the fallback if it cannot.
            retry_later(slot, Duration::from_secs(30), want::KUBE);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Diagnostic, Severity};

    fn report(outcome: Outcome, rejected: u32) -> reconcile::Report {
        reconcile::Report {
            branch: "main".into(),
            outcome,
            diagnostics: Vec::new(),
            kept: 0,
            retry: false,
            claims: Vec::new(),
            repo_url: None,
            changed: Vec::new(),
            rejected,
        }
    }

    #[test]
    fn a_reconcile_counts_by_how_it_ended_and_refused_publications_by_attempt() {
        let id = ObjectId::null(gix::hash::Kind::Sha1);
        let committed = Ok(report(
            Outcome::Committed {
                commit: id,
                parent: id,
                files: 1,
                claims: Vec::new(),
            },
            2,
        ));
        assert_eq!(reconcile_outcome(&committed), metrics::Outcome::Committed);
        assert_eq!(push_rejections(&committed), 2);
        let unchanged = Ok(report(Outcome::UpToDate { tip: id }, 0));
        assert_eq!(reconcile_outcome(&unchanged), metrics::Outcome::Unchanged);
        let contended = Err(Error::Reconcile(reconcile::Error::Contended {
            branch: "main".into(),
            attempts: 8,
        }));
        assert_eq!(reconcile_outcome(&contended), metrics::Outcome::Rejected);
        assert_eq!(push_rejections(&contended), 8);
        let broken = Err(Error::Reconcile(reconcile::Error::Pipeline(
            crate::pipeline::Error::Core(crate::render::Error::NoRepoUrl.into()),
        )));
        assert_eq!(reconcile_outcome(&broken), metrics::Outcome::Failed);
        assert_eq!(push_rejections(&broken), 0);
    }

    #[test]
    fn each_failing_claim_file_counts_once_with_its_reason() {
        let mut r = report(
            Outcome::UpToDate {
                tip: ObjectId::null(gix::hash::Kind::Sha1),
            },
            0,
        );
        let diagnostic = |file: &str, severity| Diagnostic {
            file: file.into(),
            pos: Default::default(),
            severity,
            message: "x".into(),
        };
        r.diagnostics = vec![
            diagnostic("claims/a.yaml", Severity::Error),
            diagnostic("claims/a.yaml", Severity::Error),
            diagnostic("claims/b.yaml", Severity::Error),
            diagnostic("claims/c.yaml", Severity::Warning),
        ];
        r.claims = vec![reconcile::ClaimResult {
            file: "claims/b.yaml".into(),
            workloads: 0,
            added: 0,
            modified: 0,
            removed: 0,
            chart_unavailable: true,
        }];
        assert_eq!(claim_failures(&r), ["invalid_claim", "chart_unavailable"]);
    }
}
