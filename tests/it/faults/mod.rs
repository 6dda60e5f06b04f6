//! The fault suite (issue 15, item 6). Each part runs claimd against real git, hooks,
//! daemons and servers under one kind of fault, prints what it tried and what held
//! (`FAULTS <part> …` lines, seen with `--nocapture`) and fails when an invariant breaks:
//!
//! - R1 concurrent pushers (`r1_concurrent_pushes`),
//! - R2 kill -9 during render and commit (`r2_kill9`),
//! - R3 the registry, the API server and the git server stopped and started again
//!   (`r3_outages`),
//! - R4 malformed claims (the corpus in `tests/faults/claims/`) and a fuzz of the claim
//!   and YAML readers (`r4_malformed`),
//! - R5 hostile webhooks, escaping names and namespaces claimd does not own
//!   (`r5_hostile`).
//!
//! Counts: `CLAIMD_FAULTS_SCALE=small` (the default: `cargo test`, CI) or `full`
//! (`scripts/faults`, the figures in RELIABILITY.md). Random choices come from
//! `CLAIMD_FAULTS_SEED` (default: the clock), printed so a failure can be replayed.

mod r1_concurrent_pushes;
mod r2_kill9;
mod r3_outages;
mod r4_malformed;
mod r5_hostile;

use claimd::git::Repo;
use claimd::reconcile::{self, Options};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::git::{git, git_command};

pub const BIN: &str = env!("CARGO_BIN_EXE_claimd");

/// Whether the suite runs at full counts (`CLAIMD_FAULTS_SCALE=full`).
pub fn full() -> bool {
    match std::env::var("CLAIMD_FAULTS_SCALE").as_deref() {
        Ok("full") => true,
        Ok("small") | Err(_) => false,
        Ok(other) => panic!("CLAIMD_FAULTS_SCALE is `{other}`: small or full"),
    }
}

/// `small` or `full`, as the scale says.
pub fn scaled(small: usize, full_count: usize) -> usize {
    if full() {
        full_count
    } else {
        small
    }
}

/// One line of the report: `FAULTS <part> <text>`.
pub fn report(part: &str, text: impl std::fmt::Display) {
    println!("FAULTS {part} {text}");
}

/// A small seeded generator (splitmix64) for kill points and choices.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `CLAIMD_FAULTS_SEED`, else the clock; the seed is reported.
    pub fn new(part: &str) -> Rng {
        let seed = std::env::var("CLAIMD_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        report(part, format!("seed {seed} (CLAIMD_FAULTS_SEED)"));
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// stdout of a git command that must succeed, trimmed.
pub fn out(dir: &Path, args: &[&str]) -> String {
    String::from_utf8_lossy(&git(dir, args).stdout)
        .trim()
        .to_string()
}

/// A git command that may fail.
pub fn try_git(dir: &Path, args: &[&str]) -> Output {
    git_command(dir, args).output().expect("run git")
}

/// A bare repository `server.git` (branch main, every ref update logged) in a temporary
/// folder, with claimd's hooks or without.
pub struct Server {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub bare: PathBuf,
}

impl Server {
    pub fn new(hooks: bool) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        git(&root, &["init", "-q", "--bare", "-b", "main", "server.git"]);
        let bare = root.join("server.git");
        // The reflog of main is one witness of "the ref only moved forward".
        git(&bare, &["config", "core.logAllRefUpdates", "always"]);
        // git's own `gc --auto` after a push runs before the push returns, not in the
        // background where it would race the suite's `git fsck` (objects packed and
        // pruned while fsck reads them).
        git(&bare, &["config", "gc.autoDetach", "false"]);
        if hooks {
            let o = Command::new(BIN)
                .args(["hooks", "install"])
                .arg(&bare)
                .args(["--binary", BIN])
                .output()
                .expect("install hooks");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        Server {
            _dir: dir,
            root,
            bare,
        }
    }

    /// A clone `<root>/<name>`.
    pub fn clone(&self, name: &str) -> PathBuf {
        git(
            &self.root,
            &[
                "clone",
                "-q",
                &format!("file://{}", self.bare.display()),
                name,
            ],
        );
        self.root.join(name)
    }

    pub fn tip(&self) -> String {
        out(&self.bare, &["rev-parse", "main"])
    }

    /// A daemon configuration for this repository (and `extra` YAML lines).
    pub fn daemon_config(&self, extra: &str) -> PathBuf {
        let config = self.root.join("claimd.yaml");
        std::fs::write(
            &config,
            format!("listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\n{extra}"),
        )
        .expect("config");
        config
    }
}

/// Writes the bundled example claims into a clone.
pub fn write_examples(work: &Path) {
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    for (path, text) in claimd::examples::CLAIMS {
        std::fs::write(work.join(path), text).expect("write");
    }
}

/// An ApplicationClaim `name` (environment dev) with `apps` applications at image tag `tag`.
pub fn app_claim(name: &str, apps: usize, tag: &str) -> String {
    let mut text = format!(
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {{name: {name}}}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n"
    );
    for a in 0..apps {
        text.push_str(&format!(
            "    - name: {name}-a{a}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: example.com/{name}, tag: {tag}}}\n"
        ));
    }
    text
}

/// Bot commits reachable from main (any parent), newest first.
pub fn bot_commits(bare: &Path) -> Vec<String> {
    out(bare, &["log", "--format=%H %ae", "main"])
        .lines()
        .filter(|l| l.ends_with(" claimd@localhost"))
        .map(|l| l.split(' ').next().expect("sha").to_string())
        .collect()
}

/// The bot commits among `commits` whose tree equals their parent's.
pub fn empty_commits(bare: &Path, commits: &[String]) -> Vec<String> {
    commits
        .iter()
        .filter(|c| {
            out(
                bare,
                &[
                    "diff-tree",
                    "--no-commit-id",
                    "--name-only",
                    "-r",
                    c.as_str(),
                ],
            )
            .is_empty()
        })
        .cloned()
        .collect()
}

/// What a fresh render of the claims at `commit` would change in its generated files
/// (empty: the commit's tree is a complete render of its claims).
pub fn plan_at(bare: &Path, commit: &str) -> Vec<String> {
    let repo = Repo::open(bare).expect("open");
    let id = gix::ObjectId::from_hex(commit.as_bytes()).expect("commit id");
    let (plan, _) = reconcile::plan_at(&repo, id, &Options::default()).expect("plan");
    plan.changes.iter().map(|c| c.path.clone()).collect()
}

/// The tip of main is a fresh render of its claims.
pub fn converged(bare: &Path) -> bool {
    let repo = Repo::open(bare).expect("open");
    let Some(tip) = repo.branch_tip("main").expect("tip") else {
        return false;
    };
    let (plan, _) = reconcile::plan_at(&repo, tip, &Options::default()).expect("plan");
    plan.is_empty()
}

/// `git fsck --full --strict` is clean.
pub fn fsck(bare: &Path) {
    let o = try_git(bare, &["fsck", "--full", "--strict", "--no-progress"]);
    assert!(
        o.status.success(),
        "git fsck --full: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `claimd plan` on a fresh clone of main says there is nothing to change.
pub fn fresh_clone_plans_nothing(root: &Path, bare: &Path, name: &str) {
    fresh_clone_plans_nothing_with(root, bare, name, &[], &[]);
}

/// [`fresh_clone_plans_nothing`] with more arguments and environment for `claimd plan`.
pub fn fresh_clone_plans_nothing_with(
    root: &Path,
    bare: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) {
    git(
        root,
        &["clone", "-q", &format!("file://{}", bare.display()), name],
    );
    let o = Command::new(BIN)
        .args(["plan", "--repo"])
        .arg(root.join(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("claimd plan");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("would change: 0 added, 0 modified, 0 removed"),
        "claimd plan on a fresh clone: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Whether `a` is an ancestor of (or equal to) `b`.
pub fn is_ancestor(bare: &Path, a: &str, b: &str) -> bool {
    try_git(bare, &["merge-base", "--is-ancestor", a, b])
        .status
        .success()
}

/// The reflog of main as (old, new) pairs, oldest first.
pub fn reflog(bare: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(bare.join("logs/refs/heads/main")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// The first pair of `tips` (in order) where the earlier is not an ancestor of the
/// later: a forced update. The zero id (the branch did not exist) is skipped.
pub fn first_backwards_move(bare: &Path, tips: &[String]) -> Option<(String, String)> {
    let tips: Vec<&String> = tips
        .iter()
        .filter(|t| !t.chars().all(|c| c == '0'))
        .collect();
    tips.windows(2)
        .find(|w| w[0] != w[1] && !is_ancestor(bare, w[0], w[1]))
        .map(|w| (w[0].clone(), w[1].clone()))
}

/// Polls `cond` until it holds; fails after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The files of main outside `claims/` (the generated ones), sorted.
pub fn generated_files(bare: &Path) -> Vec<String> {
    let mut files: Vec<String> = out(bare, &["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .filter(|f| !f.starts_with("claims/"))
        .map(str::to_string)
        .collect();
    files.sort();
    files
}

/// The daemon's status of its repositories (`GET /v1/status`).
pub fn daemon_status(d: &crate::support::daemon::Daemon) -> claimd::daemon::Status {
    let resp = d.get("/v1/status");
    let body = resp.split_once("\r\n\r\n").expect("a body").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The daemon's worker has served every request it got.
pub fn daemon_idle(d: &crate::support::daemon::Daemon) -> bool {
    daemon_status(d)
        .repositories
        .iter()
        .all(|r| r.work.served == r.work.requests)
}

/// Pushes main from `work`, integrating what the bot (or anyone) pushed meanwhile by
/// fetch + rebase, as a person would.
pub fn push_rebasing(work: &Path) {
    for _ in 0..50 {
        if try_git(work, &["push", "-q", "origin", "main"])
            .status
            .success()
        {
            return;
        }
        git(work, &["pull", "-q", "--rebase", "origin", "main"]);
    }
    panic!("{}: the push never landed", work.display());
}
