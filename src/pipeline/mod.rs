//! One pipeline from "claims at a snapshot" to "plan of generated files". Every caller
//! goes through it: the hooks, `claimd render`/`plan`/`validate`/`reconcile`, the
//! daemon, its Kubernetes step (which needs only the claims).
//!
//! - [`snapshot`] reads: the claim files and generated files of a commit, a quarantine
//!   or a work tree, by blob id;
//! - [`core`] is the pure function (claim files, charts, settings, existing entries) →
//!   [`Planned`], with its [`core::Memo`];
//! - [`store`] keeps the memo between processes (the hooks) in the repository's
//!   `claimd/` folder;
//! - [`run`] puts them together with the chart adapter in between.

pub mod core;
mod names;
pub mod snapshot;
pub mod store;
#[cfg(test)]
mod tests;

pub use self::core::{at_push, Claims, Objects, Planned, Previews, Snapshot};

use crate::charts;
use crate::git::{self, Repo};
use crate::render::Settings;
use gix::ObjectId;
use std::sync::Arc;

/// Everything a run remembers: the pure function's memo and the reads'.
#[derive(Default)]
pub struct Memo {
    pub core: core::Memo,
    pub reads: snapshot::Reads,
    /// A bot commit written ahead for a pushed commit (see
    /// [`crate::reconcile::write_ahead`]): (the pushed commit, what it commits, the bot
    /// commit).
    pub(crate) ahead: Option<(ObjectId, [u8; 32], ObjectId)>,
}

impl Memo {
    /// For a long-lived process (see [`core::Memo::batched`]).
    pub fn batched() -> Memo {
        Memo {
            core: core::Memo::batched(),
            ..Memo::default()
        }
    }
}

/// What a run needs besides the snapshot.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub settings: &'a Settings,
    pub charts: &'a charts::Source,
    pub previews: &'a Previews,
    /// The branch the generated files are committed to (a BootstrapClaim naming another
    /// gets a warning); None: not committing.
    pub branch: Option<&'a str>,
    /// Where new application and service files go as they are rendered (see
    /// [`core::Inputs::sink`]); None: everything is in the plan.
    pub sink: Option<&'a core::Sink<'a>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(transparent)]
    Core(#[from] core::Error),
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Git(_) => "git",
            Error::Core(e) => e.kind(),
        }
    }
}

/// The pipeline on a snapshot: load the claims (memo), resolve their charts (the chart
/// adapter), plan (memo).
pub fn run(
    snap: &Snapshot,
    objects: &dyn Objects,
    req: &Request<'_>,
    memo: &mut core::Memo,
) -> Result<Planned, core::Error> {
    let t = std::time::Instant::now();
    let claims = core::load(snap, objects, memo)?;
    tracing::debug!(elapsed = ?t.elapsed(), "claims loaded");
    let refs = core::chart_refs(snap, &claims, req.settings, memo);
    let charts = req.charts.resolve(refs.iter());
    tracing::debug!(elapsed = ?t.elapsed(), charts = charts.len(), "charts resolved");
    let inputs = core::Inputs {
        settings: req.settings,
        previews: req.previews,
        branch: req.branch,
        sink: req.sink,
    };
    let planned = core::plan(snap, objects, &claims, &charts, &inputs, memo)?;
    tracing::debug!(elapsed = ?t.elapsed(), changes = planned.plan.changes.len(), "planned");
    Ok(planned)
}

/// The memo a new process (a hook) starts from: the one stored in `repo`, read and
/// loaded on this thread while another parses what the run will need first — the claim
/// files that differ between `old` and `new` (the push), then the charts the stored
/// memo was made with (a local source's; see [`store::Stored::chart_refs`]) — and gives
/// them to it. Anything that cannot be read ahead is left to the run.
pub fn load_stored(
    repo: &Repo,
    charts: &charts::Source,
    old: Option<ObjectId>,
    new: ObjectId,
) -> Memo {
    let t = std::time::Instant::now();
    let changed = old
        .and_then(|old| snapshot::changed_claim_files(repo, old, new).ok())
        .unwrap_or_default();
    let texts: Vec<(core::FileKey, String)> = changed
        .into_iter()
        .filter_map(|key| {
            let text = String::from_utf8(repo.read_blob(key.1).ok()?).ok()?;
            Some((key, text))
        })
        .collect();
    // The second thread starts on the claim files while this one reads the stored memo
    // and hands it the charts named at its head.
    let (refs_to_warm, refs) = std::sync::mpsc::channel();
    let (mut memo, parsed) = std::thread::scope(|s| {
        let ahead = s.spawn(move || {
            let parsed = core::parse(&texts);
            charts.warm(|| refs.recv().unwrap_or_default());
            parsed
        });
        let stored = store::read(repo.path());
        // An error only says the other thread does not want them (a source not local).
        let _ = refs_to_warm.send(
            stored
                .as_ref()
                .map(store::Stored::chart_refs)
                .unwrap_or_default(),
        );
        let memo = stored
            .as_ref()
            .map_or_else(Memo::default, store::Stored::decode);
        (memo, ahead.join().unwrap_or_default())
    });
    tracing::debug!(elapsed = ?t.elapsed(), parsed = parsed.len(), "memo loaded, charts and changed claim files read ahead");
    memo.core.adopt(parsed);
    memo
}

/// The pipeline on a commit of `repo`.
pub fn at_commit(
    repo: &Repo,
    commit: ObjectId,
    req: &Request<'_>,
    memo: &mut Memo,
) -> Result<Planned, Error> {
    let t = std::time::Instant::now();
    let snap = snapshot::at_commit(repo, commit, &mut memo.reads)?;
    tracing::debug!(elapsed = ?t.elapsed(), entries = snap.entries.len(), "snapshot read");
    Ok(run(&snap, repo, req, &mut memo.core)?)
}

/// The claims at a commit of `repo` (parsed again only where the memo does not have
/// them): what the Kubernetes step and Gitea's BootstrapClaims need. Applications and
/// services may be in outline (names, namespaces, charts; see
/// [`crate::claims::ParsedFile::outline`]): nothing is parsed again for their fields.
pub fn claims_at(repo: &Repo, commit: ObjectId, memo: &mut Memo) -> Result<Arc<Claims>, Error> {
    let snap = snapshot::at_commit(repo, commit, &mut memo.reads)?;
    Ok(core::load(&snap, repo, &mut memo.core)?)
}
