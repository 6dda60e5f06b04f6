// Test support: a real OCI registry (CNCF Distribution 2.8, Debian's
// `docker-registry`) started as a child process on 127.0.0.1, for integration
// tests that pull or push charts.
//
// Usage from a test module of `tests/it`:
//
// ```ignore
// use crate::support::registry;
//
// let mut reg = registry::Registry::start(Some(("alice", "s3cret"))); // or None
// let url = reg.oci("charts");               // "oci://127.0.0.1:PORT/charts"
// // ... let the code under test talk to reg.host() ...
// let n = reg.requests().iter().filter(|r| r.starts_with("GET /v2/charts/")).count();
// reg.stop();                                 // process gone, storage kept
// reg.start_again();                          // same port, same storage
// ```
//
// * `tests/registry/setup.sh` runs once per test process (it installs the
//   Debian packages `docker-registry` and `apache2-utils` if they are missing).
// * Each `Registry` has its own temp dir with the config, the htpasswd file
//   (bcrypt, written by `htpasswd -nbB`) and the filesystem storage.
// * `requests()` are the registry's own access-log lines (stdout), as
//   `"METHOD PATH STATUS"`, query string removed, e.g.
//   `"GET /v2/charts/microservice/manifests/1.0.0 200"`, oldest first, across
//   restarts. The harness's own requests (readiness probes, log syncs) are left
//   out; requests made with `Registry::request*` are included.
// * `log()` is every line the registry printed (stdout and stderr), for
//   failure messages.
//
// Std only, plus `tempfile` and `serde_json` (already dependencies).

use super::setup::run_setup_script;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// User-Agent of the harness's own requests; these are not listed by `requests()`.
const HARNESS_UA: &str = "claimd-registry-harness";
/// User-Agent of `Registry::request*` and `http_request` (listed by `requests()`).
pub const TEST_UA: &str = "claimd-registry-test";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The docker-registry binary, made sure of by `tests/registry/setup.sh` once per process.
pub fn registry_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = PathBuf::from(run_setup_script(
            "tests/registry/setup.sh",
            "a real OCI registry (Debian package docker-registry)",
        ));
        assert!(
            bin.is_file(),
            "setup.sh printed {}, which is not a file",
            bin.display()
        );
        bin
    })
}

/// One line of the registry's access log.
#[derive(Clone, Debug)]
struct Access {
    method: String,
    path: String,
    status: u16,
    user_agent: String,
}

#[derive(Default)]
struct Logs {
    raw: Vec<String>,
    access: Vec<Access>,
}

type Shared = Arc<(Mutex<Logs>, Condvar)>;

/// A running (or stopped) registry. Dropping it kills the process and deletes its storage.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    auth: Option<(String, String)>,
    child: Option<Child>,
    readers: Vec<JoinHandle<()>>,
    logs: Shared,
    /// Access-log entries before this index are hidden by `requests()` (`clear_requests`).
    first_request: usize,
    syncs: AtomicU64,
}

impl Registry {
    /// Starts a registry on 127.0.0.1 and a free port; with `auth`, htpasswd
    /// (basic) auth with that one user. Returns once `GET /v2/` answers as
    /// expected (200 anonymous; with auth 401 without and 200 with the credentials);
    /// panics with the registry's log otherwise.
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let bin = registry_binary();
        let dir = tempfile::Builder::new()
            .prefix("claimd-registry-")
            .tempdir()
            .expect("create registry temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("create registry storage dir");
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-nbB", user, pass])
                .stdin(Stdio::null())
                .output()
                .expect("run htpasswd (apache2-utils, installed by tests/registry/setup.sh)");
            assert!(
                out.status.success(),
                "htpasswd -nbB failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
        }
        let mut reg = Registry {
            dir,
            port: 0,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            child: None,
            readers: Vec::new(),
            logs: Arc::new((Mutex::new(Logs::default()), Condvar::new())),
            first_request: 0,
            syncs: AtomicU64::new(0),
        };
        // A free port can be taken by someone else between probing and binding:
        // try a few.
        let mut last_failure = String::new();
        for _ in 0..5 {
            reg.port = free_port();
            reg.write_config();
            match reg.spawn(bin) {
                Ok(()) => return reg,
                Err(failure) if failure.contains("address already in use") => {
                    last_failure = failure;
                }
                Err(failure) => panic!("{failure}"),
            }
        }
        panic!("could not find a free port for the registry:\n{last_failure}")
    }

    /// Starts the stopped registry again, on the same port with the same storage
    /// and credentials. Panics if it is running or does not come up.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again: the registry is still running"
        );
        if let Err(failure) = self.spawn(registry_binary()) {
            panic!("{failure}");
        }
    }

    /// Kills the process and waits for it; the storage dir is kept.
    /// Publishes the six shipped charts into `<this registry>/charts` with claimd's own
    /// `chart push --all` (plain HTTP, a publish cache under `cache`); the OCI repository.
    pub fn publish_charts(&self, cache: &Path) -> String {
        let repository = self.oci("charts");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_claimd"))
            .args([
                "chart",
                "push",
                "--all",
                concat!(env!("CARGO_MANIFEST_DIR"), "/charts"),
            ])
            .arg(&repository)
            .env("CLAIMD_PLAIN_HTTP", self.host())
            .env("CLAIMD_CACHE", cache)
            .output()
            .expect("chart push");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        repository
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// "oci://127.0.0.1:PORT/<path>", e.g. `oci("charts")`.
    pub fn oci(&self, path: &str) -> String {
        format!("oci://{}/{}", self.host(), path.trim_start_matches('/'))
    }

    /// The (user, password) the registry was started with.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's filesystem storage (`rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file the registry runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// The requests served so far, `"METHOD PATH STATUS"` (query string removed),
    /// oldest first, across `stop`/`start_again`, without the harness's own probes.
    /// While the registry runs, this first waits until every request answered before
    /// the call is in the log (the access log is written just after each response).
    pub fn requests(&self) -> Vec<String> {
        self.sync();
        let (lock, _) = &*self.logs;
        let logs = lock.lock().unwrap();
        logs.access
            .iter()
            .skip(self.first_request)
            .filter(|a| a.user_agent != HARNESS_UA)
            .map(|a| format!("{} {} {}", a.method, a.path, a.status))
            .collect()
    }

    /// Forgets the requests seen so far: later `requests()` calls list only newer ones.
    pub fn clear_requests(&mut self) {
        self.sync();
        let (lock, _) = &*self.logs;
        self.first_request = lock.lock().unwrap().access.len();
    }

    /// Every line the registry printed so far (access log on stdout, its own log on stderr).
    pub fn log(&self) -> Vec<String> {
        let (lock, _) = &*self.logs;
        lock.lock().unwrap().raw.clone()
    }

    /// A request without credentials (listed by `requests()`).
    pub fn request_anonymous(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http_request(&self.host(), method, path, &[], body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.url()))
    }

    /// A request with the registry's credentials, if it has any (listed by `requests()`).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        let auth = self.credentials().map(|(u, p)| basic_auth(u, p));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        http_request(&self.host(), method, path, &headers, body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.url()))
    }

    fn write_config(&self) {
        let q =
            |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("path as YAML string");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: claimd-registry-test-secret\n",
            data = q(&self.storage_dir()),
            port = self.port,
        );
        if self.auth.is_some() {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: claimd-test\n    path: {}\n",
                q(&self.dir.path().join("htpasswd"))
            ));
        }
        std::fs::write(self.config_path(), config).expect("write registry config");
    }

    /// Starts the process and waits until it is ready; Err(message) if it is not.
    fn spawn(&mut self, bin: &Path) -> Result<(), String> {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("REGISTRY_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let log_start = self.log().len();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        self.readers
            .push(read_lines(stdout, self.logs.clone(), true));
        self.readers
            .push(read_lines(stderr, self.logs.clone(), false));
        self.child = Some(child);

        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(why) => {
                self.stop();
                let log = self.log()[log_start..].join("\n");
                Err(format!(
                    "the registry ({} serve {}) on {} did not come up: {why}\n\
                     --- registry log ---\n{log}",
                    bin.display(),
                    self.config_path().display(),
                    self.host()
                ))
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let host = self.host();
        let probe = [("User-Agent", HARNESS_UA)];
        let want = if self.auth.is_some() { 401 } else { 200 };
        loop {
            self.check_exited()?;
            match http_request_timeout(&host, "GET", "/v2/", &probe, b"", PROBE_TIMEOUT) {
                Ok(resp) if resp.status == want => break,
                Ok(resp) => {
                    // Perhaps someone else's server on that port, and ours is dying.
                    std::thread::sleep(Duration::from_millis(200));
                    self.check_exited()?;
                    return Err(format!(
                        "GET /v2/ answered {} instead of {want}",
                        resp.status
                    ));
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("GET /v2/ still fails after {READY_TIMEOUT:?}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if let Some((user, pass)) = &self.auth {
            let auth = basic_auth(user, pass);
            let headers = [("User-Agent", HARNESS_UA), ("Authorization", auth.as_str())];
            let resp = http_request_timeout(&host, "GET", "/v2/", &headers, b"", PROBE_TIMEOUT)
                .map_err(|e| format!("GET /v2/ with credentials: {e}"))?;
            if resp.status != 200 {
                return Err(format!(
                    "GET /v2/ with the credentials answered {} instead of 200 \
                     (htpasswd file wrong?)",
                    resp.status
                ));
            }
        }
        Ok(())
    }

    /// Err if the process has exited (after collecting its last log lines).
    fn check_exited(&mut self) -> Result<(), String> {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                self.stop();
                return Err(format!("it exited with {status}"));
            }
        }
        Ok(())
    }

    /// Sends a marker request and waits until it shows up in the access log, so
    /// every request answered before is logged too.
    fn sync(&self) {
        if self.child.is_none() {
            return;
        }
        let n = self.syncs.fetch_add(1, Ordering::Relaxed) + 1;
        let path = format!("/claimd-harness-sync/{n}");
        let marker = [("User-Agent", HARNESS_UA)];
        if http_request_timeout(&self.host(), "GET", &path, &marker, b"", SYNC_TIMEOUT).is_err() {
            return;
        }
        let (lock, cvar) = &*self.logs;
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut logs = lock.lock().unwrap();
        while !logs.access.iter().rev().any(|a| a.path == path) {
            let now = Instant::now();
            if now >= deadline {
                eprintln!("registry harness: sync request {path} not in the access log after {SYNC_TIMEOUT:?}");
                return;
            }
            logs = cvar.wait_timeout(logs, deadline - now).unwrap().0;
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

fn read_lines(pipe: impl Read + Send + 'static, logs: Shared, access_log: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let (lock, cvar) = &*logs;
            let mut logs = lock.lock().unwrap();
            if access_log {
                if let Some(access) = parse_access_line(&line) {
                    logs.access.push(access);
                }
            }
            logs.raw.push(line);
            cvar.notify_all();
        }
    })
}

/// Parses a combined-log-format line as Distribution writes it:
/// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
fn parse_access_line(line: &str) -> Option<Access> {
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let method = request.next()?.to_string();
    let uri = request.next()?;
    if !request.next()?.starts_with("HTTP/") {
        return None;
    }
    let after = &rest[end + 1..];
    let status = after.split_whitespace().next()?.parse().ok()?;
    let user_agent = after
        .trim_end()
        .strip_suffix('"')
        .and_then(|s| s.rfind('"').map(|i| s[i + 1..].to_string()))
        .unwrap_or_default();
    Some(Access {
        method,
        path: uri.split('?').next().unwrap_or(uri).to_string(),
        status,
        user_agent,
    })
}

// --------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one request per connection), enough to talk to
// the registry API from tests without extra crates.

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `Authorization` header value for HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// One HTTP/1.1 request to `host` ("127.0.0.1:PORT"); `path` may carry a query.
/// `Host`, `Content-Length`, `Connection: close` and a default `User-Agent` are added.
pub fn http_request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    http_request_timeout(host, method, path, headers, body, Duration::from_secs(60))
}

/// `http_request` with a timeout for connecting and for each read and write.
pub fn http_request_timeout(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let addr = host.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no address for {host}"),
        )
    })?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        head.push_str(&format!("User-Agent: {TEST_UA}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> std::io::Result<HttpResponse> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers in the response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if head_only {
        body.clear();
    } else if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
