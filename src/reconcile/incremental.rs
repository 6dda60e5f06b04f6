//! Incremental rendering: only what changed since the last run is parsed and merged.
//!
//! The cache is keyed by claim file path and blob id. A claim file whose blob did not
//! change keeps its parsed claims; its applications and services keep their rendered
//! files (with their blob ids) as long as the context they depend on is the same: the
//! settings, the charts (by digest), and the BootstrapClaims, Projects and Environments.
//! Cross-file checks, ApplicationSets, root apps and previews are always recomputed.
//! With an empty cache this is exactly a full render.

use super::{branch_mismatches, branch_of, Error, Options, Previews};
use crate::claims::{self, Diagnostic, ParsedFile, Severity, Spec};
use crate::git::{self, Repo};
use crate::render::{self, parse_owners, Failure, Plan, Rendered, OUTPUT_ROOTS};
use crate::values::ChartRef;
use crate::yaml::{Limits, Pos};
use gix::ObjectId;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

type FileKey = (String, ObjectId);

/// Claim files whose applications are rendered together (see `plan_with_failures`).
const BATCH_FILES: usize = 10;

/// The tree ids of the output folders, and the blob ids of every file below them.
type OutputEntries = (Vec<Option<ObjectId>>, Arc<BTreeMap<String, ObjectId>>);

/// The `claims/` tree id and the settings' hash.
type RefsKey = (ObjectId, u64);

/// What a previous run learned, reused by the next.
#[derive(Default)]
pub struct Cache {
    parsed: HashMap<FileKey, ParsedFile>,
    outputs: HashMap<FileKey, FileOutputs>,
    context: Option<u64>,
    entries: Option<OutputEntries>,
    /// The combined claims of the last `claims/` tree seen (pre-receive validates the
    /// pushed commit, then the reconcile of the same commit finds them here).
    claims: Option<(ObjectId, Arc<Claims>)>,
    /// The chart references of the last `claims/` tree rendered, with the settings' hash.
    refs: Option<(RefsKey, Arc<BTreeSet<ChartRef>>)>,
    /// Chart references per claim file, with the hash of the context they were made in.
    file_refs: (u64, HashMap<FileKey, BTreeSet<ChartRef>>),
    /// Render claim files in batches to bound memory (the daemon; a hook process renders
    /// in one go, which is faster).
    batched: bool,
    /// The last plan had a failure worth retrying (a chart registry did not answer).
    pub retry: bool,
}

/// The claims of one `claims/` tree: its files (path, blob id), the combined claims
/// and the file-level problems.
struct Claims {
    files: Vec<FileKey>,
    loaded: claims::Loaded,
    diagnostics: Vec<Diagnostic>,
}

impl Cache {
    /// A cache for a long-lived process: the applications of many claim files are
    /// rendered in batches, keeping only what differs, so the peak memory stays low.
    pub fn batched() -> Cache {
        Cache {
            batched: true,
            ..Cache::default()
        }
    }

    /// Tells the cache that `commit` was made from `parent` with `changes`, so the next
    /// run does not read every generated file's entry again.
    pub fn committed(
        &mut self,
        repo: &Repo,
        parent: ObjectId,
        commit: ObjectId,
        changes: &[render::Change],
    ) -> Result<(), Error> {
        let Some((ids, entries)) = &mut self.entries else {
            return Ok(());
        };
        if *ids != output_root_ids(repo, parent)? {
            self.entries = None;
            return Ok(());
        }
        for change in changes {
            match &change.new {
                Some(content) => {
                    let id = git::blob_id(repo.object_hash(), content.as_bytes())?;
                    Arc::make_mut(entries).insert(change.path.clone(), id);
                }
                None => {
                    Arc::make_mut(entries).remove(&change.path);
                }
            }
        }
        *ids = output_root_ids(repo, commit)?;
        Ok(())
    }
}

/// The tree ids of the output folders at `commit`.
fn output_root_ids(repo: &Repo, commit: ObjectId) -> Result<Vec<Option<ObjectId>>, Error> {
    let top = repo.top_level(commit)?;
    Ok(OUTPUT_ROOTS
        .iter()
        .map(|r| top.get(r.trim_end_matches('/')).copied())
        .collect())
}

/// The generated files of one claim file's applications and services: their paths and
/// blob ids (not their content: a file that differs is rendered again).
#[derive(Clone, Default)]
struct FileOutputs {
    files: Vec<(String, ObjectId)>,
    failures: Vec<Failure>,
}

/// [`super::plan_at`] with a cache.
pub fn plan_cached(
    repo: &Repo,
    tip: ObjectId,
    opts: &Options,
    cache: &mut Cache,
) -> Result<(Plan, Vec<Diagnostic>), Error> {
    plan_with_failures(repo, tip, opts, cache).map(|(plan, diagnostics, _)| (plan, diagnostics))
}

/// [`plan_cached`], and the render's failures.
pub(super) fn plan_with_failures(
    repo: &Repo,
    tip: ObjectId,
    opts: &Options,
    cache: &mut Cache,
) -> Result<(Plan, Vec<Diagnostic>, Vec<Failure>), Error> {
    let t = std::time::Instant::now();
    let hash = repo.object_hash();

    let (tree, read) = load_claims(repo, tip, cache)?;
    let (claim_entries, loaded) = (&read.files, &read.loaded);
    let mut diagnostics = read.diagnostics.clone();
    let live: HashSet<&FileKey> = claim_entries.iter().collect();
    diagnostics.extend(branch_mismatches(&loaded.claims, &branch_of(repo, opts)));
    let settings_hash = {
        let mut h = DefaultHasher::new();
        format!("{:?}", opts.settings).hash(&mut h);
        h.finish()
    };
    let refs = match (&cache.refs, tree) {
        (Some((key, refs)), Some(tree)) if *key == (tree, settings_hash) => refs.clone(),
        _ => {
            let refs = Arc::new(chart_refs_by_file(cache, &read, opts, settings_hash));
            if let Some(tree) = tree {
                cache.refs = Some(((tree, settings_hash), refs.clone()));
            }
            refs
        }
    };
    let (charts, retry) = opts.charts.resolve_retrying(refs.iter());
    cache.retry = retry;
    tracing::debug!(elapsed = ?t.elapsed(), "claims loaded, charts resolved");

    // The context every application depends on; when it changes, nothing is reused.
    let blob_of: HashMap<&str, ObjectId> = claim_entries
        .iter()
        .map(|(p, id)| (p.as_str(), *id))
        .collect();
    let mut h = DefaultHasher::new();
    settings_hash.hash(&mut h);
    for c in &loaded.claims {
        if matches!(
            c.spec,
            Spec::Bootstrap(_) | Spec::Project(_) | Spec::Environment(_)
        ) {
            (c.source.as_str(), blob_of.get(c.source.as_str())).hash(&mut h);
        }
    }
    for (r, chart) in &charts {
        r.hash(&mut h);
        match chart {
            Ok(c) => c.digest.hash(&mut h),
            Err(e) => e.hash(&mut h),
        }
    }
    let context = h.finish();
    if cache.context != Some(context) {
        cache.outputs.clear();
        cache.context = Some(context);
    }
    // The blob ids of the files there now (from the cache while the trees are the same).
    let root_ids = output_root_ids(repo, tip)?;
    let entries: Arc<BTreeMap<String, ObjectId>> = match &cache.entries {
        Some((ids, entries)) if *ids == root_ids => entries.clone(),
        _ => {
            let e = repo.read_entries(tip, &OUTPUT_ROOTS.map(|r| r.trim_end_matches('/')))?;
            let e = Arc::new(e);
            cache.entries = Some((root_ids, e.clone()));
            e
        }
    };
    // Paths there now that the render accounts for (unchanged or reused).
    let mut accounted: HashSet<&str> = HashSet::new();

    // A claim file's applications are reused when its blob, the context and every one of
    // its generated files are as they were (a hand-edited file makes it render again).
    let failed: HashSet<&str> = loaded.failed_files.iter().map(String::as_str).collect();
    let reusable: HashSet<String> = claim_entries
        .iter()
        .filter(|k| !failed.contains(k.0.as_str()))
        .filter(|k| {
            cache.outputs.get(*k).is_some_and(|out| {
                out.files
                    .iter()
                    .all(|(path, id)| entries.get(path) == Some(id))
            })
        })
        .map(|k| k.0.clone())
        .collect();
    // Every reused file is there (checked above): they account for this many entries.
    let reused_files: usize = reusable
        .iter()
        .filter_map(|source| {
            cache
                .outputs
                .get(&(source.clone(), blob_of[source.as_str()]))
        })
        .map(|out| out.files.len())
        .sum();
    tracing::debug!(elapsed = ?t.elapsed(), reused = reusable.len(), "entries read");
    diagnostics.extend(loaded.diagnostics.iter().cloned());
    // The applications of the claim files not reused are rendered in batches of claim
    // files, and only what differs from the repository is kept: a start-up render of
    // 10,000 applications does not hold all their files at once. ApplicationSets, root
    // apps and previews come from the last batch.
    // Into an empty output tree everything is new and kept anyway: one batch. Batches
    // are for a long-lived process (the daemon), where the peak stays.
    let batch_files = if !cache.batched || entries.is_empty() {
        usize::MAX
    } else {
        BATCH_FILES
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
    let mut new_outputs: HashMap<String, FileOutputs> = HashMap::new();
    let mut differing = BTreeMap::new();
    let mut overlap = false;
    // Files there that the render changes (the plan needs their old content).
    let mut modified: Vec<(&str, ObjectId)> = Vec::new();
    let mut all_failures = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let rendered = render::render_reusing(&loaded.claims, &charts, &opts.settings, &|c| {
            matches!(c.spec, Spec::Application(_) | Spec::Platform(_))
                && !batch.contains(c.source.as_str())
        })
        .map_err(Error::Render)?;
        let Rendered { files, failures } = rendered;
        // This batch's applications; the files of no claim file's applications once.
        let fresh: Vec<(String, String, Option<String>)> = files
            .into_iter()
            .filter_map(|(path, content)| {
                let source = workload_source(&path, &content);
                let keep = match &source {
                    Some(src) => batch.contains(src.as_str()) || reusable.contains(src),
                    None => i == last,
                };
                keep.then_some((path, content, source))
            })
            .collect();
        let ids = crate::par::map(&fresh, 256, |(_, content, _)| {
            git::blob_id(hash, content.as_bytes())
        });
        for ((path, content, source), id) in fresh.into_iter().zip(ids) {
            let id = id?;
            overlap |= source.as_ref().is_some_and(|s| reusable.contains(s));
            if let Some(source) = source {
                new_outputs
                    .entry(source)
                    .or_default()
                    .files
                    .push((path.clone(), id));
            }
            if let Some((there, there_id)) = entries.get_key_value(&path) {
                if *there_id == id {
                    accounted.insert(there.as_str());
                    continue;
                }
                modified.push((there.as_str(), *there_id));
            }
            differing.insert(path, content);
        }
        for f in failures {
            if is_workload_failure(&f) {
                if !batch.contains(f.diagnostic.file.as_str()) {
                    continue;
                }
                new_outputs
                    .entry(f.diagnostic.file.clone())
                    .or_default()
                    .failures
                    .push(f.clone());
            } else if i != last {
                continue;
            }
            all_failures.push(f);
        }
    }
    tracing::debug!(elapsed = ?t.elapsed(), batches = batches.len(), "rendered");
    // Files there that the render does not account for are deleted or kept by the plan.
    // When the counts add up, there are none, and the scan below is skipped.
    let none_left = !overlap && entries.len() == accounted.len() + modified.len() + reused_files;
    // Reused files are unchanged by construction.
    for source in &reusable {
        let key = (source.clone(), blob_of[source.as_str()]);
        if let Some(out) = cache.outputs.get(&key) {
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
    for (source, outputs) in new_outputs {
        if let Some(id) = blob_of.get(source.as_str()) {
            cache.outputs.insert((source, *id), outputs);
        }
    }
    cache.outputs.retain(|k, _| live.contains(k));
    hold_previews(
        &loaded.claims,
        &opts.previews,
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
        // A non-UTF-8 file there is not ours: leave it alone.
        if let Ok(text) = String::from_utf8(repo.read_blob(id)?) {
            existing.insert(path.to_string(), text);
        }
    }
    let failures = all_failures.clone();
    let rendered = Rendered {
        files: differing,
        failures: all_failures,
    };
    let plan = render::plan(&existing, rendered, &loaded.failed_files);
    tracing::debug!(elapsed = ?t.elapsed(), changes = plan.changes.len(), "planned");
    Ok((plan, diagnostics, failures))
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

/// The chart references of all claims, reusing those of claim files seen before in the
/// same context (settings and BootstrapClaims, which give default repositories).
fn chart_refs_by_file(
    cache: &mut Cache,
    read: &Claims,
    opts: &Options,
    settings_hash: u64,
) -> BTreeSet<ChartRef> {
    let claims = &read.loaded.claims;
    let mut h = DefaultHasher::new();
    settings_hash.hash(&mut h);
    let blob_of: HashMap<&str, ObjectId> =
        read.files.iter().map(|(p, id)| (p.as_str(), *id)).collect();
    for c in claims
        .iter()
        .filter(|c| matches!(c.spec, Spec::Bootstrap(_)))
    {
        (c.source.as_str(), blob_of.get(c.source.as_str())).hash(&mut h);
    }
    let context = h.finish();
    if cache.file_refs.0 != context {
        cache.file_refs = (context, HashMap::new());
    }
    let mut all = BTreeSet::new();
    let mut fresh = HashMap::new();
    for key in &read.files {
        let refs = match cache.file_refs.1.get(key) {
            Some(refs) => refs.clone(),
            None => render::chart_refs_where(claims, &opts.settings, |c| c.source == key.0),
        };
        all.extend(refs.iter().cloned());
        fresh.insert(key.clone(), refs);
    }
    cache.file_refs.1 = fresh;
    all
}

/// The claim file an application's or service's generated file comes from (not previews,
/// which depend on two claims and are always rendered).
fn workload_source(path: &str, content: &str) -> Option<String> {
    if !path.starts_with("environments/")
        || path.starts_with(&format!("environments/{}/", render::CATALYST_CLUSTER_TYPE))
    {
        return None;
    }
    let owners = parse_owners(content)?;
    let first = owners.first()?;
    Some(first.split('#').next().unwrap_or(first).to_string())
}

fn is_workload_failure(f: &Failure) -> bool {
    f.keep.as_deref().is_some_and(|k| {
        k.starts_with("environments/")
            && !k.starts_with(&format!("environments/{}/", render::CATALYST_CLUSTER_TYPE))
    })
}

/// The claims at `commit`, parsing only claim files whose blob is not in the cache.
/// Returns the claim files (path, blob id), the loaded claims and file-level problems.
fn load_claims(
    repo: &Repo,
    commit: ObjectId,
    cache: &mut Cache,
) -> Result<(Option<ObjectId>, Arc<Claims>), Error> {
    let tree = repo.top_level(commit)?.get("claims").copied();
    if let (Some((cached, claims)), Some(tree)) = (&cache.claims, tree) {
        if *cached == tree {
            return Ok((Some(tree), claims.clone()));
        }
    }
    // Claims: parse only files whose blob is new.
    let claim_entries: Vec<FileKey> = repo
        .read_entries(commit, &["claims"])?
        .into_iter()
        .filter(|(p, _)| p.ends_with(".yaml") || p.ends_with(".yml"))
        .collect();
    let mut diagnostics = Vec::new();
    let mut unreadable = Vec::new();
    let mut to_parse = Vec::new();
    for key in &claim_entries {
        if !cache.parsed.contains_key(key) {
            match String::from_utf8(repo.read_blob(key.1)?) {
                Ok(text) => to_parse.push((key.clone(), text)),
                Err(_) => unreadable.push(key.0.clone()),
            }
        }
    }
    let fresh = crate::par::map(&to_parse, 16, |((path, id), text)| {
        let (claims, diagnostics) = claims::parse_file(path, text, &Limits::default());
        (
            (path.clone(), *id),
            ParsedFile {
                path: path.clone(),
                claims,
                diagnostics,
            },
        )
    });
    cache.parsed.extend(fresh);
    let live: HashSet<&FileKey> = claim_entries.iter().collect();
    cache.parsed.retain(|k, _| live.contains(k));
    let parsed: Vec<ParsedFile> = claim_entries
        .iter()
        .filter_map(|k| cache.parsed.get(k).cloned())
        .collect();
    tracing::debug!(parsed = to_parse.len(), "claims parsed");
    let mut loaded = claims::combine(parsed);
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
        files: claim_entries,
        loaded,
        diagnostics,
    });
    if let Some(tree) = tree {
        cache.claims = Some((tree, claims.clone()));
    }
    Ok((tree, claims))
}

/// Calls `f` with the claims at the tip of the branch (parsed again only where the
/// cache does not have them). None: the branch does not exist.
pub fn with_claims<T>(
    repo: &Repo,
    opts: &Options,
    cache: &mut Cache,
    f: impl FnOnce(&claims::Loaded) -> T,
) -> Result<Option<T>, Error> {
    let Some(tip) = repo.branch_tip(&branch_of(repo, opts))? else {
        return Ok(None);
    };
    let (_, read) = load_claims(repo, tip, cache)?;
    Ok(Some(f(&read.loaded)))
}

/// What pre-receive checks, with the cache: every diagnostic of the claims at `commit`,
/// and of rendering them (values the chart's schema refuses, requests above limits, …).
/// A chart that cannot be had is a warning: the push is accepted and the claim renders
/// once the chart can be had.
pub fn validate_cached(
    repo: &Repo,
    commit: ObjectId,
    opts: &Options,
    cache: &mut Cache,
) -> Result<Vec<Diagnostic>, Error> {
    let (_, mut diagnostics, failures) = plan_with_failures(repo, commit, opts, cache)?;
    downgrade_chart_failures(&mut diagnostics, &failures);
    Ok(diagnostics)
}

/// A chart that cannot be had does not refuse a push: its diagnostics become warnings.
pub(super) fn downgrade_chart_failures(diagnostics: &mut [Diagnostic], failures: &[Failure]) {
    for f in failures.iter().filter(|f| f.chart_unavailable) {
        if let Some(d) = diagnostics.iter_mut().find(|d| **d == f.diagnostic) {
            super::prepared::warn(d);
        }
    }
}
