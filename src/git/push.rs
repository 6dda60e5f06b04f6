//! Publishing a bot commit through the git server instead of writing the ref directly
//! (so the server's own hooks and events see it): `git push` with a lease, since gix
//! cannot push. Never forced: the lease and the fast-forward rule both refuse a moved branch.

use super::{Cas, Error, Result};
use gix::ObjectId;
use std::path::Path;
use std::process::Command;

/// Pushes `new` to `refs/heads/<branch>` at `url`, only if the branch is still `expected`.
pub fn push_cas(
    repo: &Path,
    url: &str,
    branch: &str,
    expected: ObjectId,
    new: ObjectId,
) -> Result<Cas> {
    let refname = format!("refs/heads/{branch}");
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["push", "--porcelain", "--quiet"])
        .arg(format!("--force-with-lease={refname}:{expected}"))
        .arg(url)
        .arg(format!("{new}:{refname}"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| Error::Git {
            what: "running git push".into(),
            source: Box::new(e),
        })?;
    if out.status.success() {
        return Ok(Cas::Updated);
    }
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if report.contains("stale info")
        || report.contains("non-fast-forward")
        || report.contains("fetch first")
    {
        return Ok(Cas::Moved);
    }
    Err(Error::Git {
        what: format!("git push to {url} refused"),
        source: report.trim().to_string().into(),
    })
}
