//! A bot commit prepared at push time. Without a daemon, pre-receive renders the pushed
//! commit anyway (to refuse values the charts would refuse); it also writes the bot
//! commit on top of it (blobs, trees, the commit) and leaves what it wrote in
//! `$GIT_DIR/claimd/prepared/<commit>.json`, and the commit's id for `claimd-hook` in
//! `<commit>.commit` ([`handoff::Prepared`]). post-receive then only moves the branch:
//! the render is not done twice. Anything else (another tip, a missing file) falls back
//! to a full reconcile.

use super::{commit_message, request, Error, Options, Outcome, Report};
use crate::claims::Diagnostic;
use crate::git::{Cas, Repo, Staged};
use crate::{handoff, pipeline};
use gix::ObjectId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prepared {
    /// The pushed commit the bot commit goes on top of.
    pub tip: String,
    /// The branch it was pushed to.
    #[serde(default)]
    pub branch: String,
    pub message: String,
    pub claims: Vec<String>,
    /// (path, blob id) of written files; no blob id: the file is deleted.
    pub files: Vec<(String, Option<String>)>,
    /// The tree of the bot commit, written too (None: build it from `files`).
    #[serde(default)]
    pub tree: Option<String>,
    /// The bot commit itself, written too when the branch is moved in this repository
    /// (no `push_url`): post-receive only moves the branch (see
    /// [`handoff::Prepared`], which `claimd-hook` reads).
    #[serde(default)]
    pub commit: Option<String>,
}

/// What pre-receive does: every diagnostic of the claims at `commit` and of rendering
/// them (see [`super::validate_cached`]), and, when nothing is wrong and something
/// changes, the prepared bot commit (its blobs are written). With the memo the last
/// hook left in the repository (`memo`, loaded by the caller, which keeps it for the
/// next process): only what the push changed is rendered.
pub fn validate_and_prepare(
    repo: &Repo,
    commit: ObjectId,
    opts: &Options,
    memo: &mut pipeline::Memo,
) -> Result<(Vec<Diagnostic>, Option<Prepared>), Error> {
    let branch = super::branch_of(repo, opts);
    let planned = pipeline::at_commit(repo, commit, &request(opts, &branch), memo)?;
    let diagnostics = planned.push_diagnostics();
    if diagnostics.iter().any(Diagnostic::is_error)
        || planned.plan.is_empty()
        || planned.chart_unavailable()
    {
        return Ok((diagnostics, None));
    }
    let plan = &planned.plan;
    // The bot commit's tree too: the memo then knows its generated files, and the next
    // push (on top of the bot commit) does not walk them all again.
    let (staged, tree) = repo.write_changes(commit, &plan.changes)?;
    pipeline::snapshot::committed(&mut memo.reads, repo, commit, tree, &plan.changes)?;
    let claims = planned.claim_files();
    let message = commit_message(plan, &claims, commit);
    // Its parent, the pushed commit, is known now: post-receive need not start claimd to
    // write it. A bot commit published with `git push` is left to the full hook.
    let bot = match opts.push_url {
        None => Some(
            repo.commit_tree(commit, tree, &message, &opts.bot)?
                .to_string(),
        ),
        Some(_) => None,
    };
    let prepared = Prepared {
        tip: commit.to_string(),
        branch,
        message,
        claims,
        files: staged
            .into_iter()
            .map(|s| (s.path, s.blob.map(|b| b.to_string())))
            .collect(),
        tree: Some(tree.to_string()),
        commit: bot,
    };
    Ok((diagnostics, Some(prepared)))
}

fn dir(repo: &Repo) -> PathBuf {
    repo.path().join("claimd/prepared")
}

/// Leaves `prepared` for post-receive (and, when its bot commit is written, the
/// [`handoff::Prepared`] `claimd-hook` reads), and clears out stale ones.
pub fn save(repo: &Repo, prepared: &Prepared) -> std::io::Result<()> {
    let dir = dir(repo);
    std::fs::create_dir_all(&dir)?;
    // Those of pushes that were refused or never finished.
    crate::git::remove_stale(&dir, "");
    let json = serde_json::to_vec(prepared).map_err(std::io::Error::other)?;
    put(&dir, &format!("{}.json", prepared.tip), &json)?;
    let Some(commit) = prepared.commit.as_deref() else {
        return Ok(());
    };
    let Ok(id) = ObjectId::from_hex(commit.as_bytes()) else {
        return Ok(());
    };
    let branch = &prepared.branch;
    let publish = handoff::Prepared {
        refname: format!("refs/heads/{branch}"),
        commit: commit.to_string(),
        say: super::committed_line(&prepared.claims, id, branch, prepared.files.len(), true),
    };
    let name = handoff::Prepared::file_name(&prepared.tip);
    put(&dir, &name, publish.to_text().as_bytes())
}

/// Writes `dir/name` whole or not at all (a file beside, renamed over it).
fn put(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, dir.join(name))
}

/// The prepared bot commit for `tip`, if pre-receive left one (it is removed, with the
/// file `claimd-hook` would have read).
pub fn take(repo: &Repo, tip: ObjectId) -> Option<Prepared> {
    let path = dir(repo).join(format!("{tip}.json"));
    let bytes = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(handoff::Prepared::path(repo.path(), &tip.to_string()));
    serde_json::from_slice::<Prepared>(&bytes)
        .ok()
        .filter(|p| ObjectId::from_hex(p.tip.as_bytes()).ok() == Some(tip))
}

/// Commits `prepared` if the branch is still at its commit. None: it is not (another push
/// came first) or the prepared files do not fit; reconcile as usual then.
pub fn commit(repo: &Repo, opts: &Options, prepared: &Prepared) -> Result<Option<Report>, Error> {
    let branch = super::branch_of(repo, opts);
    let Ok(tip) = ObjectId::from_hex(prepared.tip.as_bytes()) else {
        return Ok(None);
    };
    if repo.branch_tip(&branch)? != Some(tip) {
        return Ok(None);
    }
    let mut staged = Vec::with_capacity(prepared.files.len());
    for (path, blob) in &prepared.files {
        let blob = match blob {
            Some(hex) => match ObjectId::from_hex(hex.as_bytes()) {
                Ok(id) => Some(id),
                Err(_) => return Ok(None),
            },
            None => None,
        };
        staged.push(Staged {
            path: path.clone(),
            blob,
        });
    }
    let tree = prepared
        .tree
        .as_deref()
        .and_then(|t| ObjectId::from_hex(t.as_bytes()).ok())
        // Written by pre-receive into the quarantine, so here once the push was accepted.
        .filter(|t| repo.top_level_of_tree(*t).is_ok());
    // Written by pre-receive too, unless it is to be pushed (then it is written here).
    let written = prepared
        .commit
        .as_deref()
        .filter(|_| opts.push_url.is_none())
        .and_then(|c| ObjectId::from_hex(c.as_bytes()).ok())
        .filter(|c| repo.tree_of(*c).is_ok());
    let made = match (written, tree) {
        (Some(commit), _) => Ok(commit),
        (None, Some(tree)) => repo.commit_tree(tip, tree, &prepared.message, &opts.bot),
        (None, None) => repo.commit_staged(tip, &staged, &prepared.message, &opts.bot),
    };
    let Ok(commit) = made else {
        return Ok(None);
    };
    let published = match &opts.push_url {
        None => repo.update_branch(&branch, tip, commit, "claimd: render")?,
        Some(url) => crate::git::push::push_cas(
            repo.path(),
            url,
            opts.push_auth.as_ref(),
            &branch,
            tip,
            commit,
        )?,
    };
    Ok(match published {
        Cas::Updated => Some(Report {
            branch,
            outcome: Outcome::Committed {
                commit,
                parent: tip,
                files: staged.len(),
                claims: prepared.claims.clone(),
            },
            diagnostics: Vec::new(),
            kept: 0,
            retry: false,
            claims: Vec::new(),
            repo_url: None,
            changed: Vec::new(),
            rejected: 0,
        }),
        Cas::Moved => None,
    })
}
