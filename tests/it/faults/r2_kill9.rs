//! R2: kill -9 at random points while claimd renders and commits: the hook processes
//! (pre-receive renders and writes the prepared bot commit and the memo, post-receive
//! commits), and the daemon (renders a handed-off push and commits). The kill point is
//! drawn uniformly from the duration observed for the same work. After each kill:
//! `git fsck --full` is clean, no ref points at a partial render (every bot commit's
//! tree is a complete render of its claims), and one more push (hooks) or a restart
//! (daemon) brings the branch to a fresh render. A memo torn or replaced by junk is
//! ignored.

use super::*;
use crate::support::daemon::{wait_until, Daemon};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Enough applications that a render takes a while (a wide window to kill in).
fn load_apps() -> usize {
    scaled(40, 150)
}

/// A repository with the examples and a large claim file pushed and rendered, and a
/// clone to push from.
fn loaded(hooks: bool) -> (Server, PathBuf) {
    let s = Server::new(hooks);
    let work = s.clone("work");
    write_examples(&work);
    std::fs::write(
        work.join("claims/load.yaml"),
        app_claim("load", load_apps(), "v0"),
    )
    .expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "claims"]);
    (s, work)
}

/// Commits a change of the `crash` claim (`round` in its tag and in the number of
/// applications, so files are added, changed and removed).
fn commit_change(work: &Path, round: usize) {
    std::fs::write(
        work.join("claims/crash.yaml"),
        app_claim("crash", 1 + round % 4, &format!("v{round}")),
    )
    .expect("write");
    // The large file changes too: the whole render is redone, not one file.
    std::fs::write(
        work.join("claims/load.yaml"),
        app_claim("load", load_apps(), &format!("v{round}")),
    )
    .expect("write");
    git(work, &["add", "-A"]);
    git(work, &["commit", "-qm", &format!("change {round}")]);
}

/// Processes of this claimd binary or of claimd-hook beside it (post-receive), and the
/// `git update-ref` claimd-hook runs, whose working folder is `dir` (hooks run in the
/// repository), with their command lines.
fn claimd_processes_in(dir: &Path) -> Vec<(i32, String)> {
    let exe = Path::new(BIN).canonicalize().expect("claimd binary");
    let client = exe.with_file_name("claimd-hook");
    let dir = dir.canonicalize().expect("dir");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let p = entry.path();
        let ours = std::fs::read_link(p.join("exe")).is_ok_and(|e| e == exe || e == client);
        let same_dir = std::fs::read_link(p.join("cwd")).is_ok_and(|c| c == dir);
        if !same_dir {
            continue;
        }
        let cmdline = std::fs::read(p.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if ours || cmdline.contains(" update-ref -m claimd: render ") {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Pushes main until git takes it (30 s at most); false when it first had to wait
/// (a ref lock not yet stale).
fn push_until_accepted(work: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = true;
    loop {
        let o = try_git(work, &["push", "-q", "origin", "main"]);
        if o.status.success() {
            return first;
        }
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("cannot lock ref") && Instant::now() < deadline,
            "the push after a kill: {stderr}"
        );
        first = false;
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until a `hook` process of claimd runs in `dir`, or the push ended; when it
/// was seen.
fn hook_started(dir: &Path, hook: &str, push: &mut std::process::Child) -> Option<Instant> {
    loop {
        if claimd_processes_in(dir)
            .iter()
            .any(|(_, cmd)| cmd.contains(hook))
        {
            return Some(Instant::now());
        }
        if push.try_wait().expect("try_wait").is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The bot commits on main not in `checked`, each checked to be a complete render
/// (fails the test otherwise); all of main's bot commits are then in `checked`.
fn check_new_bot_commits(bare: &Path, checked: &mut std::collections::HashSet<String>) {
    for c in bot_commits(bare) {
        if checked.contains(&c) {
            continue;
        }
        let left = plan_at(bare, &c);
        assert!(
            left.is_empty(),
            "bot commit {c} is a partial render: a fresh render changes {left:?}"
        );
        assert!(
            empty_commits(bare, std::slice::from_ref(&c)).is_empty(),
            "empty bot commit {c}"
        );
        checked.insert(c);
    }
}

#[test]
fn r2_kill9_hook_processes_during_render_and_commit() {
    let part = "R2 hooks";
    let kills = scaled(4, 50);
    let mut rng = Rng::new(part);
    let started = Instant::now();
    let (s, work) = loaded(true);
    // The observed durations of a push (pre-receive renders, post-receive commits) and
    // of its post-receive.
    let (mut durations, mut post_durations) = (Vec::new(), Vec::new());
    for round in 0..3 {
        commit_change(&work, round);
        let t = Instant::now();
        let mut push = git_command(&work, &["push", "-q", "origin", "main"])
            .stderr(Stdio::null())
            .spawn()
            .expect("git push");
        let post = hook_started(&s.bare, "post-receive", &mut push);
        assert!(push.wait().expect("wait").success());
        durations.push(t.elapsed());
        // post-receive (claimd-hook moving the branch, a millisecond or two) may be over
        // before a scan of /proc sees it.
        post_durations.extend(post.map(|p| p.elapsed()));
        git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    }
    let window = *durations.iter().max().expect("durations");
    let post_window = post_durations
        .iter()
        .max()
        .copied()
        .unwrap_or(Duration::from_millis(2));
    assert!(converged(&s.bare));
    let mut checked = std::collections::HashSet::new();
    check_new_bot_commits(&s.bare, &mut checked);

    // The ref locks a killed process leaves (the branch's, and HEAD's, which git takes
    // for HEAD's reflog when it moves HEAD's branch), older than claimd's stale limit:
    // the next push clears them (pre-receive) and lands.
    let locks = [
        s.bare.join("refs/heads/main.lock"),
        s.bare.join("HEAD.lock"),
    ];
    for lock in &locks {
        std::fs::write(lock, "").expect("lock");
        std::fs::File::options()
            .write(true)
            .open(lock)
            .expect("open")
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .expect("mtime");
    }
    commit_change(&work, 3);
    git(&work, &["push", "-q", "origin", "main"]);
    assert!(
        locks.iter().all(|l| !l.exists()) && converged(&s.bare),
        "a stale lock blocked the push"
    );
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);

    let (mut killed_pre, mut killed_post, mut missed, mut refused, mut unrendered) =
        (0, 0, 0, 0, 0);
    let mut waited_for_lock = 0;
    let mut round = 4;
    while killed_pre + killed_post < kills {
        assert!(
            missed < kills * 10,
            "{missed} kill points found no hook running"
        );
        round += 1;
        commit_change(&work, round);
        let before = s.tip();
        let mut push = git_command(&work, &["push", "-q", "origin", "main"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git push");
        // Every other kill point lies in post-receive (a short part of the push).
        if (killed_pre + killed_post + missed) % 2 == 1 {
            let _ = hook_started(&s.bare, "post-receive", &mut push);
            std::thread::sleep(Duration::from_micros(
                rng.below(post_window.as_micros() as u64),
            ));
        } else {
            std::thread::sleep(Duration::from_micros(rng.below(window.as_micros() as u64)));
        }
        let victims = claimd_processes_in(&s.bare);
        for (pid, _) in &victims {
            // SAFETY: a signal to a hook process of a push this test started.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let pushed = push.wait().expect("wait for git push").success();
        match victims.first() {
            None => missed += 1,
            Some((_, cmd)) if cmd.contains("pre-receive") => killed_pre += 1,
            Some(_) => killed_post += 1,
        }
        // Right after the kill: the repository is sound and no ref shows a partial render.
        fsck(&s.bare);
        check_new_bot_commits(&s.bare, &mut checked);
        let tip = s.tip();
        if !pushed {
            refused += 1;
            assert_eq!(tip, before, "a refused push moved the branch");
        } else if !converged(&s.bare) {
            unrendered += 1;
            assert_eq!(
                tip,
                out(&work, &["rev-parse", "HEAD"]),
                "an unrendered tip that is not the pushed commit"
            );
        }
        // One more push (the same commit again if it was refused, else a new change)
        // brings the branch to a fresh render.
        if pushed {
            git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
            round += 1;
            commit_change(&work, round);
        }
        // (A kill while the bot commit moved the branch leaves its ref lock: git refuses
        // pushes until the next one finds it stale and clears it, as a person retries.)
        if !push_until_accepted(&work) {
            waited_for_lock += 1;
        }
        assert!(converged(&s.bare), "not converged after one more push");
        fsck(&s.bare);
        check_new_bot_commits(&s.bare, &mut checked);
        git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    }

    // A memo torn in half, then one of junk: ignored, the push renders right.
    let memo = s.bare.join("claimd/memo");
    let bytes = std::fs::read(&memo).expect("the hooks keep a memo");
    for (what, junk) in [
        ("torn", bytes[..bytes.len() / 2].to_vec()),
        ("junk", b"\x93\xa5claimd\xc0\xff not a memo".to_vec()),
    ] {
        std::fs::write(&memo, &junk).expect("write memo");
        round += 1;
        commit_change(&work, round);
        git(&work, &["push", "-q", "origin", "main"]);
        assert!(converged(&s.bare), "a {what} memo changed the result");
        check_new_bot_commits(&s.bare, &mut checked);
        git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    }
    fresh_clone_plans_nothing(&s.root, &s.bare, "fresh");

    report(
        part,
        format!(
            "tried: {} kill -9 of hook processes at random points of a push ({killed_pre} in pre-receive, {killed_post} in post-receive; {missed} more kill points found no hook running), drawn from the observed push duration {window:.0?} (every other one from post-receive's, {post_window:.0?}; {}+ applications); then a torn memo and a junk memo; in {:.1?}",
            killed_pre + killed_post,
            load_apps(),
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: after every kill git fsck --full clean and {} bot commits each a complete render (none partial, none empty); {refused} pushes refused with the branch unchanged, {unrendered} accepted without their bot commit; every time one more push converged to a fresh render ({waited_for_lock} times it was refused first, for a few seconds, by the ref lock a killed bot commit left, until pre-receive found it stale and cleared it); stale ref locks (the branch's, HEAD's) are cleared by the next push; torn and junk memos ignored (fresh render); a fresh clone plans nothing",
            checked.len()
        ),
    );
}

#[test]
fn r2_kill9_the_daemon_during_render_and_commit() {
    let part = "R2 daemon";
    let kills = scaled(3, 50);
    let mut rng = Rng::new(part);
    let started = Instant::now();
    let (s, work) = loaded(true);
    let config = s.daemon_config("");
    let push = |work: &Path, addr: &str| {
        let o = git_command(work, &["push", "-q", "origin", "main"])
            .env("CLAIMD_DAEMON", addr)
            .output()
            .expect("push");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let mut d = Daemon::start(&config);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    // The observed duration from a handed-off push to its bot commit.
    let mut durations = Vec::new();
    let repo = Repo::open(&s.bare).expect("open");
    let bot_commit_on = |pushed: &str| {
        let tip = repo.branch_tip("main").expect("tip").expect("main");
        tip != gix::ObjectId::from_hex(pushed.as_bytes()).expect("commit id")
    };
    for round in 0..3 {
        commit_change(&work, round);
        push(&work, &d.addr);
        let t = Instant::now();
        let pushed = s.tip();
        wait_until("the bot commit", || bot_commit_on(&pushed));
        durations.push(t.elapsed());
        assert!(converged(&s.bare));
        git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    }
    let window = *durations.iter().max().expect("durations");
    let mut checked = std::collections::HashSet::new();
    check_new_bot_commits(&s.bare, &mut checked);

    let (mut before_commit, mut after_commit) = (0, 0);
    for k in 0..kills {
        commit_change(&work, 3 + k);
        push(&work, &d.addr);
        let pushed = s.tip();
        std::thread::sleep(Duration::from_micros(rng.below(window.as_micros() as u64)));
        d.kill9();
        if bot_commit_on(&pushed) {
            after_commit += 1;
        } else {
            before_commit += 1;
        }
        fsck(&s.bare);
        check_new_bot_commits(&s.bare, &mut checked);
        // A restart renders what the killed daemon did not.
        d = Daemon::start(&config);
        wait_until("convergence after a restart", || converged(&s.bare));
        fsck(&s.bare);
        check_new_bot_commits(&s.bare, &mut checked);
        git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    }
    assert!(d.terminate().success());
    fresh_clone_plans_nothing(&s.root, &s.bare, "fresh");

    report(
        part,
        format!(
            "tried: {kills} kill -9 of the daemon at random points after a handed-off push, drawn from the observed push-to-bot-commit duration {window:.0?} ({before_commit} before the bot commit landed, {after_commit} after); in {:.1?}",
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: after every kill git fsck --full clean and {} bot commits each a complete render (none partial, none empty); every restart converged to a fresh render without a new push; a fresh clone plans nothing",
            checked.len()
        ),
    );
}
