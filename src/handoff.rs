//! The hooks' side of the hand-off to the daemon: a small HTTP/1.1 client over
//! loopback with short timeouts (a push must not wait on a stuck daemon), the two
//! hooks as they run with a daemon, and post-receive without one when pre-receive wrote
//! the bot commit ([`publish_prepared`]).
//!
//! Nothing here uses more than the standard library: the `claimd-hook` binary is this
//! module and nothing else, so a hook that only passes git's lines to the daemon costs
//! little more than starting a process (a full claimd maps and relocates a binary a
//! hundred times larger, twice per push). When the daemon cannot answer, the hook runs
//! the full `claimd hook <name>` instead, which checks or renders in process.

use crate::reconcile::Verdict;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// The two hooks claimd installs.
pub const HOOKS: [&str; 2] = ["pre-receive", "post-receive"];

/// What a hook runs as: its name (`claimd hook pre-receive`), or the hook file
/// `claimd hooks install` wrote, whose first line makes the kernel run claimd on it
/// (`#!/usr/local/bin/claimd hook` gives `claimd hook <the file>`; no shell in
/// between). The file's `NAME='value'` lines carry what the install was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFile {
    /// `pre-receive` or `post-receive`.
    pub hook: &'static str,
    /// `CLAIMD_BIN`: the full claimd (what `claimd-hook` falls back to).
    pub bin: Option<std::path::PathBuf>,
    /// `CLAIMD_DAEMON`: the daemon the hook hands the push to.
    pub daemon: Option<String>,
    /// The folder of the hooks git runs (`hooks/`, above Gitea's `<hook>.d/`), when
    /// started on a hook file.
    pub hooks: Option<std::path::PathBuf>,
}

impl HookFile {
    /// `arg` is a hook's name, or the path of a hook file: `hooks/<hook>` or Gitea's
    /// `hooks/<hook>.d/<any>`. `Err` says what was given instead.
    pub fn from_arg(arg: &str) -> Result<HookFile, String> {
        if let Some(hook) = HOOKS.into_iter().find(|h| *h == arg) {
            return Ok(HookFile {
                hook,
                bin: None,
                daemon: None,
                hooks: None,
            });
        }
        let path = Path::new(arg);
        let named = |p: Option<&Path>, suffix: &str| {
            let name = p?.file_name()?.to_str()?.strip_suffix(suffix)?;
            HOOKS.into_iter().find(|h| *h == name)
        };
        let (hook, hooks) = match named(Some(path), "") {
            Some(hook) => (hook, path.parent()),
            None => {
                let hook = named(path.parent(), ".d").ok_or_else(|| {
                    format!("{arg}: neither pre-receive nor post-receive, nor a hook file in hooks/<hook> or hooks/<hook>.d/")
                })?;
                (hook, path.parent().and_then(Path::parent))
            }
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {arg}: {e}"))?;
        Ok(HookFile {
            hook,
            bin: setting(&text, "CLAIMD_BIN").map(std::path::PathBuf::from),
            daemon: setting(&text, "CLAIMD_DAEMON").filter(|d| !d.is_empty()),
            hooks: hooks.map(Path::to_path_buf),
        })
    }

    /// The daemon to hand the push to: `CLAIMD_DAEMON` from the environment first (as
    /// a shell's `${CLAIMD_DAEMON:-…}`), else the file's.
    pub fn daemon(&self) -> Option<String> {
        std::env::var("CLAIMD_DAEMON")
            .ok()
            .filter(|d| !d.is_empty())
            .or_else(|| self.daemon.clone())
    }
}

/// A hook file's `NAME='value'` line, unquoted as a shell would (`'\''` is a quote).
pub fn setting(text: &str, name: &str) -> Option<String> {
    let quoted = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix("='"))?
        .strip_suffix('\'')?;
    Some(quoted.replace("'\\''", "'"))
}

/// The all-zero object id: a ref created (as old) or deleted (as new).
pub const ZERO: &str = "0000000000000000000000000000000000000000";

/// One ref update as git gives it to the hooks: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefLine {
    pub old: String,
    pub new: String,
    pub name: String,
}

impl RefLine {
    /// git's lines on a hook's standard input (others are skipped).
    pub fn parse_all(input: &str) -> Vec<RefLine> {
        input
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
                parts.next().is_none().then(|| RefLine {
                    old: old.to_string(),
                    new: new.to_string(),
                    name: name.to_string(),
                })
            })
            .collect()
    }

    /// As git wrote it (for a hook run in a process of its own).
    pub fn to_line(&self) -> String {
        format!("{} {} {}\n", self.old, self.new, self.name)
    }

    fn json(&self) -> String {
        format!(
            "{{\"ref\":{},\"old\":{},\"new\":{}}}",
            json_string(&self.name),
            json_string(&self.old),
            json_string(&self.new)
        )
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path as a JSON string (the daemon reads paths as UTF-8).
fn json_path(path: &Path) -> std::io::Result<String> {
    path.to_str().map(json_string).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not UTF-8", path.display()),
        )
    })
}

/// One request to the daemon at `addr` (`host:port`): (HTTP status, body). `accept`
/// names the answer's format when the endpoint has several.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    accept: Option<&str>,
    read_timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(read_timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Request and body in one write: the daemon answers after one read, not two.
    let body = body.unwrap_or_default();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let message = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{accept}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(message.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The media type of the daemon's plain answer to a pre-receive check: `refused` or
/// `accepted` on the first line, then the lines for the pusher.
pub const VERDICT_TEXT: &str = "text/plain";

/// The daemon's verdict in [`VERDICT_TEXT`].
pub fn verdict_text(verdict: &Verdict) -> String {
    let mut out = String::from(if verdict.refused {
        "refused\n"
    } else {
        "accepted\n"
    });
    for line in &verdict.lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn parse_verdict(text: &str) -> Option<Verdict> {
    let mut lines = text.lines();
    let refused = match lines.next()? {
        "refused" => true,
        "accepted" => false,
        _ => return None,
    };
    Some(Verdict {
        refused,
        lines: lines.map(str::to_string).collect(),
    })
}

/// pre-receive's side: the daemon checks the push with its memo. Some(verdict), or None
/// when it does not serve this repository or failed (check in process then).
pub fn validate(
    addr: &str,
    repo: &Path,
    updates: &[RefLine],
    quarantine: Option<&Path>,
) -> std::io::Result<Option<Verdict>> {
    let updates: Vec<String> = updates.iter().map(RefLine::json).collect();
    let quarantine = match quarantine {
        Some(q) => json_path(q)?,
        None => "null".into(),
    };
    let body = format!(
        "{{\"repo\":{},\"updates\":[{}],\"quarantine\":{quarantine}}}",
        json_path(repo)?,
        updates.join(",")
    );
    let (status, text) = request(
        addr,
        "POST",
        "/v1/validate",
        Some(&body),
        Some(VERDICT_TEXT),
        Duration::from_secs(60),
    )?;
    Ok(if status == 200 {
        parse_verdict(&text)
    } else {
        None
    })
}

/// `POST /v1/push`: hands one branch update (or, without one, the repository) to the
/// daemon; with `wait`, the answer comes when its reconcile is done. (HTTP status, body).
pub fn push(
    addr: &str,
    repo: &Path,
    update: Option<&RefLine>,
    wait: bool,
    read_timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut body = format!("{{\"repo\":{},\"wait\":{wait}", json_path(repo)?);
    if let Some(u) = update {
        body.push_str(&format!(
            ",\"ref\":{},\"old\":{},\"new\":{}",
            json_string(&u.name),
            json_string(&u.old),
            json_string(&u.new)
        ));
    }
    body.push('}');
    request(addr, "POST", "/v1/push", Some(&body), None, read_timeout)
}

/// post-receive's side: hands one ref update to the daemon. Some(line to print; empty
/// when the daemon has nothing to do: another branch, or claimd's own commit), or None
/// when it does not serve this repository (render in process then). With `wait`, the
/// line is the reconcile's result.
pub fn post_receive(
    addr: &str,
    repo: &Path,
    update: &RefLine,
    wait: bool,
) -> std::io::Result<Option<String>> {
    let timeout = Duration::from_secs(if wait { 120 } else { 2 });
    let (status, body) = push(addr, repo, Some(update), wait, timeout)?;
    match status {
        202 => Ok(Some(
            "claimd: queued for the claimd daemon; the bot commit follows shortly".into(),
        )),
        200 => Ok(Some(format!("claimd: {body}"))),
        204 => Ok(Some(String::new())),
        404 => Ok(None),
        other => Err(std::io::Error::other(format!(
            "the daemon answered {other}: {body}"
        ))),
    }
}

/// The repository a hook runs in (git starts hooks in the bare repository, `GIT_DIR`),
/// absolute: the daemon reads it from another working directory.
pub fn hook_repo() -> std::path::PathBuf {
    let path = std::env::var_os("GIT_DIR").map_or_else(|| ".".into(), std::path::PathBuf::from);
    path.canonicalize().unwrap_or(path)
}

/// The pre-receive quarantine git keeps the pushed objects in, absolute.
pub fn quarantine() -> Option<std::path::PathBuf> {
    std::env::var_os("GIT_QUARANTINE_PATH")
        .map(std::path::PathBuf::from)
        .map(|q| q.canonicalize().unwrap_or(q))
}

/// Whether post-receive waits for the daemon's bot commit (`CLAIMD_WAIT`).
pub fn wait_requested() -> bool {
    std::env::var_os("CLAIMD_WAIT").is_some_and(|v| v != "0")
}

/// What a hook did with the daemon at `addr`.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done: print these lines (to standard error), exit with this code.
    Done { lines: Vec<String>, refused: bool },
    /// The daemon could not take these updates (print the lines first): the full hook
    /// handles them in process.
    Local {
        lines: Vec<String>,
        left: Vec<RefLine>,
    },
}

/// pre-receive with a daemon: its verdict, or every update left for the full hook.
pub fn pre_receive_hook(addr: &str, updates: Vec<RefLine>) -> Handled {
    match validate(addr, &hook_repo(), &updates, quarantine().as_deref()) {
        Ok(Some(v)) => Handled::Done {
            lines: v.lines,
            refused: v.refused,
        },
        _ => Handled::Local {
            lines: Vec::new(),
            left: updates,
        },
    }
}

/// post-receive with a daemon: each update it takes, its line; those it cannot take are
/// left for the full hook (with a line saying why).
pub fn post_receive_hook(addr: &str, updates: Vec<RefLine>) -> Handled {
    let repo = hook_repo();
    let wait = wait_requested();
    let mut lines = Vec::new();
    let mut left = Vec::new();
    for update in updates {
        if update.new == ZERO {
            continue;
        }
        match post_receive(addr, &repo, &update, wait) {
            Ok(Some(line)) => {
                if !line.is_empty() {
                    lines.push(line);
                }
                continue;
            }
            Ok(None) => lines.push(format!(
                "claimd: the daemon at {addr} does not serve this repository; rendering here"
            )),
            Err(e) => lines.push(format!(
                "claimd: the daemon at {addr} is unreachable ({e}); rendering here"
            )),
        }
        left.push(update);
    }
    if left.is_empty() {
        Handled::Done {
            lines,
            refused: false,
        }
    } else {
        Handled::Local { lines, left }
    }
}

/// A bot commit a pre-receive without a daemon wrote on top of a pushed commit, for
/// post-receive to put on the branch: `claimd/prepared/<pushed commit>.commit` in the
/// repository, three lines (the ref, the bot commit, the line that tells the pusher).
/// `claimd-hook` moves the branch with it, so that post-receive does not start a full
/// claimd (see [`publish_prepared`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub refname: String,
    pub commit: String,
    pub say: String,
}

impl Prepared {
    /// The file's name for the pushed commit `tip`, in `claimd/prepared/` (beside
    /// the `<tip>.json` of the full prepared commit).
    pub fn file_name(tip: &str) -> String {
        format!("{tip}.commit")
    }

    /// The file for the pushed commit `tip` in the repository `git_dir`.
    pub fn path(git_dir: &Path, tip: &str) -> std::path::PathBuf {
        git_dir
            .join("claimd/prepared")
            .join(Prepared::file_name(tip))
    }

    pub fn to_text(&self) -> String {
        format!("{}\n{}\n{}\n", self.refname, self.commit, self.say)
    }

    /// None: not three lines, or not a ref and an object id.
    pub fn parse(text: &str) -> Option<Prepared> {
        let mut lines = text.lines();
        let (refname, commit, say) = (lines.next()?, lines.next()?, lines.next()?);
        (lines.next().is_none() && refname.starts_with("refs/") && is_object_id(commit)).then(
            || Prepared {
                refname: refname.to_string(),
                commit: commit.to_string(),
                say: say.to_string(),
            },
        )
    }
}

/// A full hexadecimal object id (SHA-1).
fn is_object_id(s: &str) -> bool {
    s.len() == ZERO.len() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// post-receive without a daemon: each update whose pushed commit pre-receive wrote a
/// bot commit for ([`Prepared`]) moves its branch on to that commit, compare-and-swap
/// from the pushed commit (a push that came in since is never overwritten), and says
/// so: as git's files backend does it when that is all there is to it
/// ([`move_loose_ref`]), else with `git update-ref`. Deleted refs need nothing. The
/// others (no prepared commit, the branch moved, git failed) are left for the full
/// hook, which renders. `hooks`: the folder of the hooks git runs. Returns the lines to
/// print and the updates left.
pub fn publish_prepared(
    git_dir: &Path,
    hooks: &Path,
    updates: Vec<RefLine>,
) -> (Vec<String>, Vec<RefLine>) {
    let mut lines = Vec::new();
    let mut left = Vec::new();
    for update in updates {
        if update.new == ZERO {
            continue;
        }
        let path = Prepared::path(git_dir, &update.new);
        let prepared = is_object_id(&update.new)
            .then(|| std::fs::read_to_string(&path).ok())
            .flatten()
            .and_then(|text| Prepared::parse(&text))
            .filter(|p| p.refname == update.name);
        let Some(prepared) = prepared else {
            left.push(update);
            continue;
        };
        let moved = move_loose_ref(
            git_dir,
            hooks,
            &prepared.refname,
            &update.new,
            &prepared.commit,
        )
        .is_some()
            || std::process::Command::new("git")
                .arg("--git-dir")
                .arg(git_dir)
                .args(["update-ref", "-m", "claimd: render"])
                .args([&prepared.refname, &prepared.commit, &update.new])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !moved {
            left.push(update);
            continue;
        }
        // And the full prepared commit beside it, which the full claimd would have taken.
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("json"));
        lines.push(prepared.say);
    }
    (lines, left)
}

/// Moves `refname` from `old` to `new` as git's files backend does (a lock file beside
/// the ref, checked and renamed over it), when that is all git would do: a branch kept
/// as a loose file holding `old` (receive-pack just wrote it so), no reflog (git would
/// have written one when it moved the branch; none for HEAD either), no reftable, no
/// ref namespace and no reference-transaction hook in `hooks`. `None`: not so, or the
/// branch does not hold `old`; `git update-ref` decides then.
fn move_loose_ref(git_dir: &Path, hooks: &Path, refname: &str, old: &str, new: &str) -> Option<()> {
    let plain = |c: &str| {
        !c.is_empty()
            && !c.starts_with('.')
            && !c.ends_with(".lock")
            && !c.contains("..")
            && c.bytes()
                .all(|b| b > b' ' && b != 0x7f && !b"~^:?*[\\".contains(&b))
    };
    let branch = refname.strip_prefix("refs/heads/")?;
    let simple = branch.split('/').all(plain)
        && is_object_id(old)
        && is_object_id(new)
        && std::env::var_os("GIT_NAMESPACE").is_none()
        && !git_dir.join("reftable").exists()
        && !git_dir.join("logs").join(refname).exists()
        && !git_dir.join("logs/HEAD").exists()
        && !hooks.join("reference-transaction").exists();
    if !simple {
        return None;
    }
    let path = git_dir.join(refname);
    let lock = git_dir.join(format!("{refname}.lock"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
        .ok()?;
    let moved = (|| {
        let holds = std::fs::read_to_string(&path).ok()?;
        (holds == format!("{old}\n")).then_some(())?;
        file.write_all(format!("{new}\n").as_bytes()).ok()?;
        std::fs::rename(&lock, &path).ok()
    })();
    if moved.is_none() {
        let _ = std::fs::remove_file(&lock);
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::git;

    #[test]
    fn json_strings_escape_what_json_requires() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
        let parsed: String =
            serde_json::from_str(&json_string("/srv/git/we\"ird\tname")).expect("valid JSON");
        assert_eq!(parsed, "/srv/git/we\"ird\tname");
    }

    #[test]
    fn verdicts_read_back_as_written() {
        for v in [
            Verdict {
                refused: true,
                lines: vec!["claims/a.yaml:3:5: bad".into(), String::new(), "x".into()],
            },
            Verdict::default(),
        ] {
            assert_eq!(parse_verdict(&verdict_text(&v)), Some(v));
        }
        assert_eq!(parse_verdict("{\"refused\":false}"), None);
    }

    /// A bare repository with two commits on main (at the second): (its folder, the
    /// first commit, the second).
    fn two_commits() -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = |args: &[&str]| git(dir.path(), args);
        git(&["init", "-q", "--bare", "-b", "main"]);
        let tree = git(&["mktree"]);
        let first = git(&["commit-tree", &tree, "-m", "1"]);
        let second = git(&["commit-tree", &tree, "-p", &first, "-m", "2"]);
        git(&["update-ref", "refs/heads/main", &second]);
        (dir, first, second)
    }

    fn main_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("refs/heads/main")).expect("loose ref")
    }

    #[test]
    fn a_loose_branch_moves_only_from_the_commit_it_holds_and_only_when_git_would_do_no_more() {
        let (dir, first, second) = two_commits();
        let (git_dir, hooks) = (dir.path(), dir.path().join("hooks"));
        let lock = git_dir.join("refs/heads/main.lock");
        // Not at `first`: left alone, no lock left behind.
        assert_eq!(
            move_loose_ref(git_dir, &hooks, "refs/heads/main", &first, &second),
            None
        );
        assert_eq!(main_of(git_dir), format!("{second}\n"));
        assert!(!lock.exists());
        // Someone holds the lock: theirs stays, the branch too.
        std::fs::write(&lock, "").expect("lock");
        assert_eq!(
            move_loose_ref(git_dir, &hooks, "refs/heads/main", &second, &first),
            None
        );
        assert!(lock.exists());
        std::fs::remove_file(&lock).expect("unlock");
        // What git would do more (a reflog, a reference-transaction hook): left to git.
        for more in [
            "logs/refs/heads/main",
            "logs/HEAD",
            "hooks/reference-transaction",
        ] {
            let path = git_dir.join(more);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, "").expect("write");
            assert_eq!(
                move_loose_ref(git_dir, &hooks, "refs/heads/main", &second, &first),
                None,
                "{more}"
            );
            std::fs::remove_file(&path).expect("remove");
        }
        for odd in ["refs/heads/../HEAD", "refs/tags/v1", "refs/heads/a..b"] {
            assert_eq!(
                move_loose_ref(git_dir, &hooks, odd, &second, &first),
                None,
                "{odd}"
            );
        }
        assert_eq!(main_of(git_dir), format!("{second}\n"));
        // The branch holds `second`: moved to `first`, as git reads it.
        assert_eq!(
            move_loose_ref(git_dir, &hooks, "refs/heads/main", &second, &first),
            Some(())
        );
        assert_eq!(main_of(git_dir), format!("{first}\n"));
        assert!(!lock.exists());
        assert_eq!(git(git_dir, &["rev-parse", "main"]), first);
        // Only packed (no loose file): left to git.
        git(git_dir, &["pack-refs", "--all"]);
        assert_eq!(
            move_loose_ref(git_dir, &hooks, "refs/heads/main", &first, &second),
            None
        );
    }

    #[test]
    fn a_prepared_commit_reads_back_as_written_and_nothing_else_reads() {
        let p = Prepared {
            refname: "refs/heads/main".into(),
            commit: "1f9d6731a22e69b428c191c4323e9ee4f9447b76".into(),
            say: "claimd: rendered claims/a.yaml → bot commit 1f9d673 on main".into(),
        };
        assert_eq!(Prepared::parse(&p.to_text()), Some(p.clone()));
        let two_lines = format!("{}\n{}\n", p.refname, p.commit);
        let not_an_id = p.to_text().replace(&p.commit, "../../HEAD");
        let extra = format!("{}more\n", p.to_text());
        for bad in [
            two_lines,
            not_an_id,
            extra,
            p.to_text().replace("refs/", ""),
        ] {
            assert_eq!(Prepared::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn git_lines_parse_and_print_back() {
        let input = format!("{ZERO} abc refs/heads/main\nbad line\n1 2 refs/tags/v1\n");
        let lines = RefLine::parse_all(&input);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].name, "refs/heads/main");
        assert_eq!(lines[1].to_line(), "1 2 refs/tags/v1\n");
    }
}
