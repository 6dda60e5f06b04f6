//! Namespaces, quotas, limit ranges and network policies on a real kube-apiserver
//! 1.20.2 (`tests/support/kube.rs`): what claimd applies is read back from the server,
//! applying again writes nothing, a namespace claimd does not own is never taken over
//! or deleted, and the namespaces of removed claims are deleted.

use crate::support::catalyst;
use crate::support::kube;
use catalyst::apps;

use claimd::claims::{parse_file, Claim};
use claimd::kube::{desired, Cluster, Desired, Phase, Settings, Sync};
use claimd::yaml::Limits;
use kube::Cluster as TestCluster;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn project(team: &str) -> String {
    catalyst::project(team, "registry.example.com/org/shop")
}

fn environment(name: &str, branch: &str) -> String {
    catalyst::environment(name, SHA, branch)
}

fn claims(files: &[(&str, String)]) -> Vec<Claim> {
    let mut all = Vec::new();
    for (path, text) in files {
        let (claims, diags) = parse_file(path, text, &Limits::default());
        assert!(diags.iter().all(|d| !d.is_error()), "{path}: {diags:?}");
        all.extend(claims);
    }
    all
}

fn want(claims: &[Claim], repository: &str) -> Desired {
    desired(
        claims,
        &[],
        repository,
        "preview.example.com",
        &Settings::default(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A client and the runtime it lives on (the client's worker runs on that runtime).
struct Client {
    rt: tokio::runtime::Runtime,
    cluster: Cluster,
}

fn connect(c: &TestCluster) -> Client {
    connect_with(c.kubeconfig())
}

fn connect_with(kubeconfig: std::path::PathBuf) -> Client {
    let settings = Settings {
        kubeconfig: Some(kubeconfig),
        ..Settings::default()
    };
    let rt = runtime();
    let cluster = rt
        .block_on(Cluster::connect(&settings, "argocd"))
        .expect("connect")
        .expect("a cluster");
    Client { rt, cluster }
}

fn sync(client: &Client, d: &Desired) -> Sync {
    client.rt.block_on(client.cluster.sync(d, None))
}

/// The Catalyst procedure, written out again: lower case, other characters `-`; over
/// 63: sha256 of the full name, its first 57 characters with a trailing `-` trimmed,
/// `-` and 5 hex digits.
fn expected_namespace(full: &str) -> String {
    let full: String = full
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if full.len() <= 63 {
        return full;
    }
    let hex = format!("{:x}", Sha256::digest(full.as_bytes()));
    format!("{}-{}", full[..57].trim_end_matches('-'), &hex[..5])
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id())
}

fn resource_versions(c: &TestCluster, ns: &str) -> Vec<String> {
    let paths = [
        format!("/api/v1/namespaces/{ns}"),
        format!("/api/v1/namespaces/{ns}/resourcequotas/claimd-quota"),
        format!("/api/v1/namespaces/{ns}/limitranges/claimd-limits"),
        format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/claimd-default"),
    ];
    paths
        .iter()
        .map(|p| {
            c.get_json(p)["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn environment_namespaces_are_applied_with_labels_quota_limits_and_policy() {
    let c = TestCluster::shared();
    let cluster = connect(c);
    let team = unique("t");
    // 70 characters in all: hashed.
    let long_env = format!(
        "preview-{}",
        "x".repeat(70 - team.len() - "-shop-preview-".len())
    );
    let files = [
        ("claims/project.yaml", project(&team)),
        (
            "claims/pr-7.yaml",
            environment("pr-7", "feature/Login_Page"),
        ),
        ("claims/long.yaml", environment(&long_env, "main")),
    ];
    let d = want(
        &claims(&files),
        &format!("https://git.example.com/org/{team}.git"),
    );
    let s = sync(&cluster, &d);
    assert!(s.problems.is_empty(), "{:?}", s.problems);

    let short = format!("{team}-shop-pr-7");
    let full_long = format!("{team}-shop-{long_env}");
    assert_eq!(full_long.len(), 70);
    let long = expected_namespace(&full_long);
    assert_eq!(long.len(), 63, "{long}");
    for name in [&short, &long] {
        let ns = c.get_json(&format!("/api/v1/namespaces/{name}"));
        assert_eq!(
            ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "claimd"
        );
        assert_eq!(ns["metadata"]["labels"]["catalyst.dev/team"], team.as_str());
        assert_eq!(ns["metadata"]["labels"]["catalyst.dev/project"], "shop");
        assert_eq!(
            ns["metadata"]["annotations"]["claimd.dev/repository"],
            d.repository.as_str()
        );
    }
    let ns = c.get_json(&format!("/api/v1/namespaces/{short}"));
    assert_eq!(ns["metadata"]["labels"]["catalyst.dev/environment"], "pr-7");
    assert_eq!(
        ns["metadata"]["labels"]["catalyst.dev/branch"],
        "feature-Login_Page"
    );
    assert_eq!(
        ns["metadata"]["annotations"]["claimd.dev/claim"],
        "claims/pr-7.yaml"
    );

    let quota = c.get_json(&format!(
        "/api/v1/namespaces/{short}/resourcequotas/claimd-quota"
    ));
    assert_eq!(
        quota["spec"]["hard"],
        json!({"requests.cpu": "2", "requests.memory": "3Gi", "pods": "20", "services": "10"})
    );
    let limits = c.get_json(&format!(
        "/api/v1/namespaces/{short}/limitranges/claimd-limits"
    ));
    let l = &limits["spec"]["limits"][0];
    assert_eq!(l["type"], "Container");
    assert_eq!(l["defaultRequest"], json!({"cpu": "50m", "memory": "64Mi"}));
    let policy = c.get_json(&format!(
        "/apis/networking.k8s.io/v1/namespaces/{short}/networkpolicies/claimd-default"
    ));
    let spec = &policy["spec"];
    assert_eq!(spec["podSelector"], json!({}));
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        spec["ingress"][0]["from"],
        json!([{"podSelector": {}}, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}])
    );
    let egress = spec["egress"].to_string();
    assert!(egress.contains("\"port\":53"), "{egress}");
    assert!(
        !egress.contains("0.0.0.0/0"),
        "default egress must not be open: {egress}"
    );
    // Build pods alone may reach the git server and the registry.
    let build = c.get_json(&format!(
        "/apis/networking.k8s.io/v1/namespaces/{short}/networkpolicies/claimd-build"
    ));
    assert_eq!(
        build["spec"]["podSelector"]["matchLabels"]["claimd.dev/build"],
        "true"
    );
    let env = s.statuses.iter().find(|e| e.namespace == short).unwrap();
    assert_eq!(env.condition("NamespaceReady").unwrap().status, "True");

    // Applying again writes nothing: same resourceVersions, no write request made.
    let before: Vec<Vec<String>> = [&short, &long]
        .iter()
        .map(|n| resource_versions(c, n))
        .collect();
    let again = sync(&cluster, &d);
    assert_eq!(again.writes, 0, "{:?}", again.problems);
    let after: Vec<Vec<String>> = [&short, &long]
        .iter()
        .map(|n| resource_versions(c, n))
        .collect();
    assert_eq!(before, after);

    // A changed quota is one write, to the quota only.
    let mut bigger = project(&team).replace("cpu: \"2\"", "cpu: \"4\"");
    bigger.push('\n');
    let files2 = [
        ("claims/project.yaml", bigger),
        (
            "claims/pr-7.yaml",
            environment("pr-7", "feature/Login_Page"),
        ),
        ("claims/long.yaml", environment(&long_env, "main")),
    ];
    let d2 = want(&claims(&files2), &d.repository);
    let changed = sync(&cluster, &d2);
    assert_eq!(
        changed.writes, 2,
        "one quota per environment: {:?}",
        changed.problems
    );
    let quota = c.get_json(&format!(
        "/api/v1/namespaces/{short}/resourcequotas/claimd-quota"
    ));
    assert_eq!(quota["spec"]["hard"]["requests.cpu"], "4");
    assert_eq!(
        resource_versions(c, &short)[0],
        before[0][0],
        "the namespace itself is untouched"
    );
}

#[test]
fn application_namespaces_are_shared_by_their_claims() {
    let c = TestCluster::shared();
    let cluster = connect(c);
    let ns = unique("apps-");
    let files = [("claims/dev.yaml", apps(&ns))];
    let d = want(&claims(&files), "https://git.example.com/org/apps.git");
    let s = sync(&cluster, &d);
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let live = c.get_json(&format!("/api/v1/namespaces/{ns}"));
    assert_eq!(live["metadata"]["labels"]["claimd.dev/environment"], "dev");
    assert_eq!(
        live["metadata"]["labels"]["claimd.dev/cluster-type"],
        "nonprod"
    );
    assert_eq!(
        live["metadata"]["annotations"]["claimd.dev/claim"],
        "claims/dev.yaml"
    );
    // No Project, no quota; defaults and isolation all the same.
    let (status, _) = c.kubectl_like(
        "GET",
        &format!("/api/v1/namespaces/{ns}/resourcequotas/claimd-quota"),
        None,
    );
    assert_eq!(status, 404);
    c.get_json(&format!(
        "/api/v1/namespaces/{ns}/limitranges/claimd-limits"
    ));
    c.get_json(&format!(
        "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/claimd-default"
    ));
}

fn deletion_timestamp(c: &TestCluster, ns: &str) -> Value {
    c.get_json(&format!("/api/v1/namespaces/{ns}"))["metadata"]["deletionTimestamp"].clone()
}

#[test]
fn only_this_repositorys_namespaces_of_removed_claims_are_deleted() {
    let c = TestCluster::shared();
    let cluster = connect(c);
    let team = unique("c");
    let repository = format!("https://git.example.com/org/{team}.git");
    let taken = format!("{team}-shop-taken");
    let foreign = format!("{team}-shop-foreign");
    // Someone else's namespace with the name an Environment wants: no label.
    c.create_namespace(&taken);
    // A namespace of another repository's claimd.
    let other = want(
        &claims(&[
            ("claims/project.yaml", project(&team)),
            ("claims/foreign.yaml", environment("foreign", "main")),
        ]),
        "https://git.example.com/org/other.git",
    );
    assert!(sync(&cluster, &other).problems.is_empty());

    let all = [
        ("claims/project.yaml", project(&team)),
        ("claims/keep.yaml", environment("keep", "main")),
        ("claims/gone.yaml", environment("gone", "main")),
        ("claims/taken.yaml", environment("taken", "main")),
        ("claims/foreign.yaml", environment("foreign", "main")),
    ];
    let d = want(&claims(&all), &repository);
    let s = sync(&cluster, &d);
    for (name, reason) in [(&taken, "NamespaceTaken"), (&foreign, "NamespaceTaken")] {
        let st = s.statuses.iter().find(|e| &e.namespace == name).unwrap();
        assert_eq!(st.phase, Phase::Failed, "{st:?}");
        assert_eq!(st.condition("NamespaceReady").unwrap().reason, reason);
    }
    // Never taken over: no label, no quota added.
    let live = c.get_json(&format!("/api/v1/namespaces/{taken}"));
    assert!(
        live["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(),
        "{live}"
    );
    let (status, _) = c.kubectl_like(
        "GET",
        &format!("/api/v1/namespaces/{taken}/resourcequotas/claimd-quota"),
        None,
    );
    assert_eq!(status, 404);

    // Remove every Environment but `keep`.
    let fewer = [
        ("claims/project.yaml", project(&team)),
        ("claims/keep.yaml", environment("keep", "main")),
    ];
    let s = sync(&cluster, &want(&claims(&fewer), &repository));
    assert_eq!(
        s.deleted,
        vec![format!("{team}-shop-gone")],
        "{:?}",
        s.problems
    );
    assert!(deletion_timestamp(c, &format!("{team}-shop-gone")).is_string());
    assert!(deletion_timestamp(c, &format!("{team}-shop-keep")).is_null());
    assert!(
        deletion_timestamp(c, &taken).is_null(),
        "not claimd's: never deleted"
    );
    assert!(
        deletion_timestamp(c, &foreign).is_null(),
        "another repository's"
    );

    // A claim file that does not read keeps its namespace.
    let broken = desired(
        &claims(&[("claims/project.yaml", project(&team))]),
        &["claims/keep.yaml".to_string()],
        &repository,
        "preview.example.com",
        &Settings::default(),
    );
    let s = sync(&cluster, &broken);
    assert!(s.deleted.is_empty(), "{:?}", s.deleted);
    assert!(deletion_timestamp(c, &format!("{team}-shop-keep")).is_null());
}

#[test]
fn an_unreachable_api_server_holds_previews_and_deletes_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        catalyst::kubeconfig(&format!("https://127.0.0.1:{port}"), "t", None),
    )
    .unwrap();
    let settings = Settings {
        kubeconfig: Some(kubeconfig),
        ..Settings::default()
    };
    let client = {
        let rt = runtime();
        let cluster = rt
            .block_on(Cluster::connect(&settings, "argocd"))
            .unwrap()
            .unwrap();
        Client { rt, cluster }
    };
    let team = unique("down");
    let d = want(
        &claims(&[
            ("claims/project.yaml", project(&team)),
            ("claims/pr-1.yaml", environment("pr-1", "main")),
        ]),
        "r",
    );
    let s = sync(&client, &d);
    assert!(s.retry);
    assert!(s.ready.is_empty());
    assert!(s.deleted.is_empty());
    assert_eq!(s.statuses[0].phase, Phase::Pending);
    assert!(s.problems[0].contains("unreachable"), "{:?}", s.problems);
}

const RBAC: &str = include_str!("../../deploy/kubernetes/rbac.yaml");
pub(crate) const CLAIMD_USER: &str = "system:serviceaccount:claimd:claimd";

/// Applies the shipped RBAC file as an administrator would.
pub(crate) fn apply_rbac(c: &TestCluster) {
    for doc in serde_yaml::Deserializer::from_str(RBAC) {
        let obj = Value::deserialize(doc).expect("rbac.yaml document");
        let name = obj["metadata"]["name"].as_str().unwrap();
        let path = match obj["kind"].as_str().unwrap() {
            "Namespace" => format!("/api/v1/namespaces/{name}"),
            "ServiceAccount" => format!("/api/v1/namespaces/claimd/serviceaccounts/{name}"),
            "ClusterRole" => format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"),
            "ClusterRoleBinding" => {
                format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")
            }
            "Role" => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/claimd/roles/{name}"),
            "RoleBinding" => {
                format!("/apis/rbac.authorization.k8s.io/v1/namespaces/claimd/rolebindings/{name}")
            }
            other => panic!("unexpected kind {other} in rbac.yaml"),
        };
        let body = obj.to_string();
        let (status, resp) = c.request(
            "PATCH",
            &format!("{path}?fieldManager=test&force=true"),
            Some("application/apply-patch+yaml"),
            Some(body.as_bytes()),
            std::time::Duration::from_secs(30),
        );
        assert!(status == 200 || status == 201, "{path}: {status} {resp}");
    }
}

fn allowed(c: &TestCluster, verb: &str, group: &str, resource: &str) -> bool {
    allowed_in(c, verb, group, resource, "any")
}

fn allowed_in(c: &TestCluster, verb: &str, group: &str, resource: &str, namespace: &str) -> bool {
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": CLAIMD_USER,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:claimd", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace},
        },
    });
    let (status, body) = c.kubectl_like(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some(&review.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["status"]["allowed"] == true
}

#[test]
fn the_shipped_cluster_role_is_enough_and_no_more() {
    let c = TestCluster::shared();
    apply_rbac(c);
    // claimd as its ServiceAccount (the admin token impersonating it).
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        catalyst::kubeconfig(&c.server(), c.token(), Some(CLAIMD_USER)),
    )
    .unwrap();
    let client = connect_with(kubeconfig);
    let team = unique("rbac");
    let repository = format!("https://git.example.com/org/{team}.git");
    let all = [
        ("claims/project.yaml", project(&team)),
        ("claims/pr-1.yaml", environment("pr-1", "main")),
        ("claims/dev.yaml", apps(&format!("{team}-dev"))),
    ];
    // Namespaces, their objects and a build Job (no registry: the image is missing).
    let s = sync(&client, &want(&claims(&all), &repository));
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let ns = format!("{team}-shop-pr-1");
    c.get_json(&format!(
        "/apis/batch/v1/namespaces/{ns}/jobs/build-pr-1-0123456"
    ));
    assert_eq!(
        s.statuses[0].condition("BuildReady").unwrap().reason,
        "Building"
    );
    // Cleanup.
    let s = sync(&client, &want(&claims(&all[..1]), &repository));
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.deleted.len(), 2, "{:?}", s.deleted);
    // Nothing claimd does not call.
    assert!(allowed(c, "patch", "", "namespaces"));
    assert!(!allowed(c, "get", "", "secrets"));
    assert!(!allowed(c, "create", "", "pods"));
    assert!(!allowed(c, "create", "apps", "deployments"));
    assert!(!allowed(c, "delete", "batch", "jobs"));
    assert!(!allowed(c, "patch", "argoproj.io", "applications"));
    // Leases (several replicas): in claimd's own namespace only.
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(
            allowed_in(c, verb, "coordination.k8s.io", "leases", "claimd"),
            "{verb}"
        );
    }
    assert!(!allowed(c, "update", "coordination.k8s.io", "leases"));
}

/// `claimd-bench kube` against this harness's API server (numbers for BENCHMARKS.md):
/// `cargo build --release --workspace && cargo test --release --test it -- --ignored --nocapture bench_kube`.
#[test]
#[ignore]
fn bench_kube() {
    let c = TestCluster::shared();
    let environments = std::env::var("CLAIMD_BENCH_ENVIRONMENTS").unwrap_or_else(|_| "200".into());
    // The bench binary is another workspace member: it sits next to claimd in the same
    // target folder once `cargo build --workspace` has run.
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_claimd")).with_file_name("claimd-bench");
    assert!(
        bench.exists(),
        "{} is missing: run `cargo build --release --workspace` first",
        bench.display()
    );
    let out = std::process::Command::new(&bench)
        .args(["kube", "--environments", &environments, "--kubeconfig"])
        .arg(c.kubeconfig())
        .output()
        .expect("claimd-bench kube");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
