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
    let shown = redact(url);
    Err(Error::Git {
        what: format!("git push to {shown} refused"),
        source: report.replace(url, &shown).trim().to_string().into(),
    })
}

/// A URL without its user and password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            super::redact("https://bot:s3cret@gitea.example.com/p/v.git"),
            "https://***@gitea.example.com/p/v.git"
        );
        assert_eq!(super::redact("file:///srv/v.git"), "file:///srv/v.git");
    }
}
