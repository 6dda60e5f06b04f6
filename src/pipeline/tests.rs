//! The memo layers against a plan from scratch: the stored memo (outlines, reloaded in
//! another process) and the last plan kept in memory.

use super::core::{self, Objects, ReadError, Snapshot};
use super::{charts, store, Memo, Planned, Previews, Request};
use crate::render::Settings;
use gix::ObjectId;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Objects in memory, counting reads.
#[derive(Default)]
struct Mem {
    objects: HashMap<ObjectId, Vec<u8>>,
    reads: Cell<usize>,
}

impl Mem {
    fn add(&mut self, bytes: &[u8]) -> ObjectId {
        let id = (self.blob_hasher())(bytes);
        self.objects.insert(id, bytes.to_vec());
        id
    }
}

impl Objects for Mem {
    fn read(&self, id: ObjectId) -> Result<Vec<u8>, ReadError> {
        self.reads.set(self.reads.get() + 1);
        self.objects
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("no object {id}").into())
    }

    fn blob_hasher(&self) -> fn(&[u8]) -> ObjectId {
        |b| crate::git::blob_id(gix::hash::Kind::Sha1, b).expect("hash")
    }
}

fn snapshot(
    mem: &mut Mem,
    claims: &[(String, String)],
    entries: &BTreeMap<String, ObjectId>,
) -> Snapshot {
    let mut claim_files: Vec<(String, ObjectId)> = claims
        .iter()
        .map(|(p, t)| (p.clone(), mem.add(t.as_bytes())))
        .collect();
    claim_files.sort();
    Snapshot {
        claim_files,
        entries: Arc::new(entries.clone()),
        ..Snapshot::default()
    }
}

/// The generated files after committing `planned` on top of `entries`.
fn commit(mem: &mut Mem, entries: &mut BTreeMap<String, ObjectId>, planned: &Planned) {
    for c in &planned.plan.changes {
        match &c.new {
            Some(content) => {
                let id = mem.add(content.as_bytes());
                entries.insert(c.path.clone(), id);
            }
            None => {
                entries.remove(&c.path);
            }
        }
    }
}

fn run(snap: &Snapshot, mem: &Mem, settings: &Settings, memo: &mut core::Memo) -> Planned {
    let source = charts::Source::Embedded;
    let req = Request {
        settings,
        charts: &source,
        previews: &Previews::All,
        branch: Some("main"),
        sink: None,
    };
    super::run(snap, mem, &req, memo).expect("plan")
}

/// A first render of `claims` into an empty tree, committed: its plan and the generated
/// files after it.
fn rendered(
    mem: &mut Mem,
    claims: &[(String, String)],
    settings: &Settings,
    memo: &mut core::Memo,
) -> (Planned, BTreeMap<String, ObjectId>) {
    let mut entries = BTreeMap::new();
    let first = run(&snapshot(mem, claims, &entries), mem, settings, memo);
    commit(mem, &mut entries, &first);
    (first, entries)
}

fn same(a: &Planned, b: &Planned, what: &str) {
    assert_eq!(a.plan, b.plan, "{what}: plans differ");
    assert_eq!(a.diagnostics, b.diagnostics, "{what}: diagnostics differ");
    assert_eq!(a.sources, b.sources, "{what}: sources differ");
}

#[test]
fn a_stored_memo_in_outline_plans_as_a_full_render() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut mem = Mem::default();
    let mut claims = crate::examples::synthetic(300);
    let settings = Settings::default();
    let mut memo = core::Memo::default();
    let (first, entries) = rendered(&mut mem, &claims, &settings, &mut memo);
    assert!(
        first.plan.changes.len() > 600,
        "{}",
        first.plan.changes.len()
    );
    store::save(
        dir.path(),
        &Memo {
            core: memo,
            ..Memo::default()
        },
    )
    .expect("save");

    // Its head names the charts it was made with, for a new process to parse ahead.
    let seen: Vec<_> = memo_charts(dir.path());
    assert!(!seen.is_empty());
    assert_eq!(
        store::read(dir.path()).expect("stored").chart_refs(),
        seen,
        "the chart references at the head of the stored memo"
    );

    // Another process: the memo comes back with the application files in outline.
    let loaded = store::load(dir.path());
    assert!(
        loaded.core.light.len() >= 3,
        "claim files with applications are stored in outline: {:?}",
        loaded.core.light
    );
    // One claim file changes.
    let (path, text) = claims
        .iter_mut()
        .find(|(p, _)| p.contains("apps-00001"))
        .expect("a claim file");
    *text = text.replacen("replicas: 1", "replicas: 5", 1);
    let changed = path.clone();
    let snap = snapshot(&mut mem, &claims, &entries);
    let mut stored = loaded.core;
    let from_stored = run(&snap, &mem, &settings, &mut stored);
    let full = run(&snap, &mem, &settings, &mut core::Memo::default());
    same(&from_stored, &full, "one claim file changed");
    assert!(!from_stored.plan.is_empty());
    assert_eq!(from_stored.claim_files(), vec![changed.clone()]);

    // Another context (the settings): every application renders again, from outlines.
    let mut stored = store::load(dir.path()).core;
    let other = Settings {
        argocd_project: "platform".into(),
        ..Settings::default()
    };
    let from_stored = run(&snap, &mem, &other, &mut stored);
    let full = run(&snap, &mem, &other, &mut core::Memo::default());
    same(&from_stored, &full, "another context");

    // The changed claim file parsed ahead (as a hook does while its memo loads), and one
    // held in outline replaced by its complete form: the same plan, nothing parsed again.
    let mut stored = store::load(dir.path()).core;
    let texts: Vec<_> = snap
        .claim_files
        .iter()
        .filter(|(p, _)| *p == changed || p.contains("apps-00002"))
        .map(|key| {
            let text = String::from_utf8(mem.objects[&key.1].clone()).expect("utf-8");
            (key.clone(), text)
        })
        .collect();
    assert_eq!(texts.len(), 2);
    stored.adopt(core::parse(&texts));
    let reads = |memo: &mut core::Memo| {
        let before = mem.reads.get();
        let planned = run(&snap, &mem, &settings, memo);
        (planned, mem.reads.get() - before)
    };
    let (from_stored, ahead) = reads(&mut stored);
    same(
        &from_stored,
        &full_with(&snap, &mem, &settings),
        "parsed ahead",
    );
    let (_, not_ahead) = reads(&mut store::load(dir.path()).core);
    assert!(
        ahead < not_ahead,
        "the changed claim file is not read again: {ahead} reads against {not_ahead}"
    );
}

fn memo_charts(dir: &std::path::Path) -> Vec<crate::values::ChartRef> {
    store::load(dir)
        .core
        .chart_refs_seen()
        .into_iter()
        .collect()
}

fn full_with(snap: &Snapshot, mem: &Mem, settings: &Settings) -> Planned {
    run(snap, mem, settings, &mut core::Memo::default())
}

#[test]
fn the_same_snapshot_planned_twice_is_not_rendered_again() {
    let mut mem = Mem::default();
    let mut claims = crate::examples::synthetic(200);
    let settings = Settings::default();
    let mut memo = core::Memo::default();
    let (_, entries) = rendered(&mut mem, &claims, &settings, &mut memo);
    claims[1].1 = claims[1].1.replacen("replicas: 1", "replicas: 4", 1);
    let mut snap = snapshot(&mut mem, &claims, &entries);
    snap.tree = Some(ObjectId::null(gix::hash::Kind::Sha1));

    mem.reads.set(0);
    let validated = run(&snap, &mem, &settings, &mut memo);
    let reads = mem.reads.get();
    assert!(reads > 0, "the files it modifies are read");
    let reconciled = run(&snap, &mem, &settings, &mut memo);
    assert_eq!(mem.reads.get(), reads, "planned again without reading");
    same(&reconciled, &validated, "the kept plan");

    // Any other input plans afresh.
    let other = Settings {
        argocd_project: "platform".into(),
        ..Settings::default()
    };
    let afresh = run(&snap, &mem, &other, &mut memo);
    assert!(mem.reads.get() > reads, "other settings: planned afresh");
    same(
        &afresh,
        &run(&snap, &mem, &other, &mut core::Memo::default()),
        "afresh",
    );
}

/// A render that hands new files to a sink batch by batch: the sink and the plan
/// together are the plan of a render without one, into an empty tree and into one that
/// has files, with a claim file that fails; with a memo for one run (`claimd render`:
/// nothing recorded, a new file's blob id not computed) as with one kept.
#[test]
fn a_render_that_streams_new_files_plans_the_same() {
    use std::sync::Mutex;
    let mut mem = Mem::default();
    // More claim files than one batch (twelve of two applications each), one broken.
    let one = crate::examples::synthetic(24);
    let (head, apps) = one[1].1.split_once("    - name: ").expect("applications");
    let apps: Vec<&str> = apps.split("    - name: ").collect();
    let mut claims = vec![one[0].clone()];
    for (i, pair) in apps.chunks(2).enumerate() {
        let head = head.replace("apps-00000", &format!("apps-{i:05}"));
        let body: String = pair.iter().map(|a| format!("    - name: {a}")).collect();
        claims.push((format!("claims/apps-{i:05}.yaml"), head + &body));
    }
    claims.push(("claims/broken.yaml".into(), "kind: [".into()));
    let settings = Settings::default();
    let source = charts::Source::Embedded;
    let streaming = |snap: &Snapshot, mem: &Mem, memo: &mut core::Memo| {
        let sunk: Mutex<BTreeMap<String, String>> = Mutex::default();
        let sink = |files: Vec<(String, String)>| -> Result<(), ReadError> {
            let mut sunk = sunk.lock().expect("lock");
            for (path, content) in files {
                assert!(sunk.insert(path, content).is_none(), "a file twice");
            }
            Ok(())
        };
        let req = Request {
            settings: &settings,
            charts: &source,
            previews: &Previews::All,
            branch: Some("main"),
            sink: Some(&sink),
        };
        let planned = super::run(snap, mem, &req, memo).expect("plan");
        (planned, sunk.into_inner().expect("lock"))
    };
    let check_one = |snap: &Snapshot, mem: &Mem, what: &str, memo: &mut core::Memo| {
        let whole = run(snap, mem, &settings, &mut core::Memo::default());
        let (planned, sunk) = streaming(snap, mem, memo);
        assert!(
            sunk.len() >= 2 * 10,
            "{what}: {} files streamed",
            sunk.len()
        );
        assert_eq!(planned.streamed, sunk.len(), "{what}");
        for path in sunk.keys() {
            assert!(path.starts_with("environments/"), "{what}: {path}");
            assert!(!snap.entries.contains_key(path), "{what}: {path} was there");
        }
        assert_eq!(planned.diagnostics, whole.diagnostics, "{what}");
        assert_eq!(planned.plan.kept, whole.plan.kept, "{what}");
        // The plan without the sink: the streamed files as additions, in path order.
        let mut joined = planned.plan.changes.clone();
        joined.extend(sunk.iter().map(|(path, content)| crate::render::Change {
            path: path.clone(),
            kind: crate::render::ChangeKind::Add,
            old: None,
            new: Some(content.clone()),
        }));
        joined.sort_by(|a, b| a.path.cmp(&b.path));
        let mut want = whole.plan.changes.clone();
        want.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(joined, want, "{what}");
    };
    let check = |snap: &Snapshot, mem: &Mem, what: &str| {
        for once in [false, true] {
            let what = &format!("{what} (memo for one run: {once})");
            let mut memo = if once {
                core::Memo::once()
            } else {
                core::Memo::default()
            };
            check_one(snap, mem, what, &mut memo);
            assert_eq!(
                memo.outputs.files.is_empty(),
                once,
                "{what}: what the memo recorded"
            );
        }
    };
    let mut entries = BTreeMap::new();
    let snap = snapshot(&mut mem, &claims, &entries);
    check(&snap, &mem, "into an empty tree");

    // Half of the files there, a claim file changed, another removed.
    let first = run(&snap, &mem, &settings, &mut core::Memo::default());
    let mut half = first.clone();
    half.plan.changes.retain(|c| c.path.len() % 2 == 0);
    commit(&mut mem, &mut entries, &half);
    claims[3].1 = claims[3].1.replacen("tag: v1.", "tag: v9.", 1);
    claims.remove(5);
    let snap = snapshot(&mut mem, &claims, &entries);
    check(&snap, &mem, "into a tree with files");
}

/// The daemon's memo checks names file by file: a push that gives an application the
/// name of one in another claim file, and the push that takes it back, plan as a
/// render from scratch does (the later definition fails, its files are kept).
#[test]
fn names_checked_file_by_file_plan_as_a_full_render() {
    let mut mem = Mem::default();
    let original = crate::examples::synthetic(300);
    let settings = Settings::default();
    let mut memo = core::Memo::batched();
    let (_, mut entries) = rendered(&mut mem, &original, &settings, &mut memo);
    // The second file of applications goes to the first one's environment and takes
    // the name of its first application.
    let (dev, qa) = (
        crate::examples::SYNTHETIC_ENVS[0],
        crate::examples::SYNTHETIC_ENVS[1],
    );
    let mut clashing = original.clone();
    clashing[2].1 = clashing[2].1.replace(
        &format!("environment: {qa}"),
        &format!("environment: {dev}"),
    );
    clashing[2].1 = clashing[2]
        .1
        .replacen("name: app-00100", "name: app-00000", 1);
    for (what, claims) in [("clash", &clashing), ("clash taken back", &original)] {
        let snap = snapshot(&mut mem, claims, &entries);
        let kept = run(&snap, &mem, &settings, &mut memo);
        same(&kept, &full_with(&snap, &mem, &settings), what);
        let clash = kept
            .diagnostics
            .iter()
            .any(|d| d.message.contains("`app-00000` is already defined"));
        assert_eq!(clash, what == "clash", "{what}: {:?}", kept.diagnostics);
        commit(&mut mem, &mut entries, &kept);
    }
}
