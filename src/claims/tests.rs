//! Data-driven validation tests: each case is claim files and the exact diagnostics
//! (`file:line:col` and a piece of the message) they must produce — and no others.

use super::*;

/// Loads `files` and checks the errors: every expected `file:line:col: text` appears
/// (same position, message containing `text`), and there are no other errors.
fn check(files: &[(&str, &str)], expected: &[&str]) {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let loaded = load(&files, &Limits::default());
    let errors: Vec<String> = loaded.errors().map(ToString::to_string).collect();
    for want in expected {
        let (place, text) = split_expected(want);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{place}: ")) && e.contains(text)),
            "expected `{want}` among:\n{}",
            errors.join("\n")
        );
    }
    assert_eq!(
        errors.len(),
        expected.len(),
        "unexpected errors:\n{}",
        errors.join("\n")
    );
    for f in &loaded.failed_files {
        assert!(
            loaded.claims.iter().all(|c| &c.source != f),
            "claims of failed file {f} kept"
        );
    }
}

/// `a.yaml:3:5: text` → (`a.yaml:3:5`, `text`).
fn split_expected(want: &str) -> (&str, &str) {
    let mut idx = 0;
    for _ in 0..3 {
        idx += want[idx..].find(':').expect("file:line:col: text") + 1;
    }
    (&want[..idx - 1], want[idx..].trim_start())
}

fn one(text: &str, expected: &[&str]) {
    check(&[("c.yaml", text)], expected);
}

const APP: &str = "apiVersion: platform.infraforge.io/v1
kind: ApplicationClaim
metadata:
  name: svc
spec:
  environment: dev
  clusterType: nonprod
  applications:
    - name: api
      chart:
        name: microservice
        version: \"1.0.0\"
      replicas: 2
";

fn app_with(extra: &str) -> String {
    format!("{APP}{extra}")
}

#[test]
fn valid_claim_has_no_errors() {
    one(APP, &[]);
}

#[test]
fn every_seed_example_validates_except_the_placeholder_commit() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seeds");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples/seeds") {
        let path = entry.expect("entry").path();
        let name = format!(
            "seeds/{}",
            path.file_name().expect("name").to_string_lossy()
        );
        files.push((name, std::fs::read_to_string(&path).expect("read")));
    }
    assert_eq!(files.len(), 5);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    check(
        &refs,
        &["seeds/environment.yaml:16:16: `spec.source.commitSha` is `a1b2c3d4...`"],
    );
}

#[test]
fn bundled_examples_validate() {
    let loaded = load(&crate::examples::claim_files(), &Limits::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.claims.len(), 8);
}

#[test]
fn status_block_is_ignored_with_a_warning() {
    let text = format!("{APP}status:\n  phase: Ready\n");
    let loaded = load(&[("c.yaml".into(), text)], &Limits::default());
    assert!(!loaded.has_errors());
    assert_eq!(loaded.claims.len(), 1);
    let w: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("c.yaml:14:1: warning: `status` is ignored"),
        "{w:?}"
    );
}

#[test]
fn several_documents_per_file() {
    let text = format!(
        "{APP}---\n{}",
        APP.replace("name: svc", "name: svc2")
            .replace("name: api", "name: web")
    );
    let loaded = load(&[("c.yaml".into(), text)], &Limits::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.claims.len(), 2);
    assert_eq!(loaded.claims[1].name.pos, Pos { line: 18, col: 9 });
}

#[test]
fn unknown_field_with_suggestion() {
    one(
        &app_with("      replica: 3\n"),
        &["c.yaml:14:7: unknown field `spec.applications[0].replica`; did you mean `replicas`?"],
    );
}

#[test]
fn unknown_field_without_close_match_lists_the_known_ones() {
    one(
        &app_with("      colour: blue\n"),
        &["c.yaml:14:7: unknown field `spec.applications[0].colour`; expected one of:"],
    );
}

#[test]
fn misspelled_spec_is_unknown_and_spec_is_missing() {
    one(
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata:\n  name: x\nsepc: {}\n",
        &["c.yaml:5:1: did you mean `spec`?", "c.yaml:1:1: missing required field `spec`"],
    );
}

#[test]
fn wrong_type_string_for_number() {
    one(&APP.replace("replicas: 2", "replicas: \"2\""), &["c.yaml:13:17: `spec.applications[0].replicas` must be a whole number, found string \"2\""]);
}

#[test]
fn unquoted_chart_version_is_refused_with_a_hint() {
    one(
        &APP.replace("version: \"1.0.0\"", "version: 1.0"),
        &["c.yaml:12:18: must be a string: write it in quotes"],
    );
}

#[test]
fn chart_version_must_be_semver() {
    one(
        &APP.replace("version: \"1.0.0\"", "version: latest"),
        &["c.yaml:12:18: chart version `latest` is not a semantic version"],
    );
}

#[test]
fn missing_required_field() {
    one(
        &APP.replace("  environment: dev\n", ""),
        &["c.yaml:6:3: missing required field `spec.environment` (a string)"],
    );
}

#[test]
fn missing_metadata_name() {
    one(
        &APP.replace("  name: svc\n", "  labels: {a: b}\n"),
        &["c.yaml:4:3: missing required field `metadata.name`"],
    );
}

#[test]
fn name_with_upper_case_and_underscore() {
    one(
        &APP.replace("name: api", "name: Payment_Service"),
        &["c.yaml:9:13: upper case letters (try `payment-service`)"],
    );
}

#[test]
fn name_that_would_escape_the_output_folder() {
    one(
        &APP.replace("name: api", "name: ../../etc"),
        &["c.yaml:9:13: would escape the output folder"],
    );
    one(
        &APP.replace("name: api", "name: a/b"),
        &["c.yaml:9:13: would escape the output folder"],
    );
}

#[test]
fn hostile_names_are_quoted_printable_and_short() {
    // Control, invisible and bidirectional characters are escaped in the message.
    one(
        &APP.replace("name: api", "name: \"a\\0b\\e[31m\\u202e\\u200b\\nc\""),
        &["c.yaml:9:13: `a\\u{0}b\\u{1b}[31m\\u{202e}\\u{200b}\\u{a}c` is not a valid name"],
    );
    // A 5000-character name is quoted by its first 64 characters.
    let loaded = load(
        &[(
            "c.yaml".to_string(),
            APP.replace("name: api", &format!("name: {}", "a".repeat(5000))),
        )],
        &Limits::default(),
    );
    let message = &loaded.errors().next().expect("an error").message;
    assert!(
        message.starts_with(&format!("`{}…` is 5000 characters long", "a".repeat(64))),
        "{message}"
    );
}

#[test]
fn name_too_long() {
    let long = "a".repeat(64);
    one(
        &APP.replace("name: api", &format!("name: {long}")),
        &["c.yaml:9:13: is 64 characters long"],
    );
}

#[test]
fn environment_name_must_be_a_label() {
    one(
        &APP.replace("environment: dev", "environment: Dev/1"),
        &["c.yaml:6:16: would escape the output folder"],
    );
}

#[test]
fn same_application_twice_in_one_environment_across_files() {
    let other = APP.replace("name: svc", "name: other");
    check(
        &[("a.yaml", APP), ("b.yaml", &other)],
        &["b.yaml:9:13: `api` is already defined in environment `nonprod/dev` at a.yaml:9:13"],
    );
}

#[test]
fn same_claim_name_twice() {
    let other = APP.replace("name: api", "name: web");
    check(
        &[("a.yaml", APP), ("b.yaml", &other)],
        &["b.yaml:4:9: ApplicationClaim `svc` is already defined at a.yaml:4:9"],
    );
}

const BOOT: &str = "apiVersion: platform.infraforge.io/v1
kind: BootstrapClaim
metadata:
  name: boot
spec:
  giteaURL: http://gitea:3000
  organization: platform
  repositories:
    voltran: voltran
  gitOps:
    clusterType: nonprod
    environments: [qa, staging]
";

#[test]
fn environment_not_declared_in_the_bootstrap_claim() {
    check(
        &[("boot.yaml", BOOT), ("app.yaml", APP)],
        &["app.yaml:6:16: environment `dev` is not declared for clusterType `nonprod` in BootstrapClaim `boot` (boot.yaml); declared: qa, staging"],
    );
}

#[test]
fn the_catalyst_cluster_type_is_reserved() {
    one(
        &APP.replace("clusterType: nonprod", "clusterType: catalyst"),
        &["c.yaml:7:16: clusterType `catalyst` is reserved"],
    );
}

#[test]
fn other_cluster_types_are_not_checked_against_the_bootstrap() {
    check(
        &[
            ("boot.yaml", BOOT),
            (
                "app.yaml",
                &APP.replace("clusterType: nonprod", "clusterType: prod"),
            ),
        ],
        &[],
    );
}

#[test]
fn two_bootstraps_for_one_cluster_type() {
    let second = BOOT.replace("name: boot", "name: boot2");
    check(
        &[("a.yaml", BOOT), ("b.yaml", &second)],
        &["b.yaml:11:18: clusterType `nonprod` already has a BootstrapClaim"],
    );
}

#[test]
fn bootstraps_must_agree_on_the_gitops_repository() {
    let prod = BOOT
        .replace("name: boot", "name: boot-prod")
        .replace("clusterType: nonprod", "clusterType: prod")
        .replace("voltran: voltran", "voltran: other");
    check(
        &[("a.yaml", BOOT), ("b.yaml", &prod)],
        &["b.yaml:6:13: BootstrapClaims disagree on the GitOps repository"],
    );
}

#[test]
fn environment_listed_twice() {
    one(
        &BOOT.replace("[qa, staging]", "[qa, qa]"),
        &["c.yaml:12:24: environment `qa` is listed twice"],
    );
}

#[test]
fn bootstrap_urls_are_checked() {
    one(
        &BOOT.replace("http://gitea:3000", "gitea:3000"),
        &["c.yaml:6:13: `spec.giteaURL` is `gitea:3000`; expected a URL starting with http:// or https://"],
    );
}

const PLATFORM: &str = "apiVersion: platform.infraforge.io/v1
kind: PlatformApplicationClaim
metadata:
  name: data
spec:
  environment: dev
  clusterType: nonprod
  services:
    - type: postgresql
      name: db
      storage:
        size: 10Gi
";

#[test]
fn unknown_platform_service_type() {
    one(
        &PLATFORM.replace("type: postgresql", "type: postgres"),
        &["c.yaml:9:13: `spec.services[0].type` is `postgres`; did you mean `postgresql`?"],
    );
    one(
        &PLATFORM.replace("type: postgresql", "type: cassandra"),
        &["c.yaml:9:13: expected one of: postgresql, mongodb, redis, rabbitmq, kafka"],
    );
}

#[test]
fn storage_size_must_be_a_quantity() {
    one(
        &PLATFORM.replace("size: 10Gi", "size: 10 GB"),
        &["c.yaml:12:15: `spec.services[0].storage.size` is `10 GB`, not a Kubernetes quantity"],
    );
}

#[test]
fn backup_bucket_must_be_an_s3_url() {
    one(
        &format!("{PLATFORM}      backup:\n        s3Bucket: my-backups\n"),
        &["c.yaml:14:19: expected a URL starting with s3://"],
    );
}

#[test]
fn unknown_kind_and_wrong_api_version() {
    one(&APP.replace("kind: ApplicationClaim", "kind: ApplicationClaims"), &["c.yaml:2:7: unknown kind `ApplicationClaims` (platform.infraforge.io/v1); did you mean `ApplicationClaim`?"]);
    one(&APP.replace("platform.infraforge.io/v1", "catalyst.catalyst.dev/v1alpha1"), &["c.yaml:1:13: ApplicationClaim has apiVersion `catalyst.catalyst.dev/v1alpha1`; expected `platform.infraforge.io/v1`"]);
    one(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        &["c.yaml:2:7: unknown kind `ConfigMap` (v1); claims/ holds only claims"],
    );
}

#[test]
fn document_that_is_not_a_map() {
    one(
        "- just\n- a list\n",
        &["c.yaml:1:1: a claim document must be a map (apiVersion, kind, metadata, spec), found a list"],
    );
}

#[test]
fn spec_that_is_not_a_map() {
    let head = &APP[..APP.find("spec:").expect("spec")];
    one(
        &format!("{head}spec: [1, 2]\n"),
        &["c.yaml:5:7: `spec` must be a map, found a list"],
    );
}

#[test]
fn invalid_yaml_has_a_position() {
    one(
        "apiVersion: platform.infraforge.io/v1\nkind: [unclosed\n",
        &["c.yaml:3:1: invalid YAML"],
    );
    // Without a line break at the end: the end of the last line, not a line after it.
    one(
        "apiVersion: platform.infraforge.io/v1\nkind: [unclosed",
        &["c.yaml:2:16: invalid YAML"],
    );
    one("!!str ", &["c.yaml:1:7: a claim document must be a map"]);
}

#[test]
fn duplicate_keys_are_refused() {
    one(
        &app_with("      replicas: 3\n"),
        &["c.yaml:14:7: duplicate key `replicas` (first defined at 13:7)"],
    );
}

#[test]
fn hostile_input_alias_bomb_and_depth() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let files = [("bomb.yaml".to_string(), bomb)];
    let loaded = load(&files, &Limits::default());
    let e: Vec<String> = loaded.errors().map(ToString::to_string).collect();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("bomb.yaml:6:") && e[0].contains("alias bomb"),
        "{e:?}"
    );
    let deep = format!("a: {}{}\n", "[".repeat(80), "]".repeat(80));
    one(&deep, &["c.yaml:1:67: nesting deeper than 64 levels"]);
}

#[test]
fn ingress_host_must_be_a_host_name() {
    one(
        &app_with("      ingress:\n        host: https://x.example.com/\n"),
        &["c.yaml:15:15: is not a valid host name"],
    );
}

#[test]
fn resources_must_be_quantities() {
    one(
        &app_with("      resources:\n        requests:\n          memory: 1 GB\n"),
        &["c.yaml:16:19: `spec.applications[0].resources.requests.memory` is `1 GB`"],
    );
}

#[test]
fn env_values_must_be_strings() {
    one(&app_with("      env:\n        - name: WORKERS\n          value: 4\n"), &["c.yaml:16:18: `spec.applications[0].env[0].value` must be a string, found number 4; quote it"]);
}

#[test]
fn pull_policy_with_wrong_case() {
    one(
        &app_with("      image:\n        pullPolicy: always\n"),
        &["c.yaml:15:21: did you mean `Always`?"],
    );
}

#[test]
fn autoscaling_bounds() {
    one(
        &app_with("      autoscaling:\n        minReplicas: 5\n        maxReplicas: 2\n"),
        &["c.yaml:16:22: `spec.applications[0].autoscaling.maxReplicas` (2) is below minReplicas (5)"],
    );
}

#[test]
fn empty_application_list() {
    one(
        &APP[..APP.find("    - name: api").expect("list")]
            .replace("applications:\n", "applications: []\n"),
        &["c.yaml:6:3: `spec.applications` is empty"],
    );
}

const PROJECT: &str = "apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Project
metadata:
  name: shop
  namespace: team-a
spec:
  source:
    repositoryUrl: https://git.example.com/team-a/shop
  deployment:
    type: helm
    path: ./charts/shop
";

const ENV: &str = "apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Environment
metadata:
  name: pr-7
spec:
  projectRef:
    name: shop
  type: development
  source:
    commitSha: 0123456789abcdef0123456789abcdef01234567
";

#[test]
fn environment_with_its_project_is_valid() {
    check(&[("p.yaml", PROJECT), ("e.yaml", ENV)], &[]);
}

#[test]
fn environment_namespace_taken_by_applications() {
    let app = APP.replace(
        "  clusterType: nonprod\n",
        "  clusterType: nonprod\n  namespace: team-a-shop-pr-7\n",
    );
    check(
        &[("a.yaml", &app), ("p.yaml", PROJECT), ("e.yaml", ENV)],
        &["e.yaml:4:9: namespace `team-a-shop-pr-7` is also where application `api` of a.yaml goes"],
    );
}

#[test]
fn environment_referring_to_an_unknown_project() {
    check(
        &[
            ("p.yaml", PROJECT),
            ("e.yaml", &ENV.replace("name: shop", "name: shoe")),
        ],
        &["e.yaml:7:11: Project `shoe` is not defined in claims/ (known: shop)"],
    );
}

#[test]
fn environment_type_and_commit() {
    check(
        &[
            ("p.yaml", PROJECT),
            ("e.yaml", &ENV.replace("type: development", "type: preview")),
        ],
        &["e.yaml:8:9: `spec.type` is `preview`; expected one of: development, deployment"],
    );
    check(
        &[
            ("p.yaml", PROJECT),
            (
                "e.yaml",
                &ENV.replace("0123456789abcdef0123456789abcdef01234567", "HEAD"),
            ),
        ],
        &["e.yaml:10:16: `spec.source.commitSha` is `HEAD`"],
    );
}

#[test]
fn project_path_must_stay_inside_the_repository() {
    one(
        &PROJECT.replace("./charts/shop", "../../etc"),
        &["c.yaml:11:11: must stay inside the repository"],
    );
}

#[test]
fn project_deployment_type() {
    one(
        &PROJECT.replace("type: helm", "type: kustomize"),
        &["c.yaml:10:11: deployment type `kustomize` is not supported by claimd yet"],
    );
    one(&PROJECT.replace("type: helm", "type: helmfile"), &["c.yaml:10:11: `spec.deployment.type` is `helmfile`; expected one of: helm, manifest, kustomize"]);
    one(
        &PROJECT.replace("type: helm", "type: hlem"),
        &["c.yaml:10:11: `spec.deployment.type` is `hlem`; did you mean `helm`?"],
    );
}

#[test]
fn every_problem_in_a_file_is_reported_at_once() {
    let text = APP
        .replace("name: api", "name: API")
        .replace("replicas: 2", "replicas: many\n      colour: red");
    let files = [("c.yaml".to_string(), text)];
    let loaded = load(&files, &Limits::default());
    assert_eq!(loaded.errors().count(), 3, "{:?}", loaded.diagnostics);
}

#[test]
fn a_failed_file_does_not_take_other_files_down() {
    let files = [
        ("a.yaml".to_string(), APP.to_string()),
        ("b.yaml".to_string(), "kind: [".to_string()),
    ];
    let loaded = load(&files, &Limits::default());
    assert_eq!(loaded.failed_files, vec!["b.yaml".to_string()]);
    assert_eq!(loaded.claims.len(), 1);
    assert_eq!(loaded.claims[0].source, "a.yaml");
}

#[test]
fn input_order_does_not_matter() {
    let a = ("a.yaml".to_string(), APP.to_string());
    let b = (
        "b.yaml".to_string(),
        APP.replace("name: svc", "name: other"),
    );
    let one = load(&[a.clone(), b.clone()], &Limits::default());
    let two = load(&[b, a], &Limits::default());
    assert_eq!(one.claims, two.claims);
    assert_eq!(one.diagnostics, two.diagnostics);
}

/// Thousands of broken variants of the examples: every one is either accepted or
/// refused with positioned errors — never a panic, never an error without a place.
#[test]
fn mangled_examples_never_panic() {
    let mut variants = 0;
    for (_, text) in crate::examples::CLAIMS {
        let text = text.to_string();
        let lines: Vec<&str> = text.lines().collect();
        let mut cases: Vec<String> = Vec::new();
        for i in 0..lines.len() {
            let mut l = lines.clone();
            l.remove(i);
            cases.push(l.join("\n"));
            let mut l = lines.clone();
            l[i] = l[i].trim_start();
            cases.push(l.join("\n"));
            let mut l = lines.clone();
            let doubled = format!("  {}", l[i]);
            l[i] = &doubled;
            cases.push(l.join("\n"));
        }
        for cut in (0..text.len()).step_by(3) {
            if text.is_char_boundary(cut) {
                cases.push(text[..cut].to_string());
            }
        }
        for (i, c) in text.char_indices().filter(|(_, c)| ":-[{\"'".contains(*c)) {
            let mut t = text.clone();
            t.replace_range(i..i + c.len_utf8(), if c == ':' { " " } else { "" });
            cases.push(t);
        }
        for case in cases {
            let loaded = load(&[("claims/x.yaml".to_string(), case)], &Limits::default());
            for d in &loaded.diagnostics {
                assert!(d.pos.line >= 1 && d.pos.col >= 1, "{d}");
                assert!(!d.message.is_empty());
            }
            variants += 1;
        }
    }
    assert!(variants > 1500, "{variants}");
}
