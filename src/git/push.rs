//! Publishing a bot commit through the git server instead of writing the ref directly
//! (so the server's own hooks and events see it): `git push` with a lease, since gix
//! cannot push. Never forced: the lease and the fast-forward rule both refuse a moved branch.
//!
//! Why not move the ref on disk when the server is Gitea: Gitea keeps branch heads in
//! its database and acts on a push only when the push comes through it (its hooks call
//! its internal API). A ref written on disk is a branch Gitea's pages, its branch
//! protection, its webhooks (so Argo CD's refresh) and its pull requests do not see.
//!
//! Credentials: an [`Auth`] header reaches git through the environment
//! (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0` = `http.extraHeader`), so
//! it is never in a URL, a command line (`ps`, `/proc/*/cmdline`), `.git/config` or a log.

use super::{Cas, Error, Result};
use base64::Engine as _;
use gix::ObjectId;
use std::path::Path;
use std::process::Command;

/// The oldest git claimd pushes with: the token reaches git through `GIT_CONFIG_COUNT`
/// (git 2.31), and the lease and `--porcelain` are older.
pub const MIN_GIT: (u32, u32, u32) = (2, 31, 0);

/// What `git --version` prints (`git version 2.39.5`), from the git claimd runs.
pub fn cli_version() -> std::io::Result<String> {
    let out = git_with(None).arg("--version").output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "`git --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// (major, minor, patch) of `git version 2.39.5`, `git version 2.39.5.windows.1`,
/// `git version 2.39.5 (Apple Git-154)` or `git version 2.40.0.rc1`.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let number = text.trim().strip_prefix("git version ")?;
    let mut parts = number
        .split_whitespace()
        .next()?
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// An HTTP `Authorization` header for pushes (never printed: `Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Auth(String);

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(..)")
    }
}

impl Auth {
    /// HTTP Basic with an access token as the password, as Gitea takes it on its git
    /// paths (the user name is not checked against the token's owner).
    pub fn token(user: &str, token: &[u8]) -> Auth {
        let mut pair = format!("{user}:").into_bytes();
        pair.extend_from_slice(token);
        Auth(format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    }
}

/// Pushes `new` to `refs/heads/<branch>` at `url`, only if the branch is still `expected`.
pub fn push_cas(
    repo: &Path,
    url: &str,
    auth: Option<&Auth>,
    branch: &str,
    expected: ObjectId,
    new: ObjectId,
) -> Result<Cas> {
    push_lease(repo, url, auth, branch, Some(expected), new)
}

/// Pushes `new` as the new branch `branch` at `url`, only if it does not exist there.
pub fn push_new(
    repo: &Path,
    url: &str,
    auth: Option<&Auth>,
    branch: &str,
    new: ObjectId,
) -> Result<Cas> {
    push_lease(repo, url, auth, branch, None, new)
}

fn push_lease(
    repo: &Path,
    url: &str,
    auth: Option<&Auth>,
    branch: &str,
    expected: Option<ObjectId>,
    new: ObjectId,
) -> Result<Cas> {
    let refname = format!("refs/heads/{branch}");
    // An empty expectation: the branch must not exist yet.
    let expected = expected.map(|e| e.to_string()).unwrap_or_default();
    let mut git = git_with(auth);
    git.arg("--git-dir")
        .arg(repo)
        .args(["push", "--porcelain", "--quiet"])
        .arg(format!("--force-with-lease={refname}:{expected}"))
        .arg(url)
        .arg(format!("{new}:{refname}"));
    let out = output(&mut git, "push")?;
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
    Err(refused("push to", url, &report))
}

/// Fetches `refs/heads/<branch>` from `url` into `into` of the mirror at `repo`, made
/// first when missing. The mirror follows the server (its ref is set to what the
/// server has); the server is never forced.
pub fn fetch_branch(
    repo: &Path,
    url: &str,
    auth: Option<&Auth>,
    branch: &str,
    into: &str,
) -> Result<()> {
    if !repo.join("objects").is_dir() {
        std::fs::create_dir_all(repo).map_err(|e| Error::Git {
            what: format!("creating the mirror {}", repo.display()),
            source: Box::new(e),
        })?;
        gix::init_bare(repo).map_err(|e| Error::Git {
            what: format!("creating the mirror {}", repo.display()),
            source: Box::new(e),
        })?;
    }
    let mut git = git_with(auth);
    git.arg("--git-dir")
        .arg(repo)
        .args(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"])
        .arg(url)
        .arg(format!("+refs/heads/{branch}:{into}"));
    let out = output(&mut git, "fetch")?;
    match out.status.success() {
        true => Ok(()),
        false => Err(refused(
            "fetch from",
            url,
            &String::from_utf8_lossy(&out.stderr),
        )),
    }
}

/// Whether `refs/heads/<branch>` exists at `url` (`git ls-remote`).
pub fn has_branch(url: &str, auth: Option<&Auth>, branch: &str) -> Result<bool> {
    let mut git = git_with(auth);
    git.args(["ls-remote", "--heads", url])
        .arg(format!("refs/heads/{branch}"));
    let out = output(&mut git, "ls-remote")?;
    if !out.status.success() {
        return Err(refused(
            "ls-remote",
            url,
            &String::from_utf8_lossy(&out.stderr),
        ));
    }
    Ok(!out.stdout.is_empty())
}

/// `git` to talk to a server: never a prompt, the credentials (if any) in its
/// environment (see the module doc).
fn git_with(auth: Option<&Auth>) -> Command {
    let mut git = Command::new("git");
    git.env("GIT_TERMINAL_PROMPT", "0");
    if let Some(Auth(header)) = auth {
        git.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header);
    }
    git
}

fn output(git: &mut Command, what: &str) -> Result<std::process::Output> {
    git.output().map_err(|e| Error::Git {
        what: format!("running git {what}"),
        source: Box::new(e),
    })
}

/// `git <what> <url>` failed, in git's words (the URL without its credentials).
fn refused(what: &str, url: &str, report: &str) -> Error {
    let shown = redact(url);
    Error::Git {
        what: format!("git {what} {shown} refused"),
        source: report.replace(url, &shown).trim().to_string().into(),
    }
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
    fn an_auth_header_is_basic_with_the_token_and_never_printed() {
        let a = super::Auth::token("claimd", b"t0ken");
        assert_eq!(a.0, "Authorization: Basic Y2xhaW1kOnQwa2Vu");
        assert_eq!(format!("{a:?}"), "Auth(..)");
    }

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            super::redact("https://bot:s3cret@gitea.example.com/p/v.git"),
            "https://***@gitea.example.com/p/v.git"
        );
        assert_eq!(super::redact("file:///srv/v.git"), "file:///srv/v.git");
    }

    #[test]
    fn git_versions_read_as_git_prints_them() {
        let v = super::parse_version;
        assert_eq!(v("git version 2.39.5\n"), Some((2, 39, 5)));
        assert_eq!(v("git version 2.39.5.windows.1"), Some((2, 39, 5)));
        assert_eq!(v("git version 2.39.5 (Apple Git-154)"), Some((2, 39, 5)));
        assert_eq!(v("git version 2.40.0.rc1"), Some((2, 40, 0)));
        assert_eq!(v("git version 2.31"), Some((2, 31, 0)));
        assert_eq!(v("hub version 2.14.2"), None);
        assert!(v("git version 2.30.9").unwrap() < super::MIN_GIT);
        assert!(v("git version 2.31.0").unwrap() >= super::MIN_GIT);
    }
}
