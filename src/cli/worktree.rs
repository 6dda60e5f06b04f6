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
    write_all(repo, files, Renamed::Yes)
}

/// Whether each file is written under a temporary name and renamed into place.
#[derive(Clone, Copy, PartialEq)]
enum Renamed {
    Yes,
    /// Into a folder nobody reads yet (a first render's staging folder).
    No,
}

/// `files` under `root`, checked to stay in the output folders, on all cores.
fn write_all(root: &Path, files: &[(&str, &str)], renamed: Renamed) -> Result<()> {
    for (path, _) in files {
        inside_output_folders(path)?;
    }
    let chunks: Vec<&[(&str, &str)]> = files.chunks(256).collect();
    crate::par::map(&chunks, 1, |part| write_files(root, part, renamed))
        .into_iter()
        .collect()
}

/// The output folder of applications' and services' files (what a render streams).
const WORKLOADS: &str = "environments";

/// Where a render puts new files while it is rendering, beside the output folders.
const STAGING: &str = ".claimd-render.tmp";

/// Where a render streams its new files as it goes. Into a work tree that has no
/// `environments/` yet (a first render), they are written straight into a staging folder
/// beside it, without a temporary name per file, and the folder is renamed into place
/// once the render has succeeded ([`Stream::finish`]): a crash still leaves no
/// half-written file in the output. Otherwise each file as [`write`] does.
pub struct Stream {
    out: PathBuf,
    staging: Option<PathBuf>,
}

impl Stream {
    pub fn new(out: &Path) -> Result<Stream> {
        let staging = out.join(STAGING);
        // Left by a render that was killed: none of it was in place.
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .with_context(|| format!("removing {}", staging.display()))?;
        }
        let first = !out.join(WORKLOADS).exists();
        Ok(Stream {
            out: out.to_path_buf(),
            staging: first.then_some(staging),
        })
    }

    pub fn write(&self, files: &[(&str, &str)]) -> Result<()> {
        let Some(staging) = &self.staging else {
            return write(&self.out, files);
        };
        if let Some((path, _)) = files
            .iter()
            .find(|(p, _)| !p.starts_with(&format!("{WORKLOADS}/")))
        {
            bail!("a streamed file outside {WORKLOADS}/: {path}");
        }
        write_all(staging, files, Renamed::No)
    }

    /// Puts what was staged in place: before the plan is applied.
    pub fn finish(mut self) -> Result<()> {
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        let staged = staging.join(WORKLOADS);
        if staged.exists() {
            let to = self.out.join(WORKLOADS);
            std::fs::rename(&staged, &to)
                .with_context(|| format!("moving {} to {}", staged.display(), to.display()))?;
        }
        if !staging.exists() {
            return Ok(()); // nothing was streamed
        }
        std::fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))
    }
}

impl Drop for Stream {
    /// A render that failed leaves nothing staged behind.
    fn drop(&mut self) {
        if let Some(staging) = &self.staging {
            let _ = std::fs::remove_dir_all(staging);
        }
    }
}

fn inside_output_folders(path: &str) -> Result<()> {
    if !OUTPUT_ROOTS.iter().any(|r| path.starts_with(r)) || path.contains("..") {
        bail!("refusing to write outside the output folders: {path}");
    }
    Ok(())
}

fn write_files(repo: &Path, files: &[(&str, &str)], renamed: Renamed) -> Result<()> {
    let mut made_dirs: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for (rel, content) in files {
        let path = repo.join(rel);
        let parent = path.parent().unwrap_or(repo);
        if made_dirs.insert(parent.to_path_buf()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if renamed == Renamed::No {
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            continue;
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

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "environments/c/dev/applications/a/values.yaml";

    fn read(p: &Path) -> Option<String> {
        std::fs::read_to_string(p).ok()
    }

    #[test]
    fn a_first_render_stages_its_files_and_puts_them_in_place_at_the_end() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path();
        // What a killed render left: removed, never taken for output.
        std::fs::create_dir_all(out.join(STAGING).join("environments/old")).expect("mkdir");
        let stream = Stream::new(out).expect("stream");
        assert!(!out.join(STAGING).join("environments/old").exists());
        stream.write(&[(APP, "a: 1\n")]).expect("write");
        assert!(
            !out.join("environments").exists(),
            "nothing in place before the end"
        );
        assert!(stream
            .write(&[("appsets/x.yaml", "x")])
            .is_err_and(|e| e.to_string().contains("outside environments/")));
        stream.finish().expect("finish");
        assert_eq!(read(&out.join(APP)).as_deref(), Some("a: 1\n"));
        assert!(!out.join(STAGING).exists());

        // environments/ there: each file in place at once, under a temporary name first.
        let stream = Stream::new(out).expect("stream");
        let other = "environments/c/dev/applications/b/values.yaml";
        stream.write(&[(other, "b: 2\n")]).expect("write");
        assert_eq!(read(&out.join(other)).as_deref(), Some("b: 2\n"));
        assert!(!out.join(STAGING).exists());
        stream.finish().expect("finish");
    }

    #[test]
    fn a_first_render_with_nothing_to_stream_finishes() {
        let dir = tempfile::tempdir().expect("tmp");
        Stream::new(dir.path())
            .expect("stream")
            .finish()
            .expect("finish");
        assert!(!dir.path().join(STAGING).exists());
        assert!(!dir.path().join("environments").exists());
    }

    #[test]
    fn a_render_that_fails_leaves_nothing_staged() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path();
        let stream = Stream::new(out).expect("stream");
        stream.write(&[(APP, "a: 1\n")]).expect("write");
        assert!(out.join(STAGING).exists());
        drop(stream);
        assert!(!out.join(STAGING).exists());
        assert!(!out.join("environments").exists());
    }
}
