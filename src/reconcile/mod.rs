//! One reconcile of one branch: read the tip's claims and generated files from git,
//! render, and when anything changes write ONE bot commit on top of the tip and move
//! the branch compare-and-swap. If someone pushed meanwhile, start again on the new tip.
//! Every trigger (hook, webhook, start-up, file watch) ends here.

pub mod prepared;

pub use crate::pipeline::{Memo, Previews};

use crate::charts;
use crate::claims::{self, Diagnostic};
use crate::git::{self, Cas, Identity, Repo, SOURCE_TRAILER};
use crate::pipeline::{self, Planned, Request};
use crate::render::{ChangeKind, Plan, Settings, OUTPUT_ROOTS};

use gix::ObjectId;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(transparent)]
    Pipeline(#[from] pipeline::Error),
    #[error("branch {branch} kept moving: gave up after {attempts} attempts (will retry on the next event)")]
    Contended { branch: String, attempts: u32 },
    /// The git server did not take the bot commit's push (refused, or unreachable).
    #[error(transparent)]
    Push(git::Error),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Branch to render; default: the BootstrapClaim's branch is not known before
    /// reading, so the repository's HEAD branch, else `main`.
    pub branch: Option<String>,
    pub settings: Settings,
    pub charts: charts::Source,
    pub bot: Identity,
    /// How often to start again when the branch moved under us.
    pub attempts: u32,
    /// Publish bot commits with `git push` to this URL (the git server, so its own hooks
    /// and events see them) instead of moving the ref in the repository directly.
    pub push_url: Option<String>,
    /// The credentials for `push_url` (a Gitea token), given to git in its environment.
    pub push_auth: Option<git::push::Auth>,
    /// The repository is claimd's mirror of `push_url`: fetched before each render,
    /// and its branch follows a bot commit once the server took it.
    pub mirror: bool,
    /// Which preview Environments may have their values committed.
    pub previews: Previews,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            branch: None,
            settings: Settings::default(),
            charts: charts::Source::Embedded,
            bot: Identity::default(),
            attempts: 8,
            push_url: None,
            push_auth: None,
            mirror: false,
            previews: Previews::All,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The branch does not exist (yet).
    NoBranch,
    /// Nothing to change at this commit.
    UpToDate { tip: ObjectId },
    /// One bot commit on top of `parent`.
    Committed {
        commit: ObjectId,
        parent: ObjectId,
        files: usize,
        claims: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Report {
    pub branch: String,
    pub outcome: Outcome,
    pub diagnostics: Vec<Diagnostic>,
    /// Generated files left as they were because their claim failed.
    pub kept: usize,
    /// Something failed that may work later (a registry that did not answer): the
    /// daemon tries again with backoff.
    pub retry: bool,
    /// What became of each claim file (empty when nothing was planned).
    pub claims: Vec<ClaimResult>,
    /// The GitOps repository's URL as the generated files name it.
    pub repo_url: Option<String>,
    /// The generated paths the bot commit changed.
    pub changed: Vec<String>,
    /// Times the bot commit's publication was refused because the branch had moved (each
    /// time the reconcile started again on the new tip).
    pub rejected: u32,
}

/// What became of one claim file in a reconcile (for commit statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimResult {
    pub file: String,
    /// Applications and services it declares.
    pub workloads: usize,
    /// Generated files of it that this reconcile adds, modifies and removes.
    pub added: usize,
    pub modified: usize,
    pub removed: usize,
    /// A chart it needs could not be had (not the claim's fault).
    pub chart_unavailable: bool,
}

/// Where a claim file stands after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimState {
    /// Read, rendered, its files committed.
    Ok,
    /// It has an error (its files are kept as they were).
    Failed,
    /// A chart it needs could not be had: claimd's side, retried.
    Error,
}

impl ClaimResult {
    /// Generated files changed in all.
    pub fn changed(&self) -> usize {
        self.added + self.modified + self.removed
    }

    /// Its state and first error (`file:line:col` order) among a run's diagnostics: what
    /// commit statuses, `GET /v1/status` and the status page show.
    pub fn state<'a>(&self, diagnostics: &'a [Diagnostic]) -> (ClaimState, Option<&'a Diagnostic>) {
        let first_error = diagnostics
            .iter()
            .filter(|d| d.is_error() && d.file == self.file)
            .min_by_key(|d| d.pos);
        let state = match first_error {
            None => ClaimState::Ok,
            Some(_) if self.chart_unavailable => ClaimState::Error,
            Some(_) => ClaimState::Failed,
        };
        (state, first_error)
    }
}

/// Each claim file's result in `planned`.
pub fn claim_results(planned: &Planned) -> Vec<ClaimResult> {
    // (added, modified, removed) per claim file. A removed file's claim is not in the
    // render any more: its header names it.
    let mut changed: std::collections::HashMap<String, [usize; 3]> =
        std::collections::HashMap::new();
    for c in &planned.plan.changes {
        let slot = match c.kind {
            ChangeKind::Add => 0,
            ChangeKind::Modify => 1,
            ChangeKind::Delete => 2,
        };
        let owners: Vec<String> = match planned.sources.get(&c.path) {
            Some(files) => files.clone(),
            None => c
                .old
                .as_deref()
                .and_then(crate::render::parse_owners)
                .unwrap_or_default()
                .iter()
                .filter_map(|o| o.split_once('#').map(|(file, _)| file.to_string()))
                .collect(),
        };
        for file in owners {
            changed.entry(file).or_default()[slot] += 1;
        }
    }
    let unavailable: std::collections::HashSet<&str> = planned
        .failures
        .iter()
        .filter(|f| f.chart_unavailable)
        .map(|f| f.diagnostic.file.as_str())
        .collect();
    planned
        .workloads
        .iter()
        .map(|(file, workloads)| {
            let [added, modified, removed] = changed.get(file).copied().unwrap_or_default();
            ClaimResult {
                file: file.clone(),
                workloads: *workloads,
                added,
                modified,
                removed,
                chart_unavailable: unavailable.contains(file.as_str()),
            }
        })
        .collect()
}

/// The branch claimd renders: the configured one, else the repository's HEAD branch,
/// else `main`.
pub fn branch_of(repo: &Repo, opts: &Options) -> String {
    opts.branch
        .clone()
        .or_else(|| repo.head_branch())
        .unwrap_or_else(|| "main".to_string())
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Git(_) => "git",
            Error::Pipeline(e) => e.kind(),
            Error::Contended { .. } => "contended",
            Error::Push(_) => "push",
        }
    }
}

/// The request the pipeline gets for `opts` on `branch`.
pub fn request<'a>(opts: &'a Options, branch: &'a str) -> Request<'a> {
    Request {
        settings: &opts.settings,
        charts: &opts.charts,
        previews: &opts.previews,
        branch: Some(branch),
        sink: None,
    }
}

/// A reconcile in a process of its own (a hook, `claimd reconcile`): with the memo the
/// last one left in the repository, and leaving its own.
pub fn reconcile(repo: &Repo, opts: &Options) -> Result<Report, Error> {
    let mut memo = pipeline::store::load(repo.path());
    let report = reconcile_cached(repo, opts, &mut memo)?;
    save_memo(repo, &memo);
    Ok(report)
}

/// Keeps the memo for the next process; failing to is only slower next time.
pub(crate) fn save_memo(repo: &Repo, memo: &Memo) {
    if let Err(e) = pipeline::store::save(repo.path(), memo) {
        tracing::warn!(error = %e, "could not keep the render memo (the next push renders everything)");
    }
}

/// [`reconcile`] with a memo kept between runs (the daemon keeps one per repository):
/// claim files and the applications of claim files that did not change since the last
/// run are neither parsed nor merged again.
pub fn reconcile_cached(repo: &Repo, opts: &Options, memo: &mut Memo) -> Result<Report, Error> {
    let branch = branch_of(repo, opts);
    for attempt in 0..opts.attempts.max(1) {
        let Some(tip) = repo.branch_tip(&branch)? else {
            return Ok(Report {
                branch,
                outcome: Outcome::NoBranch,
                diagnostics: Vec::new(),
                kept: 0,
                retry: false,
                claims: Vec::new(),
                repo_url: None,
                changed: Vec::new(),
                rejected: attempt,
            });
        };
        let planned = pipeline::at_commit(repo, tip, &request(opts, &branch), memo)?;
        let (retry, claims) = (planned.retry, planned.claim_files());
        let results = claim_results(&planned);
        let repo_url = planned.repo_url.clone();
        let changed: Vec<String> = planned
            .plan
            .changes
            .iter()
            .map(|c| c.path.clone())
            .collect();
        let Planned {
            plan, diagnostics, ..
        } = planned;
        let kept = plan.kept.len();
        if plan.is_empty() {
            return Ok(Report {
                branch,
                outcome: Outcome::UpToDate { tip },
                diagnostics,
                kept,
                retry,
                claims: results,
                repo_url,
                changed: Vec::new(),
                rejected: attempt,
            });
        }
        let message = commit_message(&plan, &claims, tip);
        let t = std::time::Instant::now();
        let key = ahead_key(&plan, &message, &opts.bot);
        let commit = match memo.ahead.take() {
            // Written while git finished the push (the objects are there unless a gc
            // took them since, which would first have to see them unreachable).
            Some((pushed, written, commit))
                if pushed == tip && written == key && repo.has_object(commit) =>
            {
                tracing::debug!("the bot commit written ahead at pre-receive");
                commit
            }
            _ => repo.commit_changes(tip, &plan.changes, &message, &opts.bot)?,
        };
        tracing::debug!(elapsed = ?t.elapsed(), "commit written");
        let published = match &opts.push_url {
            None => repo.update_branch(&branch, tip, commit, "claimd: render")?,
            Some(url) => git::push::push_cas(
                repo.path(),
                url,
                opts.push_auth.as_ref(),
                &branch,
                tip,
                commit,
            )
            .map_err(Error::Push)?,
        };
        tracing::debug!(elapsed = ?t.elapsed(), "branch updated");
        match published {
            Cas::Updated => {
                if opts.mirror && opts.push_url.is_some() {
                    // The server has it; the mirror's branch follows (or the next fetch
                    // brings it, if something else moved it meanwhile).
                    repo.update_branch(&branch, tip, commit, "claimd: pushed")?;
                }
                let tree = repo.tree_of(commit)?;
                pipeline::snapshot::committed(&mut memo.reads, repo, tip, tree, &plan.changes)?;
                return Ok(Report {
                    branch,
                    outcome: Outcome::Committed {
                        commit,
                        parent: tip,
                        files: plan.changes.len(),
                        claims,
                    },
                    diagnostics,
                    kept,
                    retry,
                    claims: results,
                    repo_url,
                    changed,
                    rejected: attempt,
                });
            }
            Cas::Moved => {
                tracing::info!(%branch, attempt, "branch moved while rendering; starting again on the new tip");
                std::thread::sleep(Duration::from_millis(5u64 << attempt.min(6)));
            }
        }
    }
    Err(Error::Contended {
        branch,
        attempts: opts.attempts,
    })
}

/// What a bot commit commits: its message, its author and every change.
fn ahead_key(plan: &Plan, message: &str, bot: &Identity) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [message, &bot.name, &bot.email] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    for c in &plan.changes {
        h.update(c.path.len().to_le_bytes());
        h.update(c.path.as_bytes());
        match &c.new {
            Some(new) => {
                h.update([1]);
                h.update(new.len().to_le_bytes());
                h.update(new.as_bytes());
            }
            None => h.update([0]),
        }
    }
    h.finalize().into()
}

/// The daemon, once it accepted a push at pre-receive: writes the bot commit of the
/// pushed commit of the rendered branch (its plan is the one just checked, kept in the
/// memo) while git finishes the push, so that the reconcile at post-receive only moves
/// the branch ([`reconcile_cached`] takes it when the branch is at that commit and the
/// plan is the same). The objects go into the repository, not the quarantine: if the
/// push does not land after all, they are unreachable and git's gc removes them.
/// Returns the bot commit written, if any.
pub fn write_ahead(
    repo: &Repo,
    updates: &[RefUpdate],
    opts: &Options,
    memo: &mut Memo,
) -> Result<Option<ObjectId>, Error> {
    let mut written = None;
    let branch = branch_of(repo, opts);
    let branch_ref = format!("refs/heads/{branch}");
    for u in updates.iter().filter(|u| u.name == branch_ref) {
        let Some(new) = u.new else {
            continue;
        };
        if is_bot_commit(repo, new, &opts.bot)? {
            continue;
        }
        let planned = pipeline::at_commit(repo, new, &request(opts, &branch), memo)?;
        if planned.plan.is_empty()
            || planned.plan.changes.len() >= git::pack::PACK_FROM
            || planned.chart_unavailable()
            || planned.diagnostics.iter().any(Diagnostic::is_error)
        {
            continue;
        }
        let message = commit_message(&planned.plan, &planned.claim_files(), new);
        let commit = repo.commit_changes(new, &planned.plan.changes, &message, &opts.bot)?;
        memo.ahead = Some((new, ahead_key(&planned.plan, &message, &opts.bot), commit));
        written = Some(commit);
    }
    Ok(written)
}

/// The output folders whose content differs between two commits (a hand edit, unless the
/// new commit is claimd's own).
pub fn edited_outputs(repo: &Repo, old: ObjectId, new: ObjectId) -> Result<Vec<String>, Error> {
    let (a, b) = (repo.top_level(old)?, repo.top_level(new)?);
    Ok(OUTPUT_ROOTS
        .iter()
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| a.get(*r) != b.get(*r))
        .map(str::to_string)
        .collect())
}

/// One ref update of a push, as git gives it to the hooks (`<old> <new> <ref>`); `None`
/// for the all-zero id (a new ref, a deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    pub name: String,
}

impl RefUpdate {
    /// From git's hexadecimal ids; None if one is not an object id.
    pub fn parse(old: &str, new: &str, name: &str) -> Option<RefUpdate> {
        let id = |hex: &str| -> Option<Option<ObjectId>> {
            let id = ObjectId::from_hex(hex.as_bytes()).ok()?;
            Some((!id.is_null()).then_some(id))
        };
        Some(RefUpdate {
            old: id(old)?,
            new: id(new)?,
            name: name.to_string(),
        })
    }
}

/// What pre-receive says about a push: the lines for the pusher, and whether it is
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub refused: bool,
    pub lines: Vec<String>,
}

/// pre-receive for a push (the hook's own, or the daemon's with its memo; `validate`
/// gives the diagnostics of the claims at a pushed commit): the rendered branch's
/// update is checked, a hand edit of generated files is warned about, others pass.
pub fn pre_receive(
    repo: &Repo,
    updates: &[RefUpdate],
    opts: &Options,
    mut validate: impl FnMut(ObjectId) -> Result<Vec<Diagnostic>, Error>,
) -> Result<Verdict, Error> {
    let branch = branch_of(repo, opts);
    let branch_ref = format!("refs/heads/{branch}");
    // A ref lock left by a process killed while it moved the branch (a bot commit's
    // update, kill -9) would make git refuse this push and every one after it, with
    // nothing left to clear it: a stale one goes before git takes the lock.
    repo.clear_stale_branch_lock(&branch);
    let mut verdict = Verdict::default();
    for u in updates.iter().filter(|u| u.name == branch_ref) {
        let Some(new) = u.new else {
            continue;
        };
        if let Some(old) = u.old {
            if !is_bot_commit(repo, new, &opts.bot)? {
                let edited = edited_outputs(repo, old, new)?;
                if !edited.is_empty() {
                    verdict.lines.push(format!(
                        "claimd: warning: this push edits generated files in {}/; claimd will put them back as the claims say. Change claims/ instead",
                        edited.join("/, ")
                    ));
                }
            }
        }
        let diagnostics = validate(new)?;
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        if errors > 0 {
            verdict.refused = true;
            verdict.lines.push(format!(
                "claimd: push to {} refused: {errors} problem(s) in claims/",
                u.name
            ));
        }
        verdict
            .lines
            .extend(diagnostics.iter().map(ToString::to_string));
    }
    if verdict.refused {
        verdict
            .lines
            .push("claimd: fix the claims above and push again (nothing was changed)".into());
    }
    Ok(verdict)
}

/// Whether post-receive has anything to ask for: an update of the rendered branch to a
/// commit that is not claimd's own (no loop on its own commits).
pub fn wants_render(repo: &Repo, update: &RefUpdate, opts: &Options) -> Result<bool, Error> {
    if update.name != format!("refs/heads/{}", branch_of(repo, opts)) {
        return Ok(false);
    }
    match update.new {
        None => Ok(false),
        Some(new) => Ok(!is_bot_commit(repo, new, &opts.bot)?),
    }
}

/// What pre-receive checks: every diagnostic of the claims at `commit` and of rendering
/// them (values the chart's schema refuses, requests above limits, …). A chart that
/// cannot be had is a warning: the push is accepted and the claim renders once the
/// chart can be had.
pub fn validate_cached(
    repo: &Repo,
    commit: ObjectId,
    opts: &Options,
    memo: &mut Memo,
) -> Result<Vec<Diagnostic>, Error> {
    let branch = branch_of(repo, opts);
    let planned = pipeline::at_commit(repo, commit, &request(opts, &branch), memo)?;
    Ok(planned.push_diagnostics())
}

/// The plan at `tip`: render its claims and compare with its generated files. Generated
/// files whose blob id equals the rendered content's are not read at all.
pub fn plan_at(
    repo: &Repo,
    tip: ObjectId,
    opts: &Options,
) -> Result<(Plan, Vec<Diagnostic>), Error> {
    let branch = branch_of(repo, opts);
    let planned = pipeline::at_commit(repo, tip, &request(opts, &branch), &mut Memo::default())?;
    Ok((planned.plan, planned.diagnostics))
}

/// Calls `f` with the claims at the tip of the branch (parsed again only where the
/// memo does not have them). None: the branch does not exist.
pub fn with_claims<T>(
    repo: &Repo,
    opts: &Options,
    memo: &mut Memo,
    f: impl FnOnce(&claims::Loaded) -> T,
) -> Result<Option<T>, Error> {
    let Some(tip) = repo.branch_tip(&branch_of(repo, opts))? else {
        return Ok(None);
    };
    let claims = pipeline::claims_at(repo, tip, memo)?;
    Ok(Some(f(&claims.loaded)))
}

/// Claim files for a one-line message: all of them up to three, else the first two
/// and how many more.
pub fn claim_list(claims: &[String]) -> String {
    if claims.len() <= 3 {
        claims.join(", ")
    } else {
        format!(
            "{} and {} more claim files",
            claims[..2].join(", "),
            claims.len() - 2
        )
    }
}

/// What post-receive tells the pusher about a bot commit (one line). `at_push_time`:
/// rendered while pre-receive checked the push.
pub fn committed_line(
    claims: &[String],
    commit: ObjectId,
    branch: &str,
    files: usize,
    at_push_time: bool,
) -> String {
    let rendered = if claims.is_empty() {
        "ApplicationSets".to_string()
    } else {
        claim_list(claims)
    };
    let when = if at_push_time {
        ", rendered while the push was checked"
    } else {
        ""
    };
    // One line, whatever a claim file's name holds.
    format!("claimd: rendered {rendered} → bot commit {commit} on {branch} ({files} files{when}); `git pull` to get it")
        .replace(['\n', '\r'], " ")
}

fn commit_message(plan: &Plan, claims: &[String], tip: ObjectId) -> String {
    let count = |k: ChangeKind| plan.changes.iter().filter(|c| c.kind == k).count();
    let subject = if claims.is_empty() {
        "claimd: render ApplicationSets and root apps".to_string()
    } else {
        format!("claimd: render {}", claim_list(claims))
    };
    let mut body = format!(
        "{subject}\n\n{} generated file(s): {} added, {} modified, {} removed.\n",
        plan.changes.len(),
        count(ChangeKind::Add),
        count(ChangeKind::Modify),
        count(ChangeKind::Delete)
    );
    if claims.len() > 3 {
        body.push('\n');
        for c in claims {
            body.push_str(&format!("- {c}\n"));
        }
    }
    body.push_str(&format!("\n{SOURCE_TRAILER}: {tip}\n"));
    body
}

/// Whether `commit` is one of claimd's own (its author is the bot and it carries the trailer).
pub fn is_bot_commit(repo: &Repo, commit: ObjectId, bot: &Identity) -> Result<bool, Error> {
    let (message, email) = repo.commit_info(commit)?;
    Ok(email == bot.email
        && message
            .lines()
            .any(|l| l.starts_with(&format!("{SOURCE_TRAILER}: "))))
}

#[cfg(test)]
mod tests {
    use super::claim_list;

    #[test]
    fn a_long_list_of_claim_files_is_summarised() {
        let files: Vec<String> = (0..100)
            .map(|i| format!("claims/apps-{i:03}.yaml"))
            .collect();
        assert_eq!(
            claim_list(&files),
            "claims/apps-000.yaml, claims/apps-001.yaml and 98 more claim files"
        );
        assert_eq!(claim_list(&files[..3]), files[..3].join(", "));
    }
}
