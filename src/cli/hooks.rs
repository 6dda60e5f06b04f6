//! Git hooks: `claimd hooks install` and the hook commands git runs.
//!
//! - pre-receive validates the claims of the pushed commit of the rendered branch and
//!   refuses the push with `file:line:col: message` lines (git shows them as `remote:`).
//! - post-receive renders and writes the bot commit (inline: the embedded default, no
//!   daemon needed) and prints its id to the pusher.

use crate::git::{Identity, Repo};
use crate::handoff::{self, RefLine};
use crate::reconcile::{self, Options, Outcome, Verdict};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const MARK: &str = "# claimd hook: installed by `claimd hooks install`";
const PRE_RECEIVE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/pre-receive"));
const POST_RECEIVE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-receive"));

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

/// The hook file for `hook`: the binary's absolute path and, when given, the daemon the
/// hooks hand pushes to (`CLAIMD_DAEMON`; unreachable: they render inline).
///
/// Its first line runs claimd itself on the file (`#!<claimd> hook`, or
/// `#!<claimd>-hook` when that small client is there for a daemon or for post-receive,
/// which only moves the branch to pre-receive's bot commit), so git starts claimd without a
/// shell in between (half a millisecond a hook); the `NAME='value'` lines below are
/// read by [`HookFile`](handoff::HookFile). A path the kernel cannot take on that
/// line (not absolute, a space, too long) gets the shell script from `hooks/`.
fn script(binary: &Path, hook: &str, daemon: Option<&str>) -> String {
    let template = if hook == "pre-receive" {
        PRE_RECEIVE
    } else {
        POST_RECEIVE
    };
    let quote = |s: &str| s.replace('\'', "'\\''");
    let quoted = quote(&binary.display().to_string());
    let client = PathBuf::from(format!("{}-hook", binary.display()));
    // pre-receive without a daemon checks and renders: claimd itself. post-receive only
    // hands the push over or moves the branch on to the bot commit pre-receive wrote.
    let first = if (daemon.is_some() || hook == "post-receive") && is_executable_file(&client) {
        format!("#!{}", client.display())
    } else {
        format!("#!{} hook", binary.display())
    };
    let path = binary.to_str().unwrap_or_default();
    if binary.is_absolute()
        && first.len() <= SHEBANG_MAX
        && !path.is_empty()
        && !path.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        // The template's comments, then the settings.
        let mut text = first;
        text.push('\n');
        for line in template.lines().skip(1).take_while(|l| l.starts_with('#')) {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("# Not a shell script: the first line runs claimd on this file, which reads the lines below.\n");
        text.push_str(&format!("CLAIMD_BIN='{quoted}'\n"));
        if let Some(addr) = daemon {
            text.push_str(&format!("CLAIMD_DAEMON='{}'\n", quote(addr)));
        }
        return text;
    }
    let daemon_sh = daemon.map_or(String::new(), |addr| {
        format!(
            "CLAIMD_DAEMON=\"${{CLAIMD_DAEMON:-{}}}\"\nexport CLAIMD_DAEMON\n",
            quote(addr)
        )
    });
    template.replacen(
        "#!/bin/sh\n",
        &format!("#!/bin/sh\nCLAIMD_BIN='{quoted}'\n{daemon_sh}"),
        1,
    )
}

pub(crate) use crate::handoff::HOOKS;

/// The longest `#!` line every Linux kernel takes whole (127 bytes before 5.1).
const SHEBANG_MAX: usize = 127;

/// Whether `repo`'s hooks follow Gitea's layout (`hooks/<hook>.d/`, run by Gitea's own
/// `hooks/<hook>` dispatcher).
pub(crate) fn is_gitea_layout(repo: &Path) -> bool {
    let hooks = repo.join("hooks");
    hooks.join("pre-receive.d").is_dir() || hooks.join("post-receive.d").is_dir()
}

/// Where claimd's `hook` goes: `hooks/<hook>`, or `hooks/<hook>.d/claimd` in Gitea's layout.
pub(crate) fn hook_path(repo: &Path, hook: &str, gitea: bool) -> PathBuf {
    let hooks = repo.join("hooks");
    if gitea {
        hooks.join(format!("{hook}.d")).join("claimd")
    } else {
        hooks.join(hook)
    }
}

/// Whether a hook script is one `claimd hooks install` wrote.
pub(crate) fn is_ours(script: &str) -> bool {
    script.contains(MARK)
}

/// The claimd binary a hook script written by [`install`] calls (its `CLAIMD_BIN=` line).
pub(crate) fn binary_of(script: &str) -> Option<PathBuf> {
    handoff::setting(script, "CLAIMD_BIN").map(PathBuf::from)
}

/// The program a hook file's first line has the kernel run on it (`/bin/sh`, claimd,
/// claimd-hook).
pub(crate) fn interpreter_of(script: &str) -> Option<PathBuf> {
    let line = script.lines().next()?.strip_prefix("#!")?;
    line.split_whitespace().next().map(PathBuf::from)
}

/// Installs pre-receive and post-receive into a bare repository: `hooks/<name>` for a
/// plain repository, `hooks/<name>.d/claimd` for Gitea's layout (detected, or `gitea`).
/// An existing hook that claimd did not write is never overwritten.
pub fn install(
    repo: &Path,
    binary: Option<PathBuf>,
    gitea: bool,
    daemon: Option<&str>,
) -> Result<ExitCode> {
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
    let gitea = gitea || is_gitea_layout(repo);
    for hook in HOOKS {
        let path = hook_path(repo, hook, gitea);
        if let Ok(existing) = std::fs::read_to_string(&path) {
            if !is_ours(&existing) {
                bail!(
                    "{} exists and was not written by claimd; not overwriting it. Call `{} hook {hook}` from it, or use Gitea's {hook}.d/ layout (--gitea)",
                    path.display(),
                    binary.display()
                );
            }
        }
        let text = script(&binary, hook, daemon);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == text) && has_hook_mode(&path) {
            println!("unchanged {}", path.display());
            continue;
        }
        let dir = path.parent().unwrap_or(&hooks);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        set_executable(&path)?;
        println!("installed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the hooks `claimd hooks install` wrote (both layouts), a `<hook>.d` folder
/// it leaves empty, and the hooks' caches (`<repo>/claimd/`: the memo, prepared bot
/// commits). A hook claimd did not write is left as it is.
pub fn uninstall(repo: &Path) -> Result<ExitCode> {
    if !repo.join("objects").is_dir() {
        bail!(
            "{} is not a bare git repository (no objects/ folder)",
            repo.display()
        );
    }
    let hooks = repo.join("hooks");
    for hook in HOOKS {
        let dir = hooks.join(format!("{hook}.d"));
        for path in [hooks.join(hook), dir.join("claimd")] {
            match std::fs::read_to_string(&path) {
                Ok(text) if text.contains(MARK) => {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                    println!("removed {}", path.display());
                }
                Ok(_) if path.ends_with("claimd") => {
                    println!("left {} (not written by claimd)", path.display())
                }
                _ => {}
            }
        }
        // Only succeeds when empty: Gitea's own files keep the folder.
        if std::fs::remove_dir(&dir).is_ok() {
            println!("removed {}", dir.display());
        }
    }
    let caches = repo.join("claimd");
    if caches.is_dir() {
        std::fs::remove_dir_all(&caches)
            .with_context(|| format!("removing {}", caches.display()))?;
        println!("removed {}", caches.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a hook has the mode [`install`] gives it (0755).
#[cfg(unix)]
fn has_hook_mode(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o755)
}

#[cfg(not(unix))]
fn has_hook_mode(_: &Path) -> bool {
    true
}

/// Whether `path` is a file someone may run (claimd-hook beside claimd, a hook, the
/// program a hook's first line names).
#[cfg(unix)]
pub(crate) fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub(crate) fn is_executable_file(path: &Path) -> bool {
    path.is_file()
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
fn read_updates() -> Result<Vec<RefLine>> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the ref updates from git")?;
    Ok(RefLine::parse_all(&input))
}

/// With a daemon (`CLAIMD_DAEMON`, or the hook file's), what it did with the updates
/// (as `claimd-hook` does); without one, every update is left to this process.
fn with_daemon(
    file: &handoff::HookFile,
    updates: Vec<RefLine>,
    hook: fn(&str, Vec<RefLine>) -> handoff::Handled,
) -> handoff::Handled {
    match file.daemon() {
        Some(addr) => hook(&addr, updates),
        None => handoff::Handled::Local {
            lines: Vec::new(),
            left: updates,
        },
    }
}

pub fn pre_receive(file: &handoff::HookFile) -> Result<ExitCode> {
    // With a daemon, it checks the push with its memo (and the repository it keeps
    // open): this process only passes the lines on. Else, or if it cannot, here.
    let (lines, verdict, memo) = match with_daemon(file, read_updates()?, handoff::pre_receive_hook)
    {
        handoff::Handled::Done { lines, refused } => (Vec::new(), Verdict { refused, lines }, None),
        handoff::Handled::Local { lines, left } => {
            let (verdict, memo) = pre_receive_here(&left)?;
            (lines, verdict, memo)
        }
    };
    let mut err = std::io::stderr().lock();
    for line in lines.iter().chain(&verdict.lines) {
        writeln!(err, "{line}")?;
    }
    drop(err);
    if let Some(memo) = memo {
        // Kept for the next push while git goes on with this one.
        if let Err(e) = crate::pipeline::store::save_detached(&handoff::hook_repo(), &memo) {
            tracing::warn!(error = %e, "could not keep the render memo (the next push renders everything)");
        }
        // The process ends now: freeing it piece by piece would only take time.
        std::mem::forget(memo);
    }
    Ok(if verdict.refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// pre-receive in this process, with the memo the last hook left (returned, to be kept
/// for the next one).
fn pre_receive_here(updates: &[RefLine]) -> Result<(Verdict, Option<crate::pipeline::Memo>)> {
    let opts = options_from_env();
    let quarantine = handoff::quarantine();
    let repo = Repo::open_for_hook(&handoff::hook_repo(), quarantine.as_deref())?;
    let updates = parse_updates(updates)?;
    let mut memo = None;
    let verdict = reconcile::pre_receive(&repo, &updates, &opts, |id| {
        let memo = memo.get_or_insert_with(|| {
            let old = updates
                .iter()
                .find(|u| u.new == Some(id))
                .and_then(|u| u.old);
            crate::pipeline::load_stored(&repo, &opts.charts, old, id)
        });
        // Rendered here anyway: leave the bot commit's blobs for post-receive.
        let (diags, prepared) = reconcile::prepared::validate_and_prepare(&repo, id, &opts, memo)?;
        if let Some(p) = prepared {
            if let Err(e) = reconcile::prepared::save(&repo, &p) {
                tracing::warn!(error = %e, "could not keep the prepared bot commit; post-receive renders again");
            }
        }
        Ok(diags)
    })?;
    Ok((verdict, memo))
}

/// git's `<old> <new> <ref>` lines as updates.
fn parse_updates(updates: &[RefLine]) -> Result<Vec<reconcile::RefUpdate>> {
    updates
        .iter()
        .map(|u| {
            reconcile::RefUpdate::parse(&u.old, &u.new, &u.name).context("bad object id from git")
        })
        .collect()
}

pub fn post_receive(file: &handoff::HookFile) -> Result<ExitCode> {
    // With a daemon, it tells a push of its own (or of another branch) from one to
    // render: this process does not open the repository at all.
    let (lines, local) = match with_daemon(file, read_updates()?, handoff::post_receive_hook) {
        handoff::Handled::Done { lines, .. } => (lines, Vec::new()),
        handoff::Handled::Local { lines, left } => (lines, left),
    };
    let mut err = std::io::stderr().lock();
    for line in &lines {
        writeln!(err, "{line}")?;
    }
    let local: Vec<RefLine> = local
        .into_iter()
        .filter(|u| u.new != handoff::ZERO)
        .collect();
    if local.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let opts = options_from_env();
    let repo = Repo::open(&handoff::hook_repo())?;
    for update in parse_updates(&local)? {
        if !reconcile::wants_render(&repo, &update, &opts)? {
            continue; // another branch, or our own commit: nothing to do, and no loop
        }
        let Some(id) = update.new else {
            continue;
        };
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
            } => writeln!(
                err,
                "{}",
                reconcile::committed_line(&claims, commit, &report.branch, files, at_push_time)
            )?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_a_script_calls_reads_back_as_written() {
        for bin in ["/usr/local/bin/claimd", "/opt/it's here/claimd", "claimd"] {
            for daemon in [None, Some("127.0.0.1:7463")] {
                let script = script(Path::new(bin), "pre-receive", daemon);
                assert!(is_ours(&script));
                assert_eq!(binary_of(&script), Some(PathBuf::from(bin)), "{script}");
            }
        }
        assert_eq!(binary_of("#!/bin/sh\nexec gitea hook pre-receive\n"), None);
    }

    /// The kernel runs claimd on the file when it can take the path on the first line;
    /// a path it cannot take gets the shell script. Both carry the same settings.
    #[test]
    fn a_hook_file_runs_claimd_itself_unless_the_path_cannot_be_a_first_line() {
        let dir = std::env::temp_dir().join(format!("claimd-hookfile-{}", std::process::id()));
        let hooks = dir.join("hooks");
        std::fs::create_dir_all(hooks.join("post-receive.d")).expect("mkdir");
        let plain = script(
            Path::new("/usr/local/bin/claimd"),
            "pre-receive",
            Some("127.0.0.1:7463"),
        );
        assert_eq!(
            interpreter_of(&plain),
            Some(PathBuf::from("/usr/local/bin/claimd"))
        );
        assert!(
            plain.starts_with("#!/usr/local/bin/claimd hook\n"),
            "{plain}"
        );
        std::fs::write(hooks.join("pre-receive"), &plain).expect("write");
        let file = handoff::HookFile::from_arg(&hooks.join("pre-receive").display().to_string())
            .expect("a hook file");
        assert_eq!(file.hook, "pre-receive");
        assert_eq!(file.bin, Some(PathBuf::from("/usr/local/bin/claimd")));
        assert_eq!(file.daemon.as_deref(), Some("127.0.0.1:7463"));
        // Gitea's layout: the hook is named by its folder.
        let gitea = script(Path::new("/usr/local/bin/claimd"), "post-receive", None);
        let path = hooks.join("post-receive.d/claimd");
        std::fs::write(&path, &gitea).expect("write");
        let file = handoff::HookFile::from_arg(&path.display().to_string()).expect("a hook file");
        assert_eq!((file.hook, file.daemon), ("post-receive", None));
        // Names still work; anything else says what it wanted.
        assert_eq!(
            handoff::HookFile::from_arg("post-receive").map(|f| f.hook),
            Ok("post-receive")
        );
        let other = handoff::HookFile::from_arg(&dir.join("update").display().to_string());
        assert!(other.is_err_and(|e| e.contains("neither pre-receive nor post-receive")));
        for odd in [
            "/opt/my tools/claimd",
            "claimd",
            &format!("/{}", "x".repeat(130)),
        ] {
            let sh = script(Path::new(odd), "pre-receive", None);
            assert_eq!(interpreter_of(&sh), Some(PathBuf::from("/bin/sh")), "{odd}");
            assert!(
                sh.contains("exec \"${CLAIMD_BIN:-claimd}\" hook pre-receive"),
                "{sh}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
