//! R5: hostile input. Webhooks against the real receiver of `claimd serve` (bad,
//! foreign and truncated signatures, replayed deliveries, huge and lying bodies,
//! malformed JSON, repositories not configured): each answered as documented in
//! src/server/gitea.rs, none queues work. Names that try to leave the output folders
//! (`../`, absolute paths, unicode look-alikes and invisible characters, very long
//! names) in every field that becomes a path: refused at the field's position, by
//! `claimd validate` and pre-receive, and `claimd render` writes nothing outside its
//! output folders. Namespaces claimd does not own (no claimd label, another
//! repository's): never changed, never deleted, against the real API server.

use super::*;
use crate::support::catalyst;
use crate::support::daemon::{wait_until, Daemon};
use crate::support::kube;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::time::Instant;

pub const SECRET: &str = "the-webhook-secret";

fn sign_with(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn sign(body: &[u8]) -> String {
    sign_with(SECRET, body)
}

/// How the body goes on the wire.
#[derive(Clone, Copy)]
pub enum Body {
    /// With its true Content-Length.
    Exact,
    /// Content-Length announced, no body sent.
    Announce(u64),
    /// `Transfer-Encoding: chunked`, no Content-Length.
    Chunked,
}

/// One POST /hooks/gitea: (status, body); status 0 when the server closed the
/// connection without an answer.
pub fn post(addr: &str, headers: &[(&str, String)], body: &[u8], how: Body) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "POST /hooks/gitea HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\n"
    );
    match how {
        Body::Exact => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
        Body::Announce(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        Body::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    // The server may answer and close before it read the body: write errors are fine.
    match how {
        Body::Exact => {
            let _ = s.write_all(body);
        }
        Body::Announce(_) => {}
        Body::Chunked => {
            for chunk in body.chunks(64 * 1024) {
                if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .and_then(|()| s.write_all(chunk))
                    .and_then(|()| s.write_all(b"\r\n"))
                    .is_err()
                {
                    break;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        }
    }
    // (No half-close: the server takes the end of the request stream as the end.)
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let text = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, text)
}

pub fn push_event(repository: &str, reference: &str, after: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": reference,
        "before": "0".repeat(40),
        "after": after,
        "repository": {"full_name": repository},
        "head_commit": {"id": after, "message": "change\n", "author": {"email": "dev@example.com"}},
        "commits": [{"id": after, "message": "change\n", "author": {"email": "dev@example.com"},
                     "added": [], "removed": [], "modified": ["claims/dev-apps.yaml"]}],
    }))
    .expect("json")
}

/// The webhook receiver's address, from the line the daemon printed.
pub fn webhook_addr(d: &Daemon) -> String {
    d.line
        .split("gitea webhooks on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no webhook address in {:?}", d.line))
        .trim()
        .to_string()
}

/// Requests the daemon routed to its one repository so far.
fn requests(d: &Daemon) -> u64 {
    let resp = d.get("/v1/status");
    let body = resp.split_once("\r\n\r\n").expect("a body").1;
    let status: claimd::daemon::Status = serde_json::from_str(body).expect("status");
    status.repositories.iter().map(|r| r.work.requests).sum()
}

#[test]
fn r5_hostile_webhooks_are_refused_and_trigger_no_work() {
    let part = "R5 webhooks";
    let started = Instant::now();
    // A Gitea-style repository path (platform/voltran) with the examples rendered.
    let s = Server::new(false);
    std::fs::create_dir_all(s.root.join("platform")).expect("mkdir");
    git(
        &s.root.join("platform"),
        &["init", "-q", "--bare", "-b", "main", "voltran.git"],
    );
    let bare = s.root.join("platform/voltran.git");
    let work = s.clone("work");
    write_examples(&work);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "examples"]);
    git(
        &work,
        &["push", "-q", &format!("file://{}", bare.display()), "main"],
    );
    std::fs::write(s.root.join("webhook-secret"), format!("{SECRET}\n")).expect("secret");
    let config = s.root.join("claimd.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: platform/voltran.git\ngitea:\n  webhookListen: 127.0.0.1:0\n  webhookSecretFile: webhook-secret\n",
    )
    .expect("config");
    let d = Daemon::start(&config);
    let addr = webhook_addr(&d);
    wait_until("readiness", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let tip = out(&bare, &["rev-parse", "main"]);
    let event = push_event("platform/voltran", "refs/heads/main", &tip);
    let good = sign(&event);
    let sig = |v: &str| ("X-Gitea-Signature", v.to_string());
    let delivery = |v: &str| ("X-Gitea-Delivery", v.to_string());
    let max = claimd::gitea::webhook::MAX_BODY;
    let huge = vec![b' '; max as usize + 1];
    let other = push_event("platform/not-configured", "refs/heads/main", &tip);
    let array = b"[1, 2, 3]".to_vec();
    let no_fields = b"{\"ref\": \"refs/heads/main\"}".to_vec();
    let not_utf8 = b"{\"ref\": \"\xff\xfe\"}".to_vec();
    let junk = b"{\"ref\": [".to_vec();
    // (what, headers, body, how it is sent, the status documented, a piece of the answer)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, String)>,
        &'a [u8],
        Body,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "no signature",
            vec![delivery("h-1")],
            &event,
            Body::Exact,
            401,
            "missing X-Gitea-Signature",
        ),
        (
            "an empty signature",
            vec![sig(""), delivery("h-2")],
            &event,
            Body::Exact,
            401,
            "wrong X-Gitea-Signature",
        ),
        (
            "a random signature",
            vec![sig(&"ab".repeat(32)), delivery("h-3")],
            &event,
            Body::Exact,
            401,
            "wrong",
        ),
        (
            "a signature from another secret",
            vec![sig(&sign_with("another-secret", &event)), delivery("h-4")],
            &event,
            Body::Exact,
            401,
            "wrong",
        ),
        (
            "the signature of another body",
            vec![sig(&sign(b"{}")), delivery("h-5")],
            &event,
            Body::Exact,
            401,
            "wrong",
        ),
        (
            "a truncated signature",
            vec![sig(&good[..32]), delivery("h-6")],
            &event,
            Body::Exact,
            401,
            "wrong",
        ),
        (
            "a signature that is not hex",
            vec![sig(&format!("sha256={good}")), delivery("h-7")],
            &event,
            Body::Exact,
            401,
            "wrong",
        ),
        (
            "a body over the limit, announced",
            vec![sig(&sign(&huge)), delivery("h-8")],
            &[],
            Body::Announce(max + 1),
            413,
            "",
        ),
        (
            "a 2 GiB Content-Length",
            vec![sig(&good), delivery("h-9")],
            &[],
            Body::Announce(2 << 30),
            413,
            "",
        ),
        (
            "a body over the limit, sent",
            vec![sig(&sign(&huge)), delivery("h-10")],
            &huge,
            Body::Exact,
            413,
            "",
        ),
        (
            "a body over the limit, chunked",
            vec![sig(&sign(&huge)), delivery("h-11")],
            &huge,
            Body::Chunked,
            411,
            "",
        ),
        (
            "malformed JSON, signed",
            vec![sig(&sign(&junk)), delivery("h-12")],
            &junk,
            Body::Exact,
            400,
            "",
        ),
        (
            "a JSON array, signed",
            vec![sig(&sign(&array)), delivery("h-13")],
            &array,
            Body::Exact,
            400,
            "",
        ),
        (
            "a push without its fields, signed",
            vec![sig(&sign(&no_fields)), delivery("h-14")],
            &no_fields,
            Body::Exact,
            400,
            "",
        ),
        (
            "bytes that are not UTF-8, signed",
            vec![sig(&sign(&not_utf8)), delivery("h-15")],
            &not_utf8,
            Body::Exact,
            400,
            "",
        ),
        (
            "a repository not configured, signed",
            vec![sig(&sign(&other)), delivery("h-16")],
            &other,
            Body::Exact,
            404,
            "platform/not-configured",
        ),
        (
            "another event, signed",
            vec![
                sig(&good),
                delivery("h-17"),
                ("X-Gitea-Event", "issues".into()),
            ],
            &event,
            Body::Exact,
            200,
            "ignored",
        ),
    ];
    let before = requests(&d);
    let mut lines = Vec::new();
    for (what, headers, body, how, want, text) in &cases {
        let (code, answer) = post(&addr, headers, body, *how);
        assert_eq!(code, *want, "{what}: {answer}");
        assert!(answer.contains(text), "{what}: {answer}");
        assert_eq!(requests(&d), before, "{what} queued work");
        lines.push(format!("{what}: {code}"));
    }
    // One genuine delivery queues one render; its replays (sequential and concurrent,
    // the same id with the same or another signed body) queue nothing.
    let (code, answer) = post(
        &addr,
        &[sig(&good), delivery("genuine")],
        &event,
        Body::Exact,
    );
    assert_eq!(code, 202, "{answer}");
    wait_until("the genuine delivery served", || requests(&d) == before + 1);
    let replays = scaled(10, 100);
    std::thread::scope(|scope| {
        for i in 0..replays {
            let (addr, event) = (&addr, &event);
            scope.spawn(move || {
                let body = if i % 2 == 0 {
                    event.clone()
                } else {
                    push_event("platform/voltran", "refs/heads/main", &"f".repeat(40))
                };
                let (code, answer) = post(
                    addr,
                    &[
                        ("X-Gitea-Signature", sign(&body)),
                        ("X-Gitea-Delivery", "genuine".into()),
                    ],
                    &body,
                    Body::Exact,
                );
                assert_eq!(
                    (code, answer.as_str()),
                    (200, "ignored: already delivered\n")
                );
            });
        }
    });
    assert_eq!(requests(&d), before + 1, "a replay queued work");
    assert_eq!(out(&bare, &["rev-parse", "main"]), tip);
    assert!(d.terminate().success());
    report(
        part,
        format!(
            "tried: {} hostile requests ({}); one genuine delivery and {replays} replays of its id (half with another signed body, concurrent); in {:.1?}",
            cases.len(),
            lines.join(", "),
            started.elapsed()
        ),
    );
    report(
        part,
        "held: each answered with the documented status and text; not one queued work (the repository's request counter moved only for the genuine delivery); every replay answered `ignored: already delivered`; main unchanged",
    );
}

/// Names that try to leave the output folders.
const HOSTILE: &[&str] = &[
    "../../etc",
    "/etc/passwd",
    "..",
    ".",
    "a/../../b",
    "..\\..\\windows",
    "\u{2215}etc",
    "\u{ff0f}etc",
    "\u{ff0e}\u{ff0e}",
    "pay\u{200b}ments",
    "\u{202e}cod.exe",
    "caf\u{e9}",
    "%2e%2e%2f",
    "~root",
    "$(id)",
    "a\nb",
    "",
    "a\u{0}b",
];

/// An ApplicationClaim whose `field` is `value`; the value's line:col.
fn hostile_claim(i: usize, field: &str, value: &str) -> (String, &'static str) {
    let quoted = serde_json::to_string(value).expect("json string");
    let pick = |f: &str, default: String| if f == field { quoted.clone() } else { default };
    let text = format!(
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata:\n  name: {}\nspec:\n  environment: {}\n  clusterType: nonprod\n  namespace: {}\n  applications:\n    - name: {}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: ghcr.io/acme/h{i}, tag: v1}}\n",
        pick("name", format!("h-{i}")),
        pick("environment", "dev".into()),
        pick("namespace", format!("team-{i}")),
        pick("application", format!("app-{i}")),
    );
    let pos = match field {
        "name" => "4:9",
        "environment" => "6:16",
        "namespace" => "8:14",
        _ => "10:13",
    };
    (text, pos)
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                stack.push(p);
            } else {
                assert!(!meta.file_type().is_symlink(), "a symlink: {}", p.display());
                all.push(p.strip_prefix(dir).expect("under").display().to_string());
            }
        }
    }
    all.sort();
    all
}

#[test]
fn r5_names_that_escape_the_output_folders_are_refused() {
    let part = "R5 names";
    let started = Instant::now();
    let fields = ["name", "environment", "namespace", "application"];
    let mut files = Vec::new();
    for (f, field) in fields.iter().enumerate() {
        for (h, value) in HOSTILE.iter().enumerate() {
            let i = f * 100 + h;
            let (text, pos) = hostile_claim(i, field, value);
            files.push((
                format!("claims/hostile-{i:03}.yaml"),
                text,
                pos,
                *field,
                *value,
            ));
        }
        // A very long name (5000 characters).
        let i = f * 100 + 99;
        let long = "n".repeat(5000);
        let (text, pos) = hostile_claim(i, field, &long);
        files.push((
            format!("claims/hostile-{i:03}.yaml"),
            text,
            pos,
            *field,
            "n × 5000",
        ));
    }
    // The output folders a render of the examples uses.
    let s = Server::new(true);
    let reference = s.root.join("reference");
    write_examples(&reference);
    let o = Command::new(BIN)
        .args(["render", "--repo"])
        .arg(&reference)
        .output()
        .expect("render");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut folders: Vec<String> = files_under(&reference)
        .iter()
        .filter_map(|f| f.split('/').next().map(str::to_string))
        .collect();
    folders.dedup();

    // validate and render: every hostile file refused at its field; nothing written
    // outside the output folders.
    let repo = s.root.join("hostile");
    write_examples(&repo);
    for (path, text, ..) in &files {
        std::fs::write(repo.join(path), text).expect("write");
    }
    let o = Command::new(BIN)
        .arg("validate")
        .current_dir(&repo)
        .output()
        .expect("validate");
    let validated = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{validated}");
    let outside_before = files_under(&s.root)
        .into_iter()
        .filter(|f| !f.starts_with("hostile/"))
        .collect::<Vec<_>>();
    let _ = Command::new(BIN)
        .args(["render", "--repo"])
        .arg(&repo)
        .output()
        .expect("render");
    let outside_after = files_under(&s.root)
        .into_iter()
        .filter(|f| !f.starts_with("hostile/"))
        .collect::<Vec<_>>();
    assert_eq!(
        outside_before, outside_after,
        "render wrote outside its repository"
    );
    for f in files_under(&repo) {
        let top = f.split('/').next().expect("top");
        assert!(
            top == "claims" || folders.iter().any(|d| d == top),
            "render wrote {f}, outside the output folders {folders:?}"
        );
        assert!(!f.contains("hostile") || f.starts_with("claims/"), "{f}");
    }

    // pre-receive: one push with all of them, refused with each position.
    let work = s.clone("work");
    write_examples(&work);
    for (path, text, ..) in &files {
        std::fs::write(work.join(path), text).expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "hostile names"]);
    let o = try_git(&work, &["push", "origin", "main"]);
    let pushed = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{pushed}");
    assert!(
        try_git(&s.bare, &["rev-parse", "--verify", "-q", "main"])
            .stdout
            .is_empty(),
        "main was created"
    );
    let mut refused_at = std::collections::BTreeMap::<&str, usize>::new();
    for (path, _, pos, field, value) in &files {
        for (how, output, prefix) in [
            ("validate", &validated, ""),
            ("pre-receive", &pushed, "remote: "),
        ] {
            let at = format!("{prefix}{path}:{pos}: ");
            assert!(
                output
                    .lines()
                    .any(|l| l.starts_with(&at) && !l.contains("warning:")),
                "{how}: {field} = {value:?} not refused at {path}:{pos}:\n{output}"
            );
        }
        *refused_at.entry(field).or_default() += 1;
    }
    report(
        part,
        format!(
            "tried: {} hostile names ({} each in metadata.name, spec.environment, spec.namespace, applications[].name: `../`, absolute paths, `.`/`..`, backslashes, division and fullwidth slashes and dots, a zero-width space, a right-to-left override, a non-ASCII letter, percent-encoding, `~`, `$(…)`, a newline, empty, NUL, 5000 characters) through claimd validate, claimd render and one push; in {:.1?}",
            files.len(),
            HOSTILE.len() + 1,
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: every one refused at the field's own file:line:col by claimd validate and by pre-receive ({refused_at:?}); the push was declined; render wrote only under claims/ and the output folders {folders:?}, nothing outside the repository, no symlink"
        ),
    );
}

#[test]
fn r5_namespaces_claimd_does_not_own_are_never_changed_or_deleted() {
    let part = "R5 namespaces";
    let started = Instant::now();
    let c = kube::Cluster::shared();
    let team = format!("own{}", std::process::id());
    let repository = format!("fault-{team}");
    let ns = |env: &str| format!("{team}-shop-{env}");
    // Someone's namespace with no claimd label, and another repository's claimd's.
    c.create_namespace(&ns("taken"));
    let (code, body) = c.kubectl_like(
        "POST",
        "/api/v1/namespaces",
        Some(
            &serde_json::json!({"metadata": {"name": ns("foreign"),
                "labels": {"app.kubernetes.io/managed-by": "claimd"},
                "annotations": {"claimd.dev/repository": "https://git.example.com/org/other.git"}}})
            .to_string(),
        ),
    );
    assert_eq!(code, 201, "{body}");
    for n in [ns("taken"), ns("foreign")] {
        let (code, body) = c.kubectl_like(
            "POST",
            &format!("/api/v1/namespaces/{n}/configmaps"),
            Some(r#"{"metadata":{"name":"precious"},"data":{"a":"b"}}"#),
        );
        assert_eq!(code, 201, "{body}");
    }
    let snapshot = |n: &str| {
        let v = c.get_json(&format!("/api/v1/namespaces/{n}"));
        let cm = c.get_json(&format!("/api/v1/namespaces/{n}/configmaps/precious"));
        (
            v["metadata"]["resourceVersion"].clone(),
            v["metadata"]["labels"].clone(),
            v["metadata"]["annotations"].clone(),
            v["metadata"]["deletionTimestamp"].clone(),
            cm["metadata"]["resourceVersion"].clone(),
        )
    };
    let before = [snapshot(&ns("taken")), snapshot(&ns("foreign"))];

    // A repository whose claims want those two names, and one of its own.
    let s = Server::new(false);
    let work = s.clone("work");
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    let (path, text) = claimd::examples::CLAIMS
        .iter()
        .find(|(p, _)| p.ends_with("bootstrap-nonprod.yaml"))
        .expect("bootstrap");
    std::fs::write(
        work.join(path),
        text.replace("voltran: voltran", &format!("voltran: {repository}")),
    )
    .expect("write");
    std::fs::write(
        work.join("claims/project.yaml"),
        catalyst::project(&team, "\"\""),
    )
    .expect("write");
    let sha = "1111111111111111111111111111111111111111";
    for env in ["mine", "taken", "foreign"] {
        std::fs::write(
            work.join(format!("claims/{env}.yaml")),
            catalyst::environment(env, sha, &format!("feature/{env}")),
        )
        .expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "environments"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let config = s.daemon_config(&format!(
        "kubernetes:\n  kubeconfig: {}\n",
        c.kubeconfig().display()
    ));
    let d = Daemon::start(&config);
    let mine = format!("/api/v1/namespaces/{}", ns("mine"));
    wait_until("its own namespace", || {
        c.kubectl_like("GET", &mine, None).0 == 200
    });
    let status = |d: &Daemon| {
        let resp = d.get("/v1/status");
        let body = resp.split_once("\r\n\r\n").expect("body").1.to_string();
        serde_json::from_str::<serde_json::Value>(&body).expect("json")
    };
    let reason = |d: &Daemon, n: &str| {
        status(d)["repositories"][0]["environments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["namespace"] == n)
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    wait_until("the refusals reported", || {
        reason(&d, &ns("taken")).contains("NamespaceTaken")
            && reason(&d, &ns("foreign")).contains("NamespaceTaken")
    });
    assert_eq!(
        [snapshot(&ns("taken")), snapshot(&ns("foreign"))],
        before,
        "a namespace claimd does not own was changed"
    );

    // The claims go away: its own namespace is deleted, the others are not touched.
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    for env in ["mine", "taken", "foreign"] {
        git(&work, &["rm", "-q", &format!("claims/{env}.yaml")]);
    }
    git(&work, &["commit", "-qm", "environments gone"]);
    push_rebasing(&work);
    assert!(
        claimd::server::hand_off(&d.addr, &s.bare.canonicalize().expect("canonical"))
            .expect("hand off")
    );
    wait_until("its own namespace deleted", || {
        c.get_json(&mine)["metadata"]["deletionTimestamp"].is_string()
    });
    assert_eq!(
        [snapshot(&ns("taken")), snapshot(&ns("foreign"))],
        before,
        "a namespace claimd does not own was changed or deleted"
    );
    assert!(d.terminate().success());
    report(
        part,
        format!(
            "tried: Environments wanting a namespace without claimd's label and one labelled by another repository's claimd (each with a ConfigMap), then those claims removed, through claimd serve against the real kube-apiserver; in {:.1?}",
            started.elapsed()
        ),
    );
    report(
        part,
        "held: both reported NamespaceTaken in the status; their resourceVersion, labels, annotations and ConfigMaps unchanged and neither deleted, while claimd's own namespace was created and, once its claim was removed, deleted",
    );
}
