//! Preview builds end to end: `claimd serve` with a real kube-apiserver and a real OCI
//! registry. An Environment whose image is missing gets a Kaniko Job and no values
//! commit; the Job completing (its status set through the status subresource, as no
//! controller runs here) lets the values commit with `image.tag = <commitSha>` follow;
//! a failed Job is reported as Failed and commits nothing; an image that exists needs no
//! Job. The status API shows each phase.

use crate::support::catalyst;
use crate::support::daemon as support_daemon;
use crate::support::git as support_git;
use crate::support::kube;
use crate::support::registry;

use catalyst::project;
use kube::Cluster;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use support_daemon::{wait_until, Daemon};
use support_git::git;

const SHA_BUILT: &str = "1111111111111111111111111111111111111111";
const SHA_FAILS: &str = "2222222222222222222222222222222222222222";
const SHA_THERE: &str = "3333333333333333333333333333333333333333";

fn environment(name: &str, sha: &str) -> String {
    catalyst::environment(name, sha, &format!("feature/{name}"))
}

/// Pushes a tiny image manifest so that `<host>/<repo>:<tag>` exists.
fn push_image(r: &registry::Registry, repo: &str, tag: &str) {
    let config = b"{}";
    let digest = format!("sha256:{:x}", Sha256::digest(config));
    let start = r.request("POST", &format!("/v2/{repo}/blobs/uploads/"), b"");
    assert_eq!(start.status, 202, "{}", start.text());
    let location = start.header("location").expect("upload location");
    let path = location
        .split_once("://")
        .map_or(location, |(_, rest)| &rest[rest.find('/').unwrap_or(0)..]);
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = r.request("PUT", &format!("{path}{sep}digest={digest}"), config);
    assert_eq!(resp.status, 201, "{}", resp.text());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": 2},
        "layers": [],
    })
    .to_string();
    let resp = registry::http_request(
        &r.host(),
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    )
    .expect("put manifest");
    assert_eq!(resp.status, 201, "{}", resp.text());
}

fn show(bare: &Path, path: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["show", &format!("main:{path}")])
        .current_dir(bare)
        .output()
        .expect("git show");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn values_path(ns: &str) -> String {
    format!("environments/catalyst/{ns}/applications/shop/values.yaml")
}

fn job(c: &Cluster, ns: &str, name: &str) -> Option<Value> {
    let (status, body) = c.kubectl_like(
        "GET",
        &format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
        None,
    );
    (status == 200).then(|| serde_json::from_str(&body).expect("job json"))
}

fn set_job_status(c: &Cluster, ns: &str, name: &str, status: Value) {
    let (code, body) = c.kubectl_like(
        "PATCH",
        &format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}/status"),
        Some(&json!({ "status": status }).to_string()),
    );
    assert_eq!(code, 200, "{body}");
}

fn phase_of(d: &Daemon, ns: &str) -> Option<String> {
    let resp = d.get("/v1/status");
    let body = resp.split_once("\r\n\r\n")?.1;
    let v: Value = serde_json::from_str(body).ok()?;
    v["repositories"][0]["environments"]
        .as_array()?
        .iter()
        .find(|e| e["namespace"] == ns)
        .map(|e| e["phase"].as_str().unwrap_or_default().to_string())
}

/// A bare repository and a clone with a BootstrapClaim naming the GitOps repository
/// `name` (namespaces are owned per repository: tests sharing one API server must not
/// share one), `files` committed and pushed; and a daemon config with `extra` settings.
struct Setup {
    _dir: tempfile::TempDir,
    bare: std::path::PathBuf,
    work: std::path::PathBuf,
    config: std::path::PathBuf,
}

fn setup(name: &str, files: &[(&str, String)], extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    git(root, &["init", "-q", "--bare", "-b", "main", "server.git"]);
    let bare = root.join("server.git");
    git(
        root,
        &["clone", "-q", &format!("file://{}", bare.display()), "work"],
    );
    let work = root.join("work");
    std::fs::create_dir_all(work.join("claims")).unwrap();
    let (path, text) = claimd::examples::CLAIMS
        .iter()
        .find(|(p, _)| p.ends_with("bootstrap-nonprod.yaml"))
        .unwrap();
    let bootstrap = text.replace("voltran: voltran", &format!("voltran: {name}"));
    std::fs::write(work.join(path), bootstrap).unwrap();
    for (path, text) in files {
        std::fs::write(work.join(path), text).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "claims"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let config = root.join("claimd.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\n{extra}"),
    )
    .unwrap();
    Setup {
        _dir: dir,
        bare,
        work,
        config,
    }
}

fn kubeconfig_setting(path: &Path) -> String {
    format!("kubernetes:\n  kubeconfig: {}\n", path.display())
}

#[test]
fn a_preview_is_committed_only_once_its_image_exists() {
    let c = Cluster::shared();
    let reg = registry::Registry::start(None);
    let team = format!("pv{}", std::process::id());
    let image = format!("{}/org/shop", reg.host());
    push_image(&reg, "org/shop", SHA_THERE);

    let s = setup(
        &team,
        &[
            ("claims/project.yaml", project(&team, &image)),
            ("claims/pr-1.yaml", environment("pr-1", SHA_BUILT)),
            ("claims/pr-2.yaml", environment("pr-2", SHA_FAILS)),
            ("claims/pr-3.yaml", environment("pr-3", SHA_THERE)),
        ],
        &format!(
            "    watchRefs: true\nregistries:\n  hosts:\n    \"{}\": {{plainHttp: true}}\n{}",
            reg.host(),
            kubeconfig_setting(&c.kubeconfig())
        ),
    );
    let (bare, config) = (&s.bare, &s.config);
    let d = Daemon::start(config);
    let (ns1, ns2, ns3) = (
        format!("{team}-shop-pr-1"),
        format!("{team}-shop-pr-2"),
        format!("{team}-shop-pr-3"),
    );
    let (job1, job2) = ("build-pr-1-1111111", "build-pr-2-2222222");

    // Missing images: a Job each, in the environment's namespace; no values yet.
    wait_until("the build Jobs", || {
        job(c, &ns1, job1).is_some() && job(c, &ns2, job2).is_some()
    });
    // The image that exists needs no build: its values are committed at once.
    wait_until("pr-3's values", || show(bare, &values_path(&ns3)).is_some());
    assert!(job(c, &ns3, "build-pr-3-3333333").is_none());
    let values = show(bare, &values_path(&ns3)).unwrap();
    assert!(values.contains(SHA_THERE), "{values}");
    assert_eq!(
        show(bare, &values_path(&ns1)),
        None,
        "no values before the image exists"
    );
    assert_eq!(phase_of(&d, &ns1).as_deref(), Some("Building"));

    let j = job(c, &ns1, job1).unwrap();
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(j["spec"]["backoffLimit"], 1);
    assert!(j["spec"]["activeDeadlineSeconds"].as_u64().unwrap() > 0);
    let clone = &pod["initContainers"][0];
    assert!(clone["env"].to_string().contains(SHA_BUILT), "{clone}");
    assert!(clone["env"]
        .to_string()
        .contains("https://git.example.com/org/shop.git"));
    let kaniko = &pod["containers"][0];
    assert!(kaniko["image"].as_str().unwrap().contains("kaniko"));
    assert!(kaniko["args"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("--destination={image}:{SHA_BUILT}"))));
    assert!(kaniko["resources"]["limits"]["memory"].is_string());
    assert_eq!(pod["volumes"][1]["secret"]["secretName"], "claimd-registry");

    // The build of pr-1 succeeds, the one of pr-2 fails.
    let now = "2026-01-01T00:00:00Z";
    set_job_status(
        c,
        &ns1,
        job1,
        json!({"succeeded": 1, "startTime": now, "completionTime": now,
               "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}]}),
    );
    set_job_status(
        c,
        &ns2,
        job2,
        json!({"failed": 2, "startTime": now,
               "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                               "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now}]}),
    );
    wait_until("pr-1's values", || show(bare, &values_path(&ns1)).is_some());
    let values = show(bare, &values_path(&ns1)).unwrap();
    assert!(
        values.contains(&format!("tag: \"{SHA_BUILT}\""))
            || values.contains(&format!("tag: {SHA_BUILT}")),
        "{values}"
    );
    wait_until("pr-2 failed", || {
        phase_of(&d, &ns2).as_deref() == Some("Failed")
    });
    // No Argo CD here: built and committed, the preview waits for its deployment.
    assert_eq!(phase_of(&d, &ns1).as_deref(), Some("Deploying"));
    assert_eq!(
        show(bare, &values_path(&ns2)),
        None,
        "a failed build commits nothing"
    );

    // `claimd status` prints the same, as a table.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args(["status", "--daemon", &d.addr])
        .output()
        .expect("claimd status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let line = table
        .lines()
        .find(|l| l.contains(&ns2))
        .expect("pr-2 listed");
    assert!(
        line.contains("Failed") && line.contains("BackoffLimitExceeded"),
        "{table}"
    );
    assert!(d.terminate().success());
}

/// Forwards TCP connections from 127.0.0.1:`from` to 127.0.0.1:`to` (the API server
/// "comes back" when this starts).
fn forward(from: u16, to: u16) {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind(("127.0.0.1", from)).expect("bind the forwarder");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            for (mut a, mut b) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(Shutdown::Write);
                });
            }
        }
    });
}

#[test]
fn with_the_api_server_down_claims_still_render_and_namespaces_follow_later() {
    let c = Cluster::shared();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig_dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        catalyst::kubeconfig(&format!("https://127.0.0.1:{port}"), c.token(), None),
    )
    .unwrap();
    let ns = format!("down-{}", std::process::id());
    let apps = catalyst::apps(&ns);
    let s = setup(
        &ns,
        &[("claims/apps.yaml", apps)],
        &kubeconfig_setting(&kubeconfig),
    );
    let d = Daemon::start(&s.config);
    wait_until("the bot commit", || {
        show(
            &s.bare,
            "environments/nonprod/dev/applications/api/values.yaml",
        )
        .is_some()
    });
    let path = format!("/api/v1/namespaces/{ns}");
    assert_eq!(
        c.kubectl_like("GET", &path, None).0,
        404,
        "the API server was not reachable"
    );
    // The API server comes back: the retry applies the namespace, with no new push.
    forward(port, c.port());
    wait_until("the namespace", || {
        c.kubectl_like("GET", &path, None).0 == 200
    });
    assert!(d.terminate().success());
}

#[test]
fn claims_removed_while_the_daemon_was_down_lose_their_namespaces_at_start_up() {
    let c = Cluster::shared();
    let team = format!("gone{}", std::process::id());
    // No image repository: nothing to build, the namespace is all there is.
    let s = setup(
        &team,
        &[
            ("claims/project.yaml", project(&team, "\"\"")),
            ("claims/pr-9.yaml", environment("pr-9", SHA_BUILT)),
        ],
        &kubeconfig_setting(&c.kubeconfig()),
    );
    let ns = format!("{team}-shop-pr-9");
    let path = format!("/api/v1/namespaces/{ns}");
    let d = Daemon::start(&s.config);
    wait_until("the namespace", || {
        c.kubectl_like("GET", &path, None).0 == 200
    });
    // Nothing to build: the values are committed without waiting.
    wait_until("pr-9's values", || {
        show(&s.bare, &values_path(&ns)).is_some()
    });
    assert_eq!(phase_of(&d, &ns).as_deref(), Some("Deploying"));
    assert!(d.terminate().success());

    let work = &s.work;
    git(work, &["pull", "-q", "--rebase", "origin", "main"]);
    git(work, &["rm", "-q", "claims/pr-9.yaml"]);
    git(work, &["commit", "-qm", "preview done"]);
    git(work, &["push", "-q", "origin", "main"]);
    assert!(c.get_json(&path)["metadata"]["deletionTimestamp"].is_null());
    let d = Daemon::start(&s.config);
    wait_until("the namespace's deletion", || {
        c.get_json(&path)["metadata"]["deletionTimestamp"].is_string()
    });
    assert!(d.terminate().success());
}

#[test]
fn without_a_cluster_claims_render_and_the_objects_are_logged() {
    let team = format!("dry{}", std::process::id());
    let s = setup(
        &team,
        &[
            (
                "claims/project.yaml",
                project(&team, "registry.example.com/org/shop"),
            ),
            ("claims/pr-5.yaml", environment("pr-5", SHA_BUILT)),
        ],
        "kubernetes:\n  dryRun: true\n",
    );
    let log = s.work.join("../claimd.log");
    let d = Daemon::start_logging(&s.config, Some(&log));
    let ns = format!("{team}-shop-pr-5");
    // Nothing builds images without a cluster: the preview is committed at once.
    wait_until("pr-5's values", || {
        show(&s.bare, &values_path(&ns)).is_some()
    });
    // The Kubernetes step follows the bot commit: its dry-run shows in the log.
    let would = |log: &str, kind: &str| {
        log.lines()
            .any(|l| l.contains("dry-run: would apply") && l.contains(kind) && l.contains(&ns))
    };
    let kinds = ["Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy"];
    wait_until("the dry-run in the log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        kinds.iter().all(|k| would(&text, k)) && text.contains("build-pr-5-1111111")
    });
    assert!(d.terminate().success());
}
