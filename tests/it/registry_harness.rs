//! Self-tests of the OCI registry harness in `tests/support/registry.rs` (a real
//! CNCF Distribution registry, installed by `tests/registry/setup.sh`), and of
//! `tests/helm/oci.py` (real Helm pushing to and loading from it).

use crate::support::helm;
use crate::support::registry;

use registry::{basic_auth, http_request, Registry};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn anonymous_registry_answers_v2() {
    let reg = Registry::start(None);
    assert!(reg.host().starts_with("127.0.0.1:"), "{}", reg.host());
    assert_eq!(reg.oci("charts"), format!("oci://{}/charts", reg.host()));

    let resp = reg.request_anonymous("GET", "/v2/", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("Docker-Distribution-Api-Version"),
        Some("registry/2.0")
    );
    // The readiness probes are not listed, the test's own request is.
    assert_eq!(reg.requests(), vec!["GET /v2/ 200"]);

    let missing = reg.request_anonymous("GET", "/v2/nothing/here/manifests/1.0.0", b"");
    assert_eq!(missing.status, 404);
    assert_eq!(
        reg.requests(),
        vec!["GET /v2/ 200", "GET /v2/nothing/here/manifests/1.0.0 404"]
    );
}

#[test]
fn htpasswd_auth_is_enforced() {
    let mut reg = Registry::start(Some(("alice", "s3cret")));
    assert_eq!(reg.credentials(), Some(("alice", "s3cret")));

    let anonymous = reg.request_anonymous("GET", "/v2/", b"");
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("WWW-Authenticate"),
        Some(r#"Basic realm="claimd-test""#)
    );

    let authed = reg.request("GET", "/v2/", b"");
    assert_eq!(authed.status, 200, "{}", authed.text());

    let wrong = basic_auth("alice", "wrong");
    let resp = http_request(
        &reg.host(),
        "GET",
        "/v2/",
        &[("Authorization", wrong.as_str())],
        b"",
    )
    .expect("request");
    assert_eq!(resp.status, 401);

    assert_eq!(
        reg.requests(),
        vec!["GET /v2/ 401", "GET /v2/ 200", "GET /v2/ 401"]
    );
    reg.clear_requests();
    assert!(reg.requests().is_empty());
    assert_eq!(reg.request("GET", "/v2/_catalog", b"").status, 200);
    assert_eq!(reg.requests(), vec!["GET /v2/_catalog 200"]);
}

/// Monolithic blob upload: POST /v2/<name>/blobs/uploads/, then PUT <location>&digest=.
fn push_blob(reg: &Registry, name: &str, data: &[u8]) -> String {
    let digest = format!("sha256:{:x}", Sha256::digest(data));
    let start = reg.request("POST", &format!("/v2/{name}/blobs/uploads/"), b"");
    assert_eq!(start.status, 202, "start upload: {}", start.text());
    let location = start.header("Location").expect("Location header");
    let location = location.strip_prefix(&reg.url()).unwrap_or(location);
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = reg.request("PUT", &format!("{location}{sep}digest={digest}"), data);
    assert_eq!(put.status, 201, "finish upload: {}", put.text());
    assert_eq!(put.header("Docker-Content-Digest"), Some(digest.as_str()));
    digest
}

#[test]
fn stop_and_start_again_keep_port_and_storage() {
    let mut reg = Registry::start(Some(("bob", "pw")));
    let data = b"a small blob for the claimd registry harness\n";
    let digest = push_blob(&reg, "claimd/harness", data);
    let blob_path = format!("/v2/claimd/harness/blobs/{digest}");
    let got = reg.request("GET", &blob_path, b"");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, data);

    let host = reg.host();
    reg.stop();
    assert!(!reg.is_running());
    assert!(
        http_request(&host, "GET", "/v2/", &[], b"").is_err(),
        "{host} still answers after stop()"
    );

    reg.start_again();
    assert!(reg.is_running());
    assert_eq!(reg.host(), host);
    let head = reg.request("HEAD", &blob_path, b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Length"),
        Some(data.len().to_string().as_str())
    );
    let again = reg.request("GET", &blob_path, b"");
    assert_eq!(again.status, 200);
    assert_eq!(again.body, data);
    assert_eq!(reg.request_anonymous("GET", &blob_path, b"").status, 401);

    // Requests from both runs, in order; the upload PUT without its query string.
    let requests = reg.requests();
    assert_eq!(requests.len(), 6, "{requests:#?}");
    assert_eq!(requests[0], "POST /v2/claimd/harness/blobs/uploads/ 202");
    assert!(
        requests[1].starts_with("PUT /v2/claimd/harness/blobs/uploads/")
            && requests[1].ends_with(" 201")
            && !requests[1].contains('?'),
        "{requests:#?}"
    );
    assert_eq!(
        requests[2..],
        [
            format!("GET {blob_path} 200"),
            format!("HEAD {blob_path} 200"),
            format!("GET {blob_path} 200"),
            format!("GET {blob_path} 401"),
        ]
    );
    assert!(reg.log().iter().any(|l| l.contains("listening on")));
}

#[test]
fn registry_is_killed_on_drop() {
    let host = {
        let reg = Registry::start(None);
        reg.host()
    };
    assert!(http_request(&host, "GET", "/v2/", &[], b"").is_err());
}

// --------------------------------------------------------------------------
// Real Helm (tests/helm/oci.py) against the harness's registry.

/// Runs tests/helm/oci.py; Ok(JSON) on exit 0, Err(stderr) otherwise.
fn oci_py(args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new("python3")
        .arg(format!("{ROOT}/tests/helm/oci.py"))
        .args(args)
        .env("PYTHONPATH", helm::helm_pythonpath())
        .output()
        .expect("run oci.py");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("oci.py prints JSON"))
}

fn write_chart(dir: &Path, version: &str, template: &str) {
    std::fs::create_dir_all(dir.join("templates")).expect("mkdir");
    std::fs::write(
        dir.join("Chart.yaml"),
        format!("apiVersion: v2\nname: tiny\nversion: {version}\n"),
    )
    .expect("write");
    std::fs::write(dir.join("values.yaml"), "greeting: hello\nreplicas: 2\n").expect("write");
    std::fs::write(dir.join("templates/cm.yaml"), template).expect("write");
}

#[test]
fn helm_pushes_lints_and_loads_charts() {
    let mut reg = Registry::start(Some(("helm", "p4ss")));
    let tmp = tempfile::tempdir().expect("tempdir");
    let chart = tmp.path().join("tiny");
    write_chart(
        &chart,
        "1.0.0",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n\
         data:\n  greeting: {{ .Values.greeting | quote }}\n",
    );
    let chart_s = chart.to_str().expect("utf-8 path");
    let remote = reg.oci("charts");
    let creds = ["--username", "helm", "--password", "p4ss"];

    let lint = oci_py(&["lint", chart_s]).expect("lint");
    assert_eq!(lint["errors"], 0, "{lint}");

    let err = oci_py(&["push", chart_s, &remote]).expect_err("push without credentials");
    assert!(err.contains("basic credential not found"), "{err}");

    let pushed = oci_py(&[&["push", chart_s, &remote][..], &creds[..]].concat()).expect("push");
    let digest = pushed["digest"].as_str().expect("digest").to_string();
    assert_eq!(pushed["ref"], format!("{}/charts/tiny:1.0.0", reg.host()));
    assert_eq!(pushed["name"], "tiny");
    assert_eq!(pushed["version"], "1.0.0");
    let requests = reg.requests();
    assert!(
        requests.contains(&format!("PUT /v2/charts/tiny/manifests/{digest} 201"))
            && requests.contains(&"PUT /v2/charts/tiny/manifests/1.0.0 201".to_string()),
        "{requests:#?}"
    );

    // What Helm stored is a Helm chart artifact.
    let manifest = http_request(
        &reg.host(),
        "GET",
        "/v2/charts/tiny/manifests/1.0.0",
        &[
            ("Authorization", basic_auth("helm", "p4ss").as_str()),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        b"",
    )
    .expect("GET manifest");
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("Docker-Content-Digest"),
        Some(digest.as_str())
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body).expect("JSON");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );

    // Helm loads it back from the registry, with in-memory credentials and with a login.
    reg.clear_requests();
    let chart_ref = format!("{remote}/tiny");
    let fetched = oci_py(&[&["fetch-check", &chart_ref, "1.0.0"][..], &creds[..]].concat())
        .expect("fetch-check");
    assert_eq!(fetched["name"], "tiny");
    assert_eq!(fetched["version"], "1.0.0");
    assert_eq!(fetched["digest"], digest.as_str());
    assert!(
        fetched["values_yaml"]
            .as_str()
            .expect("values_yaml")
            .contains("replicas: 2"),
        "{fetched}"
    );
    let requests = reg.requests();
    assert!(
        requests.contains(&"GET /v2/charts/tiny/manifests/1.0.0 200".to_string()),
        "{requests:#?}"
    );
    let with_login = oci_py(
        &[
            &["fetch-check", &chart_ref, "1.0.0"][..],
            &creds[..],
            &["--login"][..],
        ]
        .concat(),
    )
    .expect("fetch-check --login");
    assert_eq!(with_login["digest"], digest.as_str());

    let err = oci_py(&[&["fetch-check", &chart_ref, "9.9.9"][..], &creds[..]].concat())
        .expect_err("no such version");
    assert!(err.contains("not found"), "{err}");

    // A chart whose template does not parse fails lint.
    let broken = tmp.path().join("broken/tiny");
    write_chart(&broken, "1.0.1", "x: {{ .Values.greeting }\n");
    let err = oci_py(&["lint", broken.to_str().expect("utf-8")]).expect_err("lint error");
    assert!(err.contains("templates/"), "{err}");
}
