//! The pure function of the pipeline: (claim files, charts, settings, existing entries)
//! → (plan, diagnostics, failures, the claim files behind each changed file), with a
//! memo that makes a run after a small change cost only what changed.
//!
//! No I/O here: objects (claim files, generated files there now) are read through the
//! [`Objects`] port, charts come in resolved, and the memo is plain data. The memo is
//! keyed by claim file path and blob id. A claim file whose blob did not change keeps
//! its parsed claims; its applications and services keep their generated files (by
//! blob id) as long as the context they depend on is the same: the settings, the
//! charts (by digest), and the BootstrapClaims, Projects and Environments. Cross-file
//! checks, ApplicationSets, root apps and previews are always recomputed. With an
//! empty memo this is exactly a full render.

use crate::claims::{self, Diagnostic, ParsedFile, Severity, Spec};
use crate::pipeline::names::NameIndex;
use crate::render::{self, parse_owners, Charts, Failure, Plan, Rendered, Settings};
use crate::values::ChartRef;
use crate::yaml::{Limits, Pos};
use gix::ObjectId;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A claim file or generated file: (path, blob id).
pub type FileKey = (String, ObjectId);

/// Claim files whose applications are rendered together when the memo is `batched`.
const BATCH_FILES: usize = 10;

/// Reading an object failed.
pub type ReadError = Box<dyn std::error::Error + Send + Sync>;

/// The port through which the pipeline reads the objects of a snapshot.
pub trait Objects {
    /// The content of a blob of the snapshot.
    fn read(&self, id: ObjectId) -> Result<Vec<u8>, ReadError>;
    /// How the blob id of some content is computed (git's object hash); a plain
    /// function, so that it runs on all cores.
    fn blob_hasher(&self) -> fn(&[u8]) -> ObjectId;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading object {id}: {source}")]
    Read {
        id: ObjectId,
        #[source]
        source: ReadError,
    },
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error("writing generated files: {0}")]
    Sink(#[source] ReadError),
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Render(e) => e.kind(),
            Error::Sink(_) => "write",
        }
    }
}

/// What the pipeline looks at: the claim files and the generated files of one commit,
/// quarantine or work tree, by blob id. Objects are read only when needed.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Claim files (`*.yaml`, `*.yml`), sorted by path.
    pub claim_files: Vec<FileKey>,
    /// An id for the whole set of claim files (the `claims/` tree), when there is one.
    pub claims_tree: Option<ObjectId>,
    /// An id for the whole snapshot (a commit's tree), when there is one.
    pub tree: Option<ObjectId>,
    /// Every file under the output folders there now.
    pub entries: Arc<BTreeMap<String, ObjectId>>,
}

/// Which preview Environments may have their values committed.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Previews {
    /// All of them (no cluster: nothing builds images, so nothing is waited for).
    #[default]
    All,
    /// Only these: namespace → the commit whose image exists.
    Built(BTreeMap<String, String>),
}

/// The claims of one snapshot: its files (path, blob id), the combined claims and the
/// file-level problems.
pub struct Claims {
    pub files: Vec<FileKey>,
    pub loaded: claims::Loaded,
    pub diagnostics: Vec<Diagnostic>,
}

/// What the pipeline made of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    pub plan: Plan,
    /// Every diagnostic: the claim files', the render's, the previews held back.
    pub diagnostics: Vec<Diagnostic>,
    pub failures: Vec<Failure>,
    /// Changed path → the claim files that produced it (as render knew them).
    pub sources: BTreeMap<String, Vec<String>>,
    /// How many files the render produced (unchanged ones included).
    pub rendered: usize,
    /// How many new files went to the [`Inputs::sink`] as they were rendered (not in
    /// the plan).
    pub streamed: usize,
    /// Every claim file and how many applications and services it declares (none when
    /// it failed).
    pub workloads: Vec<(String, usize)>,
    /// The GitOps repository's URL the generated files name (the BootstrapClaims', else
    /// the settings'), for those who must be told of a commit (Argo CD).
    pub repo_url: Option<String>,
    /// A chart could not be had for a reason that may pass (a registry that did not
    /// answer): worth trying again later.
    pub retry: bool,
}

impl Planned {
    /// The claim files whose generated files change, sorted. A deleted file's claim is
    /// not in the render; its header names it.
    pub fn claim_files(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for c in &self.plan.changes {
            if let Some(sources) = self.sources.get(&c.path) {
                out.extend(sources.iter().cloned());
            } else if let Some(old) = c.old.as_deref().filter(|_| c.new.is_none()) {
                for owner in parse_owners(old).unwrap_or_default() {
                    if let Some((file, _)) = owner.split_once('#') {
                        out.insert(file.to_string());
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// The diagnostics as a push sees them: a chart that cannot be had is not the
    /// claim's fault and does not refuse the push, so its errors are warnings.
    pub fn push_diagnostics(&self) -> Vec<Diagnostic> {
        at_push(&self.diagnostics, &self.failures)
    }

    /// Whether a chart could not be had for some claim.
    pub fn chart_unavailable(&self) -> bool {
        self.failures.iter().any(|f| f.chart_unavailable)
    }
}

/// `diagnostics` as a push sees them (see [`Planned::push_diagnostics`]).
pub fn at_push(diagnostics: &[Diagnostic], failures: &[Failure]) -> Vec<Diagnostic> {
    let mut out = diagnostics.to_vec();
    for f in failures.iter().filter(|f| f.chart_unavailable) {
        if let Some(d) = out.iter_mut().find(|d| **d == f.diagnostic) {
            d.severity = Severity::Warning;
            d.message
                .push_str(" (the push is accepted; the claim renders once the chart can be had)");
        }
    }
    out
}

/// The claim set and the settings' hash.
type RefsKey = (ObjectId, [u8; 32]);

/// What a run learned, reused by the next. Everything in it is keyed by what it was
/// computed from, so any memo (an old one, another process's) gives the same result.
#[derive(Default)]
pub struct Memo {
    pub(crate) parsed: HashMap<FileKey, ParsedFile>,
    /// Files of `parsed` held only in outline ([`ParsedFile::outline`]: the stored memo
    /// keeps them so); they are parsed again before their applications are rendered.
    pub(crate) light: HashSet<FileKey>,
    pub(crate) outputs: Outputs,
    /// The combined claims of the last claim set seen (pre-receive validates the pushed
    /// commit, then the reconcile of the same commit finds them here).
    claims: Option<(ObjectId, Arc<Claims>)>,
    /// The chart references of the last claim set rendered, with the settings' hash.
    refs: Option<(RefsKey, Arc<BTreeSet<ChartRef>>)>,
    /// Chart references per claim file, with the hash of the context they were made in.
    pub(crate) file_refs: FileRefs,
    /// Render claim files in batches to bound memory (the daemon; a hook process renders
    /// in one go, which is faster).
    batched: bool,
    /// Something was learned since the memo was made (worth keeping).
    pub(crate) learned: bool,
    /// The last plan, by [`plan_key`] (see [`plan`]).
    last_plan: Option<([u8; 32], Planned)>,
    /// The names of applications and services across the claim files of the last claim
    /// set (a long-lived process, from its second claim set on: checked file by file; a
    /// hook checks them all at once).
    names: Option<NameIndex>,
    /// Used for one run only ([`Memo::once`]): what the render made is not recorded.
    once: bool,
}

/// The generated files of each claim file's applications, in one context.
#[derive(Default, Clone)]
pub(crate) struct Outputs {
    pub context: Option<[u8; 32]>,
    pub files: HashMap<FileKey, FileOutputs>,
}

/// Chart references per claim file, in one context.
#[derive(Default, Clone)]
pub(crate) struct FileRefs {
    pub context: [u8; 32],
    pub refs: HashMap<FileKey, BTreeSet<ChartRef>>,
}

/// The generated files of one claim file's applications and services: their paths and
/// blob ids (not their content: a file that differs is rendered again).
#[derive(Clone, Default)]
pub(crate) struct FileOutputs {
    pub files: Vec<(String, ObjectId)>,
    pub failures: Vec<Failure>,
    /// Each application's or service's folder with the hash of what it was rendered
    /// from ([`workload_hash`]), sorted by folder; those that failed are not here. When
    /// the claim file changes, its applications that did not are not rendered again.
    pub workloads: Vec<(String, [u8; 32])>,
}

impl Memo {
    /// Keeps claim files with applications in outline between runs (a long-lived process
    /// with many repositories, or one with a hundred thousand applications): what the
    /// checks across files, chart references and ApplicationSets need stays; a file's
    /// applications are parsed again from its blob only when they are rendered again.
    pub fn shrink(&mut self) {
        let mut shrunk = HashSet::new();
        for (key, file) in self.parsed.iter_mut() {
            if !self.light.contains(key) && file.has_workloads() {
                file.claims.iter_mut().for_each(claims::Claim::to_outline);
                self.light.insert(key.clone());
                shrunk.insert(key.0.clone());
            }
        }
        if shrunk.is_empty() {
            return;
        }
        if let Some((tree, read)) = self.claims.take() {
            let mut outline = read.loaded.claims.clone();
            outline
                .iter_mut()
                .filter(|c| shrunk.contains(&c.source))
                .for_each(claims::Claim::to_outline);
            let read = Claims {
                files: read.files.clone(),
                loaded: claims::Loaded {
                    claims: outline,
                    diagnostics: read.loaded.diagnostics.clone(),
                    failed_files: read.loaded.failed_files.clone(),
                },
                diagnostics: read.diagnostics.clone(),
            };
            self.claims = Some((tree, Arc::new(read)));
        }
    }

    /// The chart references of the claim files seen (in whichever context).
    pub fn chart_refs_seen(&self) -> BTreeSet<ChartRef> {
        self.file_refs.refs.values().flatten().cloned().collect()
    }

    /// Claim files parsed ahead of a run ([`parse`]), as if the run had parsed them: a
    /// file held only in outline is replaced by its complete form.
    pub fn adopt(&mut self, parsed: Vec<(FileKey, ParsedFile)>) {
        for (key, file) in parsed {
            let outline_only = self.light.remove(&key);
            if outline_only || !self.parsed.contains_key(&key) {
                self.parsed.insert(key, file);
                self.learned = true;
            }
        }
    }

    /// Renders in batches from now on (see [`Memo::batched`]): a memo loaded from the
    /// store for a long-lived process.
    pub fn batch(&mut self) {
        self.batched = true;
    }

    /// Nothing learned yet (a new memo, or one let go).
    pub fn is_empty(&self) -> bool {
        self.parsed.is_empty() && self.outputs.files.is_empty()
    }

    /// A memo for one run that no other run will see (`claimd render`, `validate`): the generated
    /// files are not recorded per claim file, nor hashed when nothing compares them (a
    /// new file that goes straight to the sink), nor the applications' inputs hashed.
    pub fn once() -> Memo {
        Memo {
            once: true,
            ..Memo::default()
        }
    }

    /// A memo for a long-lived process: the applications of many claim files are
    /// rendered in batches, keeping only what differs, so the peak memory stays low.
    pub fn batched() -> Memo {
        Memo {
            batched: true,
            ..Memo::default()
        }
    }

    /// The folders of each claim file's generated application and service files, as the
    /// last plan left them: sorted, at most `limit` per claim file, with how many there
    /// are in all. Read from the memo (what `GET /v1/status` and the status page link
    /// to), never rendered for it; a claim file the memo has nothing of is absent.
    pub fn generated_folders(&self, limit: usize) -> HashMap<String, (Vec<String>, usize)> {
        self.outputs
            .files
            .iter()
            .map(|((source, _), out)| {
                let folders: BTreeSet<&str> = out
                    .files
                    .iter()
                    .map(|(path, _)| path.rsplit_once('/').map_or(path.as_str(), |(d, _)| d))
                    .collect();
                let total = folders.len();
                let shown = folders
                    .into_iter()
                    .take(limit)
                    .map(str::to_string)
                    .collect();
                (source.clone(), (shown, total))
            })
            .collect()
    }
}

fn settings_hash(settings: &Settings) -> [u8; 32] {
    Sha256::digest(format!("{settings:?}").as_bytes()).into()
}

/// The claims of a snapshot, parsing only claim files whose blob is not in the memo.
pub fn load(snap: &Snapshot, objects: &dyn Objects, memo: &mut Memo) -> Result<Arc<Claims>, Error> {
    if let (Some((cached, claims)), Some(tree)) = (&memo.claims, snap.claims_tree) {
        if *cached == tree {
            return Ok(claims.clone());
        }
    }
    let mut unreadable = Vec::new();
    let mut to_parse = Vec::new();
    for key in &snap.claim_files {
        if !memo.parsed.contains_key(key) {
            let bytes = objects
                .read(key.1)
                .map_err(|source| Error::Read { id: key.1, source })?;
            match String::from_utf8(bytes) {
                Ok(text) => to_parse.push((key.clone(), text)),
                Err(_) => unreadable.push(key.0.clone()),
            }
        }
    }
    let fresh = parse(&to_parse);
    memo.learned |= !fresh.is_empty();
    // Many files read at once in a long-lived process (a start-up): kept in outline,
    // each batch of the render parses its files again (see [`plan`]).
    let outline = memo.batched && fresh.len() > BATCH_FILES;
    for (key, mut file) in fresh {
        if outline && file.has_workloads() {
            file.claims.iter_mut().for_each(claims::Claim::to_outline);
            memo.light.insert(key.clone());
        }
        memo.parsed.insert(key, file);
    }
    let live: HashSet<&FileKey> = snap.claim_files.iter().collect();
    let before = memo.parsed.len();
    memo.parsed.retain(|k, _| live.contains(k));
    memo.light.retain(|k| live.contains(k));
    memo.learned |= memo.parsed.len() != before;
    let parsed: Vec<ParsedFile> = snap
        .claim_files
        .iter()
        .filter_map(|k| memo.parsed.get(k).cloned())
        .collect();
    tracing::debug!(parsed = to_parse.len(), "claims parsed");
    let mut loaded = match &mut memo.names {
        Some(names) => {
            names.sync(
                snap.claim_files
                    .iter()
                    .filter_map(|k| memo.parsed.get_key_value(k)),
            );
            claims::combine_named(parsed, |_| names.diagnostics())
        }
        None => {
            // A long-lived process checks the first claim set it sees whole (a thousand
            // repositories starting at once build no index they may never use again)
            // and keeps the names file by file from the next one on.
            if memo.batched {
                memo.names = Some(NameIndex::default());
            }
            claims::combine(parsed)
        }
    };
    let mut diagnostics = Vec::new();
    for path in unreadable {
        diagnostics.push(Diagnostic {
            file: path.clone(),
            pos: Pos { line: 1, col: 1 },
            severity: Severity::Error,
            message: "not UTF-8 text; save the claim as UTF-8".into(),
        });
        loaded.failed_files.push(path);
    }
    let claims = Arc::new(Claims {
        files: snap.claim_files.clone(),
        loaded,
        diagnostics,
    });
    if let Some(tree) = snap.claims_tree {
        memo.claims = Some((tree, claims.clone()));
    }
    Ok(claims)
}

/// Parses claim files (on all cores).
pub fn parse(files: &[(FileKey, String)]) -> Vec<(FileKey, ParsedFile)> {
    crate::par::map(files, 16, |((path, id), text)| {
        let (claims, diagnostics) = claims::parse_file(path, text, &Limits::default());
        let file = ParsedFile {
            path: path.clone(),
            claims,
            diagnostics,
        };
        ((path.clone(), *id), file)
    })
}

/// `read` with the claims of these files complete, where the memo holds them only in
/// outline: parsed again from their blobs. None: nothing was in outline.
fn fill<'a>(
    read: &Claims,
    files: impl Iterator<Item = &'a FileKey>,
    objects: &dyn Objects,
    parsed: &mut HashMap<FileKey, ParsedFile>,
    light: &mut HashSet<FileKey>,
) -> Result<Option<Claims>, Error> {
    let mut texts = Vec::new();
    for key in files.filter(|k| light.contains(*k)) {
        let bytes = objects
            .read(key.1)
            .map_err(|source| Error::Read { id: key.1, source })?;
        // It parsed before (its outline is in the memo), so it is UTF-8.
        texts.push((key.clone(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    if texts.is_empty() {
        return Ok(None);
    }
    let full = crate::par::map(&texts, 4, |((path, _), text)| {
        claims::parse_file(path, text, &Limits::default())
    });
    let mut complete: HashMap<String, std::vec::IntoIter<claims::Claim>> = HashMap::new();
    for ((key, _), (claims, diagnostics)) in texts.into_iter().zip(full) {
        light.remove(&key);
        complete.insert(key.0.clone(), claims.clone().into_iter());
        let file = ParsedFile {
            path: key.0.clone(),
            claims,
            diagnostics,
        };
        parsed.insert(key, file);
    }
    // An outline has the claims of its file in the same order: swap them one by one.
    let claims = read
        .loaded
        .claims
        .iter()
        .map(
            |c| match complete.get_mut(&c.source).and_then(Iterator::next) {
                Some(full) => full,
                None => c.clone(),
            },
        )
        .collect();
    Ok(Some(Claims {
        files: read.files.clone(),
        loaded: claims::Loaded {
            claims,
            diagnostics: read.loaded.diagnostics.clone(),
            failed_files: read.loaded.failed_files.clone(),
        },
        diagnostics: read.diagnostics.clone(),
    }))
}

/// The charts the claims need, reusing the references of claim files seen before in
/// the same context (settings and BootstrapClaims, which give default repositories).
pub fn chart_refs(
    snap: &Snapshot,
    claims: &Claims,
    settings: &Settings,
    memo: &mut Memo,
) -> Arc<BTreeSet<ChartRef>> {
    let settings_hash = settings_hash(settings);
    if let (Some((key, refs)), Some(tree)) = (&memo.refs, snap.claims_tree) {
        if *key == (tree, settings_hash) {
            return refs.clone();
        }
    }
    let all = claims.loaded.claims.as_slice();
    let mut h = Sha256::new();
    h.update(settings_hash);
    let blob_of: HashMap<&str, ObjectId> = claims
        .files
        .iter()
        .map(|(p, id)| (p.as_str(), *id))
        .collect();
    for c in all.iter().filter(|c| matches!(c.spec, Spec::Bootstrap(_))) {
        hash_claim_file(&mut h, &c.source, blob_of.get(c.source.as_str()));
    }
    let context: [u8; 32] = h.finalize().into();
    if memo.file_refs.context != context {
        memo.file_refs = FileRefs {
            context,
            refs: HashMap::new(),
        };
    }
    let mut refs = BTreeSet::new();
    let mut fresh = HashMap::new();
    for key in &claims.files {
        let file = match memo.file_refs.refs.get(key) {
            Some(r) => r.clone(),
            None => {
                memo.learned = true;
                render::chart_refs_where(all, settings, |c| c.source == key.0)
            }
        };
        refs.extend(file.iter().cloned());
        fresh.insert(key.clone(), file);
    }
    memo.file_refs.refs = fresh;
    let refs = Arc::new(refs);
    if let Some(tree) = snap.claims_tree {
        memo.refs = Some(((tree, settings_hash), refs.clone()));
    }
    refs
}

fn hash_claim_file(h: &mut Sha256, path: &str, blob: Option<&ObjectId>) {
    h.update(path.as_bytes());
    h.update([0]);
    if let Some(id) = blob {
        h.update(id.as_bytes());
    }
    h.update([0]);
}

/// What the plan depends on besides the snapshot, the claims and the charts.
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub previews: &'a Previews,
    /// The branch the files are committed to, if any (see [`branch_mismatches`]).
    pub branch: Option<&'a str>,
    /// Where new files go as each batch of claim files is rendered, instead of into the
    /// plan: a full render of a hundred thousand applications then never holds all its
    /// files at once. Only files of applications and services that are not there yet;
    /// changed and deleted files, and the rest, are in the plan as always.
    pub sink: Option<&'a Sink<'a>>,
}

/// See [`Inputs::sink`]: (path, content) of new generated files, written by the caller.
pub type Sink<'a> = dyn Fn(Vec<(String, String)>) -> Result<(), ReadError> + Sync + 'a;

/// The plan of a snapshot: render its claims (only what the memo does not have) and
/// compare with its generated files. Generated files whose blob id equals the rendered
/// content's are not read at all.
///
/// The last plan is kept when it is small: the same snapshot planned again with the same
/// inputs (the daemon validates a pushed commit at pre-receive, then reconciles the very
/// same commit at post-receive) gets it back without rendering.
pub fn plan(
    snap: &Snapshot,
    objects: &dyn Objects,
    read: &Claims,
    charts: &Charts,
    inputs: &Inputs<'_>,
    memo: &mut Memo,
) -> Result<Planned, Error> {
    let key = plan_key(snap, charts, inputs);
    if let (Some(key), Some((last, planned))) = (key, &memo.last_plan) {
        if key == *last {
            tracing::debug!("the same snapshot and inputs as the last plan");
            return Ok(planned.clone());
        }
    }
    let planned = plan_afresh(snap, objects, read, charts, inputs, memo)?;
    let size: usize = planned
        .plan
        .changes
        .iter()
        .map(|c| c.old.as_ref().map_or(0, String::len) + c.new.as_ref().map_or(0, String::len))
        .sum();
    memo.last_plan = key
        .filter(|_| size <= LAST_PLAN_BYTES)
        .map(|key| (key, planned.clone()));
    Ok(planned)
}

/// A plan with more content than this is not kept for the next call (a first render of
/// thousands of applications would double the daemon's memory for nothing).
const LAST_PLAN_BYTES: usize = 4 << 20;

/// Everything a plan depends on, when the snapshot is a tree (which holds the claim files
/// and the generated files): the tree, the settings, the charts, the previews, the branch.
fn plan_key(snap: &Snapshot, charts: &Charts, inputs: &Inputs<'_>) -> Option<[u8; 32]> {
    let tree = snap.tree?;
    let mut h = Sha256::new();
    h.update(tree.as_bytes());
    h.update(settings_hash(inputs.settings));
    h.update(format!("{:?}\0{:?}\0", inputs.previews, inputs.branch).as_bytes());
    hash_charts(&mut h, charts);
    Some(h.finalize().into())
}

fn hash_charts(h: &mut Sha256, charts: &Charts) {
    for (r, chart) in charts {
        h.update(format!("{r}\0").as_bytes());
        match chart {
            Ok(c) => h.update(format!("ok {}\0", c.digest).as_bytes()),
            Err(e) => h.update(format!("err {e}\0").as_bytes()),
        }
    }
}

fn plan_afresh(
    snap: &Snapshot,
    objects: &dyn Objects,
    read: &Claims,
    charts: &Charts,
    inputs: &Inputs<'_>,
    memo: &mut Memo,
) -> Result<Planned, Error> {
    let claim_entries = &read.files;
    let remember = !memo.once;
    let mut diagnostics = read.diagnostics.clone();
    if let Some(branch) = inputs.branch {
        diagnostics.extend(branch_mismatches(&read.loaded.claims, branch));
    }
    let live: HashSet<&FileKey> = claim_entries.iter().collect();

    // The context every application depends on; when it changes, nothing is reused.
    let blob_of: HashMap<&str, ObjectId> = claim_entries
        .iter()
        .map(|(p, id)| (p.as_str(), *id))
        .collect();
    let mut h = Sha256::new();
    h.update(settings_hash(inputs.settings));
    for c in &read.loaded.claims {
        if matches!(
            c.spec,
            Spec::Bootstrap(_) | Spec::Project(_) | Spec::Environment(_)
        ) {
            hash_claim_file(&mut h, &c.source, blob_of.get(c.source.as_str()));
        }
    }
    hash_charts(&mut h, charts);
    let context: [u8; 32] = h.finalize().into();
    if memo.outputs.context != Some(context) {
        memo.outputs.files.clear();
        memo.outputs.context = Some(context);
    }
    let entries = &snap.entries;
    // Paths there now that the render accounts for (unchanged or reused).
    let mut accounted: HashSet<&str> = HashSet::new();

    // A claim file's applications are reused when its blob, the context and every one of
    // its generated files are as they were (a hand-edited file makes it render again).
    let failed: HashSet<&str> = read
        .loaded
        .failed_files
        .iter()
        .map(String::as_str)
        .collect();
    let reusable: HashSet<String> = claim_entries
        .iter()
        .filter(|k| !failed.contains(k.0.as_str()))
        .filter(|k| {
            memo.outputs
                .files
                .get(*k)
                .is_some_and(|out| all_there(&out.files, entries))
        })
        .map(|k| k.0.clone())
        .collect();
    // Every reused file is there (checked above): they account for this many entries.
    let reused_files: usize = reusable
        .iter()
        .filter_map(|source| {
            memo.outputs
                .files
                .get(&(source.clone(), blob_of[source.as_str()]))
        })
        .map(|out| out.files.len())
        .sum();
    tracing::debug!(reused = reusable.len(), "memo checked");
    diagnostics.extend(read.loaded.diagnostics.iter().cloned());
    // The applications of the claim files not reused are rendered in batches of claim
    // files, and only what differs from the snapshot is kept: a start-up render of
    // 10,000 applications does not hold all their files at once. ApplicationSets, root
    // apps and previews come from the last batch. Into an empty output tree everything
    // is new and kept anyway: one batch.
    // With a sink, new files leave batch by batch (never with previews held back: which
    // of their files may go is known only at the end).
    let sink = inputs
        .sink
        .filter(|_| matches!(inputs.previews, Previews::All));
    let batch_files = if sink.is_some() || (memo.batched && !entries.is_empty()) {
        BATCH_FILES
    } else {
        usize::MAX
    };
    let to_render: Vec<&str> = claim_entries
        .iter()
        .map(|k| k.0.as_str())
        .filter(|p| !reusable.contains(*p))
        .collect();
    let mut batches: Vec<HashSet<&str>> = to_render
        .chunks(batch_files)
        .map(|c| c.iter().copied().collect())
        .collect();
    if batches.is_empty() {
        batches.push(HashSet::new());
    }
    let last = batches.len() - 1;
    // The claim files rendered again need their claims complete: all at once, or with
    // several batches (the daemon), each batch's files just before it renders and back
    // to their outline after, so a start-up render of a hundred thousand applications
    // never holds them all complete.
    let per_batch = batches.len() > 1;
    let Memo {
        parsed: memo_parsed,
        light: memo_light,
        outputs: memo_outputs,
        ..
    } = &mut *memo;
    let filled = if per_batch {
        None
    } else {
        let to_fill = claim_entries
            .iter()
            .filter(|k| !reusable.contains(&k.0) && !failed.contains(k.0.as_str()));
        fill(read, to_fill, objects, memo_parsed, memo_light)?
    };
    let loaded = &filled.as_ref().unwrap_or(read).loaded;
    // The last outputs of the claim files rendered again: their applications that did
    // not change are taken from there.
    let previous: HashMap<&str, &FileOutputs> = memo_outputs
        .files
        .iter()
        .filter(|((path, _), out)| {
            !out.workloads.is_empty() && batches.iter().any(|b| b.contains(path.as_str()))
        })
        .map(|((path, _), out)| (path.as_str(), out))
        .collect();
    let mut new_outputs: HashMap<String, FileOutputs> = HashMap::new();
    let mut differing = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let mut overlap = false;
    // Files there that the render changes (the plan needs their old content).
    let mut modified: Vec<(&str, ObjectId)> = Vec::new();
    let mut all_failures = Vec::new();
    let mut rendered = reused_files;
    let mut streamed = 0;
    for (i, batch) in batches.iter().enumerate() {
        let in_batch = claim_entries
            .iter()
            .filter(|k| batch.contains(k.0.as_str()) && !failed.contains(k.0.as_str()));
        let batch_filled = if per_batch {
            fill(read, in_batch.clone(), objects, memo_parsed, memo_light)?
        } else {
            None
        };
        let claims_now = &batch_filled.as_ref().map_or(loaded, |f| &f.loaded).claims;
        // This batch's applications: what each is rendered from, and those whose last
        // render (same folder, same hash, its files there as they were) stands.
        let placed: Vec<(
            &claims::Claim,
            &claims::WorkloadClaim,
            &str,
            &claims::Workload,
        )> = claims_now
            .iter()
            .filter(|c| batch.contains(c.source.as_str()))
            .filter_map(|c| c.workloads().map(|(wc, folder)| (c, wc, folder)))
            .flat_map(|(c, wc, folder)| wc.workloads.iter().map(move |w| (c, wc, folder, w)))
            .collect();
        let hashed = if remember {
            crate::par::map(&placed, 32, |(c, wc, folder, w)| {
                let dir = render::workload_dir(
                    &wc.cluster_type.value,
                    &wc.environment.value,
                    folder,
                    &w.name.value,
                );
                (dir, workload_hash(c, wc, folder, w))
            })
        } else {
            Vec::new() // nothing to reuse, nothing recorded
        };
        let mut kept_dirs: HashSet<String> = HashSet::new();
        for ((c, ..), (dir, hash)) in placed.iter().zip(&hashed) {
            let Some(prev) = previous.get(c.source.as_str()) else {
                continue;
            };
            let same = prev
                .workloads
                .binary_search_by(|(d, _)| d.as_str().cmp(dir))
                .is_ok_and(|i| prev.workloads[i].1 == *hash);
            if !same {
                continue;
            }
            let prefix = format!("{dir}/");
            // The files are sorted by path: those under the folder are one run.
            let start = prev
                .files
                .partition_point(|(path, _)| path.as_str() < prefix.as_str());
            let files: Vec<&(String, ObjectId)> = prev.files[start..]
                .iter()
                .take_while(|(path, _)| path.starts_with(&prefix))
                .collect();
            if files.is_empty() || files.iter().any(|(path, id)| entries.get(path) != Some(id)) {
                continue;
            }
            let out = new_outputs.entry(c.source.clone()).or_default();
            for (path, id) in files {
                out.files.push((path.clone(), *id));
                if let Some((there, _)) = entries.get_key_value(path) {
                    accounted.insert(there.as_str());
                }
                rendered += 1;
            }
            kept_dirs.insert(dir.clone());
        }
        let Rendered {
            files,
            failures,
            sources: mut file_sources,
        } = render::render_reusing(
            claims_now,
            charts,
            inputs.settings,
            &render::Reuse {
                claim: &|c| is_workload_claim(c) && !batch.contains(c.source.as_str()),
                workload: &|c, w| {
                    !kept_dirs.is_empty()
                        && is_workload_claim(c)
                        && c.workloads().is_some_and(|(wc, folder)| {
                            kept_dirs.contains(&render::workload_dir(
                                &wc.cluster_type.value,
                                &wc.environment.value,
                                folder,
                                &w.name.value,
                            ))
                        })
                },
            },
        )?;
        let failed_dirs: HashSet<&str> =
            failures.iter().filter_map(|f| f.keep.as_deref()).collect();
        for ((c, ..), (dir, hash)) in placed.iter().zip(&hashed) {
            if !failed_dirs.contains(dir.as_str()) {
                new_outputs
                    .entry(c.source.clone())
                    .or_default()
                    .workloads
                    .push((dir.clone(), *hash));
            }
        }
        if batch_filled.is_some() {
            drop(batch_filled);
            for key in in_batch {
                if let Some(file) = memo_parsed.get_mut(key) {
                    if file.has_workloads() {
                        file.claims.iter_mut().for_each(claims::Claim::to_outline);
                        memo_light.insert(key.clone());
                    }
                }
            }
        }
        // This batch's applications; the files of no claim file's applications once.
        let fresh: Vec<(String, String, Option<Vec<String>>)> = files
            .into_iter()
            .filter_map(|(path, content)| {
                let from = file_sources.remove(&path);
                let keep = match workload_source(&path, from.as_deref()) {
                    Some(src) => batch.contains(src) || reusable.contains(src),
                    None => i == last,
                };
                keep.then_some((path, content, from))
            })
            .collect();
        // A file's blob id: to record it, or to compare it with the file there.
        let hasher = objects.blob_hasher();
        let ids = crate::par::map(&fresh, 256, |(path, content, _)| {
            (remember || entries.contains_key(path)).then(|| hasher(content.as_bytes()))
        });
        rendered += fresh.len();
        // A folder a failure of this batch keeps is left to the plan.
        let kept: Vec<String> = failures
            .iter()
            .filter_map(|f| f.keep.as_ref().map(|d| format!("{d}/")))
            .collect();
        let mut to_sink = Vec::new();
        for ((path, content, from), id) in fresh.into_iter().zip(ids) {
            if let Some(source) = workload_source(&path, from.as_deref()) {
                overlap |= reusable.contains(source);
                if let Some(id) = id.filter(|_| remember) {
                    new_outputs
                        .entry(source.to_string())
                        .or_default()
                        .files
                        .push((path.clone(), id));
                }
                if sink.is_some()
                    && !entries.contains_key(&path)
                    && !kept.iter().any(|d| path.starts_with(d.as_str()))
                {
                    to_sink.push((path, content));
                    continue;
                }
            }
            if let Some((there, there_id)) = entries.get_key_value(&path) {
                if Some(*there_id) == id {
                    accounted.insert(there.as_str());
                    continue;
                }
                modified.push((there.as_str(), *there_id));
            }
            if let Some(from) = from {
                sources.insert(path.clone(), from);
            }
            differing.insert(path, content);
        }
        if let (Some(sink), false) = (sink, to_sink.is_empty()) {
            streamed += to_sink.len();
            sink(to_sink).map_err(Error::Sink)?;
        }
        for f in failures {
            if is_workload_failure(&f) {
                if !batch.contains(f.diagnostic.file.as_str()) {
                    continue;
                }
                if remember {
                    new_outputs
                        .entry(f.diagnostic.file.clone())
                        .or_default()
                        .failures
                        .push(f.clone());
                }
            } else if i != last {
                continue;
            }
            all_failures.push(f);
        }
    }
    tracing::debug!(batches = batches.len(), "rendered");
    // Files there that the render does not account for are deleted or kept by the plan.
    // When the counts add up, there are none, and the scan below is skipped.
    let none_left = !overlap && entries.len() == accounted.len() + modified.len() + reused_files;
    // Reused files are unchanged by construction.
    for source in &reusable {
        let key = (source.clone(), blob_of[source.as_str()]);
        if let Some(out) = memo_outputs.files.get(&key) {
            if !none_left {
                for (path, _) in &out.files {
                    if let Some((there, _)) = entries.get_key_value(path) {
                        accounted.insert(there.as_str());
                    }
                }
            }
            all_failures.extend(out.failures.iter().cloned());
        }
    }
    let mut learned = !new_outputs.is_empty();
    for (source, mut outputs) in new_outputs {
        // A folder twice (two applications of one name) is never reused.
        outputs.workloads.sort();
        let twice: HashSet<String> = outputs
            .workloads
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .map(|w| w[0].0.clone())
            .collect();
        outputs.workloads.retain(|(dir, _)| !twice.contains(dir));
        outputs.files.sort();
        if let Some(id) = blob_of.get(source.as_str()) {
            memo_outputs.files.insert((source, *id), outputs);
        }
    }
    let before = memo_outputs.files.len();
    memo_outputs.files.retain(|k, _| live.contains(k));
    learned |= memo_outputs.files.len() != before;
    memo.learned |= learned;
    hold_previews(
        &loaded.claims,
        inputs.previews,
        &mut differing,
        &mut all_failures,
    );
    diagnostics.extend(all_failures.iter().map(|f| f.diagnostic.clone()));

    let left: Vec<(&str, ObjectId)> = if none_left {
        modified
    } else {
        entries
            .iter()
            .filter(|(p, _)| !accounted.contains(p.as_str()))
            .map(|(p, id)| (p.as_str(), *id))
            .collect()
    };
    let mut existing = BTreeMap::new();
    for (path, id) in left {
        let bytes = objects
            .read(id)
            .map_err(|source| Error::Read { id, source })?;
        // A non-UTF-8 file there is not ours: leave it alone.
        if let Ok(text) = String::from_utf8(bytes) {
            existing.insert(path.to_string(), text);
        }
    }
    let failures = all_failures.clone();
    let differing = Rendered {
        files: differing,
        failures: all_failures,
        sources: BTreeMap::new(),
    };
    let plan = render::plan(&existing, differing, &loaded.failed_files);
    let changed: HashSet<&str> = plan.changes.iter().map(|c| c.path.as_str()).collect();
    sources.retain(|path, _| changed.contains(path.as_str()));
    tracing::debug!(changes = plan.changes.len(), "planned");
    let mut per_file: HashMap<&str, usize> = HashMap::new();
    for c in &loaded.claims {
        if let Some((w, _)) = c.workloads() {
            *per_file.entry(c.source.as_str()).or_default() += w.workloads.len();
        }
    }
    let workloads = claim_entries
        .iter()
        .map(|(p, _)| (p.clone(), per_file.get(p.as_str()).copied().unwrap_or(0)))
        .collect();
    let repo_url = loaded
        .claims
        .iter()
        .filter_map(|c| match &c.spec {
            Spec::Bootstrap(b) => Some((b.cluster_type.value.as_str(), b)),
            _ => None,
        })
        .min_by_key(|(cluster_type, _)| *cluster_type)
        .map(|(_, b)| b.gitops_repo_url())
        .or_else(|| inputs.settings.repo_url.clone());
    Ok(Planned {
        plan,
        diagnostics,
        failures,
        sources,
        rendered,
        streamed,
        workloads,
        repo_url,
        retry: charts.values().any(|c| {
            c.as_ref()
                .is_err_and(render::ChartUnavailable::is_transient)
        }),
    })
}

/// A BootstrapClaim whose `gitOps.branch` is not the branch claimd renders: Argo CD
/// would follow a branch that never gets the generated files.
pub fn branch_mismatches(claims: &[claims::Claim], branch: &str) -> Vec<Diagnostic> {
    claims
        .iter()
        .filter_map(|c| match &c.spec {
            Spec::Bootstrap(b) if b.branch != branch => Some(Diagnostic {
                file: c.source.clone(),
                pos: c.name.pos,
                severity: Severity::Warning,
                message: format!(
                    "BootstrapClaim `{}` names branch `{}`, but claimd renders `{branch}` (the repository's HEAD or CLAIMD_BRANCH); Argo CD would not see the generated files",
                    c.name.value, b.branch
                ),
            }),
            _ => None,
        })
        .collect()
}

/// Previews whose image is not known to exist keep their files as they are: the
/// values commit with `image.tag = <commitSha>` waits for the build.
fn hold_previews(
    claims: &[claims::Claim],
    gate: &Previews,
    differing: &mut BTreeMap<String, String>,
    failures: &mut Vec<Failure>,
) {
    let Previews::Built(ready) = gate else {
        return;
    };
    for c in claims {
        let Spec::Environment(e) = &c.spec else {
            continue;
        };
        let (Ok(t), Some(sha)) = (render::preview_target(c, e, claims), &e.commit_sha) else {
            continue;
        };
        if ready.get(&t.namespace) == Some(&sha.value) {
            continue;
        }
        let dir = format!(
            "environments/{}/{}",
            render::CATALYST_CLUSTER_TYPE,
            t.namespace
        );
        let prefix = format!("{dir}/");
        differing.retain(|path, _| !path.starts_with(&prefix));
        failures.push(Failure {
            diagnostic: Diagnostic {
                file: c.source.clone(),
                pos: c.name.pos,
                severity: Severity::Warning,
                message: format!(
                    "Environment `{}` waits for the image of commit {}: its values are committed once the image exists",
                    c.name.value, sha.value
                ),
            },
            keep: Some(dir),
            chart_unavailable: false,
        });
    }
}

/// Whether every one of `files` (sorted by path) is among `entries` with its blob id.
/// Walked side by side: a claim file's generated files are mostly next to each other
/// in the tree, so each is found in a step or two instead of a lookup from the root.
fn all_there(files: &[(String, ObjectId)], entries: &BTreeMap<String, ObjectId>) -> bool {
    use std::ops::Bound;
    let Some((first, _)) = files.first() else {
        return true;
    };
    let mut walk = entries.range::<str, _>((Bound::Included(first.as_str()), Bound::Unbounded));
    for (path, id) in files {
        // A step or two along, else a lookup.
        let mut found = None;
        for _ in 0..2 {
            match walk.next() {
                Some((there, there_id)) if there == path => {
                    found = Some(there_id);
                    break;
                }
                Some((there, _)) if there.as_str() < path.as_str() => continue,
                _ => break,
            }
        }
        let there_id = match found {
            Some(id) => id,
            None => {
                walk = entries.range::<str, _>((Bound::Included(path.as_str()), Bound::Unbounded));
                match walk.next() {
                    Some((there, there_id)) if there == path => there_id,
                    _ => return false,
                }
            }
        };
        if there_id != id {
            return false;
        }
    }
    true
}

/// What an application's or service's generated files are made of besides the context
/// (settings, charts, BootstrapClaims, Projects, Environments): its claim (file, name,
/// labels, placement) and itself, positions included (they are in its errors).
fn workload_hash(
    claim: &claims::Claim,
    wc: &claims::WorkloadClaim,
    folder: &str,
    w: &claims::Workload,
) -> [u8; 32] {
    let parts = (
        &claim.source,
        &claim.pos,
        &claim.name,
        &claim.namespace,
        &claim.labels,
        &wc.environment,
        &wc.cluster_type,
        &wc.namespace,
        folder,
        w,
    );
    let mut h = Sha256::new();
    // Written into the hash as it is serialized (plain data: it cannot fail).
    let _ = serde_json::to_writer(&mut h, &parts);
    h.finalize().into()
}

/// The claim file an application's or service's generated file comes from (not previews,
/// which depend on two claims and are always rendered).
fn workload_source<'a>(path: &str, sources: Option<&'a [String]>) -> Option<&'a str> {
    if !path.starts_with("environments/")
        || path.starts_with(&format!("environments/{}/", render::CATALYST_CLUSTER_TYPE))
    {
        return None;
    }
    sources?.first().map(String::as_str)
}

/// A claim of applications or platform services (whose files may be reused).
fn is_workload_claim(c: &claims::Claim) -> bool {
    matches!(c.spec, Spec::Application(_) | Spec::Platform(_))
}

fn is_workload_failure(f: &Failure) -> bool {
    f.keep.as_deref().is_some_and(|k| {
        k.starts_with("environments/")
            && !k.starts_with(&format!("environments/{}/", render::CATALYST_CLUSTER_TYPE))
    })
}
