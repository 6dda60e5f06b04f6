//! The read side of the pipeline: a [`Snapshot`] of claim files and generated files by
//! blob id, from a commit (with a pre-receive quarantine when the hook opened the
//! repository with one) or from a work tree, and the [`Objects`] to read them by.

use super::core::{Objects, ReadError, Snapshot};
use crate::git::{self, Repo};
use crate::render::{Change, OUTPUT_ROOTS};
use gix::ObjectId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Objects for Repo {
    fn read(&self, id: ObjectId) -> Result<Vec<u8>, ReadError> {
        Ok(self.read_blob(id)?)
    }

    // claimd opens SHA-1 repositories only.
    fn blob_hasher(&self) -> fn(&[u8]) -> ObjectId {
        git::sha1_blob_id
    }
}

fn output_roots() -> [&'static str; 3] {
    OUTPUT_ROOTS.map(|r| r.trim_end_matches('/'))
}

/// The tree ids of the output folders.
pub(crate) type RootIds = Vec<Option<ObjectId>>;

/// What reading commits learned: the entries under the output folders by their tree
/// ids (20,000 generated files are not walked again while their folders are the same).
#[derive(Default)]
pub struct Reads {
    pub(crate) claims: Option<(ObjectId, Vec<(String, ObjectId)>)>,
    pub(crate) entries: Option<(RootIds, Arc<BTreeMap<String, ObjectId>>)>,
    /// Something was read since these were made (worth keeping, see [`super::store`]).
    pub(crate) changed: bool,
}

/// The claim files of `new` that `old` does not have (by path and blob id): what a push
/// from `old` to `new` changed under `claims/`.
pub fn changed_claim_files(
    repo: &Repo,
    old: ObjectId,
    new: ObjectId,
) -> Result<Vec<(String, ObjectId)>, git::Error> {
    let claims_tree = |commit| -> Result<Option<ObjectId>, git::Error> {
        Ok(repo.top_level(commit)?.get("claims").copied())
    };
    if claims_tree(old)? == claims_tree(new)? {
        return Ok(Vec::new());
    }
    let before: HashSet<(String, ObjectId)> =
        repo.read_entries(old, &["claims"])?.into_iter().collect();
    Ok(repo
        .read_entries(new, &["claims"])?
        .into_iter()
        .filter(|f| is_claim_file(&f.0) && !before.contains(f))
        .collect())
}

/// The snapshot of `commit`.
pub fn at_commit(repo: &Repo, commit: ObjectId, reads: &mut Reads) -> Result<Snapshot, git::Error> {
    let tree = repo.tree_of(commit)?;
    let top = repo.top_level_of_tree(tree)?;
    let claims_tree = top.get("claims").copied();
    let claim_files = match (&reads.claims, claims_tree) {
        (Some((tree, files)), Some(now)) if *tree == now => files.clone(),
        _ => {
            let files: Vec<(String, ObjectId)> = repo
                .read_entries(commit, &["claims"])?
                .into_iter()
                .filter(|(p, _)| is_claim_file(p))
                .collect();
            if let Some(tree) = claims_tree {
                reads.claims = Some((tree, files.clone()));
                reads.changed = true;
            }
            files
        }
    };
    let root_ids: Vec<Option<ObjectId>> = output_roots()
        .iter()
        .map(|r| top.get(*r).copied())
        .collect();
    let entries = match &reads.entries {
        Some((ids, entries)) if *ids == root_ids => entries.clone(),
        _ => {
            let e = Arc::new(repo.read_entries(commit, &output_roots())?);
            reads.entries = Some((root_ids, e.clone()));
            reads.changed = true;
            e
        }
    };
    Ok(Snapshot {
        claim_files,
        claims_tree,
        tree: Some(tree),
        entries,
    })
}

/// Tells the reads that `tree` (a commit's or one about to be committed) is `parent`'s
/// with `changes`, so the next snapshot does not walk every generated file's entry again.
pub fn committed(
    reads: &mut Reads,
    repo: &Repo,
    parent: ObjectId,
    tree: ObjectId,
    changes: &[Change],
) -> Result<(), git::Error> {
    let Some((ids, entries)) = &mut reads.entries else {
        return Ok(());
    };
    let roots = |top: BTreeMap<String, ObjectId>| -> RootIds {
        output_roots()
            .iter()
            .map(|r| top.get(*r).copied())
            .collect()
    };
    if *ids != roots(repo.top_level(parent)?) {
        reads.entries = None;
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
    *ids = roots(repo.top_level_of_tree(tree)?);
    reads.changed = true;
    Ok(())
}

fn is_claim_file(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Files on disk by blob id: claim files kept in memory, generated files read again
/// when they are needed (the plan reads only those it changes; a hundred thousand
/// applications' files are not held).
pub struct WorkTree {
    claims: HashMap<ObjectId, Vec<u8>>,
    generated: HashMap<ObjectId, PathBuf>,
}

impl Objects for WorkTree {
    fn read(&self, id: ObjectId) -> Result<Vec<u8>, ReadError> {
        if let Some(bytes) = self.claims.get(&id) {
            return Ok(bytes.clone());
        }
        let path = self
            .generated
            .get(&id)
            .ok_or_else(|| format!("no object {id} in the work tree"))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if git::sha1_blob_id(&bytes) != id {
            return Err(format!("{}: changed while claimd was rendering", path.display()).into());
        }
        Ok(bytes)
    }

    fn blob_hasher(&self) -> fn(&[u8]) -> ObjectId {
        git::sha1_blob_id
    }
}

/// A snapshot of files on disk: the claim files under `claims` (files or folders, named
/// as given, or relative to `root` when they are below it) and the generated files
/// under `out`'s output folders (none when `out` is None).
pub fn of_work_tree(
    claims: &[PathBuf],
    root: Option<&Path>,
    out: Option<&Path>,
) -> std::io::Result<(Snapshot, WorkTree)> {
    let mut tree = WorkTree {
        claims: HashMap::new(),
        generated: HashMap::new(),
    };
    let mut claim_files = Vec::new();
    for path in claims {
        let files = if path.is_file() {
            vec![path.clone()]
        } else if path.is_dir() {
            walk(path)?
                .into_iter()
                .filter(|f| is_claim_file(&f.to_string_lossy()))
                .collect()
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or folder", path.display()),
            ));
        };
        for file in files {
            let name = match root {
                Some(root) => relative(root, &file),
                None => file.display().to_string(),
            };
            let bytes = std::fs::read(&file)?;
            let id = git::sha1_blob_id(&bytes);
            tree.claims.insert(id, bytes);
            claim_files.push((name, id));
        }
    }
    claim_files.sort();
    claim_files.dedup();
    let mut entries = BTreeMap::new();
    if let Some(out) = out {
        for root in output_roots() {
            let dir = out.join(root);
            if !dir.is_dir() {
                continue;
            }
            // Read and hashed on all cores, then let go.
            let files = walk(&dir)?;
            let ids = crate::par::map(&files, 256, |file| {
                std::fs::read(file).map(|bytes| git::sha1_blob_id(&bytes))
            });
            for (file, id) in files.into_iter().zip(ids) {
                let id = id?;
                entries.insert(relative(out, &file), id);
                tree.generated.insert(id, file);
            }
        }
    }
    let snapshot = Snapshot {
        claim_files,
        claims_tree: None,
        tree: None,
        entries: Arc::new(entries),
    };
    Ok((snapshot, tree))
}

/// Files below `dir`, recursively, in sorted order (symlinks are not followed).
pub fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path` relative to `root`, with `/` separators.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|_| path.display().to_string())
}
