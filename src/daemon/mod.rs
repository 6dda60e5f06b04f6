//! `claimd serve`: keeps configured repositories rendered. One work slot per
//! repository+branch with a single writer; events for a busy slot coalesce (the worker
//! re-reads the newest tip when it runs); every repository is reconciled at start-up so
//! a crash or a missed event heals; failures retry with backoff; shutdown lets the
//! running reconcile finish.

mod cluster;
pub mod config;

use crate::charts;
use crate::git::{Identity, Repo};
use crate::reconcile::{self, Options, Outcome};
use config::Config;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Everything that can ask for a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A hook (or webhook) says this repository was pushed to.
    Push { repo: PathBuf },
    /// A watched repository's refs changed on disk.
    RefsChanged { repo: PathBuf },
    /// Start-up or configuration reload: reconcile everything.
    All,
}

struct Slot {
    repo: PathBuf,
    options: Options,
    dirty: AtomicBool,
    wake: Notify,
    /// Reconciles finished (successfully or not).
    runs: AtomicU64,
    removed: AtomicBool,
    /// Generation of the newest request; the worker publishes the generation each run
    /// served, with a one-line result, so a caller can wait for "its" reconcile.
    requested: AtomicU64,
    served: watch::Sender<(u64, String)>,
    /// Parsed claims and rendered applications of the last run (incremental rendering).
    cache: Arc<Mutex<reconcile::Cache>>,
    /// Namespaces and preview builds of this repository.
    kube: Arc<cluster::Kube>,
}

/// The daemon's shared state.
pub struct Daemon {
    slots: Mutex<HashMap<PathBuf, Arc<Slot>>>,
    stop: watch::Sender<bool>,
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn options_for(config: &Config, branch: Option<String>) -> Options {
    let mut o = Options {
        branch,
        ..Options::default()
    };
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
    let registry = match charts::oci::Registry::new(config.registries.clone().with_env()) {
        Ok(r) => Some(Arc::new(r)),
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
        let (stop, _) = watch::channel(false);
        Arc::new(Daemon {
            slots: Mutex::new(HashMap::new()),
            stop,
        })
    }

    /// Adds new repositories (starting their workers), drops removed ones.
    pub fn configure(self: &Arc<Daemon>, config: &Config) {
        let mut slots = self.slots.lock().expect("slots lock");
        let wanted: HashMap<PathBuf, _> = config
            .repositories
            .iter()
            .map(|r| (canonical(&r.path), r))
            .collect();
        slots.retain(|path, slot| {
            let keep = wanted.contains_key(path);
            if !keep {
                slot.removed.store(true, Ordering::SeqCst);
                slot.wake.notify_one();
            }
            keep
        });
        for (path, r) in wanted {
            if slots.contains_key(&path) {
                continue;
            }
            let slot = Arc::new(Slot {
                repo: path.clone(),
                options: Options {
                    push_url: r.push_url.clone(),
                    ..options_for(config, r.branch.clone())
                },
                dirty: AtomicBool::new(false),
                wake: Notify::new(),
                runs: AtomicU64::new(0),
                removed: AtomicBool::new(false),
                requested: AtomicU64::new(0),
                served: watch::channel((0, String::new())).0,
                cache: Arc::new(Mutex::new(reconcile::Cache::batched())),
                kube: Arc::new(kube_for(config)),
            });
            slots.insert(path, slot.clone());
            tokio::spawn(worker(slot, self.stop.subscribe()));
        }
    }

    /// Routes an event to the slots it concerns. Returns false for an unknown repository.
    pub fn send(&self, event: Event) -> bool {
        !self.enqueue(&event).is_empty()
    }

    fn enqueue(&self, event: &Event) -> Vec<(Arc<Slot>, u64)> {
        let slots = self.slots.lock().expect("slots lock");
        let targets: Vec<&Arc<Slot>> = match event {
            Event::All => slots.values().collect(),
            Event::Push { repo } | Event::RefsChanged { repo } => {
                slots.get(&canonical(repo)).into_iter().collect()
            }
        };
        targets
            .into_iter()
            .map(|slot| {
                let generation = slot.requested.fetch_add(1, Ordering::SeqCst) + 1;
                slot.dirty.store(true, Ordering::SeqCst);
                slot.wake.notify_one();
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
    ) -> Option<Result<Vec<crate::claims::Diagnostic>, String>> {
        let slot = self
            .slots
            .lock()
            .expect("slots lock")
            .get(&canonical(&repo))
            .cloned()?;
        let result = tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            let r = Repo::open_for_hook(&slot.repo, quarantine.as_deref())
                .map_err(|e| e.to_string())?;
            let mut cache = slot
                .cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let v = reconcile::validate_cached(&r, commit, &slot.options, &mut cache);
            tracing::debug!(elapsed = ?t.elapsed(), "validated a pushed commit");
            v.map_err(|e| e.to_string())
        })
        .await;
        Some(result.unwrap_or_else(|e| Err(e.to_string())))
    }

    /// Every repository has been reconciled at least once since start-up.
    pub fn ready(&self) -> bool {
        let slots = self.slots.lock().expect("slots lock");
        slots.values().all(|s| s.runs.load(Ordering::SeqCst) > 0)
    }

    /// Asks workers to stop after their current reconcile.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Every repository's preview Environments, as the last Kubernetes step saw them.
    pub fn statuses(&self) -> Vec<(PathBuf, Vec<crate::kube::EnvironmentStatus>)> {
        let slots = self.slots.lock().expect("slots lock");
        let mut v: Vec<_> = slots
            .iter()
            .map(|(path, slot)| {
                let statuses = slot.kube.statuses.lock().unwrap_or_else(|p| p.into_inner());
                (path.clone(), statuses.clone())
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn repositories(&self) -> Vec<PathBuf> {
        let slots = self.slots.lock().expect("slots lock");
        let mut v: Vec<PathBuf> = slots.keys().cloned().collect();
        v.sort();
        v
    }
}

async fn worker(slot: Arc<Slot>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() || slot.removed.load(Ordering::SeqCst) {
            return;
        }
        if !slot.dirty.swap(false, Ordering::SeqCst) {
            tokio::select! {
                _ = slot.wake.notified() => continue,
                _ = stop.changed() => return,
            }
        }
        let serving = slot.requested.load(Ordering::SeqCst);
        let (repo, mut options, cache) =
            (slot.repo.clone(), slot.options.clone(), slot.cache.clone());
        // The reconcile commits the previews whose image the last Kubernetes step found;
        // the step runs after it (off the push's path) and asks for another run when
        // that set changed.
        options.previews = slot.kube.previews().await;
        let used = options.previews.clone();
        let result = tokio::task::spawn_blocking(move || {
            let r = Repo::open(&repo).map_err(reconcile::Error::from)?;
            let mut cache = cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            reconcile::reconcile_cached(&r, &options, &mut cache)
        })
        .await;
        slot.runs.fetch_add(1, Ordering::SeqCst);
        let repo = slot.repo.display().to_string();
        let summary = match &result {
            Ok(Ok(report)) => match &report.outcome {
                Outcome::Committed { commit, .. } => {
                    format!("bot commit {commit} on {}", report.branch)
                }
                Outcome::UpToDate { .. } => "generated files are up to date".to_string(),
                Outcome::NoBranch => format!("branch {} does not exist", report.branch),
            },
            Ok(Err(e)) => format!("reconcile failed: {e}"),
            Err(e) => format!("reconcile failed: {e}"),
        };
        slot.served.send_replace((serving, summary));
        let weak = Arc::downgrade(&slot);
        let wake = move || match weak.upgrade() {
            Some(s) if !s.removed.load(Ordering::SeqCst) => {
                s.dirty.store(true, Ordering::SeqCst);
                s.wake.notify_one();
                true
            }
            _ => false,
        };
        let step = slot
            .kube
            .step(&slot.repo, &slot.options, slot.cache.clone(), wake)
            .await;
        if step.previews != used {
            slot.dirty.store(true, Ordering::SeqCst);
        }
        match result {
            Ok(Ok(report)) => {
                if report.retry || step.retry {
                    failures += 1;
                    let delay = Duration::from_millis(250u64 << failures.min(5)); // at most 8 s
                    tracing::warn!(%repo, retry_in = ?delay, "a registry, the cluster or a build is not done; trying again");
                    retry_later(&slot, delay);
                } else {
                    failures = 0;
                    if step.building {
                        // The Job watch wakes us; this is the fallback if it cannot.
                        retry_later(&slot, Duration::from_secs(30));
                    }
                }
                for d in report.diagnostics.iter().filter(|d| d.is_error()) {
                    tracing::warn!(%repo, "{d}");
                }
                match report.outcome {
                    Outcome::Committed { commit, files, .. } => {
                        tracing::info!(%repo, branch = %report.branch, %commit, files, "bot commit")
                    }
                    Outcome::UpToDate { tip } => tracing::debug!(%repo, %tip, "up to date"),
                    Outcome::NoBranch => tracing::debug!(%repo, "no branch yet"),
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                let delay = Duration::from_millis(250u64 << failures.min(5)); // at most 8 s
                tracing::error!(%repo, error = %e, retry_in = ?delay, "reconcile failed");
                retry_later(&slot, delay);
            }
            Err(e) => tracing::error!(%repo, error = %e, "reconcile task panicked"),
        }
    }
}

fn retry_later(slot: &Arc<Slot>, delay: Duration) {
    let slot = slot.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        slot.dirty.store(true, Ordering::SeqCst);
        slot.wake.notify_one();
    });
}

/// Watches the config file (reload) and the refs of repositories that ask for it.
/// Events go to the daemon; the watcher lives as long as the returned value.
pub fn watch(
    daemon: Arc<Daemon>,
    config_path: PathBuf,
    config: &Config,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let handle = tokio::runtime::Handle::current();
    let config_file = canonical(&config_path);
    let watched_refs: Vec<PathBuf> = config
        .repositories
        .iter()
        .filter(|r| r.watch_refs)
        .map(|r| canonical(&r.path))
        .collect();
    let refs_for_events = watched_refs.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        for path in &event.paths {
            if canonical(path) == config_file || path.file_name() == config_file.file_name() {
                match Config::load(&config_file) {
                    Ok(cfg) => {
                        let d = daemon.clone();
                        handle.spawn(async move {
                            d.configure(&cfg);
                            d.send(Event::All);
                            tracing::info!("configuration reloaded");
                        });
                    }
                    Err(e) => tracing::error!(error = %e, "configuration not reloaded"),
                }
                return;
            }
            if let Some(repo) = refs_for_events.iter().find(|r| path.starts_with(r)) {
                daemon.send(Event::RefsChanged { repo: repo.clone() });
                return;
            }
        }
    })?;
    if let Some(dir) = config_path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    for repo in &watched_refs {
        watcher.watch(&repo.join("refs"), RecursiveMode::Recursive)?;
        watcher.watch(repo, RecursiveMode::NonRecursive)?; // packed-refs
    }
    Ok(watcher)
}
