//! The incremental path (the memo kept between reconciles, in memory as the daemon
//! does, or on disk between processes as the hooks do) must give exactly what a full
//! render gives, step after step of real changes.

use claimd::claims::Diagnostic;
use claimd::git::Repo;
use claimd::pipeline::{self, store};
use claimd::reconcile::{self, Memo, Options};
use claimd::render::Plan;
use std::path::Path;

use crate::support::git as support_git;
use support_git::{git, server_and_work};

fn app_claim(name: &str, env: &str, tag: &str) -> String {
    format!(
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {{name: {name}}}\nspec:\n  environment: {env}\n  clusterType: nonprod\n  applications:\n    - name: {name}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: example.com/{name}, tag: {tag}}}\n"
    )
}

fn plan_with(
    repo: &Repo,
    tip: claimd::git::ObjectId,
    opts: &Options,
    memo: &mut Memo,
) -> (Plan, Vec<Diagnostic>) {
    let branch = reconcile::branch_of(repo, opts);
    let planned = pipeline::at_commit(repo, tip, &reconcile::request(opts, &branch), memo)
        .expect("incremental");
    (planned.plan, planned.diagnostics)
}

/// The memo the hooks left in the repository.
fn stored(repo: &Repo) -> Memo {
    store::load(repo.path())
}

#[test]
fn incremental_plans_equal_full_plans() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let (bare, work) = server_and_work(root);
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    for (path, text) in claimd::examples::CLAIMS {
        std::fs::write(work.join(path), text).expect("write");
    }
    let opts = Options::default();
    let mut cache = Memo::default();
    let mut daemon = Memo::batched();
    let memo_file = bare.join("claimd/memo");

    type Step = Box<dyn Fn(&Path)>;
    let steps: Vec<(&str, Step)> = vec![
        (
            // More claim files than a batch of the daemon's render (a change of context
            // renders them in several batches, each parsed again from its outline).
            "initial claims",
            Box::new(|w| {
                for i in 0..12 {
                    let name = format!("bulk-{i:02}");
                    let text = app_claim(&name, ["dev", "qa"][i % 2], "v1");
                    std::fs::write(w.join(format!("claims/{name}.yaml")), text).expect("w");
                }
            }),
        ),
        (
            "add a claim file",
            Box::new(|w| {
                std::fs::write(w.join("claims/a.yaml"), app_claim("app-a", "dev", "v1")).expect("w")
            }),
        ),
        (
            "change it",
            Box::new(|w| {
                std::fs::write(w.join("claims/a.yaml"), app_claim("app-a", "dev", "v2")).expect("w")
            }),
        ),
        (
            "add another",
            Box::new(|w| {
                std::fs::write(w.join("claims/b.yaml"), app_claim("app-b", "qa", "v1")).expect("w")
            }),
        ),
        (
            "break one (invalid)",
            Box::new(|w| std::fs::write(w.join("claims/b.yaml"), "kind: [").expect("w")),
        ),
        (
            "conflict across files",
            Box::new(|w| {
                std::fs::write(
                    w.join("claims/c.yaml"),
                    app_claim("app-a", "dev", "v9").replace("name: app-a}", "name: app-c}"),
                )
                .expect("w")
            }),
        ),
        (
            "fix both",
            Box::new(|w| {
                std::fs::write(w.join("claims/b.yaml"), app_claim("app-b", "qa", "v3")).expect("w");
                std::fs::remove_file(w.join("claims/c.yaml")).expect("rm");
            }),
        ),
        (
            "change a bootstrap (context)",
            Box::new(|w| {
                let p = w.join("claims/bootstrap-nonprod.yaml");
                let t = std::fs::read_to_string(&p).expect("r");
                std::fs::write(
                    &p,
                    t.replace(
                        "url: oci://ghcr.io/nimbusprotch",
                        "url: oci://registry.example.com/charts",
                    ),
                )
                .expect("w");
            }),
        ),
        (
            "hand edit of a generated file",
            Box::new(|w| {
                let p = w.join("environments/nonprod/dev/applications/app-a/values.yaml");
                let t = std::fs::read_to_string(&p).expect("r");
                std::fs::write(&p, t.replace("replicaCount: 1", "replicaCount: 7")).expect("w");
            }),
        ),
        (
            "delete a claim file",
            Box::new(|w| std::fs::remove_file(w.join("claims/a.yaml")).expect("rm")),
        ),
        ("nothing changed", Box::new(|_| {})),
    ];
    for (i, (what, step)) in steps.into_iter().enumerate() {
        step(&work);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", what]);
        git(&work, &["push", "-q", "origin", "main"]);
        let repo = Repo::open(&bare).expect("open");
        let tip = repo.branch_tip("main").expect("tip").expect("main");
        let (full, full_diags) = reconcile::plan_at(&repo, tip, &opts).expect("full");
        let (inc, inc_diags) = plan_with(&repo, tip, &opts, &mut cache);
        assert_eq!(
            inc, full,
            "step `{what}`: incremental plan differs from a full render"
        );
        assert_eq!(inc_diags, full_diags, "step `{what}`: diagnostics differ");
        // The memo a previous process left on disk (a hook's), whole or cut short.
        let (disk, disk_diags) = plan_with(&repo, tip, &opts, &mut stored(&repo));
        assert_eq!(
            disk, full,
            "step `{what}`: plan with the stored memo differs"
        );
        assert_eq!(disk_diags, full_diags, "step `{what}`: diagnostics differ");
        // The daemon's memo: batched, its claim files shrunk to outlines after each run,
        // and now and then kept on disk and loaded again (a worker at rest, a restart).
        let (kept, kept_diags) = plan_with(&repo, tip, &opts, &mut daemon);
        daemon.core.shrink();
        assert_eq!(
            kept, full,
            "step `{what}`: plan with the daemon's memo differs"
        );
        assert_eq!(kept_diags, full_diags, "step `{what}`: diagnostics differ");
        if i % 3 == 2 {
            store::save(&bare, &daemon).expect("keep the daemon's memo");
            daemon = stored(&repo);
            daemon.core.batch();
        }
        // Commit the render as the daemon would (its memo) or as a hook would (the stored
        // memo, saved again), and pull it back.
        if i % 2 == 0 {
            reconcile::reconcile_cached(&repo, &opts, &mut cache).expect("reconcile");
        } else {
            reconcile::reconcile(&repo, &opts).expect("reconcile");
            assert!(memo_file.is_file(), "step `{what}`: the memo is kept");
        }
        if i == 4 {
            // A process killed while writing the memo leaves a temporary file (the
            // rename never happened); a damaged memo file must not mislead either.
            let bytes = std::fs::read(&memo_file).expect("memo");
            std::fs::write(
                bare.join("claimd/.memo.4242.tmp"),
                &bytes[..bytes.len() / 3],
            )
            .expect("tmp");
            std::fs::write(&memo_file, &bytes[..bytes.len() / 2]).expect("cut");
        }
        git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
        let tip = repo.branch_tip("main").expect("tip").expect("main");
        assert!(
            reconcile::plan_at(&repo, tip, &opts)
                .expect("plan")
                .0
                .is_empty(),
            "step `{what}`: not converged"
        );
    }
}

/// The reconcile renders claim files in batches (to bound memory); with many claim
/// files, its plan into an empty output tree is exactly the pure, unbatched render.
#[test]
fn batched_render_equals_the_pure_render() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let (_, work) = server_and_work(root);
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    let mut files = Vec::new();
    for (path, text) in claimd::examples::CLAIMS {
        files.push((path.to_string(), text.to_string()));
    }
    for i in 0..35 {
        let env = ["dev", "qa"][i % 2];
        files.push((
            format!("claims/app-{i:02}.yaml"),
            app_claim(&format!("app-{i:02}"), env, "v1"),
        ));
    }
    // One file the render refuses (requests above limits), in a later batch.
    files.push((
        "claims/zz-bad.yaml".into(),
        app_claim("zz-bad", "dev", "v1")
            + "      resources: {requests: {memory: 64Gi}, limits: {memory: 1Gi}}\n",
    ));
    for (path, text) in &files {
        std::fs::write(work.join(path), text).expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "many claim files"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let repo = Repo::open(&root.join("server.git")).expect("open");
    let tip = repo.branch_tip("main").expect("tip").expect("main");
    let opts = Options::default();
    let (plan, diags) = reconcile::plan_at(&repo, tip, &opts).expect("plan");
    // Batches are used when the output tree has files (the daemon's start-up render).
    let mut batched = Memo::batched();
    reconcile::reconcile_cached(&repo, &opts, &mut batched).expect("commit the render");
    let committed = repo.branch_tip("main").expect("tip").expect("main");
    let (again, _) = plan_with(&repo, committed, &opts, &mut Memo::batched());
    assert!(
        again.is_empty(),
        "a batched render of what is there changes nothing"
    );

    let loaded = claimd::claims::load(&files, &claimd::yaml::Limits::default());
    let refs = claimd::render::chart_refs(&loaded.claims, &opts.settings);
    let charts = opts.charts.resolve(&refs);
    let pure = claimd::render::render(&loaded.claims, &charts, &opts.settings).expect("render");
    let planned: std::collections::BTreeMap<String, String> = plan
        .changes
        .iter()
        .map(|c| (c.path.clone(), c.new.clone().expect("only additions")))
        .collect();
    assert!(pure.files.len() > 70, "{} files", pure.files.len());
    assert_eq!(planned, pure.files);
    let failures: Vec<_> = pure.failures.iter().map(|f| &f.diagnostic).collect();
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors, failures);
    assert_eq!(errors.len(), 1, "{errors:?}");
}

/// The daemon writes an accepted push's bot commit while git finishes the push; the
/// reconcile of that very commit takes it (nothing written twice), and anything that
/// changes what would be committed (here the bot's identity) makes a fresh one.
#[test]
fn a_bot_commit_written_ahead_is_the_one_the_reconcile_commits() {
    let dir = tempfile::tempdir().expect("tmp");
    let (bare, work) = server_and_work(dir.path());
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    for (path, text) in claimd::examples::CLAIMS {
        std::fs::write(work.join(path), text).expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "claims"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let repo = Repo::open(&bare).expect("open");
    let tip = repo.branch_tip("main").expect("tip").expect("main");
    let pushed = [reconcile::RefUpdate {
        old: None,
        new: Some(tip),
        name: "refs/heads/main".into(),
    }];
    let opts = Options::default();

    let mut memo = Memo::default();
    let ahead = reconcile::write_ahead(&repo, &pushed, &opts, &mut memo)
        .expect("write ahead")
        .expect("something to commit");
    assert_eq!(
        repo.branch_tip("main").expect("tip"),
        Some(tip),
        "writing ahead does not move the branch"
    );
    let report = reconcile::reconcile_cached(&repo, &opts, &mut memo).expect("reconcile");
    let reconcile::Outcome::Committed { commit, parent, .. } = report.outcome else {
        panic!("no bot commit: {:?}", report.outcome);
    };
    assert_eq!((commit, parent), (ahead, tip));
    assert_eq!(repo.branch_tip("main").expect("tip"), Some(ahead));
    let (plan, _) = reconcile::plan_at(&repo, ahead, &opts).expect("plan");
    assert!(
        plan.is_empty(),
        "the commit written ahead is the full render"
    );

    // Written ahead for a commit, then reconciled with another identity: not taken.
    git(&work, &["pull", "-q", "origin", "main"]);
    std::fs::write(
        work.join("claims/ahead.yaml"),
        app_claim("app-ahead", "dev", "v1"),
    )
    .expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "one more"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let tip = repo.branch_tip("main").expect("tip").expect("main");
    let pushed = [reconcile::RefUpdate {
        old: Some(ahead),
        new: Some(tip),
        name: "refs/heads/main".into(),
    }];
    let stale = reconcile::write_ahead(&repo, &pushed, &opts, &mut memo)
        .expect("write ahead")
        .expect("something to commit");
    let mut other = Options::default();
    other.bot.name = "another bot".into();
    let report = reconcile::reconcile_cached(&repo, &other, &mut memo).expect("reconcile");
    let reconcile::Outcome::Committed { commit, .. } = report.outcome else {
        panic!("no bot commit: {:?}", report.outcome);
    };
    assert_ne!(commit, stale);
    let out = git(&bare, &["log", "-1", "--format=%an", "main"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "another bot");
}

/// The hooks keep their memo after pre-receive has answered (written by a child process
/// while git goes on): the next push loads it and parses only the claim file it changed
/// (while the memo loads).
#[test]
fn the_hooks_keep_their_memo_for_the_next_push() {
    let dir = tempfile::tempdir().expect("tmp");
    let (bare, work) = server_and_work(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args(["hooks", "install"])
        .arg(&bare)
        .output()
        .expect("install");
    assert!(out.status.success());
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    for (path, text) in claimd::examples::CLAIMS {
        std::fs::write(work.join(path), text).expect("write");
    }
    std::fs::write(work.join("claims/a.yaml"), app_claim("app-a", "dev", "v1")).expect("w");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "claims"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let memo = bare.join("claimd/memo");
    crate::support::daemon::wait_until("the memo", || memo.is_file());
    git(&work, &["pull", "-q", "origin", "main"]);
    std::fs::write(work.join("claims/a.yaml"), app_claim("app-a", "dev", "v2")).expect("w");
    git(&work, &["commit", "-qam", "v2"]);
    let out = std::process::Command::new("git")
        .args(["push", "origin", "main"])
        .current_dir(&work)
        .env("CLAIMD_LOG", "claimd::pipeline=debug")
        .output()
        .expect("push");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("memo loaded"), "{said}");
    // The one claim file the push changed, parsed while the memo loaded; nothing else.
    let ahead = said
        .lines()
        .find(|l| l.contains("changed claim files read ahead"))
        .unwrap_or_else(|| panic!("no read-ahead in {said}"));
    assert!(ahead.contains("parsed=1"), "{ahead}");
    assert!(said.contains("claims parsed parsed=0"), "{said}");
    assert!(said.contains("→ bot commit"), "{said}");
}
