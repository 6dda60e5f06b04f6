//! What the daemon remembers of each repository's last work, for `GET /v1/status`,
//! `claimd status` and the status page: the last push, the last bot commit, the last
//! reconcile's result and each claim file's state with its first error.
//!
//! Taken from the reconcile's [`Report`] (the claim results commit statuses are made of)
//! and the memo (the generated folders): nothing is read or rendered again for it.
//! Bounded: one entry per claim file of the last reconcile, replaced as a whole; no
//! history.

use crate::git::{Identity, Repo, SOURCE_TRAILER};
use crate::pipeline::Memo;
use crate::reconcile::{self, is_bot_commit, ClaimState, Options, Outcome, Report};
use gix::ObjectId;
use serde::{Deserialize, Serialize};

/// Generated folders kept per claim file (the rest are counted).
pub const FOLDERS: usize = 20;

/// An error kept per claim file is cut to this many characters.
const ERROR_CHARS: usize = 1000;

/// A repository's last work, as `GET /v1/status` shows it (flattened into
/// [`super::RepositoryStatus`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The repository's page on Gitea (`<gitea.url>/<owner>/<name>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitea: Option<String>,
    /// The last commit pushed to the rendered branch that a reconcile saw.
    #[serde(default)]
    pub last_push: Option<Push>,
    /// claimd's last bot commit on the branch that a reconcile made or found.
    #[serde(default)]
    pub last_bot_commit: Option<BotCommit>,
    /// The last reconcile's result.
    #[serde(default)]
    pub last_reconcile: Option<Reconcile>,
    /// Each claim file of the last successful reconcile.
    #[serde(default)]
    pub claims: Vec<ClaimStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    pub commit: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// When claimd first saw it (RFC 3339).
    pub seen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BotCommit {
    pub commit: String,
    /// When claimd made it, or first found it (RFC 3339).
    pub seen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reconcile {
    /// When it finished (RFC 3339).
    pub at: String,
    pub ok: bool,
    /// Its one-line result.
    pub result: String,
    /// The branch tip it left: the commit whose generated files the claims have.
    #[serde(default)]
    pub tip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    /// The claim file's path in the repository.
    pub file: String,
    pub state: ClaimState,
    /// Its first error, `file:line:col: message`.
    #[serde(default)]
    pub error: Option<String>,
    /// Applications and services it declares.
    #[serde(default)]
    pub applications: usize,
    /// Folders of its generated files (at most [`FOLDERS`]).
    #[serde(default)]
    pub generated: Vec<String>,
    /// How many folders there are in all.
    #[serde(default)]
    pub generated_total: usize,
}

/// What a reconcile saw, gathered beside it (the repository and the memo at hand).
pub(super) struct Observed {
    branch: String,
    /// The pushed commit the reconcile rendered.
    pushed: Option<ObjectId>,
    /// The bot commit it made, or found at the tip.
    bot: Option<ObjectId>,
    tip: Option<ObjectId>,
    claims: Vec<ClaimStatus>,
}

/// After a reconcile, with its repository and memo: its claim files' states and folders,
/// and which commit was pushed and which is claimd's.
/// The claim files' generated folders are left empty: [`fill_folders`] adds them when
/// the record is read, off the push's path (a walk over every generated path).
pub(super) fn observe(repo: &Repo, report: &Report, bot: &Identity) -> Observed {
    let (pushed, made, tip) = match report.outcome {
        Outcome::NoBranch => (None, None, None),
        Outcome::Committed { commit, parent, .. } => (Some(parent), Some(commit), Some(commit)),
        // A tip that is a bot commit (found at start-up): the commit it rendered is named
        // in its trailer.
        Outcome::UpToDate { tip } => match is_bot_commit(repo, tip, bot) {
            Ok(true) => (rendered_by(repo, tip), Some(tip), Some(tip)),
            _ => (Some(tip), None, Some(tip)),
        },
    };
    let claims = report
        .claims
        .iter()
        .map(|c| {
            let (state, first) = c.state(&report.diagnostics);
            ClaimStatus {
                file: c.file.clone(),
                state,
                error: first.map(|d| cut(&d.to_string())),
                applications: c.workloads,
                generated: Vec::new(),
                generated_total: 0,
            }
        })
        .collect();
    Observed {
        branch: report.branch.clone(),
        pushed,
        bot: made,
        tip,
        claims,
    }
}

/// Without a daemon (`claimd status --repo`): each claim file's state at the tip of the
/// branch, through the one pipeline (with the memo the hooks left; nothing is written).
/// The times are left empty: nothing was seen happen.
pub fn at_branch_tip(repo: &Repo, options: &Options) -> Result<Record, reconcile::Error> {
    let branch = reconcile::branch_of(repo, options);
    let Some(tip) = repo.branch_tip(&branch)? else {
        return Ok(Record::default());
    };
    let mut memo = crate::pipeline::store::load(repo.path());
    let planned =
        crate::pipeline::at_commit(repo, tip, &reconcile::request(options, &branch), &mut memo)?;
    let pending = planned.plan.changes.len();
    let report = Report {
        branch,
        outcome: Outcome::UpToDate { tip },
        claims: reconcile::claim_results(&planned),
        diagnostics: planned.diagnostics,
        kept: planned.plan.kept.len(),
        retry: planned.retry,
        repo_url: None,
        changed: Vec::new(),
        rejected: 0,
    };
    let seen = observe(repo, &report, &options.bot);
    let mut record = Record::default();
    record.reconciled(
        seen,
        &match pending {
            0 => "generated files are up to date".to_string(),
            n => format!(
                "{n} generated file(s) differ from a render (not committed: status only reads)"
            ),
        },
    );
    for at in [
        record.last_push.as_mut().map(|p| &mut p.seen),
        record.last_bot_commit.as_mut().map(|b| &mut b.seen),
        record.last_reconcile.as_mut().map(|r| &mut r.at),
    ]
    .into_iter()
    .flatten()
    {
        at.clear();
    }
    fill_folders(&mut record, &memo);
    Ok(record)
}

/// Each claim file's generated folders (at most [`FOLDERS`]), from the memo of the last
/// render: done when a record is read (`GET /v1/status`, the page), not per push.
pub fn fill_folders(record: &mut Record, memo: &Memo) {
    if record.claims.is_empty() {
        return;
    }
    let mut folders = memo.core.generated_folders(FOLDERS);
    for c in &mut record.claims {
        let (generated, total) = folders.remove(&c.file).unwrap_or_default();
        c.generated = generated;
        c.generated_total = total;
    }
}

/// The commit a bot commit rendered (its `Claimd-Source` trailer).
fn rendered_by(repo: &Repo, bot_commit: ObjectId) -> Option<ObjectId> {
    let (message, _) = repo.commit_info(bot_commit).ok()?;
    let prefix = format!("{SOURCE_TRAILER}: ");
    message
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|hex| ObjectId::from_hex(hex.trim().as_bytes()).ok())
}

impl Record {
    /// A successful reconcile: `summary` is its one-line result.
    pub(super) fn reconciled(&mut self, seen: Observed, summary: &str) {
        let now = now();
        if let Some(pushed) = seen.pushed.map(|c| c.to_string()) {
            if self.last_push.as_ref().map(|p| &p.commit) != Some(&pushed) {
                self.last_push = Some(Push {
                    commit: pushed,
                    reference: format!("refs/heads/{}", seen.branch),
                    seen: now.clone(),
                });
            }
        }
        if let Some(bot) = seen.bot.map(|c| c.to_string()) {
            if self.last_bot_commit.as_ref().map(|b| &b.commit) != Some(&bot) {
                self.last_bot_commit = Some(BotCommit {
                    commit: bot,
                    seen: now.clone(),
                });
            }
        }
        self.last_reconcile = Some(Reconcile {
            at: now,
            ok: true,
            result: summary.to_string(),
            tip: seen.tip.map(|t| t.to_string()),
        });
        // The folders come from the memo when the record is read; until then (a render
        // or a save holding the memo), each claim file keeps those last seen.
        let mut before: std::collections::HashMap<String, (Vec<String>, usize)> = self
            .claims
            .drain(..)
            .map(|c| (c.file, (c.generated, c.generated_total)))
            .collect();
        self.claims = seen.claims;
        for c in &mut self.claims {
            if let Some((generated, total)) = before.remove(&c.file) {
                if c.generated.is_empty() {
                    (c.generated, c.generated_total) = (generated, total);
                }
            }
        }
    }

    /// A reconcile that failed as a whole: the claim files stay as the last one left them.
    pub(super) fn failed(&mut self, summary: &str) {
        let tip = self.last_reconcile.as_ref().and_then(|r| r.tip.clone());
        self.last_reconcile = Some(Reconcile {
            at: now(),
            ok: false,
            result: cut(summary),
            tip,
        });
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::argocd::rfc3339(secs)
}

fn cut(text: &str) -> String {
    if text.chars().count() <= ERROR_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(ERROR_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(pushed: u8, bot: Option<u8>) -> Observed {
        let id = |b: u8| ObjectId::from_bytes_or_panic(&[b; 20]);
        Observed {
            branch: "main".into(),
            pushed: Some(id(pushed)),
            bot: bot.map(id),
            tip: Some(id(bot.unwrap_or(pushed))),
            claims: vec![ClaimStatus {
                file: "claims/a.yaml".into(),
                state: ClaimState::Ok,
                error: None,
                applications: 1,
                generated: vec![],
                generated_total: 0,
            }],
        }
    }

    #[test]
    fn a_record_keeps_the_last_work_only() {
        let mut r = Record::default();
        r.reconciled(observed(1, Some(2)), "bot commit");
        let push = r.last_push.clone().expect("a push");
        assert_eq!(push.reference, "refs/heads/main");
        assert_eq!(push.commit, "01".repeat(20));
        assert_eq!(
            r.last_bot_commit.as_ref().expect("bot").commit,
            "02".repeat(20)
        );
        // The same push seen again keeps its first time; a failure keeps the claims.
        r.reconciled(observed(1, None), "up to date");
        assert_eq!(r.last_push.as_ref(), Some(&push));
        assert_eq!(
            r.last_bot_commit.as_ref().expect("bot").commit,
            "02".repeat(20)
        );
        r.failed(&"x".repeat(5000));
        let last = r.last_reconcile.as_ref().expect("reconcile");
        assert!(!last.ok);
        assert_eq!(last.result.chars().count(), ERROR_CHARS);
        assert_eq!(last.tip.as_deref(), Some("01".repeat(20).as_str()));
        assert_eq!(r.claims.len(), 1);
        for _ in 0..100 {
            r.reconciled(observed(3, None), "up to date");
        }
        assert_eq!(r.claims.len(), 1, "no history grows");
        assert_eq!(r.last_push.as_ref().expect("push").commit, "03".repeat(20));
    }

    #[test]
    fn a_claim_file_keeps_its_last_folders_until_they_are_read_again() {
        let mut r = Record::default();
        r.reconciled(observed(1, Some(2)), "bot commit");
        r.claims[0].generated = vec!["environments/x/dev/applications/a".into()];
        r.claims[0].generated_total = 1;
        // The next reconcile has not read the memo yet: the folders stay.
        let mut next = observed(3, Some(4));
        next.claims.push(ClaimStatus {
            file: "claims/b.yaml".into(),
            ..next.claims[0].clone()
        });
        r.reconciled(next, "bot commit");
        assert_eq!(r.claims[0].generated_total, 1);
        assert_eq!(r.claims[0].generated.len(), 1);
        assert!(
            r.claims[1].generated.is_empty(),
            "a new claim file has none yet"
        );
        // A claim file gone takes its folders with it.
        let mut gone = observed(5, None);
        gone.claims[0].file = "claims/b.yaml".into();
        r.reconciled(gone, "up to date");
        assert_eq!(r.claims.len(), 1);
        assert!(r.claims[0].generated.is_empty());
    }
}
