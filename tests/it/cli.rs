//! The real binary in temporary repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_claimd");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/claims");

fn claimd(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run claimd")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// A repository with the example claims in claims/.
fn example_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let claims = dir.path().join("claims");
    std::fs::create_dir_all(&claims).expect("mkdir");
    for entry in std::fs::read_dir(EXAMPLES).expect("examples") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, claims.join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn generated(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.starts_with(dir.join("claims")) {
                out.push(p.strip_prefix(dir).expect("prefix").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn validate_reports_every_error_with_file_line_col_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("claims")).expect("mkdir");
    std::fs::write(
        dir.path().join("claims/bad.yaml"),
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata:\n  name: Bad\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: api\n      chart: {name: microservice, version: \"1.0.0\"}\n      replica: 2\n",
    )
    .expect("write");
    let out = claimd(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.contains(&"claims/bad.yaml:4:9: `Bad` is not a valid name: it has upper case letters (try `bad`); use lower case letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters (a DNS-1123 label)"), "{err}");
    assert!(lines.contains(&"claims/bad.yaml:11:7: unknown field `spec.applications[0].replica`; did you mean `replicas`?"), "{err}");
    assert!(err.contains("2 error(s) in 1 file(s)"), "{err}");
}

#[test]
fn a_binary_claim_file_is_an_error_at_its_first_position_and_loses_nothing() {
    let dir = example_repo();
    assert!(claimd(dir.path(), &["render"]).status.success());
    let before = generated(dir.path());
    // Not UTF-8: a byte sequence no text editor writes.
    std::fs::write(
        dir.path().join("claims/blob.yaml"),
        [0xff, 0xfe, 0x00, 0x9f, 0x80],
    )
    .expect("write");
    for args in [&["validate"][..], &["render"][..]] {
        let out = claimd(dir.path(), args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("claims/blob.yaml:1:1: not UTF-8 text; save the claim as UTF-8"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        generated(dir.path()),
        before,
        "the other claims' files stay"
    );
}

#[test]
fn validate_accepts_the_examples() {
    let out = claimd(Path::new(EXAMPLES), &["validate", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("7 file(s), 8 claim(s): valid"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn render_writes_the_tree_and_a_second_render_changes_nothing() {
    let repo = example_repo();
    let out = claimd(repo.path(), &["render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("32 generated file(s); changed: 32 added, 0 modified, 0 removed"),
        "{}",
        text(&out.stdout)
    );
    let files = generated(repo.path());
    assert_eq!(files.len(), 32);
    assert!(files.contains(&PathBuf::from(
        "environments/prod/prod/applications/notification-service/values.yaml"
    )));
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(repo.path().join(f)).expect("read"))
        .collect();

    let again = claimd(repo.path(), &["render"]);
    assert!(again.status.success());
    assert!(
        text(&again.stdout).contains("changed: 0 added, 0 modified, 0 removed"),
        "{}",
        text(&again.stdout)
    );
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(repo.path().join(f)).expect("read"))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn plan_shows_a_diff_and_writes_nothing_then_render_reverts_a_human_edit() {
    let repo = example_repo();
    assert!(claimd(repo.path(), &["render"]).status.success());
    let values = repo
        .path()
        .join("environments/prod/prod/applications/payment-service/values.yaml");
    let original = std::fs::read_to_string(&values).expect("read");
    let edited = original.replace("replicaCount: 10", "replicaCount: 1");
    assert_ne!(edited, original);
    std::fs::write(&values, &edited).expect("write");

    let plan = claimd(repo.path(), &["plan"]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let diff = text(&plan.stdout);
    assert!(
        diff.contains("--- a/environments/prod/prod/applications/payment-service/values.yaml"),
        "{diff}"
    );
    assert!(
        diff.contains("-replicaCount: 1\n") && diff.contains("+replicaCount: 10\n"),
        "{diff}"
    );
    assert!(
        diff.contains("would change: 0 added, 1 modified, 0 removed"),
        "{diff}"
    );
    assert_eq!(
        std::fs::read_to_string(&values).expect("read"),
        edited,
        "plan wrote"
    );

    assert!(claimd(repo.path(), &["render"]).status.success());
    assert_eq!(std::fs::read_to_string(&values).expect("read"), original);
}

#[test]
fn a_broken_claim_fails_the_run_but_loses_nothing() {
    let repo = example_repo();
    assert!(claimd(repo.path(), &["render"]).status.success());
    let before = generated(repo.path());
    // Break the dev claims: their files must stay, the rest still renders.
    let dev = repo.path().join("claims/dev-apps.yaml");
    let text_before = std::fs::read_to_string(&dev).expect("read");
    std::fs::write(&dev, text_before.replace("type: kafka", "type: kafak")).expect("write");
    // And change a healthy claim so there is something to render.
    let prod = repo.path().join("claims/prod-apps.yaml");
    let p = std::fs::read_to_string(&prod).expect("read");
    std::fs::write(&prod, p.replace("replicas: 10", "replicas: 12")).expect("write");

    let out = claimd(repo.path(), &["render"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("claims/dev-apps.yaml:"), "{err}");
    assert!(err.contains("did you mean `kafka`?"), "{err}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("0 added, 1 modified, 0 removed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("file(s) of failed claims left untouched"),
        "{stdout}"
    );
    assert_eq!(generated(repo.path()), before, "no file was deleted");
    let payment = std::fs::read_to_string(
        repo.path()
            .join("environments/prod/prod/applications/payment-service/values.yaml"),
    )
    .expect("read");
    assert!(payment.contains("replicaCount: 12"));
}

#[test]
fn deleting_a_claim_prunes_only_its_files() {
    let repo = example_repo();
    assert!(claimd(repo.path(), &["render"]).status.success());
    std::fs::write(
        repo.path()
            .join("environments/prod/prod/applications/notes.txt"),
        "mine",
    )
    .expect("write");
    std::fs::remove_file(repo.path().join("claims/prod-platform.yaml")).expect("rm");
    let out = claimd(repo.path(), &["render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 added, 0 modified, 4 removed"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !repo.path().join("environments/prod/prod/platform").exists(),
        "emptied folders are removed"
    );
    assert!(
        repo.path()
            .join("environments/prod/prod/applications/notes.txt")
            .exists(),
        "a file claimd did not write stays"
    );
    // The prod bootstrap still declares the prod platform appset.
    assert!(repo
        .path()
        .join("appsets/prod/platform/prod-platform-appset.yaml")
        .exists());
}

#[test]
fn demo_runs_the_whole_loop_on_the_embedded_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("demo");
    let out = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&target)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("32 generated file(s): 32 added, 0 modified, 0 removed."),
        "{stdout}"
    );
    assert!(
        stdout.contains("claimd: render claims/prod-apps.yaml\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("environments/prod/prod/applications/payment-service/values.yaml | 2 +-"),
        "{stdout}"
    );
    assert!(stdout.contains("remote: claims/broken.yaml:12:7: unknown field `spec.applications[0].ingres`; did you mean `ingress`?"), "{stdout}");
    assert!(stdout.contains("(pre-receive hook declined)"), "{stdout}");
    assert!(target.join("voltran.git/hooks/pre-receive").is_file());
}

#[test]
fn namespaces_prints_the_objects_claimd_would_apply_without_a_cluster() {
    let repo = example_repo();
    let out = claimd(repo.path(), &["namespaces"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stream = text(&out.stdout);
    let objects: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&stream)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("a YAML object"))
        .collect();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in:\n{stream}"))
    };
    // The seed's Environment: team my-team, project my-project, environment pr-123.
    let ns = find("Namespace", "my-team-my-project-pr-123");
    assert_eq!(
        ns["metadata"]["labels"]["catalyst.dev/branch"],
        "feature-login"
    );
    let quota = objects
        .iter()
        .find(|o| {
            o["kind"] == "ResourceQuota"
                && o["metadata"]["namespace"] == "my-team-my-project-pr-123"
        })
        .expect("quota");
    assert_eq!(quota["spec"]["hard"]["requests.memory"], "2Gi");
    let job = find("Job", "build-pr-123-a1b2c3d");
    assert_eq!(job["metadata"]["namespace"], "my-team-my-project-pr-123");
    // Application environments get their namespaces too.
    find("Namespace", "dev");
    // A pure function of the claims.
    assert_eq!(text(&claimd(repo.path(), &["namespaces"]).stdout), stream);
}
