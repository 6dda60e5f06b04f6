//! Self-tests of the Kubernetes harness in `tests/support/kube.rs`: a real
//! kube-apiserver 1.20.2 + etcd 3.4 (built and cached by `tests/kube/setup.sh`),
//! the CRD installer (`tests/kube/crds.py`), and real Helm (`tests/helm/`)
//! installing into that server.

use crate::support::kube;

use crate::support::helm;

use kube::Cluster;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
fn crds_dir_or_skip(test: &str) -> Option<PathBuf> {
    crate::support::crd::crds_dir_or_skip(test)
}

#[test]
fn server_reports_its_version_and_writes_a_kubeconfig() {
    let cluster = Cluster::shared();
    let version = cluster.get_json("/version");
    assert_eq!(version["gitVersion"], "v1.20.2", "{version}");
    assert_eq!(version["major"], "1");
    assert_eq!(version["minor"], "20");

    assert!(cluster.server().starts_with("https://127.0.0.1:"));
    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig exists");
    assert!(
        kubeconfig.contains(&format!("server: {}\n", cluster.server())),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains("insecure-skip-tls-verify: true"));
    assert!(kubeconfig.contains(&format!("token: {}\n", cluster.token())));

    // RBAC is on: the token is cluster-admin.
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}}
    });
    let (status, body) = cluster.kubectl_like(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(&review.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["status"]["allowed"], true, "{review}");
}

#[test]
fn namespace_and_configmap_round_trip() {
    let cluster = Cluster::shared();
    let ns = cluster.fresh_namespace("harness");
    let got = cluster.get_json(&format!("/api/v1/namespaces/{ns}"));
    assert_eq!(got["metadata"]["name"], ns.as_str());
    assert_eq!(got["status"]["phase"], "Active");

    // YAML body, then a merge patch, then read back.
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let (status, body) = cluster.kubectl_like(
        "POST",
        &path,
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: '1'}\n"),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = cluster.kubectl_like(
        "PATCH",
        &format!("{path}/cm"),
        Some(r#"{"data":{"b":"2"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let cm = cluster.get_json(&format!("{path}/cm"));
    assert_eq!(cm["data"], json!({"a": "1", "b": "2"}));

    // The server validates built-in objects: a ConfigMap value must be a string.
    let (status, body) = cluster.kubectl_like(
        "POST",
        &path,
        Some(r#"{"metadata":{"name":"bad"},"data":{"n":1}}"#),
    );
    assert_eq!(status, 400, "{body}");

    let (status, body) = cluster.kubectl_like("GET", "/api/v1/namespaces/does-not-exist", None);
    assert_eq!(status, 404, "{body}");
}

#[test]
fn crds_install_and_the_server_validates_custom_objects() {
    let Some(dir) = crds_dir_or_skip("crds_install_and_the_server_validates_custom_objects") else {
        return;
    };
    let cluster = Cluster::shared();
    let names = cluster.install_crds(&dir);
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            p.extension().is_some_and(|x| x == "yaml" || x == "yml")
        })
        .count();
    assert_eq!(names.len(), files, "one CRD per file: {names:?}");
    assert!(names.iter().any(|n| n == "applicationsets.argoproj.io"));

    // Installing again replaces (PUT) what is there; a single file works too.
    let again = cluster.install_crds(&dir.join("argoproj.io_appprojects.yaml"));
    assert_eq!(again, vec!["appprojects.argoproj.io".to_string()]);

    let ns = cluster.fresh_namespace("argocd");
    let path = format!("/apis/argoproj.io/v1alpha1/namespaces/{ns}/applicationsets");
    let appset = |name: &str, self_heal: Value| {
        json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": name},
            "spec": {
                "generators": [{"list": {"elements": [{"env": "dev"}]}}],
                "template": {
                    "metadata": {"name": "app-{{env}}"},
                    "spec": {
                        "project": "default",
                        "source": {"repoURL": "https://example.com/repo.git", "path": "."},
                        "destination": {"server": "https://kubernetes.default.svc", "namespace": "x"},
                        "syncPolicy": {"automated": {"selfHeal": self_heal, "prune": true}}
                    }
                }
            }
        })
        .to_string()
    };

    let (status, body) = cluster.kubectl_like("POST", &path, Some(&appset("bad", json!("yes"))));
    assert_eq!(status, 422, "a string selfHeal must be refused: {body}");
    assert!(body.contains("selfHeal"), "{body}");

    let (status, body) = cluster.kubectl_like("POST", &path, Some(&appset("good", json!(true))));
    assert_eq!(status, 201, "{body}");
    let got = cluster.get_json(&format!("{path}/good"));
    assert_eq!(
        got["spec"]["template"]["spec"]["syncPolicy"]["automated"]["selfHeal"],
        true
    );

    // A required field missing (template.spec.project) is refused too.
    let mut missing: Value = serde_json::from_str(&appset("missing", json!(true))).unwrap();
    missing["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("project");
    let (status, body) = cluster.kubectl_like("POST", &path, Some(&missing.to_string()));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("project"), "{body}");
}

#[test]
fn own_cluster_stops_on_drop() {
    let cluster = Cluster::start();
    let (status, body) = cluster.kubectl_like("GET", "/readyz", None);
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_ne!(cluster.server(), Cluster::shared().server());
    let dir = cluster.dir().to_path_buf();
    let server = cluster.server();
    let etcd = cluster.etcd_url();
    drop(cluster);
    assert!(!dir.exists(), "{} left behind", dir.display());
    for url in [format!("{server}/readyz"), format!("{etcd}/health")] {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "2", &url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} still answers after drop");
    }
}

/// Real Helm (v4.3.0 in helm-sdkpy) installs a chart into the real server,
/// which stores the rendered ConfigMap and Helm's release Secret.
#[test]
fn helm_installs_a_chart_into_the_real_server() {
    let cluster = Cluster::shared();
    let chart = Path::new(ROOT).join("tests/helm/fixtures/tiny/chart");
    let ns = format!("helm-{}", std::process::id());
    let home = tempfile::tempdir().unwrap();
    let script = r#"
import asyncio, sys
from helm_sdkpy import Configuration, Install
kubeconfig, ns, chart = sys.argv[1:4]
rel = asyncio.run(Install(Configuration(namespace=ns, kubeconfig=kubeconfig)).run(
    "tiny", chart, values={"image": {"repository": "example/app"}},
    create_namespace=True, wait=False, timeout=60))
print(rel["info"]["status"] if "info" in rel else rel)
"#;
    let out = Command::new(kube::python())
        .args(["-c", script])
        .arg(cluster.kubeconfig())
        .arg(&ns)
        .arg(&chart)
        .env("PYTHONPATH", helm::helm_pythonpath())
        .env("HELM_DRIVER", "secret")
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env("KUBECACHEDIR", home.path().join("kubecache"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "helm install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "deployed");

    let cm = cluster.get_json(&format!("/api/v1/namespaces/{ns}/configmaps/tiny-tiny"));
    assert_eq!(cm["data"]["image"], "example/app");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    let secrets = cluster.get_json(&format!(
        "/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm,name%3Dtiny"
    ));
    assert_eq!(
        secrets["items"].as_array().map(Vec::len),
        Some(1),
        "{secrets}"
    );
}

fn coalesce(chart: &Path, files: &[PathBuf], kubeconfig: Option<&Path>) -> String {
    let mut cmd = Command::new(kube::python());
    cmd.arg(Path::new(ROOT).join("tests/helm/coalesce.py"))
        .arg(chart)
        .env("PYTHONPATH", helm::helm_pythonpath());
    for f in files {
        cmd.arg("-f").arg(f);
    }
    match kubeconfig {
        Some(k) => cmd.env("CLAIMD_KUBECONFIG", k),
        None => cmd.env_remove("CLAIMD_KUBECONFIG"),
    };
    let out = cmd.output().expect("run coalesce.py");
    assert!(
        out.status.success(),
        "coalesce.py {chart:?} {files:?} (real server: {}) failed:\n{}",
        kubeconfig.is_some(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("differs from `get values --all`"),
        "{files:?}: {stderr}"
    );
    String::from_utf8(out.stdout).expect("UTF-8 JSON")
}

/// `coalesce.py` with CLAIMD_KUBECONFIG (Helm installs into the real server,
/// the answer is `get values --all`) prints the same bytes as with its
/// stand-in API server, for the tiny fixture chart and its value files.
#[test]
fn coalesce_against_the_real_server_matches_the_stand_in() {
    let cluster = Cluster::shared();
    let fixture = Path::new(ROOT).join("tests/helm/fixtures/tiny");
    let chart = fixture.join("chart");
    let case = |name: &str| fixture.join("cases").join(name);
    let runs: Vec<Vec<PathBuf>> = vec![
        vec![],
        vec![case("one.yaml"), case("two.yaml")],
        vec![case("types.yaml")],
        vec![case("multidoc.yaml"), case("nested-null-unknown.yaml")],
        vec![case("scalar-over-map.yaml"), case("map-over-scalar.yaml")],
    ];
    for files in runs {
        let stand_in = coalesce(&chart, &files, None);
        let real = coalesce(&chart, &files, Some(&cluster.kubeconfig()));
        assert_eq!(real, stand_in, "{files:?}");
    }
}
