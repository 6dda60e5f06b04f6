//! Git hooks: `claimd hooks install` and the hook commands git runs.
//!
//! - pre-receive validates the claims of the pushed commit of the rendered branch and
//!   refuses the push with `file:line:col: message` lines (git shows them as `remote:`).
//! - post-receive renders and writes the bot commit (inline: the embedded default, no
//!   daemon needed) and prints its id to the pusher.

use crate::git::{Identity, Repo};
use crate::reconcile::{self, Options, Outcome};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const MARK: &str = "# claimd hook: installed by `claimd hooks install`";
const PRE_RECEIVE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/pre-receive"));
const POST_RECEIVE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-receive"));
const ZERO: &str = "0000000000000000000000000000000000000000";

/// Options every hook and `claimd reconcile` share, from the environment:
/// `CLAIMD_BRANCH`, `CLAIMD_CHARTS` (`embedded`, `oci` or a charts folder; registry
/// settings from `CLAIMD_REGISTRY_CONFIG`, `CLAIMD_CACHE`, `CLAIMD_OFFLINE`,
/// `CLAIMD_REFRESH`, `CLAIMD_PLAIN_HTTP`), `CLAIMD_BOT_NAME`, `CLAIMD_BOT_EMAIL`.
pub fn options_from_env() -> Options {
    let mut o = Options::default();
    if let Ok(b) = std::env::var("CLAIMD_BRANCH") {
        o.branch = Some(b);
    }
    if let Ok(c) = std::env::var("CLAIMD_CHARTS") {
        let registries = crate::cli::RegistryArgs::default().settings();
        o.charts = match registries {
            Ok(r) => crate::charts::Source::parse_or_broken(&c, &r),
            Err(e) => crate::charts::Source::Broken(crate::cli::error_text(&e)),
        };
    }
    let default = Identity::default();
    o.bot = Identity {
        name: std::env::var("CLAIMD_BOT_NAME").unwrap_or(default.name),
        email: std::env::var("CLAIMD_BOT_EMAIL").unwrap_or(default.email),
    };
    o
}

/// The hook script from `hooks/`, with the binary's absolute path.
fn script(binary: &Path, hook: &str) -> String {
    let template = if hook == "pre-receive" {
        PRE_RECEIVE
    } else {
        POST_RECEIVE
    };
    let quoted = binary.display().to_string().replace('\'', "'\\''");
    template.replacen(
        "#!/bin/sh\n",
        &format!("#!/bin/sh\nCLAIMD_BIN='{quoted}'\n"),
        1,
    )
}

/// Installs pre-receive and post-receive into a bare repository: `hooks/<name>` for a
/// plain repository, `hooks/<name>.d/claimd` for Gitea's layout (detected, or `gitea`).
/// An existing hook that claimd did not write is never overwritten.
pub fn install(repo: &Path, binary: Option<PathBuf>, gitea: bool) -> Result<ExitCode> {
    let hooks = repo.join("hooks");
    if !repo.join("objects").is_dir() {
        bail!(
            "{} is not a bare git repository (no objects/ folder)",
            repo.display()
        );
    }
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe().context("locating the claimd binary")?,
    };
    let binary = binary.canonicalize().unwrap_or(binary);
    let gitea =
        gitea || hooks.join("pre-receive.d").is_dir() || hooks.join("post-receive.d").is_dir();
    for hook in ["pre-receive", "post-receive"] {
        let path = if gitea {
            hooks.join(format!("{hook}.d")).join("claimd")
        } else {
            hooks.join(hook)
        };
        if let Ok(existing) = std::fs::read_to_string(&path) {
            if !existing.contains(MARK) {
                bail!(
                    "{} exists and was not written by claimd; not overwriting it. Call `{} hook {hook}` from it, or use Gitea's {hook}.d/ layout (--gitea)",
                    path.display(),
                    binary.display()
                );
            }
        }
        let dir = path.parent().unwrap_or(&hooks);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, script(&binary, hook))
            .with_context(|| format!("writing {}", path.display()))?;
        set_executable(&path)?;
        println!("installed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// `<old> <new> <ref>` lines from git on standard input.
fn read_updates() -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading the ref updates from git")?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [old, new, name] = parts[..] {
            out.push((old.to_string(), new.to_string(), name.to_string()));
        }
    }
    Ok(out)
}

/// The repository a hook runs in: git starts hooks in the bare repository (`GIT_DIR`).
fn hook_repo_path() -> PathBuf {
    std::env::var_os("GIT_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

pub fn pre_receive() -> Result<ExitCode> {
    let opts = options_from_env();
    // Absolute, since the daemon may be asked to read it from another working directory.
    let quarantine = std::env::var_os("GIT_QUARANTINE_PATH")
        .map(PathBuf::from)
        .map(|q| q.canonicalize().unwrap_or(q));
    let repo = Repo::open_for_hook(&hook_repo_path(), quarantine.as_deref())?;
    let branch = reconcile::branch_of(&repo, &opts);
    let branch_ref = format!("refs/heads/{branch}");
    // A ref lock left by a process killed while it moved the branch (a bot commit's
    // update, kill -9) would make git refuse this push and every one after it, with
    // nothing left to clear it: a stale one goes before git takes the lock.
    repo.clear_stale_branch_lock(&branch);
    let mut refused = false;
    let mut err = std::io::stderr().lock();
    for (old, new, name) in read_updates()? {
        if name != branch_ref || new == ZERO {
            continue;
        }
        let id = gix::ObjectId::from_hex(new.as_bytes()).context("bad object id from git")?;
        if old != ZERO && !reconcile::is_bot_commit(&repo, id, &opts.bot)? {
            let old_id =
                gix::ObjectId::from_hex(old.as_bytes()).context("bad object id from git")?;
            let edited = reconcile::edited_outputs(&repo, old_id, id)?;
            if !edited.is_empty() {
                writeln!(
                    err,
                    "claimd: warning: this push edits generated files in {}/; claimd will put them back as the claims say. Change claims/ instead",
                    edited.join("/, ")
                )?;
            }
        }
        // With a daemon, it validates with its cache of parsed claims; else here.
        let remote = std::env::var("CLAIMD_DAEMON").ok().and_then(|addr| {
            let path = repo
                .path()
                .canonicalize()
                .unwrap_or_else(|_| repo.path().to_path_buf());
            crate::server::validate_remote(&addr, &path, &new, quarantine.as_deref())
                .ok()
                .flatten()
        });
        let (errors, lines) = match remote {
            Some(answer) => answer,
            None => {
                // Rendered here anyway: leave the bot commit's blobs for post-receive.
                let (diags, prepared) =
                    reconcile::prepared::validate_and_prepare(&repo, id, &opts)?;
                if let Some(p) = prepared {
                    if let Err(e) = reconcile::prepared::save(&repo, &p) {
                        tracing::warn!(error = %e, "could not keep the prepared bot commit; post-receive renders again");
                    }
                }
                let errors = diags.iter().filter(|d| d.is_error()).count();
                (errors, diags.iter().map(ToString::to_string).collect())
            }
        };
        if errors > 0 {
            refused = true;
            writeln!(
                err,
                "claimd: push to {name} refused: {errors} problem(s) in claims/"
            )?;
        }
        for line in &lines {
            writeln!(err, "{line}")?;
        }
    }
    if refused {
        writeln!(
            err,
            "claimd: fix the claims above and push again (nothing was changed)"
        )?;
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn post_receive() -> Result<ExitCode> {
    let opts = options_from_env();
    let repo = Repo::open(&hook_repo_path())?;
    let branch_ref = format!("refs/heads/{}", reconcile::branch_of(&repo, &opts));
    let mut err = std::io::stderr().lock();
    for (_, new, name) in read_updates()? {
        if name != branch_ref || new == ZERO {
            continue;
        }
        let id = gix::ObjectId::from_hex(new.as_bytes()).context("bad object id from git")?;
        if reconcile::is_bot_commit(&repo, id, &opts.bot)? {
            continue; // our own commit: nothing to do, and no loop
        }
        if let Ok(addr) = std::env::var("CLAIMD_DAEMON") {
            let path = repo
                .path()
                .canonicalize()
                .unwrap_or_else(|_| repo.path().to_path_buf());
            let wait = std::env::var_os("CLAIMD_WAIT").is_some_and(|v| v != "0");
            let handed = if wait {
                crate::server::hand_off_and_wait(&addr, &path)
                    .map(|r| r.map(|result| format!("claimd: {result}")))
            } else {
                crate::server::hand_off(&addr, &path).map(|queued| {
                    queued.then(|| {
                        "claimd: queued for the claimd daemon; the bot commit follows shortly"
                            .to_string()
                    })
                })
            };
            match handed {
                Ok(Some(line)) => {
                    writeln!(err, "{line}")?;
                    continue;
                }
                Ok(None) => writeln!(
                    err,
                    "claimd: the daemon at {addr} does not serve this repository; rendering here"
                )?,
                Err(e) => writeln!(
                    err,
                    "claimd: the daemon at {addr} is unreachable ({e}); rendering here"
                )?,
            }
        }
        // What pre-receive prepared for this very commit, else a render.
        let prepared = match reconcile::prepared::take(&repo, id) {
            Some(p) => reconcile::prepared::commit(&repo, &opts, &p)?,
            None => None,
        };
        let at_push_time = prepared.is_some();
        let report = match prepared {
            Some(report) => report,
            None => reconcile::reconcile(&repo, &opts)?,
        };
        // Warnings were shown by pre-receive already; errors here are render failures.
        for d in report.diagnostics.iter().filter(|d| d.is_error()) {
            writeln!(err, "{d}")?;
        }
        match report.outcome {
            Outcome::Committed {
                commit,
                files,
                claims,
                ..
            } => {
                writeln!(
                    err,
                    "claimd: rendered {} → bot commit {commit} on {} ({files} files{}); `git pull` to get it",
                    if claims.is_empty() { "ApplicationSets".to_string() } else { reconcile::claim_list(&claims) },
                    report.branch,
                    if at_push_time { ", rendered while the push was checked" } else { "" }
                )?;
            }
            Outcome::UpToDate { .. } => writeln!(err, "claimd: generated files are up to date")?,
            Outcome::NoBranch => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `claimd reconcile`: render a repository's branch and commit, as the hook does.
pub fn reconcile_cmd(
    repo: &Path,
    branch: Option<String>,
    push_url: Option<String>,
) -> Result<ExitCode> {
    let mut opts = options_from_env();
    if branch.is_some() {
        opts.branch = branch;
    }
    opts.push_url = push_url;
    let repo = Repo::open(repo)?;
    let report = reconcile::reconcile(&repo, &opts)?;
    for d in &report.diagnostics {
        eprintln!("{d}");
    }
    match report.outcome {
        Outcome::Committed { commit, files, .. } => {
            println!("{commit} ({files} files changed on {})", report.branch)
        }
        Outcome::UpToDate { tip } => println!("up to date at {tip} on {}", report.branch),
        Outcome::NoBranch => println!("branch {} does not exist", report.branch),
    }
    let failed = report.diagnostics.iter().any(|d| d.is_error());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
