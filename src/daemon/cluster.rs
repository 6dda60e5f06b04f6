//! The daemon's Kubernetes step, run after each reconcile of a repository: the
//! namespaces its claims want are applied (and the unwanted ones deleted), preview
//! builds started or watched, and the next reconcile told which previews it may commit.

use crate::claims::{Loaded, Spec};
use crate::git::Repo;
use crate::kube::{self, cluster, Cluster, EnvironmentStatus};
use crate::reconcile::{self, Options, Previews};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// One repository's view of the cluster.
pub struct Kube {
    settings: kube::Settings,
    argocd_namespace: String,
    /// Connected on first use; None inside: no cluster (dry-run).
    cluster: OnceCell<Option<Cluster>>,
    /// Where preview images are looked up.
    registry: Option<Arc<dyn kube::ImageLookup>>,
    /// The Environments' status after the last step.
    pub statuses: Mutex<Vec<EnvironmentStatus>>,
    /// The repository name the namespaces and Jobs are annotated with (last step).
    repository: Arc<Mutex<String>>,
    watching: AtomicBool,
    /// Replaced by a new configuration: its build watch stops.
    retired: AtomicBool,
    /// The previews whose image exists, as the last step found them.
    ready: Mutex<std::collections::BTreeMap<String, String>>,
    /// What the last dry-run logged (logged again only when it changes).
    logged: Mutex<Option<kube::Desired>>,
}

/// What the step decided.
pub struct Step {
    pub previews: Previews,
    /// Try again soon (with backoff).
    pub retry: bool,
    /// A build runs: its Job is watched; look again after a while anyway.
    pub building: bool,
    /// claimd's build Jobs in the cluster (running, succeeded, failed), when listed.
    pub jobs: Option<[usize; 3]>,
}

impl Step {
    /// Nothing could be told: previews wait (the same set the next reconcile is given,
    /// so it does not ask for another run), try again with backoff.
    fn unknown(kube: &Kube) -> Step {
        let previews = match kube.cluster.get() {
            Some(None) => Previews::All, // dry-run: nothing is waited for
            _ => {
                kube.ready.lock().unwrap_or_else(|p| p.into_inner()).clear();
                Previews::Built(Default::default())
            }
        };
        Step {
            previews,
            retry: true,
            building: false,
            jobs: None,
        }
    }
}

impl Kube {
    pub fn new(
        settings: kube::Settings,
        argocd_namespace: String,
        registry: Option<Arc<dyn kube::ImageLookup>>,
    ) -> Kube {
        Kube {
            settings,
            argocd_namespace,
            cluster: OnceCell::new(),
            registry,
            statuses: Mutex::new(Vec::new()),
            repository: Arc::new(Mutex::new(String::new())),
            watching: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            ready: Mutex::new(Default::default()),
            logged: Mutex::new(None),
        }
    }

    /// This view was replaced (the configuration changed): its build watch ends.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    async fn cluster(&self) -> Result<Option<&Cluster>, kube::Error> {
        let c = self
            .cluster
            .get_or_try_init(|| Cluster::connect(&self.settings, &self.argocd_namespace))
            .await?;
        Ok(c.as_ref())
    }

    /// The previews a reconcile may commit now: all without a cluster, else those the
    /// last step found built.
    pub async fn previews(&self) -> Previews {
        match self.cluster().await {
            Ok(None) => Previews::All,
            _ => Previews::Built(self.ready.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        }
    }

    /// Applies what the claims at the branch tip want. Never fails the reconcile: when
    /// the cluster cannot be reached, previews wait and the step is retried. `wake` asks
    /// for another run (a build Job changed); it returns false once nobody listens.
    pub async fn step(
        &self,
        repo: &Path,
        options: &Options,
        cache: Arc<Mutex<reconcile::Memo>>,
        wake: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Step {
        let (path, opts, settings) = (repo.to_path_buf(), options.clone(), self.settings.clone());
        let desired = tokio::task::spawn_blocking(move || -> Result<_, super::Error> {
            let r = Repo::open(&path)?;
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            reconcile::with_claims(&r, &opts, &mut cache, |loaded| {
                let branch = reconcile::branch_of(&r, &opts);
                let name = repository_name(loaded, &opts, &path, &branch);
                kube::desired(
                    &loaded.claims,
                    &loaded.failed_files,
                    &name,
                    &opts.settings.preview_domain,
                    &settings,
                )
            })
            .map_err(super::Error::from)
        })
        .await
        .map_err(super::Error::from)
        .and_then(|r| r);
        let desired = match desired {
            Ok(Some(d)) => d,
            Ok(None) => {
                // No branch yet: nothing to apply, nothing changes.
                return Step {
                    previews: self.previews().await,
                    retry: false,
                    building: false,
                    jobs: None,
                };
            }
            Err(e) => {
                tracing::warn!(repo = %repo.display(), error = %e, kind = e.kind(), "cannot read the claims for Kubernetes");
                return Step::unknown(self);
            }
        };
        for (claim, problem) in &desired.problems {
            tracing::warn!(%claim, "{problem}");
        }
        *self.repository.lock().unwrap_or_else(|p| p.into_inner()) = desired.repository.clone();
        let (sync, gated) = match self.cluster().await {
            Ok(Some(c)) => {
                self.watch_builds(c, wake);
                (c.sync(&desired, self.registry.as_deref()).await, true)
            }
            Ok(None) => {
                let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
                let changed = logged.as_ref() != Some(&desired);
                let sync = cluster::dry_run(&desired, changed);
                *logged = Some(desired);
                (sync, false)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot connect to Kubernetes; previews wait");
                return Step::unknown(self);
            }
        };
        for p in &sync.problems {
            tracing::warn!(repo = %repo.display(), "{p}");
        }
        if sync.writes > 0 {
            tracing::info!(repo = %repo.display(), writes = sync.writes, deleted = sync.deleted.len(), "Kubernetes objects applied");
        }
        *self.statuses.lock().unwrap_or_else(|p| p.into_inner()) = sync.statuses;
        if gated {
            *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = sync.ready.clone();
        }
        Step {
            previews: if gated {
                Previews::Built(sync.ready)
            } else {
                Previews::All
            },
            retry: sync.retry,
            building: sync.building,
            jobs: sync.jobs,
        }
    }

    /// Once per repository: a watch on build Jobs that wakes this repository's worker
    /// when one of its Jobs changes.
    fn watch_builds(&self, cluster: &Cluster, wake: impl Fn() -> bool + Send + Sync + 'static) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let (cluster, repository) = (cluster.clone(), self.repository.clone());
        tokio::spawn(async move {
            cluster
                .watch_builds(|r| {
                    let ours = *r == *repository.lock().unwrap_or_else(|p| p.into_inner());
                    !ours || wake()
                })
                .await;
        });
    }
}

/// The repository named in namespace annotations: the BootstrapClaim's GitOps URL, else
/// the configured repository URL, else the path on disk; and `@branch` (two branches
/// of one repository own their namespaces separately).
fn repository_name(loaded: &Loaded, opts: &Options, path: &Path, branch: &str) -> String {
    let repository = loaded
        .claims
        .iter()
        .find_map(|c| match &c.spec {
            Spec::Bootstrap(b) => Some(b.gitops_repo_url()),
            _ => None,
        })
        .or_else(|| opts.settings.repo_url.clone())
        .unwrap_or_else(|| path.display().to_string());
    format!("{repository}@{branch}")
}

/// The OCI adapter answers the Kubernetes step's image lookups.
impl kube::ImageLookup for crate::oci::Registry {
    fn exists<'a>(
        &'a self,
        image: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<bool, kube::LookupError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let exists = self.image_exists(image).await;
            if let Err(e) = &exists {
                crate::metrics::registry_error(e.kind());
            }
            Ok(exists?)
        })
    }
}
