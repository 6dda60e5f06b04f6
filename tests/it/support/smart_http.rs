// Test support: a smart-HTTP git server standing in for Gitea's git-over-HTTP. A
// small HTTP/1.1 server (std only, a thread per connection) in front of Debian's
// real `git http-backend`, run as a CGI program for every request.
//
// Usage from a test module of `tests/it`:
//
// ```ignore
// use crate::support::smart_http::SmartHttp;
//
// let srv = SmartHttp::start(&root);      // root/platform/voltran.git is a bare repo
// let url = format!("{}/platform/voltran.git", srv.url);
// // git with `http.extraHeader=Authorization: Basic base64(claimd:<srv.token>)`,
// // given through GIT_CONFIG_COUNT/KEY/VALUE (environment, never argv or URL)
// assert!(!srv.token_in_process_list() && !srv.token_in_url());
// srv.reject_next_pushes(1);             // the next receive-pack POST gets a 403
// ```
//
// * Every bare repository under `root` is served at `{url}/{relative path}`
//   (GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL=1).
// * Authentication as on Gitea's git paths: `Authorization: Basic` whose password
//   is the token (or whose user is the token, with an empty password or
//   `x-oauth-basic`), `Authorization: token <t>`, `Authorization: Bearer <t>`.
//   Anything else, reads included (a private repository), gets
//   `401` with `WWW-Authenticate: Basic realm="Gitea"`. Authenticated requests get
//   REMOTE_USER, which is what makes http-backend enable receive-pack.
// * `reject_next_pushes(n)`: the next n receive-pack POSTs (not counting git's
//   "0000" auth probe before a large, chunked push) are answered `403` with the
//   body "protected branch", without running http-backend. Git 2.47 then prints
//   (exit status 1):
//       error: RPC failed; HTTP 403 curl 22 The requested URL returned error: 403
//       send-pack: unexpected disconnect while reading sideband packet
//       fatal: the remote end hung up unexpectedly
//       Everything up-to-date
//   (see the test `rejected_push_fails_and_the_branch_stays`).
// * `token_in_process_list()`: whether the token was seen in any process's command
//   line (/proc/*/cmdline), as is or base64-encoded (as in a Basic header on argv),
//   scanned when each request starts and again when its CGI has finished (the
//   pushing `git` and its `git-remote-http` are alive then).
// * The repository's hooks are never touched; receive-pack runs whatever is there.
// * `stop()` / `start_again()`: the listener closes (connections are refused) and
//   opens again on the same address (an outage of the git server).
// * Dropping the server stops its listener (connections in progress finish).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;

/// The body of the 403 that `reject_next_pushes` answers with.
pub const REJECT_BODY: &str = "protected branch";

/// How long a connection may sit idle (keep-alive) before its thread gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One request the server answered, oldest first in `SmartHttp::requests()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path as requested (not percent-decoded), without the query.
    pub path: String,
    /// The query string without '?', "" if none.
    pub query: String,
    /// Whether the request carried valid credentials (the token).
    pub authorized: bool,
    pub status: u16,
    /// Whether the request body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

struct State {
    root: PathBuf,
    token: String,
    requests: Mutex<Vec<Request>>,
    token_in_ps: AtomicBool,
    token_in_url: AtomicBool,
    reject_pushes: AtomicUsize,
    /// `token_needles(token)`
    needles: Vec<Vec<u8>>,
    /// stderr of every http-backend run that printed something, for failure messages.
    cgi_stderr: Mutex<Vec<String>>,
}

/// A running smart-HTTP server; dropping it stops it.
pub struct SmartHttp {
    /// "http://127.0.0.1:PORT"
    pub url: String,
    /// The only credential the server accepts.
    pub token: String,
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
}

/// `git-http-backend` in `git --exec-path`, checked once per process.
pub fn http_backend() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("run git --exec-path (Debian package git)");
        assert!(out.status.success(), "git --exec-path failed");
        let bin =
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-http-backend");
        assert!(
            bin.is_file(),
            "{} is missing: the smart-HTTP server needs git's http-backend (Debian package git)",
            bin.display()
        );
        bin
    })
}

/// `Authorization: Basic base64(user:password)`, the header value.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// 20 random bytes from /dev/urandom as 40 hex digits (the shape of a Gitea token).
fn new_token() -> String {
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    hex::encode(bytes)
}

impl SmartHttp {
    /// Serves every bare repository under `root` on 127.0.0.1 and a free port.
    pub fn start(root: &Path) -> SmartHttp {
        SmartHttp::start_with_token(root, &new_token())
    }

    /// [`SmartHttp::start`] taking `token` (Gitea's API and git share one token).
    pub fn start_with_token(root: &Path, token: &str) -> SmartHttp {
        http_backend();
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("smart-http root {}: {e}", root.display()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let token = token.to_string();
        let state = Arc::new(State {
            root,
            needles: token_needles(&token),
            token: token.clone(),
            requests: Mutex::new(Vec::new()),
            token_in_ps: AtomicBool::new(false),
            token_in_url: AtomicBool::new(false),
            reject_pushes: AtomicUsize::new(0),
            cgi_stderr: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = listen(listener, state.clone(), stop.clone());
        SmartHttp {
            url: format!("http://{addr}"),
            token,
            addr,
            state,
            stop,
            listener: Some(thread),
        }
    }

    /// Stops the listener: new connections are refused until [`SmartHttp::start_again`]
    /// (connections in progress finish).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock accept(); the listener sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same address, with the same token and repositories.
    pub fn start_again(&mut self) {
        assert!(self.listener.is_none(), "the server is running");
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("bind {} again: {e}", self.addr));
        self.stop = Arc::new(AtomicBool::new(false));
        self.listener = Some(listen(listener, self.state.clone(), self.stop.clone()));
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Whether the token appeared in any process's command line while a request
    /// was being served.
    pub fn token_in_process_list(&self) -> bool {
        self.state.token_in_ps.load(Ordering::SeqCst)
    }

    /// Whether the token appeared in a request's path or query.
    pub fn token_in_url(&self) -> bool {
        self.state.token_in_url.load(Ordering::SeqCst)
    }

    /// The next `n` receive-pack POSTs are refused with 403 "protected branch".
    pub fn reject_next_pushes(&self, n: usize) {
        self.state.reject_pushes.store(n, Ordering::SeqCst);
    }

    /// What http-backend printed on stderr, one entry per run that printed anything.
    pub fn backend_stderr(&self) -> Vec<String> {
        self.state.cgi_stderr.lock().unwrap().clone()
    }
}

impl Drop for SmartHttp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The accept loop: a thread per connection, until `stop` is set.
fn listen(listener: TcpListener, state: Arc<State>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("smart-http-listener".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = state.clone();
                let _ = std::thread::Builder::new()
                    .name("smart-http-conn".into())
                    .spawn(move || serve_connection(conn, &state));
            }
        })
        .expect("spawn listener thread")
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    query: String,
    version: String,
    /// Header names lower-cased.
    headers: HashMap<String, String>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Serves requests on one connection until the client closes it (keep-alive).
fn serve_connection(conn: TcpStream, state: &State) {
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(h)) => h,
            _ => return,
        };
        match serve_request(&head, &mut reader, &mut out, state) {
            Ok(true) => {}
            _ => return,
        }
    }
}

/// Reads a request line and headers; Ok(None) at a clean end of stream.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut line = String::new();
    // Tolerate stray empty lines between requests.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(std::io::Error::other(format!("bad request line {line:?}")));
    };
    let (method, version) = (method.to_string(), version.to_string());
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let mut headers = HashMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("end of stream in headers"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    Ok(Some(Head {
        method,
        path,
        query,
        version,
        headers,
    }))
}

/// Reads the request body (Content-Length or chunked, decoded).
fn read_body(head: &Head, reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?; // CRLF after the chunk
        }
    }
    let len: usize = match head.header("content-length") {
        Some(l) => l
            .parse()
            .map_err(|_| std::io::Error::other(format!("bad Content-Length {l:?}")))?,
        None => 0,
    };
    body.resize(len, 0);
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// The authenticated user, or None when the credentials are missing or wrong.
fn authenticate(head: &Head, token: &str) -> Option<String> {
    let value = head.header("authorization")?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, pass) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
            if pass == token {
                Some(user.to_string())
            } else if user == token && (pass.is_empty() || pass == "x-oauth-basic") {
                Some("token".to_string())
            } else {
                None
            }
        }
        "token" | "bearer" if rest == token => Some("token".to_string()),
        _ => None,
    }
}

/// What betrays the token on a command line: the token itself, and the part of its
/// base64 encoding that any base64 text containing it has (one per alignment: the
/// token may start at any offset mod 3 of the encoded input, e.g. `claimd:TOKEN`
/// in an `Authorization: Basic` header given with `git -c http.extraHeader=...`).
pub fn token_needles(token: &str) -> Vec<Vec<u8>> {
    let mut needles = vec![token.as_bytes().to_vec()];
    for r in 0..3 {
        let mut input = vec![0u8; r];
        input.extend_from_slice(token.as_bytes());
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input);
        // Skip the group shared with the bytes before the token, keep complete groups.
        let start = if r > 0 { 4 } else { 0 };
        let end = 4 * (input.len() / 3);
        if end > start + 8 {
            needles.push(enc.as_bytes()[start..end].to_vec());
        }
    }
    needles
}

/// Whether any of `needles` occurs in any process's /proc/PID/cmdline.
fn in_process_list(needles: &[Vec<u8>]) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmdline| {
            needles
                .iter()
                .any(|n| cmdline.windows(n.len()).any(|w| w == n.as_slice()))
        })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Unknown",
    }
}

/// A complete response, written with a Content-Length.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Serves one request; Ok(true) when the connection may be kept open.
fn serve_request(
    head: &Head,
    reader: &mut impl BufRead,
    out: &mut TcpStream,
    state: &State,
) -> std::io::Result<bool> {
    let token = &state.needles;
    if in_process_list(token) {
        state.token_in_ps.store(true, Ordering::SeqCst);
    }
    if head.path.contains(&state.token)
        || head.query.contains(&state.token)
        || percent_decode(&head.path).contains(&state.token)
        || percent_decode(&head.query).contains(&state.token)
    {
        state.token_in_url.store(true, Ordering::SeqCst);
    }
    let chunked = head.headers.contains_key("transfer-encoding");
    let user = authenticate(head, &state.token);
    let mut keep_alive = head.version == "HTTP/1.1"
        && !head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
    let expects_continue = head
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    let has_body = chunked || head.header("content-length").is_some_and(|l| l != "0");

    let response = if user.is_none() {
        if has_body && expects_continue {
            // The client waits for us before sending the body: refuse, then close.
            keep_alive = false;
        } else {
            read_body(head, reader)?;
        }
        let mut r = Response::text(401, "Unauthorized\n");
        r.headers
            .push(("WWW-Authenticate".into(), "Basic realm=\"Gitea\"".into()));
        r
    } else {
        if has_body && expects_continue {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(head, reader)?;
        let is_push = head.method == "POST" && head.path.ends_with("/git-receive-pack");
        let is_probe = body == b"0000";
        if is_push
            && !is_probe
            && state
                .reject_pushes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            Response::text(403, REJECT_BODY)
        } else {
            run_cgi(head, &body, user.as_deref().unwrap_or("token"), state)
        }
    };
    if in_process_list(token) {
        state.token_in_ps.store(true, Ordering::SeqCst);
    }
    state.requests.lock().unwrap().push(Request {
        method: head.method.clone(),
        path: head.path.clone(),
        query: head.query.clone(),
        authorized: user.is_some(),
        status: response.status,
        chunked,
    });

    let mut msg = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        msg.push_str(&format!("{name}: {value}\r\n"));
    }
    msg.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    if !keep_alive {
        msg.push_str("Connection: close\r\n");
    }
    msg.push_str("\r\n");
    out.write_all(msg.as_bytes())?;
    out.write_all(&response.body)?;
    out.flush()?;
    Ok(keep_alive)
}

/// Runs `git http-backend` for one request and turns its CGI output into a response.
fn run_cgi(head: &Head, body: &[u8], user: &str, state: &State) -> Response {
    let mut cmd = Command::new(http_backend());
    // The test's own git environment (GIT_DIR, GIT_CONFIG_*, ...) must not leak in.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &head.method)
        .env("PATH_INFO", percent_decode(&head.path))
        .env("QUERY_STRING", &head.query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REMOTE_USER", user)
        .env("AUTH_TYPE", "Basic");
    if let Some(ct) = head.header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = head.header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(p) = head.header("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = match cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Response::text(500, &format!("cannot run http-backend: {e}\n")),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = body.to_vec();
    // Written from its own thread: the CGI may answer before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output();
    let _ = writer.join();
    let output = match output {
        Ok(o) => o,
        Err(e) => return Response::text(500, &format!("http-backend: {e}\n")),
    };
    if !output.stderr.is_empty() {
        state
            .cgi_stderr
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    parse_cgi_output(&output.stdout).unwrap_or_else(|| {
        Response::text(
            502,
            &format!(
                "http-backend ({}) wrote no CGI headers:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    })
}

/// Splits CGI output into headers (Status: sets the status, default 200) and body.
fn parse_cgi_output(raw: &[u8]) -> Option<Response> {
    let (end, sep) = [&b"\r\n\r\n"[..], &b"\n\n"[..]]
        .iter()
        .filter_map(|sep| {
            raw.windows(sep.len())
                .position(|w| w == *sep)
                .map(|p| (p, sep.len()))
        })
        .min()?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else if !name.eq_ignore_ascii_case("content-length") {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    Some(Response {
        status,
        headers,
        body: raw[end + sep..].to_vec(),
    })
}
