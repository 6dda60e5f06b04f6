//! The git hooks of each repository on this disk: claimd's pre-receive and post-receive
//! where git runs them (plain `hooks/<hook>`, or Gitea's `hooks/<hook>.d/claimd` behind
//! Gitea's dispatcher `hooks/<hook>`), executable, started by a program that exists (the
//! first line) and calling a claimd binary that exists.

use super::{shell, Check};
use crate::cli::hooks::{
    binary_of, hook_path, interpreter_of, is_executable_file as is_executable, is_gitea_layout,
    is_ours, HOOKS,
};
use crate::daemon::config::{Config, RepoConfig};
use std::path::Path;

/// One line per repository when all is well, else one per problem.
pub fn check(c: &Config) -> Vec<Check> {
    c.repositories
        .iter()
        .filter(|r| !r.mirror && r.path.join("objects").is_dir())
        .flat_map(repository)
        .collect()
}

/// The problems of one repository's hooks (empty: all is well).
pub fn problems(repo: &Path) -> Vec<(String, String)> {
    let gitea = is_gitea_layout(repo);
    let install = format!(
        "run: claimd hooks install{} {}",
        if gitea { " --gitea" } else { "" },
        shell(repo)
    );
    let mut out = Vec::new();
    if let Some(elsewhere) = hooks_path(repo) {
        out.push((
            format!(
                "{}: core.hooksPath is {elsewhere}, so git runs the hooks there, not in {}/hooks",
                repo.display(),
                repo.display()
            ),
            format!(
                "run: git --git-dir {} config --unset core.hooksPath (or install claimd's hooks there)",
                shell(repo)
            ),
        ));
    }
    for hook in HOOKS {
        let path = hook_path(repo, hook, gitea);
        if gitea {
            let dispatcher = repo.join("hooks").join(hook);
            if !is_executable(&dispatcher) {
                out.push((
                    format!(
                        "Gitea's dispatcher {} is missing or not executable, so {} never runs",
                        dispatcher.display(),
                        path.display()
                    ),
                    "in Gitea: Site Administration → Dashboard → \"Resynchronize git hooks of all repositories\" (gitea admin regenerate hooks)".to_string(),
                ));
            }
        }
        let script = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push((format!("{} is missing", path.display()), install.clone()));
                continue;
            }
            Err(e) => {
                out.push((
                    format!("{} does not read ({e})", path.display()),
                    install.clone(),
                ));
                continue;
            }
        };
        if !is_ours(&script) {
            out.push((
                format!(
                    "{} was not written by claimd (claimd never overwrites it)",
                    path.display()
                ),
                format!(
                    "make it also run `claimd hook {hook}` with its standard input, or move it aside and {install}"
                ),
            ));
            continue;
        }
        if !is_executable(&path) {
            out.push((
                format!("{} is not executable", path.display()),
                format!("run: chmod +x {}", shell(&path)),
            ));
        }
        // The first line's program (claimd itself, claimd-hook, or /bin/sh): when it is
        // gone, git cannot start the hook and refuses every push.
        if let Some(program) = interpreter_of(&script).filter(|p| !is_executable(p)) {
            out.push((
                format!(
                    "{} is run by {} (its first line), which is not an executable file",
                    path.display(),
                    program.display()
                ),
                format!("{install} (it writes this claimd's path)"),
            ));
        }
        match binary_of(&script) {
            Some(bin) if is_executable(&bin) => {}
            Some(bin) => out.push((
                format!(
                    "{} calls {}, which is not an executable file",
                    path.display(),
                    bin.display()
                ),
                format!("{install} (it writes this claimd's path)"),
            )),
            None => out.push((
                format!("{} names no claimd binary", path.display()),
                install.clone(),
            )),
        }
    }
    out
}

/// `core.hooksPath` as git sees it for `repo` (its own, global or system config).
fn hooks_path(repo: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["config", "--get", "core.hooksPath"])
        .output()
        .ok()?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !value.is_empty()).then_some(value)
}

fn repository(r: &RepoConfig) -> Vec<Check> {
    let found = problems(&r.path);
    if found.is_empty() {
        let gitea = is_gitea_layout(&r.path);
        let script =
            std::fs::read_to_string(hook_path(&r.path, HOOKS[0], gitea)).unwrap_or_default();
        let bin = binary_of(&script)
            .map(|b| b.display().to_string())
            .unwrap_or_default();
        // The daemon's small client beside it (without it the hooks run the full claimd).
        let client = format!("{bin}-hook");
        let started = interpreter_of(&script).map(|p| p.display().to_string());
        let client = if started.as_deref() == Some(client.as_str()) {
            format!(" through {client}, the daemon's small client")
        } else if !is_executable(Path::new(&client)) {
            format!(" ({client} is not there: with the daemon the hooks run the full claimd, a few ms slower a push)")
        } else if started.as_deref() == Some(bin.as_str()) {
            format!(" (a daemon named in CLAIMD_DAEMON gets pre-receive's pushes from the full claimd; `claimd hooks install --daemon ADDR` starts {client} instead, about 1 ms faster a push)")
        } else {
            format!(" and, with the daemon, {client}")
        };
        return vec![Check::pass(
            "hooks",
            format!(
                "{}: pre-receive and post-receive installed ({}), executable, calling {bin}{client}",
                r.path.display(),
                if gitea {
                    "Gitea's hooks/<hook>.d/claimd"
                } else {
                    "hooks/<hook>"
                }
            ),
        )];
    }
    found
        .into_iter()
        .map(|(message, fix)| {
            if r.watch_refs {
                // Renders still happen on ref changes; pushes are not validated.
                Check::warn(
                    "hooks",
                    format!(
                        "{message} (watchRefs renders on ref changes, but pushes are not checked)"
                    ),
                    Some(fix),
                )
            } else {
                Check::fail("hooks", message, fix)
            }
        })
        .collect()
}
