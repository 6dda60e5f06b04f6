//! Big bot commits go into one pack (as receive-pack and fast-import write them), small
//! ones stay loose; either way git itself finds the repository whole.

use claimd::git::Repo;
use claimd::reconcile::{self, Options, Outcome};
use std::path::Path;

use crate::support::git::{git, server_and_work};

/// Loose objects and packs (with their index) in a bare repository.
fn objects(bare: &Path) -> (usize, usize, usize) {
    let dir = bare.join("objects");
    let loose = std::fs::read_dir(&dir)
        .expect("objects")
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .map(|d| std::fs::read_dir(d.path()).expect("fan-out").count())
        .sum();
    let names: Vec<String> = std::fs::read_dir(dir.join("pack"))
        .map(|d| {
            d.flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let packs = names.iter().filter(|n| n.ends_with(".pack")).count();
    let indexes = names.iter().filter(|n| n.ends_with(".idx")).count();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("tmp_") && !n.ends_with(".keep")),
        "temporary or keep files left: {names:?}"
    );
    (loose, packs, indexes)
}

#[test]
fn a_first_render_is_one_pack_and_a_small_change_stays_loose() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let (bare, work) = server_and_work(root);
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    // 400 applications: 800 generated files and their folders, above the pack threshold.
    for (path, text) in claimd::examples::synthetic(400) {
        std::fs::write(work.join(path), text).expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "claims"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let before = objects(&bare);
    assert_eq!(
        before.1, 0,
        "the push itself is unpacked into loose objects"
    );

    let repo = Repo::open(&bare).expect("open");
    let opts = Options::default();
    let report = reconcile::reconcile(&repo, &opts).expect("reconcile");
    let Outcome::Committed { files, .. } = report.outcome else {
        panic!("expected a bot commit, got {:?}", report.outcome);
    };
    assert!(files > claimd::git::pack::PACK_FROM, "{files} files");
    let after = objects(&bare);
    assert_eq!((after.1, after.2), (1, 1), "one pack with its index");
    assert_eq!(
        after.0,
        before.0 + 1,
        "only the commit object is loose (the {files} blobs and their trees are packed)"
    );
    git(&bare, &["fsck", "--full", "--strict"]);
    // git reads the packed files back as claimd rendered them.
    let tip = repo.branch_tip("main").expect("tip").expect("main");
    let rendered = repo.read_files(tip, &["environments"]).expect("read back");
    let path = rendered.keys().next().expect("a generated file").clone();
    let shown = git(&bare, &["show", &format!("main:{path}")]);
    assert_eq!(shown.stdout, rendered[&path]);
    assert!(
        reconcile::plan_at(&repo, tip, &opts)
            .expect("plan")
            .0
            .is_empty(),
        "converged"
    );

    // A change to one claim file: a few objects, loose.
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    let file = work.join("claims/apps-00000.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replacen("tag: v1.", "tag: v2.", 1)).expect("write");
    git(&work, &["commit", "-qam", "one change"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let report = reconcile::reconcile(&repo, &opts).expect("reconcile");
    assert!(matches!(report.outcome, Outcome::Committed { .. }));
    let small = objects(&bare);
    assert_eq!(small.1, 1, "no new pack for a small commit");
    assert!(small.0 > after.0, "its objects are loose");
    git(&bare, &["fsck", "--full", "--strict"]);
}
