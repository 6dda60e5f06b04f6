//! `claimd-hook pre-receive|post-receive` (or `claimd-hook <hook file>`, as the first
//! line of a hook file `claimd hooks install` wrote makes the kernel run it): the hooks
//! when a daemon serves the repository (`CLAIMD_DAEMON`, or the file's), and
//! post-receive always. It only passes git's lines to the daemon and prints its answer,
//! or moves a branch on to the bot commit pre-receive wrote ([`claimd::handoff`], the
//! standard library and `git update-ref`, nothing else), so a push pays for starting a
//! small process instead of a full claimd. What it cannot do that way, it leaves to the
//! full hook, `claimd hook <name>` (`CLAIMD_BIN`, else the file's, else the `claimd`
//! next to this binary), with the lines it did not handle.

use claimd::handoff::{self, Handled, HookFile, RefLine};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    let file = match HookFile::from_arg(&std::env::args().nth(1).unwrap_or_default()) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("claimd-hook: {e}");
            eprintln!("usage: claimd-hook pre-receive|post-receive|<hook file> (git runs it; see `claimd hooks install`)");
            return ExitCode::from(2);
        }
    };
    let run = if file.hook == "pre-receive" {
        handoff::pre_receive_hook
    } else {
        handoff::post_receive_hook
    };
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("claimd: reading the ref updates from git: {e}");
        return ExitCode::from(2);
    }
    let updates = RefLine::parse_all(&input);
    let handled = match file.daemon() {
        Some(addr) => run(&addr, updates),
        None => Handled::Local {
            lines: Vec::new(),
            left: updates,
        },
    };
    let mut err = std::io::stderr().lock();
    match handled {
        Handled::Done { lines, refused } => {
            for line in lines {
                let _ = writeln!(err, "{line}");
            }
            if refused {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Handled::Local { lines, left } => {
            for line in lines {
                let _ = writeln!(err, "{line}");
            }
            // The bot commits a pre-receive without the daemon wrote go on their
            // branches here; only what is left starts the full claimd.
            let left = if file.hook == "post-receive" {
                let repo = handoff::hook_repo();
                let hooks = file.hooks.clone().unwrap_or_else(|| repo.join("hooks"));
                let (lines, left) = handoff::publish_prepared(&repo, &hooks, left);
                for line in lines {
                    let _ = writeln!(err, "{line}");
                }
                left
            } else {
                left
            };
            drop(err);
            if left.is_empty() {
                return ExitCode::SUCCESS;
            }
            full_hook(&file, &left)
        }
    }
}

/// `claimd hook <hook>` with `updates` on its standard input, without the daemon (this
/// process asked it already).
fn full_hook(file: &HookFile, updates: &[RefLine]) -> ExitCode {
    let claimd = std::env::var_os("CLAIMD_BIN")
        .map(PathBuf::from)
        .or_else(|| file.bin.clone())
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.with_file_name("claimd"))
        })
        .unwrap_or_else(|| PathBuf::from("claimd"));
    let child = Command::new(&claimd)
        .args(["hook", file.hook])
        .env_remove("CLAIMD_DAEMON")
        .stdin(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("claimd: cannot run {}: {e}", claimd.display());
            return ExitCode::from(2);
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let lines: String = updates.iter().map(RefLine::to_line).collect();
        let _ = stdin.write_all(lines.as_bytes());
    }
    match child.wait() {
        Ok(status) => match status.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
            None => ExitCode::from(2),
        },
        Err(e) => {
            eprintln!("claimd: {}: {e}", claimd.display());
            ExitCode::from(2)
        }
    }
}
