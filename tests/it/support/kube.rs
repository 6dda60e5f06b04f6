// Test support: a real Kubernetes API server (kube-apiserver 1.20.2, built from
// Debian's `kubernetes` source package) on a real etcd 3.4, started as child
// processes on 127.0.0.1, for integration tests that create objects in a
// cluster (Helm installs, server-side apply, CRD validation).
//
// Usage from a test module of `tests/it`:
//
// ```ignore
// use crate::support::kube;
//
// let cluster = kube::Cluster::start();      // own etcd + API server, ~2-4 s
// // or: let cluster = kube::Cluster::shared(); // one per test process
// let ns = cluster.fresh_namespace("my-test"); // "my-test-<n>", created
// let (status, body) = cluster.kubectl_like(
//     "POST",
//     &format!("/api/v1/namespaces/{ns}/configmaps"),
//     Some(r#"{"metadata":{"name":"x"},"data":{"a":"b"}}"#),
// );
// assert_eq!(status, 201, "{body}");
// cluster.install_crds(Path::new("/work/shared/contracts/crds"));
// // point the code under test at cluster.kubeconfig() (a file) or at
// // cluster.server() + cluster.token()
// ```
//
// * `tests/kube/setup.sh` runs once per test process: it installs etcd, openssl
//   and curl if missing and builds kube-apiserver once (about 5 minutes, cached
//   under ${CLAIMD_TEST_CACHE:-$HOME/.cache/claimd-test}/kube/1.20.2; later runs
//   take milliseconds). See that script for what it needs (root, Debian).
// * Each `Cluster` has its own temp dir: etcd data, serving certs (self-signed,
//   made by kube-apiserver), a static token file with one `system:masters` user,
//   the service-account key pair (`openssl`), the kubeconfig and both logs.
//   Authorization is RBAC, as in a real cluster; the token is cluster-admin.
// * There is no scheduler, controller-manager or kubelet: Pods never run, Jobs
//   never finish, a deleted Namespace stays `Terminating`, no `default`
//   ServiceAccount appears in new namespaces. Give each test its own namespace.
// * The server is TLS-only, so requests go through `curl -sk` (no extra crates).
//   `kubectl_like` returns status 0 and curl's message when curl itself failed.
// * `install_crds` applies every CRD in a folder after `tests/kube/crds.py`
//   removed what a 1.20 server rejects (CEL rules, list-type/map-keys,
//   selectableFields, `default: ""` on strings), then waits until each is
//   Established. Custom objects are then validated against their structural
//   schemas by the server (CEL rules are not checked).
// * `stop_apiserver()` / `start_apiserver_again()` kill kube-apiserver and start it
//   again on the same port (etcd keeps the objects): an outage of the API server.
// * Dropping a `Cluster` kills both processes and deletes the temp dir. A
//   watchdog (`sh`) does the same if the test process dies without dropping it
//   (killed, or a `shared()` cluster, which lives in a static).
//
// Std only, plus `tempfile` and `serde_json` (already dependencies).

use super::setup::run_setup_script;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const ETCD_TIMEOUT: Duration = Duration::from_secs(20);
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 60;

/// The directory with `kube-apiserver` and `etcd` (KUBEBUILDER_ASSETS layout),
/// made sure of by `tests/kube/setup.sh` once per process.
pub fn assets_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let started = Instant::now();
        let dir = PathBuf::from(run_setup_script(
            "tests/kube/setup.sh",
            "a real kube-apiserver + etcd",
        ));
        for bin in ["kube-apiserver", "etcd"] {
            assert!(
                dir.join(bin).is_file(),
                "setup.sh printed {}, which has no {bin}",
                dir.display()
            );
        }
        if started.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "kube harness: tests/kube/setup.sh took {:.0?} (first run builds kube-apiserver)",
                started.elapsed()
            );
        }
        dir
    })
}

/// Where setup.sh puts PyYAML when the interpreter lacks it (for crds.py).
pub fn pylib_dir() -> PathBuf {
    assets_dir()
        .parent()
        .expect("assets dir has a parent")
        .join("pylib")
}

/// The Python interpreter for the helper scripts (`$PYTHON` or `python3`).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// A running etcd + kube-apiserver pair. Dropping it kills both and deletes its files.
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    etcd_port: u16,
    token: String,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    watchdog: Option<Child>,
    requests: AtomicU64,
}

impl Cluster {
    /// Starts etcd and kube-apiserver on free 127.0.0.1 ports and returns once
    /// `/readyz` answers `ok` (panics with both logs after 60 s or if a
    /// process exits).
    pub fn start() -> Cluster {
        let assets = assets_dir();
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("claimd-kube-")
            .tempdir()
            .expect("create cluster temp dir");
        let token = format!("claimd-{:016x}", unique_number());
        let mut cluster = Cluster {
            dir,
            port: 0,
            etcd_port: 0,
            token,
            etcd: None,
            apiserver: None,
            watchdog: None,
            requests: AtomicU64::new(0),
        };
        let d = cluster.dir.path().to_path_buf();
        fs::write(
            d.join("tokens.csv"),
            format!("{},admin,admin,system:masters\n", cluster.token),
        )
        .expect("write tokens.csv");
        // Read by curl (`-H @file`), so the token is not on a command line.
        fs::write(
            d.join("auth-header"),
            format!("Authorization: Bearer {}\n", cluster.token),
        )
        .expect("write auth-header");
        run_ok(
            Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(d.join("sa.key"))
                .arg("2048"),
        );
        run_ok(
            Command::new("openssl")
                .args(["rsa", "-in"])
                .arg(d.join("sa.key"))
                .args(["-pubout", "-out"])
                .arg(d.join("sa.pub")),
        );

        cluster.start_etcd(&assets.join("etcd"));
        cluster.start_apiserver(&assets.join("kube-apiserver"));
        cluster.write_kubeconfig();
        cluster.start_watchdog();
        if std::env::var_os("CLAIMD_KUBE_VERBOSE").is_some() {
            eprintln!(
                "kube harness: API server {} ready after {:.1?}",
                cluster.server(),
                started.elapsed()
            );
        }
        cluster
    }

    /// One cluster for the whole test process, started on first use and never
    /// dropped (the watchdog stops it when the process exits). Tests sharing it
    /// should work in their own namespaces (`fresh_namespace`).
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(Cluster::start)
    }

    /// "https://127.0.0.1:PORT"
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bearer token of a `system:masters` (cluster-admin) user.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// "http://127.0.0.1:PORT" of this cluster's etcd.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// A kubeconfig file: server `https://127.0.0.1:PORT`,
    /// `insecure-skip-tls-verify: true`, the token, namespace `default`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The cluster's temp dir (certs, keys, logs, etcd data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of both logs, for failure messages.
    pub fn logs(&self) -> String {
        let d = self.dir.path();
        format!(
            "--- kube-apiserver log (last {LOG_TAIL_LINES} lines) ---\n{}\n--- etcd log (last {LOG_TAIL_LINES} lines) ---\n{}",
            tail(&d.join("kube-apiserver.log"), LOG_TAIL_LINES),
            tail(&d.join("etcd.log"), LOG_TAIL_LINES)
        )
    }

    /// One HTTPS request with the admin token, through `curl -sk`.
    /// `path` starts with `/` and may carry a query. A JSON `body` (starting
    /// with `{` or `[`) is sent as `application/json`, anything else as
    /// `application/yaml`; with PATCH it is a JSON merge patch
    /// (`application/merge-patch+json`). Returns (status, response body);
    /// status 0 means curl could not talk to the server (the body is curl's error).
    pub fn kubectl_like(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let content_type = body.map(|b| {
            if method.eq_ignore_ascii_case("PATCH") {
                "application/merge-patch+json"
            } else if b.trim_start().starts_with(['{', '[']) {
                "application/json"
            } else {
                "application/yaml"
            }
        });
        self.request(
            method,
            path,
            content_type,
            body.map(str::as_bytes),
            Duration::from_secs(60),
        )
    }

    /// `kubectl_like` with an explicit Content-Type (e.g.
    /// `application/apply-patch+yaml` for server-side apply) and timeout.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> (u16, String) {
        curl(
            &self.dir.path().join("auth-header"),
            &self.server(),
            method,
            path,
            content_type,
            body,
            timeout,
            &self.dir.path().join(format!(
                "request-{}.body",
                self.requests.fetch_add(1, Ordering::Relaxed)
            )),
        )
    }

    /// GET `path`, which must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.kubectl_like("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Creates the namespace `name` (201; panics otherwise).
    pub fn create_namespace(&self, name: &str) {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        })
        .to_string();
        let (status, resp) = self.kubectl_like("POST", "/api/v1/namespaces", Some(&body));
        assert_eq!(status, 201, "create namespace {name}: {resp}");
    }

    /// Creates and returns a namespace named `<prefix>-<unique number>`.
    pub fn fresh_namespace(&self, prefix: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}-{}-{}",
            prefix.trim_end_matches('-'),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.create_namespace(&name);
        name
    }

    /// Applies every CRD in the YAML files of `dir` (or in the YAML file `dir`)
    /// after `tests/kube/crds.py` made them acceptable to a 1.20 server, and
    /// waits until each is Established. A CRD that already exists is replaced.
    /// Returns the CRD names, in file order. Panics with the server's answer
    /// on any failure.
    pub fn install_crds(&self, dir: &Path) -> Vec<String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube/crds.py");
        let mut pythonpath = pylib_dir().into_os_string();
        if let Some(old) = std::env::var_os("PYTHONPATH") {
            pythonpath.push(":");
            pythonpath.push(old);
        }
        let out = Command::new(python())
            .arg(&script)
            .arg(dir)
            .env("PYTHONPATH", pythonpath)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} {} failed:\n{}",
            script.display(),
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let crds: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("crds.py prints a JSON array");
        let base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        let mut names = Vec::new();
        for mut crd in crds {
            let name = crd["metadata"]["name"]
                .as_str()
                .expect("a CRD has metadata.name")
                .to_string();
            let (status, resp) = self.kubectl_like("POST", base, Some(&crd.to_string()));
            match status {
                201 => {}
                409 => self.replace(&format!("{base}/{name}"), &mut crd),
                _ => panic!("installing CRD {name} failed ({status}): {resp}"),
            }
            names.push(name);
        }
        self.wait_established(&names);
        names
    }

    /// Waits until every named CRD has the condition Established=True (60 s).
    pub fn wait_established(&self, names: &[String]) {
        let deadline = Instant::now() + ESTABLISHED_TIMEOUT;
        for name in names {
            let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
            loop {
                let (status, body) = self.kubectl_like("GET", &path, None);
                let established = status == 200
                    && serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["status"]["conditions"].as_array().cloned())
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True");
                if established {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "CRD {name} not Established after {ESTABLISHED_TIMEOUT:?} ({status}): {body}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// PUT `obj` over the existing object at `path` (retrying resourceVersion conflicts).
    fn replace(&self, path: &str, obj: &mut serde_json::Value) {
        for _ in 0..10 {
            let current = self.get_json(path);
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            let (status, resp) = self.kubectl_like("PUT", path, Some(&obj.to_string()));
            match status {
                200 => return,
                409 => continue,
                _ => panic!("PUT {path} failed ({status}): {resp}"),
            }
        }
        panic!("PUT {path}: still conflicting after 10 attempts");
    }

    fn start_etcd(&mut self, bin: &Path) {
        let d = self.dir.path().to_path_buf();
        let mut last_failure = String::new();
        for _ in 0..5 {
            let (client, peer) = (free_port(), free_port());
            let log = d.join("etcd.log");
            let mut child = Command::new(bin)
                .arg("--name=claimd")
                .arg(format!("--data-dir={}", d.join("etcd").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster=claimd=http://127.0.0.1:{peer}"))
                // One member on loopback: elect itself after ~0.1 s, not ~1 s.
                .args(["--heartbeat-interval=10", "--election-timeout=100"])
                .stdin(Stdio::null())
                .stdout(log_file(&log))
                .stderr(log_file(&log))
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let deadline = Instant::now() + ETCD_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_failure =
                        format!("etcd exited ({status}):\n{}", tail(&log, LOG_TAIL_LINES));
                    break;
                }
                let (code, body) = curl_plain(&format!("http://127.0.0.1:{client}/health"));
                if code == 200 && body.contains("true") {
                    self.etcd_port = client;
                    self.etcd = Some(child);
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "etcd not healthy after {ETCD_TIMEOUT:?}:\n{}",
                        tail(&log, LOG_TAIL_LINES)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !last_failure.contains("address already in use") {
                panic!("{last_failure}");
            }
            let _ = fs::remove_dir_all(d.join("etcd"));
        }
        panic!("could not find free ports for etcd:\n{last_failure}");
    }

    fn start_apiserver(&mut self, bin: &Path) {
        let mut last_failure = String::new();
        for _ in 0..5 {
            match self.try_apiserver(bin, free_port()) {
                Ok(()) => return,
                Err(failure) => last_failure = failure,
            }
        }
        panic!(
            "could not find a free port for kube-apiserver:\n{last_failure}\n{}",
            self.logs()
        );
    }

    /// Starts kube-apiserver on `port` and waits until it is ready; Err when the port
    /// was taken (any other failure panics).
    fn try_apiserver(&mut self, bin: &Path, port: u16) -> Result<(), String> {
        let d = self.dir.path().to_path_buf();
        let log = d.join("kube-apiserver.log");
        let logged_before = fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let mut child = Command::new(bin)
            .arg(format!("--etcd-servers={}", self.etcd_url()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                d.join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--advertise-address=10.0.0.1")
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        self.port = port;
        let deadline = Instant::now() + READY_TIMEOUT;
        let last_failure = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break format!("kube-apiserver exited ({status})");
            }
            let (code, body) = self.request("GET", "/readyz", None, None, Duration::from_secs(5));
            if code == 200 && body.trim() == "ok" {
                self.apiserver = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?} (last /readyz: {code} {body})\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        if !log_text
            .get(logged_before..)
            .unwrap_or_default()
            .contains("address already in use")
        {
            panic!("{last_failure}\n{}", self.logs());
        }
        Err(last_failure)
    }

    /// Kills kube-apiserver (etcd and its data stay): requests fail until
    /// [`Cluster::start_apiserver_again`]. Not for `shared()` clusters.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts kube-apiserver again on the same port (the kubeconfig stays valid) and
    /// returns once it is ready.
    pub fn start_apiserver_again(&mut self) {
        assert!(self.apiserver.is_none(), "the API server is running");
        let bin = assets_dir().join("kube-apiserver");
        let port = self.port;
        let mut last_failure = String::new();
        // The old process's port may take a moment to be free.
        for _ in 0..20 {
            match self.try_apiserver(&bin, port) {
                Ok(()) => {
                    if let Some(mut w) = self.watchdog.take() {
                        let _ = w.kill();
                        let _ = w.wait();
                    }
                    self.start_watchdog();
                    return;
                }
                Err(failure) => last_failure = failure,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "kube-apiserver could not listen on {port} again:\n{last_failure}\n{}",
            self.logs()
        );
    }

    fn write_kubeconfig(&self) {
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: claimd-test\n  \
               cluster:\n    \
                 server: {server}\n    \
                 insecure-skip-tls-verify: true\n\
             users:\n\
             - name: claimd-admin\n  \
               user:\n    \
                 token: {token}\n\
             contexts:\n\
             - name: claimd-test\n  \
               context:\n    \
                 cluster: claimd-test\n    \
                 user: claimd-admin\n    \
                 namespace: default\n\
             current-context: claimd-test\n",
            server = self.server(),
            token = self.token
        );
        fs::write(self.kubeconfig(), text).expect("write kubeconfig");
    }

    /// A `sh` loop that kills both processes and removes the temp dir once
    /// the test process is gone (it is killed itself by `Drop`).
    fn start_watchdog(&mut self) {
        let pids: Vec<String> = [&self.apiserver, &self.etcd]
            .iter()
            .filter_map(|c| c.as_ref().map(|c| c.id().to_string()))
            .collect();
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; rm -rf '{dir}'",
            parent = std::process::id(),
            pids = pids.join(" "),
            dir = self.dir.path().display()
        );
        self.watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd, &mut self.watchdog] {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn unique_number() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ N.fetch_add(1, Ordering::Relaxed)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

fn log_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const STATUS_MARK: &str = "\n--claimd-http-status:";

#[allow(clippy::too_many_arguments)]
fn curl(
    auth_header: &Path,
    server: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&[u8]>,
    timeout: Duration,
    body_file: &Path,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-k", "--max-time"])
        .arg(timeout.as_secs().max(1).to_string())
        .args(["-X", method])
        .arg("-H")
        .arg(format!("@{}", auth_header.display()))
        .args(["-H", "Accept: application/json"])
        .args(["-w", &format!("{STATUS_MARK}%{{http_code}}")]);
    if let Some(ct) = content_type {
        cmd.arg("-H").arg(format!("Content-Type: {ct}"));
    }
    if let Some(body) = body {
        fs::write(body_file, body).expect("write request body");
        cmd.arg("--data-binary")
            .arg(format!("@{}", body_file.display()));
    }
    cmd.arg(format!("{server}{path}"));
    let result = run_curl(&mut cmd);
    if body.is_some() {
        let _ = fs::remove_file(body_file);
    }
    result
}

/// GET over plain HTTP (etcd's /health).
fn curl_plain(url: &str) -> (u16, String) {
    run_curl(
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "2",
                "-w",
                &format!("{STATUS_MARK}%{{http_code}}"),
            ])
            .arg(url),
    )
}

fn run_curl(cmd: &mut Command) -> (u16, String) {
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run curl (tests/kube/setup.sh installs it): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.rsplit_once(STATUS_MARK) {
        Some((body, code)) if out.status.success() => {
            (code.trim().parse().unwrap_or(0), body.to_string())
        }
        _ => (
            0,
            format!(
                "curl failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
    }
}
