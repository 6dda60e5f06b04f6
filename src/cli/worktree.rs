//! Files on disk: claim files in, generated files out. (The git adapter replaces this
//! for bare repositories.)

use crate::render::{ChangeKind, Plan, OUTPUT_ROOTS};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every `*.yaml`/`*.yml` file under the given files or folders, as (path, text), sorted.
pub fn read_claim_files(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_file() {
            out.push((path.display().to_string(), read(path)?));
        } else if path.is_dir() {
            for file in walk(path)? {
                let name = file.to_string_lossy();
                if name.ends_with(".yaml") || name.ends_with(".yml") {
                    out.push((file.display().to_string(), read(&file)?));
                }
            }
        } else {
            bail!("{}: no such file or folder", path.display());
        }
    }
    out.sort();
    Ok(out)
}

fn read(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))
}

/// Files below `dir`, recursively, in sorted order (symlinks are not followed).
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
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
pub fn relative(root: &Path, path: &str) -> String {
    Path::new(path)
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|_| path.to_string())
}

/// The files under the output folders of `repo`, by relative path.
pub fn read_generated(repo: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for root in OUTPUT_ROOTS {
        let dir = repo.join(root.trim_end_matches('/'));
        if !dir.is_dir() {
            continue;
        }
        for file in walk(&dir)? {
            let rel = relative(repo, &file.display().to_string());
            // Non-UTF-8 files are not ours; leave them alone.
            if let Ok(text) = std::fs::read_to_string(&file) {
                out.insert(rel, text);
            }
        }
    }
    Ok(out)
}

/// Writes a plan into `repo`: each file is written to a temporary name and renamed, so a
/// crash never leaves a half-written file. Emptied folders are removed. Deletions go
/// first; writes are spread over all cores (file creation is the slow part).
pub fn apply(repo: &Path, plan: &Plan) -> Result<()> {
    for change in &plan.changes {
        if !OUTPUT_ROOTS.iter().any(|r| change.path.starts_with(r)) || change.path.contains("..") {
            bail!(
                "refusing to write outside the output folders: {}",
                change.path
            );
        }
    }
    for change in plan.changes.iter().filter(|c| c.kind == ChangeKind::Delete) {
        let path = repo.join(&change.path);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == repo || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    let writes: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .filter_map(|c| c.new.as_deref().map(|n| (c.path.as_str(), n)))
        .collect();
    let chunks: Vec<&[(&str, &str)]> = writes.chunks(256).collect();
    crate::par::map(&chunks, 1, |part| write_files(repo, part))
        .into_iter()
        .collect()
}

fn write_files(repo: &Path, files: &[(&str, &str)]) -> Result<()> {
    let mut made_dirs: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for (rel, content) in files {
        let path = repo.join(rel);
        let parent = path.parent().unwrap_or(repo);
        if made_dirs.insert(parent.to_path_buf()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let tmp = parent.join(format!(
            ".{}.claimd-tmp",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
