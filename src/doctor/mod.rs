//! `claimd doctor`: checks a setup, one line per check with what to fix, like
//! `flux check`. Each check is a function of its own returning [`Check`]s; what it asks
//! of git, Gitea, a registry or the API server goes through the adapters (`git::push`,
//! `gitea::api`, `oci::Registry`, `kube::access`), and how the hooks are laid out is
//! `cli::hooks`'s own knowledge.
//!
//! - [`git`]: the git binary runs and is one claimd pushes with;
//! - [`repos`]: the configuration loads, each repository is a git repository (or its
//!   mirror folder is writable);
//! - [`hooks`]: pre-receive and post-receive installed, executable, where git runs them,
//!   calling a claimd that exists;
//! - [`daemon`]: the daemon answers `/readyz`;
//! - [`gitea`]: Gitea answers, the token works, each webhook is there and active, the
//!   secret (through the receiver's counts of verified and refused deliveries);
//! - [`registry`]: a login and a read of the chart repository;
//! - [`kube`]: every permission of the shipped ClusterRole, by access review;
//! - [`clock`]: the local clock against Gitea's and the API server's `Date`.

pub mod clock;
pub mod daemon;
pub mod git;
pub mod gitea;
pub mod hooks;
pub mod kube;
pub mod registry;
pub mod repos;

use crate::daemon::config::Config;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How a check came out. Only `Fail` makes `claimd doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    /// Works, but something optional is missing or could not be checked.
    Warn,
    Fail,
    /// Not configured: nothing to check.
    Skip,
}

impl Level {
    pub fn mark(self) -> &'static str {
        match self {
            Level::Pass => "✔",
            Level::Warn => "!",
            Level::Fail => "✗",
            Level::Skip => "-",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was checked: `git`, `config`, `repository`, `hooks`, `daemon`, `gitea`,
    /// `webhook`, `webhook secret`, `registry`, `kubernetes`, `clock`.
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    /// What to do about it (`run: chmod +x …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(check: &'static str, message: impl Into<String>) -> Check {
        Check {
            check,
            level: Level::Pass,
            message: message.into(),
            fix: None,
        }
    }

    pub fn warn(check: &'static str, message: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            check,
            level: Level::Warn,
            message: message.into(),
            fix,
        }
    }

    pub fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check,
            level: Level::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn skip(check: &'static str, message: impl Into<String>) -> Check {
        Check {
            check,
            level: Level::Skip,
            message: message.into(),
            fix: None,
        }
    }
}

impl std::fmt::Display for Check {
    /// `✗ hooks: /srv/git/x.git/hooks/pre-receive is not executable — run: chmod +x …`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.level.mark(), self.check, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " — {fix}")?;
        }
        Ok(())
    }
}

/// Every check's lines, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: PathBuf,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(config: &Path, checks: Vec<Check>) -> Report {
        Report {
            config: config.to_path_buf(),
            ok: checks.iter().all(|c| c.level != Level::Fail),
            checks,
        }
    }
}

/// Runs every check against the configuration at `config_path` (loaded as the daemon
/// loads it, environment overrides included).
pub async fn run(config_path: &Path) -> Report {
    let mut checks = vec![git::check()];
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            checks.push(repos::config_failed(config_path, &e));
            return Report::new(config_path, checks);
        }
    };
    checks.push(repos::config_loaded(config_path, &config));
    checks.extend(repos::check(&config, config_path));
    checks.extend(hooks::check(&config));
    let (line, status) = daemon::check(&config, config_path);
    checks.push(line);
    let mut dates = Vec::new();
    let (lines, gitea_date) = gitea::check(&config, status.as_ref()).await;
    checks.extend(lines);
    dates.extend(gitea_date);
    checks.extend(registry::check(&config).await);
    let (lines, kube_date) = kube::check(&config).await;
    checks.extend(lines);
    dates.extend(kube_date);
    checks.push(clock::check(&dates));
    Report::new(config_path, checks)
}

/// The text a person reads: one line per check.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.checks {
        out.push_str(&c.to_string());
        out.push('\n');
    }
    out
}

/// An error and its sources on one line, each said once (an HTTP client's own text,
/// "error sending request", says little without them).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

/// A path quoted for a shell command line when it needs it.
pub(crate) fn shell(path: &Path) -> String {
    let s = path.display().to_string();
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_what_failed_and_what_to_run() {
        let c = Check::fail(
            "hooks",
            "/srv/git/x.git/hooks/pre-receive is not executable",
            "run: chmod +x /srv/git/x.git/hooks/pre-receive",
        );
        assert_eq!(
            c.to_string(),
            "✗ hooks: /srv/git/x.git/hooks/pre-receive is not executable — run: chmod +x /srv/git/x.git/hooks/pre-receive"
        );
        assert_eq!(
            Check::pass("git", "git 2.39.5").to_string(),
            "✔ git: git 2.39.5"
        );
        let r = Report::new(
            Path::new("c.yaml"),
            vec![Check::pass("git", "x"), Check::warn("daemon", "y", None)],
        );
        assert!(r.ok, "warnings do not fail");
        let r = Report::new(Path::new("c.yaml"), vec![c]);
        assert!(!r.ok);
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["checks"][0]["level"], "fail");
        assert_eq!(json["ok"], false);
    }

    #[test]
    fn paths_are_quoted_for_a_shell_only_when_needed() {
        assert_eq!(shell(Path::new("/srv/git/x.git")), "/srv/git/x.git");
        assert_eq!(shell(Path::new("/srv/my repo's")), "'/srv/my repo'\\''s'");
    }
}
