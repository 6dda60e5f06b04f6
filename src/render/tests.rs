//! Render and plan: determinism and the safety rules of pruning.

use super::*;
use crate::charts::Source;
use crate::claims::{self, Loaded};
use crate::yaml::Limits;

const BOOT: &str = "apiVersion: platform.infraforge.io/v1
kind: BootstrapClaim
metadata: {name: boot}
spec:
  giteaURL: http://gitea:3000
  organization: platform
  chartsRepository: {type: oci, url: oci://registry.example.com/charts, version: \"1.0.0\"}
  repositories: {voltran: voltran}
  gitOps: {branch: main, clusterType: nonprod, environments: [dev]}
";

const APPS: &str = "apiVersion: platform.infraforge.io/v1
kind: ApplicationClaim
metadata: {name: apps}
spec:
  environment: dev
  clusterType: nonprod
  applications:
    - name: api
      chart: {name: microservice, version: \"1.0.0\"}
      image: {repository: example.com/api, tag: v1}
    - name: web
      chart: {name: microservice, version: \"1.0.0\"}
      image: {repository: example.com/web, tag: v1}
";

const DATA: &str = "apiVersion: platform.infraforge.io/v1
kind: PlatformApplicationClaim
metadata: {name: data}
spec:
  environment: staging
  clusterType: prod-like
  services:
    - {type: postgresql, name: db}
";

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

fn load(list: &[(&str, &str)]) -> Loaded {
    claims::load(&files(list), &Limits::default())
}

fn render_with(loaded: &Loaded, source: &Source) -> Rendered {
    let settings = Settings::default();
    let charts = source.resolve(&chart_refs(&loaded.claims, &settings));
    render(&loaded.claims, &charts, &settings).expect("render")
}

fn render_all(list: &[(&str, &str)]) -> (Loaded, Rendered) {
    let loaded = load(list);
    let rendered = render_with(&loaded, &Source::Embedded);
    (loaded, rendered)
}

fn examples() -> Vec<(String, String)> {
    crate::examples::claim_files()
}

#[test]
fn render_is_deterministic_whatever_the_input_order() {
    let mut input = examples();
    let settings = Settings::default();
    let mut outputs = Vec::new();
    for round in 0..4 {
        match round {
            1 => input.reverse(),
            2 => input.rotate_left(3),
            3 => input.swap(0, 5),
            _ => {}
        }
        let loaded = claims::load(&input, &Limits::default());
        let mut claims = loaded.claims.clone();
        claims.rotate_left(round);
        let charts = Source::Embedded.resolve(&chart_refs(&claims, &settings));
        outputs.push(render(&claims, &charts, &settings).expect("render"));
    }
    assert!(outputs[0].files.len() > 20);
    for other in &outputs[1..] {
        assert_eq!(&outputs[0], other);
    }
}

#[test]
fn every_generated_file_has_the_header() {
    let loaded = claims::load(&examples(), &Limits::default());
    let rendered = render_with(&loaded, &Source::Embedded);
    assert!(rendered.failures.is_empty(), "{:?}", rendered.failures);
    for (path, content) in &rendered.files {
        assert!(content.starts_with(GENERATED_MARK), "{path}");
        let owners = parse_owners(content).expect("owners line");
        assert!(!owners.is_empty());
        if path.ends_with("values.yaml") || path.ends_with("config.yaml") {
            assert!(content.contains("# chart "), "{path} names its chart");
        }
    }
    let values =
        &rendered.files["environments/prod/prod/applications/notification-service/values.yaml"];
    assert!(
        values.contains("# chart oci://ghcr.io/nimbusprotch/microservice:1.0.0@sha256:"),
        "{values}"
    );
}

#[test]
fn layout_follows_the_design() {
    let (_, r) = render_all(&[
        ("claims/boot.yaml", BOOT),
        ("claims/apps.yaml", APPS),
        ("claims/data.yaml", DATA),
    ]);
    let paths: Vec<&str> = r.files.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "appsets/nonprod/apps/dev-appset.yaml",
            "appsets/nonprod/platform/dev-platform-appset.yaml",
            "appsets/prod-like/platform/staging-platform-appset.yaml",
            "environments/nonprod/dev/applications/api/config.yaml",
            "environments/nonprod/dev/applications/api/values.yaml",
            "environments/nonprod/dev/applications/web/config.yaml",
            "environments/nonprod/dev/applications/web/values.yaml",
            "environments/prod-like/staging/platform/db/config.yaml",
            "environments/prod-like/staging/platform/db/values.yaml",
            "root-apps/nonprod/nonprod-apps-rootapp.yaml",
            "root-apps/nonprod/nonprod-platform-rootapp.yaml",
            "root-apps/prod-like/prod-like-platform-rootapp.yaml",
        ]
    );
}

#[test]
fn no_repository_url_is_an_error() {
    let loaded = load(&[("claims/apps.yaml", APPS)]);
    let err = render(&loaded.claims, &Charts::new(), &Settings::default()).unwrap_err();
    assert_eq!(err, crate::render::Error::NoRepoUrl);
    assert!(
        err.to_string().contains("no GitOps repository URL"),
        "{err}"
    );
}

fn existing(r: &Rendered) -> BTreeMap<String, String> {
    r.files.clone()
}

#[test]
fn plan_of_a_fresh_repository_adds_everything_and_a_rerender_nothing() {
    let (loaded, r) = render_all(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", APPS)]);
    let p = plan(&BTreeMap::new(), r.clone(), &loaded.failed_files);
    assert_eq!(p.changes.len(), r.files.len());
    assert!(p.changes.iter().all(|c| c.kind == ChangeKind::Add));
    assert!(plan(&existing(&r), r.clone(), &loaded.failed_files).is_empty());
}

#[test]
fn removing_a_claim_prunes_its_files_only() {
    let (_, before) = render_all(&[
        ("claims/boot.yaml", BOOT),
        ("claims/apps.yaml", APPS),
        ("claims/data.yaml", DATA),
    ]);
    let (loaded, after) = render_all(&[("claims/boot.yaml", BOOT), ("claims/data.yaml", DATA)]);
    let p = plan(&existing(&before), after.clone(), &loaded.failed_files);
    let deleted: Vec<&str> = p
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Delete)
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        deleted,
        [
            "environments/nonprod/dev/applications/api/config.yaml",
            "environments/nonprod/dev/applications/api/values.yaml",
            "environments/nonprod/dev/applications/web/config.yaml",
            "environments/nonprod/dev/applications/web/values.yaml",
        ]
    );
    // The bootstrap still declares dev: its appsets stay (their header changes).
    assert!(after
        .files
        .contains_key("appsets/nonprod/apps/dev-appset.yaml"));
}

#[test]
fn a_claim_file_that_fails_validation_keeps_its_files() {
    let (_, before) = render_all(&[
        ("claims/boot.yaml", BOOT),
        ("claims/apps.yaml", APPS),
        ("claims/data.yaml", DATA),
    ]);
    let broken = APPS.replace("tag: v1", "tag: [oops]");
    let (loaded, after) = render_all(&[
        ("claims/boot.yaml", BOOT),
        ("claims/apps.yaml", &broken),
        ("claims/data.yaml", DATA),
    ]);
    assert_eq!(loaded.failed_files, ["claims/apps.yaml"]);
    let p = plan(&existing(&before), after.clone(), &loaded.failed_files);
    assert!(
        p.changes.iter().all(|c| c.kind != ChangeKind::Delete),
        "nothing may be deleted: {:?}",
        p.changes.iter().map(|c| &c.path).collect::<Vec<_>>()
    );
    assert!(p
        .kept
        .contains(&"environments/nonprod/dev/applications/api/values.yaml".to_string()));
}

#[test]
fn when_a_whole_environment_fails_its_appsets_are_not_deleted() {
    // Without a bootstrap, the staging appset exists only because of data.yaml.
    let (_, before) = render_all(&[
        ("claims/apps.yaml", APPS),
        ("claims/data.yaml", DATA),
        ("claims/boot.yaml", BOOT),
    ]);
    let broken = DATA.replace("type: postgresql", "type: [x]");
    let (loaded, after) = render_all(&[
        ("claims/apps.yaml", APPS),
        ("claims/data.yaml", &broken),
        ("claims/boot.yaml", BOOT),
    ]);
    let p = plan(&existing(&before), after.clone(), &loaded.failed_files);
    assert!(
        p.changes.iter().all(|c| c.kind != ChangeKind::Delete),
        "{:?}",
        p.changes
    );
    assert!(p
        .kept
        .contains(&"appsets/prod-like/platform/staging-platform-appset.yaml".to_string()));
    assert!(p
        .kept
        .contains(&"root-apps/prod-like/prod-like-platform-rootapp.yaml".to_string()));
}

#[test]
fn a_missing_chart_fails_only_that_application() {
    let two_charts = APPS.replace(
        "    - name: web\n      chart: {name: microservice,",
        "    - name: web\n      chart: {name: nosuchchart,",
    );
    let (loaded, before) = render_all(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", APPS)]);
    assert!(loaded.failed_files.is_empty());
    let changed = two_charts.replace("tag: v1", "tag: v2");
    let loaded2 = load(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", &changed)]);
    let after = render_with(&loaded2, &Source::Embedded);
    assert_eq!(after.failures.len(), 1);
    let f = &after.failures[0];
    assert_eq!(
        f.diagnostic.to_string().split(": ").next(),
        Some("claims/apps.yaml:12:21")
    );
    assert!(
        f.diagnostic.message.contains("no chart `nosuchchart`"),
        "{}",
        f.diagnostic.message
    );
    let p = plan(&existing(&before), after.clone(), &loaded2.failed_files);
    let paths: Vec<(&str, ChangeKind)> = p
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    // api re-rendered with its new tag; web's files left exactly as they were.
    assert_eq!(
        paths,
        [(
            "environments/nonprod/dev/applications/api/values.yaml",
            ChangeKind::Modify
        )]
    );
    assert!(p
        .kept
        .iter()
        .any(|k| k.starts_with("environments/nonprod/dev/applications/web/")));
}

#[test]
fn unmapped_claim_field_fails_with_its_position() {
    let text = APPS.replace(
        "image: {repository: example.com/web, tag: v1}",
        "image: {repository: example.com/web, tag: v1}\n      port: 8080",
    );
    let loaded = load(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", &text)]);
    // A chart whose mapping does not know `port`.
    let dir = chart_dir(
        "image: {repository: x, tag: y}\n",
        "fields:\n  image.repository: image.repository\n  image.tag: image.tag\n",
        None,
    );
    let r = render_with(&loaded, &Source::Dir(dir.path().to_path_buf()));
    let msgs: Vec<String> = r
        .failures
        .iter()
        .map(|f| f.diagnostic.to_string())
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with("claims/apps.yaml:14:13: chart oci://registry.example.com/charts/microservice:1.0.0 has no mapping for claim field `port`"), "{msgs:?}");
}

#[test]
fn requests_above_limits_are_refused() {
    let text = APPS.replace(
        "image: {repository: example.com/api, tag: v1}",
        "image: {repository: example.com/api, tag: v1}\n      resources: {requests: {memory: 64Gi}}",
    );
    let (_, r) = render_all(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", &text)]);
    let msgs: Vec<String> = r
        .failures
        .iter()
        .map(|f| f.diagnostic.to_string())
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].contains("resources.requests.memory (64Gi) is above resources.limits.memory"),
        "{msgs:?}"
    );
    assert!(!r
        .files
        .contains_key("environments/nonprod/dev/applications/api/values.yaml"));
    assert!(r
        .files
        .contains_key("environments/nonprod/dev/applications/web/values.yaml"));
}

#[test]
fn files_claimd_did_not_write_are_never_touched() {
    let (loaded, r) = render_all(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", APPS)]);
    let mut current = existing(&r);
    current.insert(
        "environments/nonprod/dev/applications/manual/values.yaml".into(),
        "replicaCount: 1\n".into(),
    );
    assert!(plan(&current, r.clone(), &loaded.failed_files).is_empty());
}

#[test]
fn human_edits_to_generated_files_are_reverted() {
    let (loaded, r) = render_all(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", APPS)]);
    let mut current = existing(&r);
    let path = "environments/nonprod/dev/applications/api/values.yaml".to_string();
    current.insert(
        path.clone(),
        current[&path].replace("tag: v1", "tag: hotfix"),
    );
    let p = plan(&current, r.clone(), &loaded.failed_files);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].path, path);
    assert_eq!(p.changes[0].kind, ChangeKind::Modify);
    assert_eq!(p.changes[0].new.as_deref(), Some(r.files[&path].as_str()));
}

#[test]
fn preview_environment_renders_with_its_commit() {
    let project = "apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Project
metadata: {name: shop, namespace: team-a}
spec:
  source: {repositoryUrl: https://git.example.com/team-a/shop}
  deployment:
    type: helm
    path: ./charts/shop
    values: {image: {repository: registry.example.com/shop}, replicaCount: 1}
";
    let env = "apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Environment
metadata: {name: pr-7}
spec:
  projectRef: {name: shop}
  type: development
  source: {commitSha: 0123456789abcdef0123456789abcdef01234567, prNumber: 7}
  config:
    envVars: [{name: DEBUG, value: \"true\"}]
";
    let (loaded, r) = render_all(&[
        ("claims/boot.yaml", BOOT),
        ("claims/p.yaml", project),
        ("claims/e.yaml", env),
    ]);
    assert!(
        loaded.diagnostics.is_empty() && r.failures.is_empty(),
        "{:?} {:?}",
        loaded.diagnostics,
        r.failures
    );
    let values = &r.files["environments/catalyst/team-a-shop-pr-7/applications/shop/values.yaml"];
    assert!(
        values.contains("tag: \"0123456789abcdef0123456789abcdef01234567\"")
            || values.contains("tag: 0123456789abcdef0123456789abcdef01234567"),
        "{values}"
    );
    assert!(
        values.contains("repository: registry.example.com/shop"),
        "{values}"
    );
    assert!(
        values.contains("host: team-a-shop-pr-7.preview.example.com"),
        "{values}"
    );
    assert!(values.contains("name: DEBUG"), "{values}");
    let config = &r.files["environments/catalyst/team-a-shop-pr-7/applications/shop/config.yaml"];
    assert!(
        config.contains("commit: \"0123456789abcdef0123456789abcdef01234567\"")
            || config.contains("commit: 0123456789abcdef0123456789abcdef01234567"),
        "{config}"
    );
    assert!(config.contains("path: charts/shop"), "{config}");
    assert!(r
        .files
        .contains_key("appsets/catalyst/apps/environments-appset.yaml"));
}

#[test]
fn values_refused_by_the_chart_schema_fail_at_the_claim_field() {
    let text = APPS
        .replace(
            "image: {repository: example.com/api, tag: v1}",
            "image: {repository: example.com/api, tag: v1}\n      replicas: 50",
        )
        .replace(
            "image: {repository: example.com/web, tag: v1}",
            "image: {repository: example.com/web, tag: v1}\n      values: {podLabels: 5}",
        );
    let loaded = load(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", &text)]);
    let dir = chart_dir(
        "replicaCount: 1\nimage: {repository: x, tag: y}\npodLabels: {}\n",
        "fields:\n  image.repository: image.repository\n  image.tag: image.tag\n  replicas: replicaCount\n",
        Some(
            r#"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"replicaCount": {"type": "integer", "maximum": 10},
                           "podLabels": {"type": "object"}}}"#,
        ),
    );
    let chart = dir.path().join("microservice");
    let r = render_with(&loaded, &Source::Dir(dir.path().to_path_buf()));
    let msgs: Vec<String> = r
        .failures
        .iter()
        .map(|f| f.diagnostic.to_string())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].starts_with("claims/apps.yaml:11:17: `api`: value `replicaCount` is refused by the values.schema.json of chart oci://registry.example.com/charts/microservice:1.0.0: 50 is greater than the maximum of 10; fix the claim field `replicas`"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].starts_with("claims/apps.yaml:15:27:")
            && msgs[1].contains("`web`: value `podLabels` is refused")
            && msgs[1].contains("under `values:`"),
        "{msgs:?}"
    );
    // Their files are kept, nothing of theirs is written.
    assert!(r.files.keys().all(|p| !p.contains("/applications/")));
    // A broken schema fails the chart (every claim using it), with where and why.
    std::fs::write(chart.join("values.schema.json"), "{\"type\": ").expect("w");
    let r = render_with(&loaded, &Source::Dir(dir.path().to_path_buf()));
    assert!(
        r.failures.iter().all(|f| f
            .diagnostic
            .message
            .contains("microservice/values.schema.json: 1:")),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_schema_error_in_a_value_set_under_values_points_there_not_at_the_claim_field() {
    let text = APPS.replace(
        "image: {repository: example.com/api, tag: v1}",
        "image: {repository: example.com/api, tag: v1}\n      replicas: 2\n      values:\n        replicaCount: 50",
    );
    let loaded = load(&[("claims/boot.yaml", BOOT), ("claims/apps.yaml", &text)]);
    let dir = chart_dir(
        "replicaCount: 1\nimage: {repository: x, tag: y}\n",
        "fields:\n  image.repository: image.repository\n  image.tag: image.tag\n  replicas: replicaCount\n",
        Some(r#"{"type": "object", "properties": {"replicaCount": {"type": "integer", "maximum": 10}}}"#),
    );
    let r = render_with(&loaded, &Source::Dir(dir.path().to_path_buf()));
    let msgs: Vec<String> = r
        .failures
        .iter()
        .map(|f| f.diagnostic.to_string())
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    // replicas: 2 (line 11) is fine; replicaCount: 50 under values: (line 13) is refused.
    assert!(
        msgs[0].starts_with("claims/apps.yaml:13:23: `api`: value `replicaCount` is refused")
            && msgs[0].ends_with("set a valid value under `values:`"),
        "{msgs:?}"
    );
}

/// A folder with one microservice chart made of the given values, mapping and (optional)
/// schema; render with `Source::Dir(folder)`.
fn chart_dir(values: &str, mapping: &str, schema: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let chart = dir.path().join("microservice");
    std::fs::create_dir_all(&chart).expect("mkdir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: microservice\nversion: 1.0.0\n",
    )
    .expect("w");
    std::fs::write(chart.join("values.yaml"), values).expect("w");
    std::fs::write(chart.join("claimd-mapping.yaml"), mapping).expect("w");
    if let Some(schema) = schema {
        std::fs::write(chart.join("values.schema.json"), schema).expect("w");
    }
    dir
}
