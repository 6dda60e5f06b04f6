//! Generated files out, into a work tree (claim files come in through
//! `pipeline::snapshot::of_work_tree`).

use crate::render::{ChangeKind, Plan, OUTPUT_ROOTS};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Writes a plan into `repo`: each file is written to a temporary name and renamed, so a
/// crash never leaves a half-written file. Emptied folders are removed. Deletions go
/// first; writes are spread over all cores (file creation is the slow part).
pub fn apply(repo: &Path, plan: &Plan) -> Result<()> {
    for change in &plan.changes {
        inside_output_folders(&change.path)?;
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
    write(repo, &writes)
}

/// Writes new or changed files into `repo` as [`apply`] does (the files a render streams
/// out as it goes).
pub fn write(repo: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (path, _) in files {
        inside_output_folders(path)?;
    }
    let chunks: Vec<&[(&str, &str)]> = files.chunks(256).collect();
    crate::par::map(&chunks, 1, |part| write_files(repo, part))
        .into_iter()
        .collect()
}

fn inside_output_folders(path: &str) -> Result<()> {
    if !OUTPUT_ROOTS.iter().any(|r| path.starts_with(r)) || path.contains("..") {
        bail!("refusing to write outside the output folders: {path}");
    }
    Ok(())
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
