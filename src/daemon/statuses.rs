//! Commit statuses in Gitea for one repository: `pending` when a webhook queued a push,
//! then each claim file's result once the reconcile is done (see [`crate::gitea::status`]).
//! Posted off the worker's path; a status already posted for a commit is not posted again.

use crate::claims::Diagnostic;
use crate::gitea::api::{Client, Status};
use crate::gitea::status;
use crate::reconcile::{ClaimResult, Outcome, Report};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(super) struct Statuses {
    client: Arc<Client>,
    owner: String,
    repo: String,
    /// The daemon's pages as Gitea's users reach them (`gitea.pageUrl`).
    page: Option<String>,
    /// The commit and statuses posted last.
    posted: Mutex<Option<(String, Vec<Status>)>>,
    /// The commit and statuses of the last reconcile (what the claims' page shows).
    reported: Mutex<Option<(String, Vec<Status>)>>,
    /// Posts are numbered as they are asked for and sent one batch at a time; a batch
    /// older than the last one sent is dropped (a `pending` overtaken by the result).
    asked: AtomicU64,
    sent: tokio::sync::Mutex<u64>,
}

impl Statuses {
    /// For the repository Gitea calls `full_name`, when there is a Gitea client.
    pub(super) fn new(
        client: Option<&Arc<Client>>,
        full_name: Option<&str>,
        page: Option<&str>,
    ) -> Option<Arc<Statuses>> {
        let (owner, repo) = full_name?.split_once('/')?;
        Some(Arc::new(Statuses {
            client: client?.clone(),
            owner: owner.to_string(),
            repo: repo.to_string(),
            page: page.map(|p| p.trim_end_matches('/').to_string()),
            posted: Mutex::new(None),
            reported: Mutex::new(None),
            asked: AtomicU64::new(0),
            sent: tokio::sync::Mutex::new(0),
        }))
    }

    /// Each claim file's status on the commit the reconcile rendered (the pushed one,
    /// below a bot commit).
    pub(super) fn report(self: &Arc<Self>, report: &Report) {
        let sha = match report.outcome {
            Outcome::Committed { parent, .. } => parent,
            Outcome::UpToDate { tip } => tip,
            Outcome::NoBranch => return,
        };
        let statuses = status::of_claims(
            &report.claims,
            &report.diagnostics,
            self.claims_page().as_deref(),
        );
        *self.reported.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((sha.to_string(), statuses.clone()));
        self.post(sha.to_string(), statuses);
    }

    /// The last reconcile's commit and the status of the claim file `path` in it.
    pub(super) fn claim(&self, path: &str) -> Option<(String, Status)> {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let (sha, statuses) = reported.as_ref()?;
        let context = format!("claimd/{path}");
        let status = statuses.iter().find(|s| s.context == context)?;
        Some((sha.clone(), status.clone()))
    }

    /// `pending` for the claim files a push changed, while it waits.
    pub(super) fn pending(self: &Arc<Self>, sha: &str, files: &[String]) {
        if files.is_empty() {
            return;
        }
        self.post(
            sha.to_string(),
            status::pending(files, self.claims_page().as_deref()),
        );
    }

    /// A branch preview's statuses on its commit, linking to its diff.
    pub(super) fn preview(
        self: &Arc<Self>,
        sha: &str,
        claims: &[ClaimResult],
        diagnostics: &[Diagnostic],
    ) {
        let diff = self.page.as_ref().map(|p| format!("{p}/previews/{sha}"));
        self.post(
            sha.to_string(),
            status::of_preview(claims, diagnostics, diff.as_deref()),
        );
    }

    /// `<pageUrl>/claims/<owner>/<name>`: a claim file's page is below it.
    fn claims_page(&self) -> Option<String> {
        self.page
            .as_ref()
            .map(|p| format!("{p}/claims/{}/{}", self.owner, self.repo))
    }

    fn post(self: &Arc<Self>, sha: String, statuses: Vec<Status>) {
        {
            let posted = self.posted.lock().unwrap_or_else(|p| p.into_inner());
            if posted.as_ref() == Some(&(sha.clone(), statuses.clone())) {
                return;
            }
        }
        let this = self.clone();
        let number = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(async move {
            let mut sent = this.sent.lock().await;
            if *sent > number {
                return;
            }
            *sent = number;
            for s in &statuses {
                if let Err(e) = this
                    .client
                    .post_status(&this.owner, &this.repo, &sha, s)
                    .await
                {
                    tracing::warn!(repository = %format!("{}/{}", this.owner, this.repo), %sha, error = %e, kind = e.kind(), "commit statuses not posted");
                    return;
                }
            }
            *this.posted.lock().unwrap_or_else(|p| p.into_inner()) = Some((sha, statuses));
        });
    }
}
