//! `claimd serve` as a real process: hook hand-off, start-up reconcile, graceful stop,
//! two daemons on one repository, and kill -9 at random points.

use claimd::git::Repo;
use claimd::reconcile::{self, Options};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_claimd");

use crate::support::daemon as support_daemon;
use crate::support::git as support_git;
use crate::support::registry;
use support_daemon::{wait_until, Daemon};
use support_git::git;

fn converged(bare: &Path) -> bool {
    let repo = Repo::open(bare).expect("open");
    let Some(tip) = repo.branch_tip("main").expect("tip") else {
        return false;
    };
    let (plan, _) = reconcile::plan_at(&repo, tip, &Options::default()).expect("plan");
    plan.is_empty()
}

struct Setup {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
    config: PathBuf,
}

/// A bare repository (hooks installed or not), a clone with the example claims committed,
/// and a daemon config for it.
fn setup(hooks: bool) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().to_path_buf();
    git(&root, &["init", "-q", "--bare", "-b", "main", "server.git"]);
    let bare = root.join("server.git");
    if hooks {
        let out = Command::new(BIN)
            .args(["hooks", "install"])
            .arg(&bare)
            .args(["--binary", BIN])
            .output()
            .expect("install");
        assert!(out.status.success());
    }
    let work = crate::support::git::clone_with_examples(&root, &bare);
    let config = root.join("claimd.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\n",
    )
    .expect("config");
    Setup {
        _dir: dir,
        bare,
        work,
        config,
    }
}

/// `GET /v1/status`.
fn status(d: &Daemon) -> claimd::daemon::Status {
    let resp = d.get("/v1/status");
    let body = resp.split_once("\r\n\r\n").expect("a body").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The work counters of one repository (None: the daemon does not serve it).
fn work(d: &Daemon, repo: &Path) -> Option<claimd::daemon::WorkStatus> {
    let repo = repo.canonicalize().expect("canonical");
    status(d)
        .repositories
        .into_iter()
        .find(|r| r.repository == repo)
        .map(|r| r.work)
}

/// Waits until every file event made before this call has been handled and every
/// worker has served every request: the config file is rewritten with its own content
/// (the daemon counts the check once every event before it is handled; the content did
/// not change, so nothing is reloaded), then the workers are waited for.
fn settle(d: &Daemon, config: &Path) {
    let before = status(d).daemon.config_checks;
    std::fs::write(config, std::fs::read(config).expect("read config")).expect("rewrite");
    wait_until("the config check", || {
        status(d).daemon.config_checks > before
    });
    wait_until("idle workers", || {
        status(d)
            .repositories
            .iter()
            .all(|r| r.work.served == r.work.requests)
    });
}

/// Replaces a file the way editors and configuration management do: a temporary
/// file renamed over it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn bot_commits(bare: &Path) -> usize {
    let out = git(bare, &["log", "--format=%ae", "main"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "claimd@localhost")
        .count()
}

#[test]
fn hooks_hand_off_to_the_daemon_which_commits_and_stops_gracefully() {
    let s = setup(true);
    let d = Daemon::start(&s.config);
    assert!(d.get("/healthz").starts_with("HTTP/1.1 200"));
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let out = Command::new("git")
        .args(["push", "origin", "main"])
        .current_dir(&s.work)
        .env("CLAIMD_DAEMON", &d.addr)
        .output()
        .expect("push");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queued for the claimd daemon"), "{stderr}");
    wait_until("the bot commit", || bot_commits(&s.bare) == 1);
    assert!(converged(&s.bare));
    assert!(d.terminate().success(), "SIGTERM ends the daemon cleanly");
}

#[test]
fn start_up_reconcile_heals_pushes_made_while_down() {
    let s = setup(false);
    git(&s.work, &["push", "-q", "origin", "main"]); // no hooks, no daemon: nothing rendered
    assert_eq!(bot_commits(&s.bare), 0);
    let d = Daemon::start(&s.config);
    wait_until("the start-up bot commit", || bot_commits(&s.bare) == 1);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    assert!(converged(&s.bare));
    d.kill9();
}

#[test]
fn two_daemons_on_one_repository_make_one_commit_per_change() {
    let s = setup(false);
    git(&s.work, &["push", "-q", "origin", "main"]);
    let a = Daemon::start(&s.config);
    let b = Daemon::start(&s.config);
    wait_until("convergence", || converged(&s.bare));
    assert_eq!(bot_commits(&s.bare), 1);
    // A second change, announced to both daemons at once.
    git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    let claim = s.work.join("claims/prod-apps.yaml");
    let text = std::fs::read_to_string(&claim).expect("read");
    std::fs::write(&claim, text.replace("replicas: 10", "replicas: 11")).expect("write");
    git(&s.work, &["commit", "-qam", "scale"]);
    git(&s.work, &["push", "-q", "origin", "main"]);
    let repo = s.bare.canonicalize().expect("canonical");
    for d in [&a, &b] {
        assert!(claimd::server::hand_off(&d.addr, &repo).expect("hand off"));
    }
    wait_until("convergence", || converged(&s.bare));
    assert_eq!(bot_commits(&s.bare), 2, "one bot commit per change");
    a.kill9();
    b.kill9();
    git(&s.bare, &["fsck", "--strict", "--no-progress"]);
}

#[test]
fn kill_9_at_random_points_then_restart_converges() {
    let s = setup(false);
    // Enough applications that a render takes a while.
    let mut big = String::new();
    for i in 0..400 {
        big.push_str(&format!(
            "---\napiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {{name: load-{i}}}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: load-{i}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: example.com/load-{i}, tag: v1}}\n"
        ));
    }
    std::fs::write(s.work.join("claims/load.yaml"), big).expect("write");
    git(&s.work, &["add", "-A"]);
    git(&s.work, &["commit", "-qm", "load"]);
    let mut seed: u64 = 0x5eed;
    for run in 0..20 {
        // A change that needs rendering, pushed while no daemon runs.
        std::fs::write(
            s.work.join("claims/crash.yaml"),
            format!("apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {{name: crash}}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: crash\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: example.com/crash, tag: v{run}}}\n"),
        )
        .expect("write");
        git(&s.work, &["add", "-A"]);
        git(&s.work, &["commit", "-qam", &format!("change {run}")]);
        git(&s.work, &["push", "-q", "origin", "main"]);
        let d = Daemon::start(&s.config);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 400)); // the random kill point
        d.kill9();
        let d = Daemon::start(&s.config);
        wait_until("convergence after a crash", || converged(&s.bare));
        d.kill9();
        git(&s.bare, &["fsck", "--strict", "--no-progress"]);
        git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    }
}

#[test]
fn a_repository_added_to_the_config_is_picked_up_without_a_restart() {
    let s = setup(false);
    git(&s.work, &["push", "-q", "origin", "main"]);
    std::fs::write(&s.config, "listen: 127.0.0.1:0\nrepositories: []\n").expect("config");
    let d = Daemon::start(&s.config);
    assert!(
        d.get("/readyz").starts_with("HTTP/1.1 200"),
        "nothing to reconcile: ready at once"
    );
    assert_eq!(bot_commits(&s.bare), 0);
    // The file watcher reloads the configuration; the new repository is reconciled.
    std::fs::write(
        &s.config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\n",
    )
    .expect("config");
    wait_until("the new repository's bot commit", || {
        bot_commits(&s.bare) == 1
    });
    assert!(converged(&s.bare));
    assert!(d.terminate().success());
}

#[test]
fn watched_refs_trigger_a_render_without_hooks() {
    let s = setup(false);
    std::fs::write(
        &s.config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\n    watchRefs: true\n",
    )
    .expect("config");
    let d = Daemon::start(&s.config);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    // A push to a server without hooks: only the ref change on disk tells the daemon.
    git(&s.work, &["push", "-q", "origin", "main"]);
    wait_until("the bot commit", || bot_commits(&s.bare) == 1);
    assert!(converged(&s.bare));
    assert!(d.terminate().success());
}

#[test]
fn the_config_reloads_only_when_its_content_changes_and_renders_only_what_changed() {
    let s = setup(false);
    git(&s.work, &["push", "-q", "origin", "main"]);
    let root = s.config.parent().expect("root").to_path_buf();
    git(&root, &["init", "-q", "--bare", "-b", "main", "other.git"]);
    let other = root.join("other.git");
    git(
        &s.work,
        &["push", "-q", &format!("file://{}", other.display()), "main"],
    );
    let log = root.join("daemon.log");
    let d = Daemon::start_logging(&s.config, Some(&log));
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    settle(&d, &s.config);
    let first = work(&d, &s.bare).expect("served");
    assert_eq!(first.reconciles, 1, "{first:?}");
    let checks = status(&d).daemon.config_checks;

    // Touched once: the file is read, its content is the same, nothing happens.
    let out = Command::new("touch")
        .arg(&s.config)
        .output()
        .expect("touch");
    assert!(out.status.success());
    wait_until("the touch to be looked at", || {
        status(&d).daemon.config_checks > checks
    });
    settle(&d, &s.config);
    let st = status(&d);
    assert_eq!(st.daemon.config_reloads, 0, "{:?}", st.daemon);
    assert_eq!(
        work(&d, &s.bare),
        Some(first.clone()),
        "no request, no render"
    );

    // A repository added: it alone is rendered, once.
    write_atomically(
        &s.config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\n  - path: other.git\n",
    );
    wait_until("the reload", || status(&d).daemon.config_reloads == 1);
    wait_until("the new repository's render", || {
        work(&d, &other).is_some_and(|w| w.reconciles == 1)
    });
    settle(&d, &s.config);
    let st = status(&d);
    assert_eq!(st.daemon.config_reloads, 1, "{:?}", st.daemon);
    assert_eq!(st.daemon.config_errors, 0, "{:?}", st.daemon);
    assert_eq!(work(&d, &other).expect("served").reconciles, 1);
    assert_eq!(
        work(&d, &s.bare),
        Some(first),
        "the repository already there is not asked for anything"
    );
    assert_eq!(bot_commits(&other), 1);

    // A broken edit is refused; the running configuration stays.
    write_atomically(&s.config, "listen: 127.0.0.1:0\nrepos: []\n");
    wait_until("the refusal", || status(&d).daemon.config_errors == 1);
    assert_eq!(status(&d).repositories.len(), 2);
    assert!(d.terminate().success());

    let log = std::fs::read_to_string(&log).expect("log");
    let reloads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("configuration reloaded"))
        .collect();
    let other = other.canonicalize().expect("canonical");
    assert_eq!(reloads.len(), 1, "{log}");
    assert!(
        reloads[0].contains(&format!("repositories added: {}", other.display())),
        "{log}"
    );
    assert!(log.contains("unknown field `repos`"), "{log}");
    assert!(!log.contains('\u{1b}'), "no terminal colours in a log file");
}

#[test]
fn watched_refs_render_only_when_the_branch_moved() {
    let s = setup(false);
    git(&s.work, &["push", "-q", "origin", "main"]);
    std::fs::write(
        &s.config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\n    watchRefs: true\n",
    )
    .expect("config");
    let d = Daemon::start(&s.config);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    assert_eq!(bot_commits(&s.bare), 1);
    settle(&d, &s.config);
    let first = work(&d, &s.bare).expect("served");
    assert_eq!(first.reconciles, 1, "{first:?}");
    assert!(
        first.unchanged >= 1,
        "its own bot commit was looked at and left alone: {first:?}"
    );
    let ignored = status(&d).daemon.watch_ignored;

    // Reads of the repository are not a reason to do anything.
    for _ in 0..5 {
        git(&s.bare, &["log", "--oneline", "main"]);
        git(&s.bare, &["for-each-ref"]);
        git(&s.bare, &["rev-parse", "main"]);
        let out = Command::new(BIN)
            .args(["plan", "--repo"])
            .arg(&s.bare)
            .output()
            .expect("claimd plan");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("would change: 0 added, 0 modified, 0 removed"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    settle(&d, &s.config);
    assert_eq!(work(&d, &s.bare), Some(first.clone()), "no request at all");
    assert!(
        status(&d).daemon.watch_ignored > ignored,
        "the reads were seen, and dropped"
    );

    // A push written to disk without hooks: one render, one bot commit; that bot
    // commit is looked at and left alone.
    git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    let claim = s.work.join("claims/prod-apps.yaml");
    let text = std::fs::read_to_string(&claim).expect("read");
    std::fs::write(&claim, text.replace("replicas: 10", "replicas: 12")).expect("write");
    git(&s.work, &["commit", "-qam", "scale"]);
    git(&s.work, &["push", "-q", "origin", "main"]);
    wait_until("the bot commit", || bot_commits(&s.bare) == 2);
    settle(&d, &s.config);
    let after = work(&d, &s.bare).expect("served");
    assert_eq!(after.reconciles, first.reconciles + 1, "{after:?}");
    assert!(after.unchanged > first.unchanged, "{after:?}");
    let tip = String::from_utf8_lossy(&git(&s.bare, &["rev-parse", "main"]).stdout)
        .trim()
        .to_string();
    assert_eq!(after.tip.as_deref(), Some(tip.as_str()));
    assert!(converged(&s.bare));
    assert!(d.terminate().success());
}

#[test]
fn wait_mode_prints_the_bot_commit_the_daemon_made() {
    let s = setup(true);
    let d = Daemon::start(&s.config);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let out = Command::new("git")
        .args(["push", "origin", "main"])
        .current_dir(&s.work)
        .env("CLAIMD_DAEMON", &d.addr)
        .env("CLAIMD_WAIT", "1")
        .output()
        .expect("push");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tip = String::from_utf8_lossy(&git(&s.bare, &["rev-parse", "main"]).stdout)
        .trim()
        .to_string();
    assert!(
        stderr.contains(&format!("remote: claimd: bot commit {tip} on main")),
        "{stderr}"
    );
    assert_eq!(
        bot_commits(&s.bare),
        1,
        "the bot commit is there when the push returns"
    );
    assert!(d.terminate().success());
}

#[test]
fn pre_receive_validates_through_the_daemon_and_refuses_bad_claims() {
    let s = setup(true);
    let d = Daemon::start(&s.config);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    std::fs::write(
        s.work.join("claims/bad.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {name: bad}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: Bad\n      chart: {name: microservice, version: \"1.0.0\"}\n",
    )
    .expect("write");
    git(&s.work, &["add", "-A"]);
    git(&s.work, &["commit", "-qm", "bad"]);
    // The daemon's answer for a commit it can see (pushed to a branch claimd ignores).
    git(&s.work, &["push", "-q", "origin", "HEAD:refs/heads/side"]);
    let commit = String::from_utf8_lossy(&git(&s.work, &["rev-parse", "HEAD"]).stdout)
        .trim()
        .to_string();
    let repo = s.bare.canonicalize().expect("canonical");
    // main does not exist yet on the server: git gives the all-zero id as its old tip.
    let main = "0".repeat(40);
    // Asked as pre-receive would ask for main: refused, with the claim's position.
    let update = (main.clone(), commit.clone(), "refs/heads/main".to_string());
    let verdict = claimd::server::pre_receive_remote(&d.addr, &repo, &[update], None)
        .expect("reachable")
        .expect("served");
    assert!(verdict.refused, "{verdict:?}");
    assert!(
        verdict
            .lines
            .iter()
            .any(|l| l.starts_with("claims/bad.yaml:8:13: `Bad` is not a valid name")),
        "{verdict:?}"
    );
    // Another branch is not claimd's to check.
    let side = (main, commit, "refs/heads/side".to_string());
    let verdict = claimd::server::pre_receive_remote(&d.addr, &repo, &[side], None)
        .expect("reachable")
        .expect("served");
    assert!(!verdict.refused && verdict.lines.is_empty(), "{verdict:?}");
    // And the real push to main is refused.
    let out = Command::new("git")
        .args(["push", "origin", "main"])
        .current_dir(&s.work)
        .env("CLAIMD_DAEMON", &d.addr)
        .output()
        .expect("push");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remote: claims/bad.yaml:8:13: `Bad` is not a valid name"),
        "{stderr}"
    );
    assert!(d.terminate().success());
}

#[test]
fn a_chart_registry_that_comes_back_is_retried_without_a_new_push() {
    let s = setup(false);
    let mut reg = registry::Registry::start(None);
    let (host, root) = (reg.host(), s.config.parent().expect("root"));
    // The charts are published, then the registry goes away before claimd ever saw it.
    let repository = reg.publish_charts(&root.join("publish-cache"));
    reg.stop();
    // The claims take their charts from the (stopped) registry.
    for (path, text) in claimd::examples::CLAIMS {
        let text = text.replace("oci://ghcr.io/nimbusprotch", &repository);
        std::fs::write(s.work.join(path), text).expect("write");
    }
    git(
        &s.work,
        &["commit", "-qam", "charts from the test registry"],
    );
    git(&s.work, &["push", "-q", "origin", "main"]);
    std::fs::write(
        &s.config,
        format!("listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\ncharts: oci\nregistries:\n  cache: chart-cache\n  refresh: 0\n  hosts:\n    \"{host}\": {{plainHttp: true}}\n"),
    )
    .expect("config");
    let d = Daemon::start(&s.config);
    wait_until("the first reconcile", || {
        d.get("/readyz").starts_with("HTTP/1.1 200")
    });
    let values = "environments/nonprod/dev/applications/notification-service/values.yaml";
    let rendered = || {
        let out = Command::new("git")
            .args(["show", &format!("main:{values}")])
            .current_dir(&s.bare)
            .output()
            .expect("git show");
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&repository)
    };
    assert!(
        !rendered(),
        "nothing can be rendered while the registry is down"
    );
    // The registry comes back (with the charts); no push: the daemon's retry renders.
    reg.start_again();
    wait_until("the retried render", rendered);
    d.terminate();
}

/// Hooks installed for a daemon that is not there (stopped, another port): they say so,
/// and check and render in process (claimd-hook runs the full hook), nothing is lost.
#[test]
fn hooks_without_their_daemon_check_and_render_in_process() {
    let s = setup(true);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    std::fs::write(
        s.work.join("claims/bad.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {name: bad}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: Bad\n      chart: {name: microservice, version: \"1.0.0\"}\n",
    )
    .expect("write");
    git(&s.work, &["add", "-A"]);
    git(&s.work, &["commit", "-qm", "bad"]);
    let push = || {
        Command::new("git")
            .args(["push", "origin", "main"])
            .current_dir(&s.work)
            .env("CLAIMD_DAEMON", &closed)
            .output()
            .expect("push")
    };
    let out = push();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("remote: claims/bad.yaml:8:13: `Bad` is not a valid name"),
        "{stderr}"
    );
    std::fs::remove_file(s.work.join("claims/bad.yaml")).expect("rm");
    git(&s.work, &["commit", "-qam", "fixed"]);
    let out = push();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("claimd: the daemon at {closed} is unreachable"))
            && stderr.contains("rendering here"),
        "{stderr}"
    );
    assert!(stderr.contains("→ bot commit"), "{stderr}");
    assert_eq!(bot_commits(&s.bare), 1);
    assert!(converged(&s.bare));
}

/// `claimd-hook` alone: what it does without a daemon set, and with arguments it does
/// not know.
#[test]
fn the_hook_client_runs_the_full_hook_without_a_daemon() {
    let s = setup(true);
    let client = Path::new(BIN).with_file_name("claimd-hook");
    let out = Command::new(&client).output().expect("claimd-hook");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: claimd-hook"));
    // No CLAIMD_DAEMON: the full post-receive renders the pushed branch in process.
    let hooks = s.bare.join("hooks");
    std::fs::rename(hooks.join("post-receive"), hooks.join("post-receive.off")).expect("off");
    git(&s.work, &["push", "-q", "origin", "main"]);
    let tip = String::from_utf8_lossy(&git(&s.bare, &["rev-parse", "main"]).stdout)
        .trim()
        .to_string();
    let mut child = Command::new(&client)
        .arg("post-receive")
        .env("GIT_DIR", &s.bare)
        .env("CLAIMD_BIN", BIN)
        .env_remove("CLAIMD_DAEMON")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{} {tip} refs/heads/main\n", "0".repeat(40)).as_bytes())
        .expect("lines");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("→ bot commit"), "{stderr}");
    assert_eq!(bot_commits(&s.bare), 1);
    assert!(converged(&s.bare));
}

/// A busy server gathers many packs between two of git's `gc --auto` (every push of 100
/// objects or more is kept as a pack): the daemon's kept handle must read through all
/// of them (gix's default table, sized for the packs there at opening, overflowed).
#[test]
fn the_daemon_reads_a_repository_that_gathered_many_packs() {
    let s = setup(true);
    git(&s.work, &["push", "-q", "origin", "main"]); // no daemon yet: rendered in process
    let d = Daemon::start(&s.config);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let push = |what: &str| {
        let out = Command::new("git")
            .args(["push", "origin", "main"])
            .current_dir(&s.work)
            .env("CLAIMD_DAEMON", &d.addr)
            .env("CLAIMD_WAIT", "1")
            .output()
            .expect("push");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("remote: claimd: bot commit"),
            "{what}: {stderr}"
        );
    };
    // A push the daemon serves: it keeps the repository's handle open for a while.
    git(&s.work, &["pull", "-q", "origin", "main"]);
    let bootstrap = s.work.join("claims/bootstrap-nonprod.yaml");
    let text = std::fs::read_to_string(&bootstrap).expect("read");
    std::fs::write(
        &bootstrap,
        text.replace(
            "url: oci://ghcr.io/nimbusprotch",
            "url: oci://registry.example.com/charts",
        ),
    )
    .expect("write");
    git(&s.work, &["commit", "-qam", "first"]);
    push("first");
    // Meanwhile, the packs of many pushes.
    for i in 0..60 {
        let blob = git_with_input(
            &s.bare,
            &["hash-object", "-w", "--stdin"],
            &format!("pack {i}\n"),
        );
        let id = String::from_utf8_lossy(&blob.stdout).trim().to_string();
        git_with_input(&s.bare, &["pack-objects", "-q", "objects/pack/pack"], &id);
    }
    let packs = std::fs::read_dir(s.bare.join("objects/pack"))
        .expect("packs")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "idx"))
        })
        .count();
    assert!(packs >= 60, "{packs} packs");
    // The push's objects go into a pack too: the daemon finds them only in a new pack.
    git(&s.bare, &["config", "receive.unpackLimit", "1"]);
    git(&s.work, &["pull", "-q", "origin", "main"]);
    std::fs::write(
        s.work.join("claims/late.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {name: late}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: late\n      chart: {name: microservice, version: \"1.0.0\"}\n      image: {repository: example.com/late, tag: v1}\n",
    )
    .expect("write");
    git(&s.work, &["add", "-A"]);
    git(&s.work, &["commit", "-qm", "late"]);
    push("after the packs");
    assert!(converged(&s.bare));
    assert!(d.terminate().success());
}

fn git_with_input(dir: &Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = crate::support::git::git_command(dir, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("input");
    let out = child.wait_with_output().expect("git");
    assert!(out.status.success(), "git {args:?}");
    out
}
