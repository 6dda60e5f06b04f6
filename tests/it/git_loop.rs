//! The git loop on real git: bare repositories with the installed hooks, pushes over
//! `file://` from real clones, concurrent pushers.

use claimd::git::Repo;
use claimd::reconcile::{self, Options};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_claimd");

fn git_in(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .expect("run git")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Server {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let bare = root.join("server.git");
        let out = git_in(
            &root,
            &root,
            &["init", "-q", "--bare", "-b", "main", "server.git"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = Command::new(BIN)
            .args(["hooks", "install"])
            .arg(&bare)
            .args(["--binary", BIN])
            .output()
            .expect("install hooks");
        assert!(out.status.success(), "{}", text(&out.stderr));
        Server {
            _dir: dir,
            root,
            bare,
        }
    }

    fn git(&self, dir: &Path, args: &[&str]) -> Output {
        git_in(dir, &self.root, args)
    }

    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git(dir, args);
        assert!(
            out.status.success(),
            "git {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn clone(&self, name: &str) -> PathBuf {
        self.ok(
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

    fn log(&self) -> Vec<String> {
        let out = self.git(&self.bare, &["log", "--format=%H %ae %s", "main"]);
        text(&out.stdout).lines().map(str::to_string).collect()
    }

    fn tip(&self) -> String {
        self.ok(&self.bare, &["rev-parse", "main"])
            .trim()
            .to_string()
    }

    /// The branch's generated files are exactly a fresh render of its claims.
    fn assert_converged(&self) {
        let repo = Repo::open(&self.bare).expect("open");
        let tip = repo.branch_tip("main").expect("tip").expect("main exists");
        let (plan, _) = reconcile::plan_at(&repo, tip, &Options::default()).expect("plan");
        assert!(
            plan.is_empty(),
            "not converged: {:?}",
            plan.changes.iter().map(|c| &c.path).collect::<Vec<_>>()
        );
        self.ok(&self.bare, &["fsck", "--strict", "--no-progress"]);
    }
}

fn write_examples(work: &Path) {
    let claims = work.join("claims");
    std::fs::create_dir_all(&claims).expect("mkdir");
    for (path, text) in claimd::examples::CLAIMS {
        std::fs::write(work.join(path), text).expect("write");
    }
}

/// A clone whose example claims are pushed (and the bot commit pulled back).
fn pushed_examples(s: &Server) -> PathBuf {
    let work = s.clone("work");
    write_examples(&work);
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "add claims"]);
    s.ok(&work, &["push", "-q", "origin", "main"]);
    s.ok(&work, &["pull", "-q", "--rebase"]);
    work
}

#[test]
fn accepted_push_gets_exactly_one_bot_commit_and_a_repush_none() {
    let s = Server::new();
    let work = s.clone("work");
    write_examples(&work);
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "add claims"]);
    let push = s.git(&work, &["push", "origin", "main"]);
    assert!(push.status.success(), "{}", text(&push.stderr));
    let stderr = text(&push.stderr);
    assert!(stderr.contains("remote: claimd: rendered"), "{stderr}");
    // pre-receive rendered the push to check it and left the bot commit's blobs;
    // post-receive committed those instead of rendering again, and took the file.
    assert!(
        stderr.contains("rendered while the push was checked"),
        "{stderr}"
    );
    let prepared = s.bare.join("claimd/prepared");
    assert_eq!(
        std::fs::read_dir(&prepared).expect("prepared dir").count(),
        0,
        "nothing left in {}",
        prepared.display()
    );
    let log = s.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].contains(" claimd@localhost claimd: render "),
        "{log:?}"
    );
    let bot = log[0].split(' ').next().expect("sha").to_string();
    assert!(
        stderr.contains(&bot),
        "the pusher is told the bot commit id: {stderr}"
    );
    let files = s.ok(&s.bare, &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(
        files.lines().filter(|f| !f.starts_with("claims/")).count(),
        32,
        "{files}"
    );
    assert!(files.contains("environments/prod/prod/applications/notification-service/values.yaml"));
    let message = s.ok(&s.bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains(&format!(
            "Claimd-Source: {}",
            log[1].split(' ').next().expect("sha")
        )),
        "{message}"
    );
    s.assert_converged();

    // A push that changes no claim makes no commit.
    s.ok(&work, &["pull", "-q", "--rebase"]);
    std::fs::write(work.join("README.md"), "notes\n").expect("write");
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "docs"]);
    let push = s.git(&work, &["push", "origin", "main"]);
    assert!(push.status.success(), "{}", text(&push.stderr));
    assert!(
        text(&push.stderr).contains("claimd: generated files are up to date"),
        "{}",
        text(&push.stderr)
    );
    assert_eq!(s.log().len(), 3);
}

/// Without a daemon, pre-receive writes the bot commit and a file naming it; git starts
/// the small claimd-hook for post-receive, which moves the branch on to that commit,
/// but only from the very commit pushed (compare-and-swap). When the branch moved on,
/// the full claimd takes over and renders what the branch holds.
#[test]
fn post_receive_moves_the_branch_from_the_pushed_commit_to_pre_receives_bot_commit_only() {
    let s = Server::new();
    let work = pushed_examples(&s);
    let hook = s.bare.join("hooks/post-receive");
    let script = std::fs::read_to_string(&hook).expect("hook");
    assert!(
        script
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with("/claimd-hook"),
        "{script}"
    );
    // Pushes land with pre-receive alone; the test runs post-receive as git would.
    let aside = s.root.join("post-receive");
    std::fs::rename(&hook, &aside).expect("move aside");
    let prepared = s.bare.join("claimd/prepared");
    let push_change = |replicas: u32| {
        let path = work.join("claims/prod-apps.yaml");
        let claim = std::fs::read_to_string(&path).expect("claim");
        let changed = claim.replacen(
            &format!("replicas: {}", replicas - 1),
            &format!("replicas: {replicas}"),
            1,
        );
        assert_ne!(claim, changed, "{claim}");
        std::fs::write(&path, changed).expect("write");
        s.ok(&work, &["commit", "-qam", "replicas"]);
        let before = s.tip();
        s.ok(&work, &["push", "-q", "origin", "main"]);
        let pushed = s.tip();
        assert_eq!(pushed, s.ok(&work, &["rev-parse", "HEAD"]).trim());
        let named = std::fs::read_to_string(prepared.join(format!("{pushed}.commit")))
            .expect("pre-receive names its bot commit");
        let lines: Vec<&str> = named.lines().collect();
        assert_eq!(lines[0], "refs/heads/main", "{named}");
        let bot = lines[1].to_string();
        assert_eq!(
            s.ok(&s.bare, &["rev-parse", &format!("{bot}^")]).trim(),
            pushed,
            "the bot commit goes on top of the pushed commit"
        );
        (before, pushed, bot)
    };
    // `claimd`: the full claimd claimd-hook falls back to (CLAIMD_BIN wins over the
    // file's).
    let post_receive = |line: String, claimd: &str| {
        let mut child = Command::new(&aside)
            .current_dir(&s.bare)
            .env("GIT_DIR", ".")
            .env("CLAIMD_BIN", claimd)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run post-receive");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), line.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let left = || std::fs::read_dir(&prepared).expect("prepared").count();

    // The branch is at the pushed commit: it moves on to the bot commit, and no full
    // claimd is started for that (there is none to start).
    let (before, pushed, bot) = push_change(6);
    let nowhere = s.root.join("no-claimd-here").display().to_string();
    let said = post_receive(format!("{before} {pushed} refs/heads/main\n"), &nowhere);
    assert_eq!(s.tip(), bot);
    assert!(
        said.contains(&format!(
            "claimd: rendered claims/prod-apps.yaml → bot commit {bot} on main ("
        )),
        "{said}"
    );
    assert!(
        said.contains("rendered while the push was checked"),
        "{said}"
    );
    assert_eq!(left(), 0, "both prepared files are taken");
    s.assert_converged();

    // The branch moved on since (here: back to the last bot commit): the prepared commit
    // is not put on it; the full claimd renders what the branch holds (up to date).
    s.ok(&work, &["pull", "-q", "--rebase"]);
    let (before, pushed, bot) = push_change(7);
    s.ok(
        &s.bare,
        &["update-ref", "refs/heads/main", &before, &pushed],
    );
    let said = post_receive(format!("{before} {pushed} refs/heads/main\n"), BIN);
    assert_eq!(s.tip(), before, "not moved to {bot}");
    assert!(
        said.contains("claimd: generated files are up to date"),
        "{said}"
    );
    assert_eq!(left(), 0, "the full claimd took the prepared files");
    s.assert_converged();
}

#[test]
fn broken_claim_is_refused_and_the_ref_is_unchanged() {
    let s = Server::new();
    let work = pushed_examples(&s);
    let before = s.tip();
    std::fs::write(
        work.join("claims/bad.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {name: bad}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: web\n      chart: {name: microservice, version: \"1.0.0\"}\n      replica: 2\n",
    )
    .expect("write");
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "bad claim"]);
    let push = s.git(&work, &["push", "origin", "main"]);
    assert!(!push.status.success());
    let stderr = text(&push.stderr);
    assert!(stderr.contains("remote: claims/bad.yaml:10:7: unknown field `spec.applications[0].replica`; did you mean `replicas`?"), "{stderr}");
    assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
    assert_eq!(s.tip(), before);
}

#[test]
fn human_edit_of_a_generated_file_is_reverted_by_the_next_bot_commit() {
    let s = Server::new();
    let work = pushed_examples(&s);
    let path = "environments/prod/prod/applications/payment-service/values.yaml";
    let original = std::fs::read_to_string(work.join(path)).expect("generated file in the clone");
    std::fs::write(
        work.join(path),
        original.replace("replicaCount: 10", "replicaCount: 1"),
    )
    .expect("write");
    s.ok(&work, &["commit", "-qam", "hand edit"]);
    s.ok(&work, &["push", "-q", "origin", "main"]);
    let on_main = s.ok(&s.bare, &["show", &format!("main:{path}")]);
    assert_eq!(on_main, original);
    assert_eq!(s.log().len(), 4, "claims, bot, edit, bot revert");
}

#[test]
fn hooks_install_never_clobbers_and_supports_gitea_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    assert!(git_in(root, root, &["init", "-q", "--bare", "plain.git"])
        .status
        .success());
    std::fs::write(
        root.join("plain.git/hooks/pre-receive"),
        "#!/bin/sh\necho mine\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["hooks", "install"])
        .arg(root.join("plain.git"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("was not written by claimd; not overwriting it"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("plain.git/hooks/pre-receive")).expect("read"),
        "#!/bin/sh\necho mine\n"
    );

    // Gitea: hooks/<name>.d/ with Gitea's own `gitea` step beside ours.
    assert!(git_in(root, root, &["init", "-q", "--bare", "gitea.git"])
        .status
        .success());
    for hook in ["pre-receive", "post-receive"] {
        std::fs::create_dir_all(root.join(format!("gitea.git/hooks/{hook}.d"))).expect("mkdir");
        std::fs::write(
            root.join(format!("gitea.git/hooks/{hook}.d/gitea")),
            "#!/bin/sh\n",
        )
        .expect("write");
    }
    let out = Command::new(BIN)
        .args(["hooks", "install"])
        .arg(root.join("gitea.git"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for hook in ["pre-receive", "post-receive"] {
        let path = root.join(format!("gitea.git/hooks/{hook}.d/claimd"));
        let ours = std::fs::read_to_string(&path).expect("installed");
        let first = ours.lines().next().unwrap_or_default();
        // pre-receive checks and renders (claimd itself); post-receive only moves the
        // branch on to pre-receive's bot commit: the small client beside claimd.
        let program = if hook == "pre-receive" {
            "/claimd hook"
        } else {
            "/claimd-hook"
        };
        assert!(
            first.starts_with("#!/") && first.ends_with(program),
            "{ours}"
        );
        // Started as Gitea's dispatcher starts it (the kernel runs claimd on the file),
        // it knows which hook it is from its folder: no ref updates, nothing to do.
        let run = Command::new(&path)
            .current_dir(root.join("gitea.git"))
            .env("GIT_DIR", ".")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the hook");
        assert!(run.status.success(), "{hook}: {}", text(&run.stderr));
        assert_eq!(
            std::fs::read_to_string(root.join(format!("gitea.git/hooks/{hook}.d/gitea")))
                .expect("kept"),
            "#!/bin/sh\n"
        );
        assert!(!root.join(format!("gitea.git/hooks/{hook}")).exists());
    }
    // Reinstalling over our own hooks is fine.
    let out = Command::new(BIN)
        .args(["hooks", "install"])
        .arg(root.join("gitea.git"))
        .output()
        .expect("run");
    assert!(out.status.success());
}

/// 10 clients × 10 pushes of different claims at once: every change lands, no person's
/// commit is lost, no bot commit is empty, and the result equals a fresh render.
#[test]
fn concurrent_pushers_all_land_and_converge() {
    let s = Server::new();
    let seed = s.clone("seed");
    std::fs::create_dir_all(seed.join("claims")).expect("mkdir");
    std::fs::write(
        seed.join("claims/bootstrap.yaml"),
        claimd::examples::CLAIMS[0].1,
    )
    .expect("write");
    s.ok(&seed, &["add", "-A"]);
    s.ok(&seed, &["commit", "-qm", "bootstrap"]);
    s.ok(&seed, &["push", "-q", "origin", "main"]);

    let clients: Vec<PathBuf> = (0..10).map(|c| s.clone(&format!("client-{c}"))).collect();
    std::thread::scope(|scope| {
        for (c, work) in clients.iter().enumerate() {
            let s = &s;
            scope.spawn(move || {
                for n in 0..10 {
                    let name = format!("c{c}-n{n}");
                    let claim = format!(
                        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {{name: {name}}}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: {name}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: example.com/{name}, tag: v1}}\n"
                    );
                    std::fs::write(work.join(format!("claims/{name}.yaml")), claim).expect("write");
                    s.ok(work, &["add", "-A"]);
                    s.ok(work, &["commit", "-qm", &format!("add {name}")]);
                    let mut pushed = false;
                    for _ in 0..200 {
                        if s.git(work, &["push", "-q", "origin", "main"]).status.success() {
                            pushed = true;
                            break;
                        }
                        // Rejected (someone or the bot was first): integrate and retry.
                        let _ = s.git(work, &["pull", "-q", "--rebase", "origin", "main"]);
                    }
                    assert!(pushed, "{name} could not be pushed");
                }
            });
        }
    });
    let log = s.log();
    for c in 0..10 {
        for n in 0..10 {
            let subject = format!(" add c{c}-n{n}");
            assert!(
                log.iter().any(|l| l.ends_with(&subject)),
                "commit {subject} lost"
            );
        }
    }
    // No empty bot commit: each changes its parent's tree.
    for line in log.iter().filter(|l| l.contains(" claimd@localhost ")) {
        let sha = line.split(' ').next().expect("sha");
        let diff = s.ok(
            &s.bare,
            &["diff-tree", "--no-commit-id", "--name-only", "-r", sha],
        );
        assert!(!diff.trim().is_empty(), "empty bot commit {sha}");
    }
    let files = s.ok(&s.bare, &["ls-tree", "-r", "--name-only", "main"]);
    for c in 0..10 {
        for n in 0..10 {
            let path = format!("environments/nonprod/dev/applications/c{c}-n{n}/values.yaml");
            assert!(files.contains(&path), "{path} missing");
        }
    }
    s.assert_converged();
}

/// Publishing through the git server: the bot commit goes in by `git push` (the server's
/// hooks run for it too); the post-receive hook recognises claimd's own commit and stops.
#[test]
fn bot_commit_pushed_through_the_server_ends_there() {
    let s = Server::new();
    let work = s.clone("work");
    write_examples(&work);
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "add claims"]);
    // The daemon named in CLAIMD_DAEMON is not there: the hook falls back to rendering inline.
    let out = Command::new("git")
        .args(["push", "-q", "origin", "main"])
        .current_dir(&work)
        .env("CLAIMD_DAEMON", "127.0.0.1:9") // nobody listens: the hook renders inline
        .output()
        .expect("push");
    assert!(out.status.success());
    let before = s.log().len();
    // Now a second change rendered by `claimd reconcile --push-url`.
    s.ok(&work, &["pull", "-q", "--rebase"]);
    let claim = work.join("claims/prod-apps.yaml");
    let claim_text = std::fs::read_to_string(&claim).expect("read");
    std::fs::write(&claim, claim_text.replace("replicas: 10", "replicas: 14")).expect("write");
    s.ok(&work, &["commit", "-qam", "scale"]);
    // Bring the commit over on a side branch (not rendered), then move main by a raw ref
    // update, as a server without hooks would: only `claimd reconcile` renders it.
    let new = s.ok(&work, &["rev-parse", "HEAD"]).trim().to_string();
    s.ok(&work, &["push", "-q", "origin", "HEAD:refs/heads/tmp"]);
    s.ok(&s.bare, &["update-ref", "refs/heads/main", &new]);
    let out = Command::new(BIN)
        .args(["reconcile", "--repo"])
        .arg(&s.bare)
        .arg("--push-url")
        .arg(format!("file://{}", s.bare.display()))
        .output()
        .expect("reconcile");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = s.log();
    assert_eq!(
        log.len(),
        before + 2,
        "the change and exactly one bot commit: {log:?}"
    );
    assert!(
        log[0].contains(" claimd@localhost claimd: render claims/prod-apps.yaml"),
        "{log:?}"
    );
    s.assert_converged();
}

#[test]
fn pre_receive_warns_about_hand_edits_of_generated_files() {
    let s = Server::new();
    let work = pushed_examples(&s);
    let path = work.join("appsets/prod/apps/prod-appset.yaml");
    let original = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, original.replace("selfHeal: true", "selfHeal: false")).expect("write");
    s.ok(&work, &["commit", "-qam", "hand edit"]);
    let push = s.git(&work, &["push", "origin", "main"]);
    assert!(push.status.success());
    let stderr = text(&push.stderr);
    assert!(
        stderr.contains("claimd: warning: this push edits generated files in appsets/"),
        "{stderr}"
    );
    let on_main = s.ok(
        &s.bare,
        &["show", "main:appsets/prod/apps/prod-appset.yaml"],
    );
    assert_eq!(on_main, original, "reverted by the bot commit");
}

#[test]
fn a_bootstrap_claim_naming_another_branch_gets_a_warning() {
    let s = Server::new();
    let work = s.clone("work");
    write_examples(&work);
    let boot = work.join("claims/bootstrap-prod.yaml");
    for file in [boot, work.join("claims/bootstrap-nonprod.yaml")] {
        let claim = std::fs::read_to_string(&file).expect("read");
        std::fs::write(&file, claim.replace("branch: main", "branch: release")).expect("write");
    }
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "claims for release"]);
    let push = s.git(&work, &["push", "origin", "main"]);
    assert!(push.status.success());
    let stderr = text(&push.stderr);
    assert!(
        stderr.contains("warning: BootstrapClaim `platform-bootstrap-prod` names branch `release`, but claimd renders `main`"),
        "{stderr}"
    );
}

/// A ref lock left by a process killed mid-update (kill -9) must not block the branch
/// forever; a fresh lock (someone updating right now) must be respected.
#[test]
fn a_stale_ref_lock_is_cleared_and_a_fresh_one_respected() {
    let s = Server::new();
    let work = s.clone("work");
    write_examples(&work);
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "add claims"]);
    // Push to a side branch, then move main without hooks: nothing rendered yet.
    s.ok(&work, &["push", "-q", "origin", "HEAD:refs/heads/side"]);
    let head = s.ok(&work, &["rev-parse", "HEAD"]).trim().to_string();
    s.ok(&s.bare, &["update-ref", "refs/heads/main", &head]);
    let lock = s.bare.join("refs/heads/main.lock");
    let reconcile = || {
        Command::new(BIN)
            .args(["reconcile", "--repo"])
            .arg(&s.bare)
            .output()
            .expect("run")
    };

    std::fs::write(&lock, "").expect("lock");
    let out = reconcile();
    assert!(!out.status.success(), "a fresh lock is respected");
    assert_eq!(s.tip(), head);

    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .expect("open")
        .set_modified(old)
        .expect("mtime");
    let out = reconcile();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!lock.exists());
    assert_ne!(s.tip(), head, "the bot commit landed");
    s.assert_converged();
}

#[test]
fn values_the_chart_schema_refuses_are_refused_at_push_time() {
    let s = Server::new();
    let work = pushed_examples(&s);
    let before = s.tip();
    // Valid as a claim; the microservice chart's values.schema.json refuses the values.
    std::fs::write(
        work.join("claims/odd.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {name: odd}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: odd\n      chart: {name: microservice, version: \"1.0.0\"}\n      image: {repository: ghcr.io/acme/odd, tag: v1}\n      values:\n        service: {type: Bogus}\n",
    )
    .expect("write");
    s.ok(&work, &["add", "-A"]);
    s.ok(&work, &["commit", "-qm", "odd values"]);
    let push = s.git(&work, &["push", "origin", "main"]);
    let stderr = text(&push.stderr);
    assert!(!push.status.success(), "{stderr}");
    assert!(
        stderr.contains("remote: claims/odd.yaml:12:25: `odd`: value `service.type` is refused by the values.schema.json of chart"),
        "{stderr}"
    );
    assert_eq!(s.tip(), before, "the ref did not move");
    // A claim without an image is refused the same way (the chart needs one).
    std::fs::write(
        work.join("claims/odd.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {name: odd}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: odd\n      chart: {name: microservice, version: \"1.0.0\"}\n",
    )
    .expect("write");
    s.ok(&work, &["commit", "-qam", "no image"]);
    let push = s.git(&work, &["push", "origin", "main"]);
    let stderr = text(&push.stderr);
    assert!(!push.status.success(), "{stderr}");
    assert!(
        stderr.contains("value `image.repository` is refused"),
        "{stderr}"
    );
    assert_eq!(s.tip(), before);
}
