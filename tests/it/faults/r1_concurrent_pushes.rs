//! R1: many clients push claim changes to one repository at once, each from its own
//! clone, integrating the others' work by fetch + rebase when a push is refused (as a
//! person would). Once with the hooks alone (post-receive renders inline), once with
//! the daemon (post-receive hands off). What must hold: no accepted client commit is
//! lost, the branch only ever moved forward, no bot commit is empty, and the final tip
//! is a fresh render of its claims.

use super::*;
use crate::support::daemon::{wait_until, Daemon};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What each client pushes on its n-th push: its own claim file with 1..=3
/// applications (so generated files are added and removed) at tag v<n>.
fn client_claim(client: usize, n: usize) -> String {
    app_claim(&format!("c{client}"), 1 + n % 3, &format!("v{n}"))
}

/// Sets its flag when dropped, a panic's unwinding included.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn run(part: &str, with_daemon: bool) {
    let clients = scaled(3, 10);
    let pushes = scaled(4, 20);
    let started = Instant::now();
    let s = Server::new(true);
    let daemon = with_daemon.then(|| {
        let d = Daemon::start(&s.daemon_config(""));
        wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
        d
    });
    let daemon_env: Option<String> = daemon.as_ref().map(|d| d.addr.clone());
    let push = |dir: &Path| {
        let mut cmd = git_command(dir, &["push", "-q", "origin", "main"]);
        if let Some(addr) = &daemon_env {
            cmd.env("CLAIMD_DAEMON", addr);
        }
        cmd.output().expect("git push")
    };

    // The bootstrap claims, so the clients' environment exists.
    let seed = s.clone("seed");
    write_examples(&seed);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-qm", "examples"]);
    let o = push(&seed);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let work: Vec<PathBuf> = (0..clients).map(|c| s.clone(&format!("c{c}"))).collect();

    // A watcher keeps every tip it sees of main.
    let done = AtomicBool::new(false);
    let observed = Mutex::new(vec![s.tip()]);
    let accepted = Mutex::new(Vec::<String>::new());
    let refused = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        // The watcher stops however this ends (a failed check must not hang the suite).
        let _stop = Stop(&done);
        scope.spawn(|| {
            let repo = Repo::open(&s.bare).expect("open");
            while !done.load(Ordering::SeqCst) {
                if let Ok(Some(tip)) = repo.branch_tip("main") {
                    let tip = tip.to_string();
                    let mut seen = observed.lock().unwrap();
                    if seen.last() != Some(&tip) {
                        seen.push(tip);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let clients_done: Vec<_> = work
            .iter()
            .enumerate()
            .map(|(c, dir)| {
                let (accepted, refused, push) = (&accepted, &refused, &push);
                scope.spawn(move || {
                    for n in 0..pushes {
                        std::fs::write(dir.join(format!("claims/c{c}.yaml")), client_claim(c, n))
                            .expect("write");
                        git(dir, &["add", "-A"]);
                        git(dir, &["commit", "-qm", &format!("c{c} push {n}")]);
                        let mut attempts = 0;
                        loop {
                            let o = push(dir);
                            if o.status.success() {
                                accepted
                                    .lock()
                                    .unwrap()
                                    .push(out(dir, &["rev-parse", "HEAD"]));
                                break;
                            }
                            attempts += 1;
                            refused.fetch_add(1, Ordering::SeqCst);
                            assert!(
                                attempts < 500,
                                "c{c} push {n} never landed: {}",
                                String::from_utf8_lossy(&o.stderr)
                            );
                            // Someone (or the bot) was first: integrate and try again.
                            let _ = try_git(dir, &["pull", "-q", "--rebase", "origin", "main"]);
                        }
                    }
                })
            })
            .collect();
        for h in clients_done {
            h.join().expect("client");
        }
        if with_daemon {
            wait_until("the daemon to render the last push", || converged(&s.bare));
        }
        done.store(true, Ordering::SeqCst);
    });
    let accepted = accepted.into_inner().unwrap();
    let mut observed = observed.into_inner().unwrap();
    let tip = s.tip();
    if observed.last() != Some(&tip) {
        observed.push(tip.clone());
    }

    // No client commit lost.
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|c| !is_ancestor(&s.bare, c, &tip))
        .collect();
    assert!(lost.is_empty(), "accepted client commits lost: {lost:?}");
    assert_eq!(accepted.len(), clients * pushes);
    // No force: every tip seen, and every reflog entry, moved forward.
    assert_eq!(
        first_backwards_move(&s.bare, &observed),
        None,
        "observed tips"
    );
    let log = reflog(&s.bare);
    let flat: Vec<String> = log
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    assert_eq!(first_backwards_move(&s.bare, &flat), None, "the reflog");
    // No empty bot commit.
    let bots = bot_commits(&s.bare);
    let empty = empty_commits(&s.bare, &bots);
    assert!(empty.is_empty(), "empty bot commits: {empty:?}");
    // The final tip is a fresh render.
    assert!(converged(&s.bare), "the final tip is not a fresh render");
    fresh_clone_plans_nothing(&s.root, &s.bare, "fresh");
    fsck(&s.bare);
    if let Some(d) = daemon {
        assert!(d.terminate().success());
    }

    report(
        part,
        format!(
            "tried: {clients} clients × {pushes} concurrent pushes ({} client commits), {} pushes refused and retried after fetch + rebase, in {:.1?}",
            clients * pushes,
            refused.into_inner(),
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: {}/{} accepted client commits are ancestors of the final tip; {} tips observed and {} reflog entries, each an ancestor of the next (no force); {} bot commits, none empty; final tip = fresh render (claimd plan on a fresh clone: nothing to change); git fsck --full clean",
            accepted.len(),
            accepted.len(),
            observed.len(),
            log.len(),
            bots.len()
        ),
    );
}

#[test]
fn r1_concurrent_pushes_with_hooks_only() {
    run("R1 hooks", false);
}

#[test]
fn r1_concurrent_pushes_with_the_daemon() {
    run("R1 daemon", true);
}
