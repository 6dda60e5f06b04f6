//! The daemon's side of Gitea and Argo CD: which repository a webhook names, pending
//! statuses, branch previews, claim pages, mirrors, BootstrapClaims, Argo CD refreshes.

use super::*;

pub(super) fn gitea_name(repo: &RepoConfig, path: &Path) -> Option<String> {
    repo.gitea_repository
        .as_ref()
        .map(|n| n.to_lowercase())
        .or_else(|| crate::gitea::full_name_of(path))
}

/// Makes sure of the organization and repositories the BootstrapClaims name, when they
/// changed since the last time (at start: once). Off the worker's path; a failure is
/// logged and tried again after the next render.
pub(super) fn bootstrap_on_gitea(
    slot: &Arc<Slot>,
    client: Arc<crate::gitea::api::Client>,
    options: Options,
) {
    let (path, cache, done) = (
        slot.repo.clone(),
        slot.cache.clone(),
        slot.bootstrapped.clone(),
    );
    tokio::spawn(async move {
        let wanted = tokio::task::spawn_blocking(move || {
            let repo = Repo::open(&path).ok()?;
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            reconcile::with_claims(&repo, &options, &mut cache, |loaded| {
                loaded
                    .claims
                    .iter()
                    .filter_map(|c| match &c.spec {
                        crate::claims::Spec::Bootstrap(b) => crate::gitea::bootstrap::Wanted::of(b),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .ok()
            .flatten()
        })
        .await
        .ok()
        .flatten();
        let Some(wanted) = wanted else {
            return;
        };
        if done.lock().unwrap_or_else(|p| p.into_inner()).as_ref() == Some(&wanted) {
            return;
        }
        for w in &wanted {
            match crate::gitea::bootstrap::ensure(&client, w).await {
                Ok(lines) => tracing::info!(organization = %w.organization, "{}", lines.join("; ")),
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.kind(), "BootstrapClaim not made sure of on Gitea");
                    return;
                }
            }
        }
        *done.lock().unwrap_or_else(|p| p.into_inner()) = Some(wanted);
    });
}

/// Tells Argo CD of a bot commit (its GitHub-format push event), off the worker's path;
/// a refusal or a timeout is logged, never retried (Argo CD's polling still applies).
pub(super) fn refresh_argocd(
    argocd: Arc<crate::argocd::Notifier>,
    report: &reconcile::Report,
    parent: ObjectId,
    commit: ObjectId,
    options: &Options,
) {
    let Some(url) = report.repo_url.clone() else {
        return;
    };
    let push = crate::argocd::Push {
        repo_urls: vec![url],
        branch: report.branch.clone(),
        default_branch: report.branch.clone(),
        before: parent.to_string(),
        after: commit.to_string(),
        changed: report.changed.clone(),
        pusher_name: options.bot.name.clone(),
        pusher_email: options.bot.email.clone(),
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    tokio::spawn(async move {
        for result in argocd.notify(&push).await {
            match result {
                Ok(status) => {
                    tracing::debug!(status, after = %push.after, "Argo CD told of the bot commit")
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.kind(), "Argo CD not told of the bot commit")
                }
            }
        }
    });
}

/// A mirror is brought up to date with the server before it is read: the rendered
/// branch, or a previewed one (into `refs/claimd/previews/`). Not a mirror: nothing.
pub(super) fn fetch_mirror(
    path: &Path,
    options: &Options,
    preview: Option<&str>,
) -> Result<(), Error> {
    let (true, Some(url)) = (options.mirror, &options.push_url) else {
        return Ok(());
    };
    let rendered = options.branch.clone().unwrap_or_else(|| "main".into());
    let (branch, into) = match preview {
        Some(b) => (b.to_string(), format!("refs/claimd/previews/{b}")),
        None => (rendered.clone(), format!("refs/heads/{rendered}")),
    };
    crate::git::push::fetch_branch(path, url, options.push_auth.as_ref(), &branch, &into)
        .map_err(Error::Git)
}

impl Daemon {
    /// The repository a Gitea webhook names (`owner/name`, any case): its path, the branch
    /// claimd renders there and the bot's email. None: not one this daemon serves.
    pub fn gitea_repository(&self, full_name: &str) -> Option<(PathBuf, String, String)> {
        let wanted = full_name.to_lowercase();
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|s| s.setup().gitea_name.as_deref() == Some(wanted.as_str()))
            .cloned()?;
        let options = slot.setup().options.clone();
        let branch = match Repo::open(&slot.repo) {
            Ok(repo) => reconcile::branch_of(&repo, &options),
            Err(_) => options.branch.clone().unwrap_or_else(|| "main".into()),
        };
        Some((slot.repo.clone(), branch, options.bot.email.clone()))
    }

    /// Posts `pending` statuses on `sha` for these claim files of the repository at
    /// `repo` (a push queued by a webhook), if it reports to Gitea.
    pub fn pending(&self, repo: &Path, sha: &str, files: &[String]) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&canonical(repo))
            .cloned();
        if let Some(statuses) = slot.and_then(|s| s.setup().statuses.clone()) {
            statuses.pending(sha, files);
        }
    }

    /// Renders `branch` of the repository at `repo` at commit `sha` without committing:
    /// its diff is kept for `GET /previews/<sha>` and each claim file gets a status with
    /// what merging would change. False: the repository does not report to Gitea.
    pub fn preview(&self, repo: &Path, branch: &str, sha: &str) -> bool {
        let Some(slot) = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&canonical(repo))
            .cloned()
        else {
            return false;
        };
        let setup = slot.setup();
        let (Some(statuses), Ok(commit)) =
            (setup.statuses.clone(), ObjectId::from_hex(sha.as_bytes()))
        else {
            return false;
        };
        let (branch, sha) = (branch.to_string(), sha.to_string());
        let previews = self.previews.clone();
        tokio::spawn(async move {
            let options = setup.options.clone();
            let (path, cache) = (slot.repo.clone(), slot.cache.clone());
            let planned = tokio::task::spawn_blocking(move || {
                fetch_mirror(&path, &options, Some(&branch))?;
                let r = Repo::open(&path).map_err(reconcile::Error::from)?;
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                let request = reconcile::request(&options, &branch);
                Ok::<_, Error>(
                    crate::pipeline::at_commit(&r, commit, &request, &mut cache)
                        .map_err(reconcile::Error::from)?,
                )
            })
            .await
            .unwrap_or_else(|e| Err(Error::Task(e)));
            match planned {
                Ok(planned) => {
                    let diff = Arc::new(crate::render::unified_diff(&planned.plan));
                    {
                        let mut kept = previews.lock().unwrap_or_else(|p| p.into_inner());
                        kept.retain(|(s, _)| *s != sha);
                        if kept.len() >= PREVIEWS {
                            kept.pop_front();
                        }
                        kept.push_back((sha.clone(), diff));
                    }
                    let claims = reconcile::claim_results(&planned);
                    statuses.preview(&sha, &claims, &planned.diagnostics);
                    tracing::info!(%sha, changes = planned.plan.changes.len(), "branch preview rendered");
                }
                Err(e) => {
                    tracing::warn!(%sha, error = %e, kind = e.kind(), "branch preview failed")
                }
            }
        });
        true
    }

    /// What the last reconcile of Gitea's `owner/name` made of the claim file `path`, as
    /// a short text page (what a status links to). None: unknown.
    pub fn claim_page(&self, full_name: &str, path: &str) -> Option<String> {
        let wanted = full_name.to_lowercase();
        let statuses = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|s| s.setup().gitea_name.as_deref() == Some(wanted.as_str()))
            .and_then(|s| s.setup().statuses.clone())?;
        let (sha, status) = statuses.claim(path)?;
        let state = serde_json::to_value(status.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Some(format!(
            "{path} in {full_name} at {sha}\nstate: {state}\n{}\n",
            status.description
        ))
    }

    /// The diff of the branch preview of commit `sha`, if it is still kept.
    pub fn preview_diff(&self, sha: &str) -> Option<Arc<String>> {
        let kept = self.previews.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|(s, _)| s == sha).map(|(_, d)| d.clone())
    }

    /// The Gitea `owner/name` of every repository served.
    pub fn gitea_names(&self) -> Vec<String> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = slots
            .values()
            .filter_map(|s| s.setup().gitea_name.clone())
            .collect();
        names.sort();
        names
    }
}
