//! The configuration (the daemon's loader) and the repositories it names.

use super::{shell, Check};
use crate::daemon::config::{Config, Error, RepoConfig};
use std::path::Path;

/// The line for a configuration that does not load.
pub fn config_failed(path: &Path, e: &Error) -> Check {
    let fix = match e {
        Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "write one (install.sh writes a commented default), or point to it: claimd doctor --config FILE".to_string()
        }
        Error::Read { .. } => format!("make {} readable by this user", shell(path)),
        _ => format!("fix {} (README: the daemon's configuration)", shell(path)),
    };
    Check::fail("config", e.to_string(), fix)
}

/// The line for a configuration that loaded: what it sets up.
pub fn config_loaded(path: &Path, c: &Config) -> Check {
    let n = c.repositories.len();
    let mut parts = vec![format!(
        "{n} {}",
        if n == 1 { "repository" } else { "repositories" }
    )];
    if let Some(url) = &c.gitea.url {
        parts.push(format!("Gitea {url}"));
    }
    if let Some(charts) = &c.charts {
        parts.push(format!("charts: {charts}"));
    }
    if c.kubernetes.kubeconfig.is_some() {
        parts.push("a kubeconfig".into());
    }
    Check::pass(
        "config",
        format!("{} loads: {}", path.display(), parts.join(", ")),
    )
}

/// One line per repository: a git repository on this disk, or a mirror folder claimd
/// can write.
pub fn check(c: &Config, config_path: &Path) -> Vec<Check> {
    if c.repositories.is_empty() {
        return vec![Check::warn(
            "repository",
            "no repositories are configured: claimd renders nothing",
            Some(format!(
                "add them under repositories: in {}",
                shell(config_path)
            )),
        )];
    }
    c.repositories
        .iter()
        .map(|r| repository(r, config_path))
        .collect()
}

fn repository(r: &RepoConfig, config_path: &Path) -> Check {
    if r.mirror {
        return mirror(r);
    }
    let path = &r.path;
    if !path.exists() {
        return Check::fail(
            "repository",
            format!("{} does not exist", path.display()),
            format!(
                "create it (git init --bare {}) or fix its path in {}",
                shell(path),
                shell(config_path)
            ),
        );
    }
    match crate::git::Repo::open(path) {
        Ok(repo) => {
            let branch = r
                .branch
                .clone()
                .or_else(|| repo.head_branch())
                .unwrap_or_else(|| "main".into());
            Check::pass(
                "repository",
                format!("{} is a git repository (branch {branch})", path.display()),
            )
        }
        Err(e) => Check::fail(
            "repository",
            format!("{} is not a git repository: {e}", path.display()),
            format!(
                "fix its path in {} (a bare repository, e.g. Gitea's <root>/<owner>/<name>.git)",
                shell(config_path)
            ),
        ),
    }
}

/// A repository not on claimd's disk: its mirror's folder (or the nearest folder that
/// exists above it, where claimd makes it) must be writable.
fn mirror(r: &RepoConfig) -> Check {
    let name = r.gitea_repository.as_deref().unwrap_or("?");
    let existing = r.path.ancestors().find(|p| p.exists());
    match existing {
        Some(dir) if writable(dir) => Check::pass(
            "repository",
            format!(
                "{name}: mirror {} ({} is writable)",
                r.path.display(),
                dir.display()
            ),
        ),
        Some(dir) => Check::fail(
            "repository",
            format!(
                "{name}: claimd keeps its mirror in {}, but {} is not writable by this user",
                r.path.display(),
                dir.display()
            ),
            format!(
                "run: chown -R claimd: {} (or set dataDir to a folder claimd owns)",
                shell(dir)
            ),
        ),
        None => Check::fail(
            "repository",
            format!("{name}: no folder of {} exists", r.path.display()),
            "set dataDir to a folder claimd owns".to_string(),
        ),
    }
}

/// Whether this process may write into `dir` (access(2), as the real user).
pub(crate) fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) only reads the NUL-terminated path it is given.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}
