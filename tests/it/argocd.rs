//! The Argo CD refresh: claimd's GitHub push event read with the field types of the
//! parser Argo CD uses (go-playground/webhooks v6 `github.PushPayload`), Gitea's own
//! push event failing that parser (why claimd sends its own), and `notify` against a
//! receiving HTTP server: headers, signature over the raw body, body.

use claimd::argocd::{self, Push, Settings};
use claimd::gitea::Secret;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use crate::support::contracts;

/// go-playground/webhooks v6.4.0 `github/payload.go` `PushPayload` (the version
/// argo-cd's go.mod pins), the fields claimd sends, with their Go types: `string` →
/// String, `int64` → i64, `bool` → bool, `*string` → Option<String>, `time.Time` →
/// String (RFC 3339). As Go's `encoding/json`: unknown fields ignored, missing ones zero
/// (`default`), but a JSON string where Go has `int64` is an error. Argo CD reads `ref`,
/// `before`, `after`, `commits[].added/modified/removed`, `repository.html_url` and
/// `repository.default_branch` (argo-cd `util/webhook/webhook.go` `affectedRevisionInfo`,
/// `applicationset/webhook/webhook.go` `getGitGeneratorInfo`).
#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
struct PushPayload {
    #[serde(rename = "ref")]
    reference: String,
    before: String,
    after: String,
    created: bool,
    deleted: bool,
    forced: bool,
    base_ref: Option<String>,
    compare: String,
    commits: Vec<Commit>,
    head_commit: Commit,
    repository: Repository,
    pusher: Pusher,
    sender: User,
}

#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
struct Commit {
    id: String,
    tree_id: String,
    distinct: bool,
    message: String,
    timestamp: String,
    url: String,
    author: Person,
    committer: Person,
    added: Vec<String>,
    removed: Vec<String>,
    modified: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
struct Person {
    name: String,
    email: String,
    username: String,
}

#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
struct Repository {
    id: i64,
    name: String,
    full_name: String,
    owner: User,
    private: bool,
    html_url: String,
    fork: bool,
    created_at: i64,
    updated_at: String,
    pushed_at: i64,
    ssh_url: String,
    clone_url: String,
    homepage: Option<String>,
    size: i64,
    default_branch: String,
    master_branch: String,
}

#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
struct User {
    login: String,
    id: i64,
    html_url: String,
    #[serde(rename = "type")]
    kind: String,
    site_admin: bool,
}

#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
struct Pusher {
    name: String,
    email: String,
}

fn push() -> Push {
    Push {
        repo_urls: vec![
            "http://gitea.local:3000/platform/voltran.git".into(),
            "git@gitea.local:platform/voltran.git".into(),
        ],
        branch: "main".into(),
        default_branch: "main".into(),
        before: "a".repeat(40),
        after: "b".repeat(40),
        changed: vec!["apps/web/values.yaml".into(), "appsets/web.yaml".into()],
        pusher_name: "claimd".into(),
        pusher_email: "claimd@example.com".into(),
        time: 1_715_682_068,
    }
}

fn changed_paths(p: &PushPayload) -> Vec<String> {
    // what affectedRevisionInfo collects
    p.commits
        .iter()
        .flat_map(|c| c.added.iter().chain(&c.modified).chain(&c.removed))
        .cloned()
        .collect()
}

#[test]
fn a_parser_with_argocds_field_types_reads_the_event() {
    let event = argocd::github_push_event(&push());
    let parsed: PushPayload = serde_json::from_value(event.clone()).expect("decodes");
    assert_eq!(parsed.reference, "refs/heads/main");
    assert_eq!(parsed.before, "a".repeat(40));
    assert_eq!(parsed.after, "b".repeat(40));
    assert_eq!(
        parsed.repository.html_url,
        "http://gitea.local:3000/platform/voltran"
    );
    assert_eq!(
        parsed.repository.clone_url,
        "http://gitea.local:3000/platform/voltran.git"
    );
    assert_eq!(
        parsed.repository.ssh_url,
        "git@gitea.local:platform/voltran.git"
    );
    assert_eq!(parsed.repository.default_branch, "main");
    assert_eq!(parsed.repository.pushed_at, 1_715_682_068);
    assert_eq!(parsed.repository.updated_at, "2024-05-14T10:21:08Z");
    assert_eq!(
        changed_paths(&parsed),
        ["apps/web/values.yaml", "appsets/web.yaml"]
    );
    // Every field sent is one of PushPayload's, with its type: read back and written
    // again, the event is unchanged.
    assert_eq!(serde_json::to_value(&parsed).unwrap(), event);
}

#[test]
fn giteas_own_push_event_fails_that_parser() {
    let Some(dir) = contracts::dir_or_skip("gitea", "giteas_own_push_event_fails_that_parser")
    else {
        return;
    };
    let body = std::fs::read(dir.join("webhook-push-payload.json")).expect("payload");
    let mut gitea: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert!(gitea["repository"]["created_at"].is_string());
    let err = serde_json::from_slice::<PushPayload>(&body).expect_err("created_at is a string");
    assert!(err.to_string().contains("expected i64"), "{err}");
    // ... and that is the only reason: with a number there it reads.
    gitea["repository"]["created_at"] = serde_json::json!(1_714_554_600);
    let parsed: PushPayload = serde_json::from_value(gitea).expect("reads without created_at");
    assert_eq!(
        parsed.repository.html_url,
        "http://gitea.local:3000/platform/voltran"
    );
}

struct Received {
    request_line: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A one-thread HTTP server answering every request with `status`, sending what it
/// received to the channel.
fn receiver(status: u16) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/api/webhook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            let mut headers = BTreeMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').expect("name: value");
                headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
            }
            let len: usize = headers
                .get("content-length")
                .map_or(0, |v| v.parse().expect("length"));
            let mut body = vec![0; len];
            reader.read_exact(&mut body).expect("body");
            let text = if status == 200 {
                ""
            } else {
                "Webhook processing failed"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = tx.send(Received {
                request_line: request_line.trim_end().to_string(),
                headers,
                body,
            });
        }
    });
    (url, rx)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn notify_posts_a_signed_github_push_event() {
    let (server, server_rx) = receiver(200);
    let (appset, appset_rx) = receiver(200);
    let settings = Settings {
        urls: vec![server, appset],
        ..Settings::default()
    };
    let secret = Secret::new("argocd-webhook-secret");
    let notifier = argocd::Notifier::new(&settings, Some(secret))
        .expect("settings")
        .expect("a notifier");
    let results = runtime().block_on(notifier.notify(&push()));
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(*r.as_ref().expect("posted"), 200);
    }
    let mut deliveries = Vec::new();
    for rx in [server_rx, appset_rx] {
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("a request");
        assert_eq!(got.request_line, "POST /api/webhook HTTP/1.1");
        assert_eq!(got.headers["content-type"], "application/json");
        assert_eq!(got.headers["x-github-event"], "push");
        assert_eq!(got.headers["user-agent"], "GitHub-Hookshot/claimd");
        let delivery = &got.headers["x-github-delivery"];
        assert_eq!(delivery.len(), 36, "{delivery}");
        deliveries.push(delivery.clone());
        // as go-playground/webhooks checks it: "sha256=" + lowercase hex of the HMAC
        let signature = got.headers["x-hub-signature-256"]
            .strip_prefix("sha256=")
            .expect("sha256= prefix");
        assert_eq!(signature, signature.to_lowercase());
        let mut mac = Hmac::<Sha256>::new_from_slice(b"argocd-webhook-secret").unwrap();
        mac.update(&got.body);
        mac.verify_slice(&hex::decode(signature).unwrap())
            .expect("the signature verifies over the raw body");
        let parsed: PushPayload = serde_json::from_slice(&got.body).expect("decodes");
        assert_eq!(parsed.reference, "refs/heads/main");
        assert_eq!(parsed.after, "b".repeat(40));
        assert_eq!(
            parsed.repository.html_url,
            "http://gitea.local:3000/platform/voltran"
        );
        assert_eq!(changed_paths(&parsed).len(), 2);
    }
    assert_ne!(deliveries[0], deliveries[1]);
}

#[test]
fn notify_reports_refusals_and_unreachable_urls() {
    let (refusing, refusing_rx) = receiver(400);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/api/webhook", l.local_addr().unwrap())
    };
    let settings = Settings {
        urls: vec![refusing, closed],
        ..Settings::default()
    };
    let notifier = argocd::Notifier::new(&settings, None)
        .expect("settings")
        .expect("a notifier");
    let results = runtime().block_on(notifier.notify(&push()));
    assert_eq!(results.len(), 2);
    let refused = results[0].as_ref().expect_err("400");
    assert_eq!(refused.kind(), "status");
    assert!(
        matches!(refused, argocd::Error::Status { status: 400, message, .. } if message == "Webhook processing failed"),
        "{refused}"
    );
    assert_eq!(results[1].as_ref().expect_err("closed").kind(), "request");
    // without a secret, no signature header
    let got = refusing_rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("a request");
    assert!(!got.headers.contains_key("x-hub-signature-256"));
}

/// The daemon tells Argo CD of its bot commit: a signed GitHub push event naming the
/// repository as the BootstrapClaims do, the bot commit and the generated paths.
#[test]
fn the_daemon_tells_argocd_of_each_bot_commit() {
    use crate::support::daemon::Daemon;
    use crate::support::git::git;
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    git(root, &["init", "-q", "--bare", "-b", "main", "server.git"]);
    let bare = root.join("server.git");
    let work = crate::support::git::clone_with_examples(root, &bare);
    git(&work, &["push", "-q", "origin", "main"]);
    let (url, received) = receiver(200);
    std::fs::write(root.join("argocd-secret"), "argo-secret").expect("secret");
    let config = root.join("claimd.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:0\nrepositories:\n  - path: server.git\nargocd:\n  urls: [{url}]\n  secretFile: argocd-secret\n"),
    )
    .expect("config");
    let d = Daemon::start(&config);
    let got = received
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("an event for the start-up bot commit");
    let tip = {
        let out = git(&bare, &["rev-parse", "main"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(got.request_line, "POST /api/webhook HTTP/1.1");
    assert_eq!(got.headers["x-github-event"], "push");
    assert_eq!(
        got.headers["x-hub-signature-256"],
        argocd::sign(b"argo-secret", &got.body)
    );
    let event: PushPayload = serde_json::from_slice(&got.body).expect("Argo CD's types");
    assert_eq!(event.reference, "refs/heads/main");
    assert_eq!(event.after, tip);
    // The examples' BootstrapClaims name Gitea in the cluster.
    assert_eq!(
        event.repository.html_url,
        "http://gitea-http.gitea.svc.cluster.local:3000/platform/voltran"
    );
    let paths = changed_paths(&event);
    assert!(
        paths.iter().any(|p| p.starts_with("environments/")),
        "{paths:?}"
    );
    assert!(d.terminate().success());
}
