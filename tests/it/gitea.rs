//! The Gitea webhook receiver, against a real `claimd serve` and a real repository:
//! Gitea's own signature test vector and push payload (from the published contracts),
//! and what each kind of request gets.

use claimd::gitea::webhook;
use claimd::gitea::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::support::contracts;
use crate::support::daemon::{wait_until, Daemon};
use crate::support::git::git;

pub(crate) const SECRET: &str = "a-webhook-secret";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn giteas_test_vector_verifies_and_its_push_payload_parses() {
    let Some(dir) = contracts::dir_or_skip("gitea", "giteas_test_vector_verifies") else {
        return;
    };
    let body = std::fs::read(dir.join("webhook-push-payload.json")).expect("payload");
    let headers = std::fs::read_to_string(dir.join("webhook-headers.txt")).expect("headers");
    let value = |key: &str| -> String {
        headers
            .lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
            .unwrap_or_else(|| panic!("no `{key} =` line in webhook-headers.txt"))
            .trim()
            .to_string()
    };
    let secret = Secret::new(value("secret"));
    let signature = value("X-Gitea-Signature");
    assert!(webhook::verify(&secret, &body, &signature));
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(!webhook::verify(&secret, &tampered, &signature));
    let push = webhook::parse(&body).expect("the shipped payload parses");
    assert_eq!(push.reference, "refs/heads/main");
    assert_eq!(push.repository.full_name, "platform/voltran");
    assert_eq!(push.after.len(), 40);
    assert!(push.commits[0]
        .added
        .contains(&"claims/apps.yaml".to_string()));
}

pub(crate) struct Setup {
    _dir: tempfile::TempDir,
    pub(crate) bare: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) config: PathBuf,
}

/// A Gitea-style repository `<root>/platform/voltran.git` with the example claims, and
/// a daemon config with the webhook receiver (no hooks: the webhook is the trigger).
fn setup() -> Setup {
    setup_with("")
}

/// [`setup`] with more top-level config lines (`extra`, each ending in a line break);
/// the webhook secret is [`SECRET`].
pub(crate) fn setup_with(extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("platform")).expect("mkdir");
    git(
        &root.join("platform"),
        &["init", "-q", "--bare", "-b", "main", "voltran.git"],
    );
    let bare = root.join("platform/voltran.git");
    let work = crate::support::git::clone_with_examples(&root, &bare);
    git(&work, &["push", "-q", "origin", "main"]);
    std::fs::write(root.join("webhook-secret"), format!("{SECRET}\n")).expect("secret");
    let config = root.join("claimd.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:0\n{extra}repositories:\n  - path: platform/voltran.git\ngitea:\n  webhookListen: 127.0.0.1:0\n  webhookSecretFile: webhook-secret\n"),
    )
    .expect("config");
    Setup {
        _dir: dir,
        bare,
        work,
        config,
    }
}

/// Points the setup's daemon at a Gitea at `url` with `token`, the receiver on; `repo`
/// and `gitea` are more YAML lines for the repository and the `gitea:` block.
fn configure_gitea(s: &Setup, url: &str, token: &str, repo: &str, gitea: &str) {
    let root = s.config.parent().expect("root");
    std::fs::write(root.join("gitea-token"), token).expect("token");
    std::fs::write(
        &s.config,
        format!(
            "listen: 127.0.0.1:0\nrepositories:\n  - path: platform/voltran.git\n{repo}gitea:\n  url: {url}\n  tokenFile: gitea-token\n  webhookListen: 127.0.0.1:0\n  webhookSecretFile: webhook-secret\n{gitea}"
        ),
    )
    .expect("config");
}

/// The receiver's address, from the line the daemon printed.
fn webhook_addr(d: &Daemon) -> String {
    d.line
        .split("gitea webhooks on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no webhook address in {:?}", d.line))
        .trim()
        .to_string()
}

/// One POST to the receiver: (status, body).
fn post(addr: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "POST /hooks/gitea HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\n"
    );
    let announced = headers.iter().any(|(k, _)| *k == "Content-Length");
    if !announced {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    if !announced {
        s.write_all(body).expect("write body");
    }
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
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

fn tip(repo: &Path) -> String {
    let out = git(repo, &["rev-parse", "main"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn push_event(reference: &str, after: &str, email: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "ref": reference,
        "before": "0".repeat(40),
        "after": after,
        "repository": {"full_name": "platform/voltran"},
        "head_commit": {"id": after, "message": message, "author": {"email": email}},
        "commits": [{"id": after, "message": message, "author": {"email": email},
                     "added": [], "removed": [], "modified": ["claims/dev-apps.yaml"]}],
    }))
    .expect("json")
}

/// Requests the daemon's worker for the repository got so far.
fn requests(d: &Daemon, bare: &Path) -> u64 {
    let resp = d.get("/v1/status");
    let body = resp.split_once("\r\n\r\n").expect("a body").1;
    let status: claimd::daemon::Status = serde_json::from_str(body).expect("status");
    let bare = bare.canonicalize().expect("canonical");
    status
        .repositories
        .iter()
        .find(|r| r.repository == bare)
        .map_or(0, |r| r.work.requests)
}

#[test]
fn a_signed_push_renders_once_and_anything_else_is_refused_or_ignored() {
    let s = setup();
    let d = Daemon::start(&s.config);
    let addr = webhook_addr(&d);
    wait_until("ready", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let rendered = tip(&s.bare);

    // A change pushed to the repository: nothing renders it until the webhook comes.
    git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    let path = s.work.join("claims/dev-apps.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen("tag: v1.3.0-rc.1", "tag: v1.3.0-rc.2", 1),
    )
    .expect("write");
    git(&s.work, &["commit", "-qam", "more replicas"]);
    git(&s.work, &["push", "-q", "origin", "main"]);
    let pushed = tip(&s.bare);
    assert_ne!(pushed, rendered);
    let before = requests(&d, &s.bare);
    let event = push_event(
        "refs/heads/main",
        &pushed,
        "dev@example.com",
        "more replicas\n",
    );
    let good = sign(&event);

    // Refused before anything is parsed or queued.
    let (code, text) = post(&addr, &[("X-Gitea-Delivery", "d-1")], &event);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("missing X-Gitea-Signature"), "{text}");
    let wrong = sign(b"another body");
    let (code, text) = post(
        &addr,
        &[("X-Gitea-Signature", &wrong), ("X-Gitea-Delivery", "d-1")],
        &event,
    );
    assert_eq!(code, 401, "{text}");
    let (code, _) = post(
        &addr,
        &[("X-Gitea-Signature", &good), ("Content-Length", "2097152")],
        b"",
    );
    assert_eq!(code, 413);
    let junk = b"{\"ref\": [";
    let (code, text) = post(&addr, &[("X-Gitea-Signature", &sign(junk))], junk);
    assert_eq!(code, 400, "{text}");
    assert_eq!(requests(&d, &s.bare), before, "nothing was queued");

    // The signed push: queued, rendered, committed on top of the pushed commit.
    let headers = [
        ("X-Gitea-Signature", good.as_str()),
        ("X-Gitea-Delivery", "d-1"),
        ("X-Gitea-Event", "push"),
    ];
    let (code, text) = post(&addr, &headers, &event);
    assert_eq!(code, 202, "{text}");
    wait_until("the bot commit", || {
        let out = git(&s.bare, &["log", "-1", "--format=%P", "main"]);
        String::from_utf8_lossy(&out.stdout).trim() == pushed
    });
    let after = requests(&d, &s.bare);
    assert_eq!(after, before + 1);

    // A redelivery of the same delivery is not rendered again.
    let (code, text) = post(&addr, &headers, &event);
    assert_eq!((code, text.as_str()), (200, "ignored: already delivered\n"));
    // Tags, other branches, claimd's own bot commit, other events: nothing to do.
    let bot_tip = tip(&s.bare);
    let cases = [
        push_event("refs/tags/v1", &pushed, "dev@example.com", "x"),
        push_event("refs/heads/feature", &pushed, "dev@example.com", "x"),
        push_event(
            "refs/heads/main",
            &bot_tip,
            "claimd@localhost",
            &format!("claimd: render\n\nClaimd-Source: {pushed}\n"),
        ),
    ];
    for (i, body) in cases.iter().enumerate() {
        let id = format!("d-ignored-{i}");
        let sig = sign(body);
        let (code, text) = post(
            &addr,
            &[("X-Gitea-Signature", &sig), ("X-Gitea-Delivery", &id)],
            body,
        );
        assert_eq!(code, 200, "case {i}: {text}");
        assert!(text.starts_with("ignored: "), "case {i}: {text}");
    }
    let (code, text) = post(
        &addr,
        &[("X-Gitea-Signature", &good), ("X-Gitea-Event", "issues")],
        &event,
    );
    assert_eq!(code, 200, "{text}");
    // A repository this daemon does not serve.
    let other = String::from_utf8(event.clone())
        .expect("utf8")
        .replace("platform/voltran", "platform/other");
    let (code, text) = post(
        &addr,
        &[("X-Gitea-Signature", &sign(other.as_bytes()))],
        other.as_bytes(),
    );
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("platform/other"), "{text}");
    assert_eq!(requests(&d, &s.bare), after, "nothing more was queued");
    assert_eq!(tip(&s.bare), bot_tip);
    assert!(d.terminate().success());
}

#[test]
fn a_receiver_without_a_secret_does_not_start() {
    let s = setup();
    std::fs::write(
        &s.config,
        "listen: 127.0.0.1:0\nrepositories:\n  - path: platform/voltran.git\ngitea:\n  webhookListen: 127.0.0.1:0\n",
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args(["serve", "--config"])
        .arg(&s.config)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("webhookSecretFile"), "{err}");
}

fn app_claim(name: &str, replicas: &str) -> String {
    format!(
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {{name: {name}}}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: {name}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: example.com/{name}, tag: v1}}\n      replicas: {replicas}\n"
    )
}

/// Commits and pushes `files` from the clone, then delivers the signed webhook for it.
fn push_and_deliver(s: &Setup, addr: &str, files: &[(&str, String)], delivery: &str) -> String {
    git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    for (path, text) in files {
        std::fs::write(s.work.join(path), text).expect("write");
    }
    git(&s.work, &["add", "-A"]);
    git(&s.work, &["commit", "-qm", delivery]);
    git(&s.work, &["push", "-q", "origin", "main"]);
    let sha = tip(&s.bare);
    let mut event: serde_json::Value =
        serde_json::from_slice(&push_event("refs/heads/main", &sha, "dev@example.com", "x"))
            .expect("json");
    event["commits"][0]["modified"] =
        serde_json::json!(files.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    let body = serde_json::to_vec(&event).expect("json");
    let (code, text) = post(
        addr,
        &[
            ("X-Gitea-Signature", &sign(&body)),
            ("X-Gitea-Delivery", delivery),
        ],
        &body,
    );
    assert_eq!(code, 202, "{text}");
    sha
}

#[test]
fn each_claim_file_gets_a_commit_status_and_the_webhook_is_registered_once() {
    use crate::support::gitea_api::GiteaApi;
    let Some(api) = GiteaApi::start("each_claim_file_gets_a_commit_status") else {
        return;
    };
    api.add_repo("platform", "voltran");
    let s = setup();
    configure_gitea(
        &s,
        &api.url,
        &api.token,
        &format!("    pushUrl: file://{}\n", s.bare.display()),
        "  webhookUrl: http://127.0.0.1:7463/hooks/gitea\n  pageUrl: http://claimd.example.com:7463\n",
    );
    // (The contract server speaks the API only: bot commits go to the repository by a
    // file:// push here; through Gitea's smart HTTP, see the test below.)
    let d = Daemon::start(&s.config);
    let addr = webhook_addr(&d);
    wait_until("the webhook registered", || {
        api.hooks("platform", "voltran").len() == 1
    });
    let hook = &api.hooks("platform", "voltran")[0];
    assert_eq!(hook["type"], "gitea");
    assert_eq!(hook["config"]["url"], "http://127.0.0.1:7463/hooks/gitea");
    assert_eq!(hook["events"], serde_json::json!(["push"]));
    let id = hook["id"].as_i64().expect("id");
    assert_eq!(
        api.hook_secret("platform", "voltran", id).as_deref(),
        Some(SECRET)
    );

    // The first render: every claim file succeeds on the commit the bot commit is on.
    wait_until("ready", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let claims_commit = {
        let out = git(&s.bare, &["log", "-1", "--format=%P", "main"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let files = claimd::examples::CLAIMS.len();
    wait_until("statuses of the first render", || {
        api.latest_statuses("platform", "voltran", &claims_commit)
            .len()
            == files
    });
    let first = api.latest_statuses("platform", "voltran", &claims_commit);
    for (context, (state, description, url)) in &first {
        assert!(context.starts_with("claimd/claims/"), "{context}");
        assert_eq!(state, "success", "{context}: {description}");
        assert!(description.contains("changed"), "{description}");
        let file = context.trim_start_matches("claimd/");
        assert_eq!(
            url,
            &format!("http://claimd.example.com:7463/claims/platform/voltran/{file}")
        );
    }

    // A bad claim: its status fails with file:line:col; the others still succeed.
    let bad = push_and_deliver(
        &s,
        &addr,
        &[("claims/bad.yaml", app_claim("bad-app", "lots"))],
        "bad",
    );
    wait_until("the failure status", || {
        api.latest_statuses("platform", "voltran", &bad)
            .get("claimd/claims/bad.yaml")
            .is_some_and(|(state, _, _)| state == "failure")
    });
    let now = api.latest_statuses("platform", "voltran", &bad);
    let (_, description, _) = &now["claimd/claims/bad.yaml"];
    assert!(description.starts_with("claims/bad.yaml:"), "{description}");
    let position: Vec<&str> = description.splitn(4, ':').collect();
    assert!(
        position[1].parse::<u32>().is_ok() && position[2].parse::<u32>().is_ok(),
        "file:line:col: {description}"
    );
    wait_until("the other statuses", || {
        api.latest_statuses("platform", "voltran", &bad).len() == files + 1
    });
    let now = api.latest_statuses("platform", "voltran", &bad);
    assert!(now
        .iter()
        .filter(|(c, _)| c.as_str() != "claimd/claims/bad.yaml")
        .all(|(_, (state, _, _))| state == "success"));

    // The page the status links to tells the same (served by the receiver's listener).
    let page = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            s,
            "GET /claims/platform/voltran/{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("w");
        let mut r = String::new();
        s.read_to_string(&mut r).expect("read");
        r
    };
    let shown = page("claims/bad.yaml");
    assert!(shown.starts_with("HTTP/1.1 200"), "{shown}");
    assert!(
        shown.contains("state: failure") && shown.contains(description.as_str()),
        "{shown}"
    );
    assert!(page("claims/nothing.yaml").starts_with("HTTP/1.1 404"));

    // Fixed: back to success.
    let fixed = push_and_deliver(
        &s,
        &addr,
        &[("claims/bad.yaml", app_claim("bad-app", "2"))],
        "fixed",
    );
    wait_until("the fixed status", || {
        api.latest_statuses("platform", "voltran", &fixed)
            .get("claimd/claims/bad.yaml")
            .is_some_and(|(state, _, _)| state == "success")
    });

    // The BootstrapClaims' organization and repository exist: only looked at. A
    // BootstrapClaim that names a charts repository: it is created.
    let writes = |api: &GiteaApi| {
        api.requests()
            .into_iter()
            .filter(|(m, p)| m == "POST" && (p.ends_with("/orgs") || p.ends_with("/repos")))
            .collect::<Vec<_>>()
    };
    assert!(writes(&api).is_empty(), "{:?}", writes(&api));
    let path = "claims/bootstrap-nonprod.yaml";
    let text = std::fs::read_to_string(s.work.join(path)).expect("read");
    let with_charts = text.replacen(
        "voltran: voltran",
        "voltran: voltran\n    charts: platform-charts",
        1,
    );
    assert_ne!(with_charts, text);
    push_and_deliver(&s, &addr, &[(path, with_charts)], "charts repository");
    wait_until("the charts repository created", || {
        writes(&api)
            .iter()
            .any(|(_, p)| p == "/api/v1/orgs/platform/repos")
    });
    assert!(d.terminate().success());

    // A restart registers again: still one hook.
    let d = Daemon::start(&s.config);
    let patches = |api: &GiteaApi| {
        api.requests()
            .iter()
            .filter(|(m, p)| m == "PATCH" && p.ends_with(&format!("/hooks/{id}")))
            .count()
    };
    let before = patches(&api);
    wait_until("registered again", || patches(&api) > before);
    assert_eq!(api.hooks("platform", "voltran").len(), 1);
    assert!(d.terminate().success());
    api.assert_clean();
}

#[test]
fn a_branch_preview_renders_without_committing_and_links_its_diff() {
    use crate::support::gitea_api::GiteaApi;
    let Some(api) = GiteaApi::start("a_branch_preview_renders_without_committing") else {
        return;
    };
    api.add_repo("platform", "voltran");
    let s = setup();
    configure_gitea(
        &s,
        &api.url,
        &api.token,
        &format!("    pushUrl: file://{}\n", s.bare.display()),
        "  pageUrl: http://claimd.example.com:7463\n",
    );
    let d = Daemon::start(&s.config);
    let addr = webhook_addr(&d);
    wait_until("ready", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let main_before = tip(&s.bare);

    // A pull request's branch: one claim file changed, one added.
    git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    git(&s.work, &["checkout", "-q", "-b", "feature/x"]);
    let path = s.work.join("claims/dev-apps.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen("tag: v1.3.0-rc.1", "tag: v1.3.0-rc.2", 1),
    )
    .expect("w");
    std::fs::write(s.work.join("claims/new.yaml"), app_claim("new-app", "2")).expect("w");
    git(&s.work, &["add", "-A"]);
    git(&s.work, &["commit", "-qm", "a feature"]);
    git(&s.work, &["push", "-q", "origin", "feature/x"]);
    let feature = {
        let out = git(&s.bare, &["rev-parse", "feature/x"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let body = push_event(
        "refs/heads/feature/x",
        &feature,
        "dev@example.com",
        "a feature\n",
    );
    let (code, text) = post(
        &addr,
        &[
            ("X-Gitea-Signature", &sign(&body)),
            ("X-Gitea-Delivery", "preview-1"),
        ],
        &body,
    );
    assert_eq!((code, text.as_str()), (202, "queued for a preview\n"));
    let files = claimd::examples::CLAIMS.len() + 1;
    wait_until("the preview's statuses", || {
        api.latest_statuses("platform", "voltran", &feature)
            .values()
            .filter(|(state, _, _)| state != "pending")
            .count()
            == files
    });
    let statuses = api.latest_statuses("platform", "voltran", &feature);
    let link = format!("http://claimd.example.com:7463/previews/{feature}");
    let (state, description, url) = &statuses["claimd/claims/new.yaml"];
    assert_eq!(state, "success");
    assert!(
        description.starts_with('+') && description.contains(" -0 files"),
        "{description}"
    );
    assert_ne!(description, "+0 ~0 -0 files");
    assert_eq!(url, &link);
    let (_, description, _) = &statuses["claimd/claims/dev-apps.yaml"];
    assert!(
        description.starts_with("+0 ~") && !description.starts_with("+0 ~0"),
        "{description}"
    );

    // The diff page is what `claimd plan` shows for that branch; no branch moved.
    let page = {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            s,
            "GET /previews/{feature} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("w");
        let mut r = String::new();
        s.read_to_string(&mut r).expect("read");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        r.split_once("\r\n\r\n").expect("body").1.to_string()
    };
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args(["plan", "--repo"])
        .arg(&s.bare)
        .env("CLAIMD_BRANCH", "feature/x")
        .output()
        .expect("claimd plan");
    let plan = String::from_utf8_lossy(&plan.stdout).to_string();
    let diff = plan.rsplit_once("generated file(s)").map_or("", |(d, _)| d);
    let diff = diff.rsplit_once('\n').map_or("", |(d, _)| d);
    assert!(diff.contains("+++ b/environments/"), "{plan}");
    assert_eq!(page.trim_end(), diff.trim_end());
    assert_eq!(tip(&s.bare), main_before, "main did not move");
    let now = git(&s.bare, &["rev-parse", "feature/x"]);
    assert_eq!(
        String::from_utf8_lossy(&now.stdout).trim(),
        feature,
        "the branch did not move"
    );
    assert!(d.terminate().success());
    api.assert_clean();
}

#[test]
fn bot_commits_go_through_giteas_smart_http_with_the_token_in_a_header_only() {
    use crate::support::smart_http::SmartHttp;
    let s = setup();
    let root = s.config.parent().expect("root").to_path_buf();
    let http = SmartHttp::start(&root);
    configure_gitea(&s, &http.url, &http.token, "", "");
    let log = root.join("daemon.log");
    let d = Daemon::start_logging(&s.config, Some(&log));
    let addr = webhook_addr(&d);
    let pushes = |http: &SmartHttp| {
        http.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/git-receive-pack"))
            .map(|r| (r.authorized, r.status))
            .collect::<Vec<_>>()
    };
    // The start-up render's bot commit arrives through the server.
    wait_until("the first bot commit through smart HTTP", || {
        pushes(&http).contains(&(true, 200))
    });
    wait_until("ready", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let out = git(&s.bare, &["log", "-1", "--format=%ae", "main"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "claimd@localhost"
    );

    // Gitea refuses the next bot push (a protected branch): nothing is forced, the
    // render is tried again and lands on top of the pushed commit.
    http.reject_next_pushes(1);
    let before = pushes(&http).len();
    let pushed = push_and_deliver(
        &s,
        &addr,
        &[("claims/extra.yaml", app_claim("extra-app", "2"))],
        "extra",
    );
    wait_until("the bot commit after a refusal", || {
        let out = git(&s.bare, &["log", "-1", "--format=%P", "main"]);
        String::from_utf8_lossy(&out.stdout).trim() == pushed
    });
    // (The server records a request once it has answered it.)
    wait_until("the retried push recorded", || {
        pushes(&http).len() >= before + 2
    });
    let after = pushes(&http);
    assert_eq!(after[before], (true, 403), "the refused push");
    assert_eq!(after.last(), Some(&(true, 200)));

    // The token was in a header only: not in a command line, a URL, the repository's
    // config or the daemon's log.
    assert!(
        !http.token_in_process_list(),
        "token seen in a process's command line"
    );
    assert!(!http.token_in_url(), "token seen in a URL");
    // (The token as such, or base64-encoded as in the Basic header.)
    let needles = crate::support::smart_http::token_needles(&http.token);
    let leaks = |bytes: &[u8]| {
        needles
            .iter()
            .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
    };
    let config = std::fs::read(s.bare.join("config")).expect("config");
    assert!(!leaks(&config), "token in the repository's config");
    assert!(d.terminate().success());
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!leaks(logged.as_bytes()), "token in the daemon's log");
    assert!(
        logged.contains("refused") || logged.contains("reconcile failed"),
        "{logged}"
    );
}

#[test]
fn a_repository_not_on_claimds_disk_is_rendered_from_a_mirror_and_pushed_back() {
    use crate::support::smart_http::SmartHttp;
    // Gitea's repository lives under gitea/ (served by the smart-HTTP server); claimd's
    // config names it by owner/name only.
    let s = setup();
    let root = s.config.parent().expect("root").to_path_buf();
    let gitea_root = root.join("gitea");
    std::fs::create_dir_all(&gitea_root).expect("mkdir");
    std::fs::rename(root.join("platform"), gitea_root.join("platform")).expect("move");
    let bare = gitea_root.join("platform/voltran.git");
    git(
        &s.work,
        &[
            "remote",
            "set-url",
            "origin",
            &format!("file://{}", bare.display()),
        ],
    );
    let http = SmartHttp::start(&gitea_root);
    std::fs::write(root.join("gitea-token"), &http.token).expect("token");
    std::fs::write(
        &s.config,
        format!(
            "listen: 127.0.0.1:0\nrepositories:\n  - giteaRepository: platform/voltran\n    branch: main\ngitea:\n  url: {}\n  tokenFile: gitea-token\n  webhookListen: 127.0.0.1:0\n  webhookSecretFile: webhook-secret\ndataDir: state\n",
            http.url
        ),
    )
    .expect("config");
    let d = Daemon::start(&s.config);
    let addr = webhook_addr(&d);
    let mirror = root.join("state/mirrors/platform/voltran.git");
    // At start: fetched into the mirror, rendered, the bot commit pushed to Gitea.
    wait_until("the first bot commit in Gitea's repository", || {
        let out = git(&bare, &["log", "-1", "--format=%ae", "main"]);
        String::from_utf8_lossy(&out.stdout).trim() == "claimd@localhost"
    });
    assert!(
        mirror.join("objects").is_dir(),
        "the mirror is in the data folder"
    );
    wait_until("ready", || d.get("/readyz").starts_with("HTTP/1.1 200"));

    // A push to Gitea and its webhook: fetched, rendered from the mirror, pushed back.
    let pushed = {
        git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
        std::fs::write(
            s.work.join("claims/extra.yaml"),
            app_claim("extra-app", "2"),
        )
        .expect("w");
        git(&s.work, &["add", "-A"]);
        git(&s.work, &["commit", "-qm", "extra"]);
        git(&s.work, &["push", "-q", "origin", "main"]);
        tip(&bare)
    };
    let body = push_event("refs/heads/main", &pushed, "dev@example.com", "extra\n");
    let (code, text) = post(
        &addr,
        &[
            ("X-Gitea-Signature", &sign(&body)),
            ("X-Gitea-Delivery", "m-1"),
        ],
        &body,
    );
    assert_eq!(code, 202, "{text}");
    wait_until("the bot commit on the pushed commit", || {
        let out = git(&bare, &["log", "-1", "--format=%P", "main"]);
        String::from_utf8_lossy(&out.stdout).trim() == pushed
    });
    let gitea_tip = tip(&bare);
    wait_until("the mirror follows", || tip(&mirror) == gitea_tip);
    wait_until("both bot commits recorded by the server", || {
        http.requests()
            .iter()
            .filter(|r| r.path.ends_with("/git-receive-pack") && r.status == 200)
            .count()
            >= 2
    });
    assert!(!http.token_in_process_list() && !http.token_in_url());
    assert!(d.terminate().success());
}

#[test]
fn bootstrap_creates_what_is_missing_pushes_the_scaffold_and_a_second_run_only_reads() {
    use crate::support::gitea_api::GiteaApi;
    use crate::support::smart_http::SmartHttp;
    let Some(api) = GiteaApi::start("bootstrap_creates_what_is_missing") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    // Gitea's repository root on this disk (Gitea makes the bare repository when the
    // API creates it; here it is made up front, empty, with Gitea's hooks layout).
    let gitea_root = root.join("gitea");
    std::fs::create_dir_all(gitea_root.join("platform")).expect("mkdir");
    git(
        &gitea_root.join("platform"),
        &["init", "-q", "--bare", "-b", "main", "voltran.git"],
    );
    let bare = gitea_root.join("platform/voltran.git");
    std::fs::create_dir_all(bare.join("hooks/post-receive.d")).expect("gitea layout");
    let http = SmartHttp::start_with_token(&gitea_root, &api.token);
    std::fs::write(root.join("token"), &api.token).expect("token");
    std::fs::write(root.join("secret"), SECRET).expect("secret");
    let claim = root.join("bootstrap.yaml");
    let (_, text) = claimd::examples::CLAIMS
        .iter()
        .find(|(p, _)| p.ends_with("bootstrap-nonprod.yaml"))
        .expect("the example");
    std::fs::write(&claim, text).expect("claim");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_claimd"))
            .args(["bootstrap", "-f"])
            .arg(&claim)
            .args(["--token-file"])
            .arg(root.join("token"))
            .args([
                "--gitea-url",
                &api.url,
                "--git-url",
                &http.url,
                "--repos-root",
            ])
            .arg(&gitea_root)
            .args([
                "--webhook-url",
                "http://127.0.0.1:7463/hooks/gitea",
                "--secret-file",
            ])
            .arg(root.join("secret"))
            .output()
            .expect("claimd bootstrap");
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said
    };
    let first = run();
    assert!(first.contains("organization platform: created"), "{first}");
    assert!(
        first.contains("repository platform/voltran: created"),
        "{first}"
    );
    assert!(
        first.contains("scaffold:") && first.contains("pushed"),
        "{first}"
    );
    assert!(first.contains("ALLOWED_HOST_LIST = loopback"), "{first}");
    // The scaffold is the repository's first commit: README, the claim, root apps and
    // the ApplicationSets of the claim's environments.
    let files = git(&bare, &["ls-tree", "-r", "--name-only", "main"]);
    let files = String::from_utf8_lossy(&files.stdout).to_string();
    assert!(files.contains("README.md\n"), "{files}");
    assert!(files.contains("claims/bootstrap.yaml\n"), "{files}");
    assert!(
        files.contains("appsets/") && files.contains("root-apps/"),
        "{files}"
    );
    for env in ["dev", "qa", "staging"] {
        assert!(files.contains(env), "{env}: {files}");
    }
    assert!(
        bare.join("hooks/pre-receive.d/claimd").is_file(),
        "hooks installed"
    );
    assert_eq!(api.hooks("platform", "voltran").len(), 1);

    // Again: nothing is written (only GET requests, no push).
    let requests = api.requests().len();
    let pushes = |http: &SmartHttp| {
        http.requests()
            .iter()
            .filter(|r| r.path.ends_with("/git-receive-pack"))
            .count()
    };
    let pushed = pushes(&http);
    let second = run();
    assert!(second.contains("organization platform: exists"), "{second}");
    assert!(second.contains("left as it is"), "{second}");
    let writes: Vec<_> = api.requests()[requests..]
        .iter()
        .filter(|(m, _)| m != "GET")
        .cloned()
        .collect();
    assert!(writes.is_empty(), "a second run writes: {writes:?}");
    assert_eq!(pushes(&http), pushed, "a second run pushes nothing");
    assert_eq!(api.hooks("platform", "voltran").len(), 1);
    assert!(!http.token_in_process_list() && !http.token_in_url());
    api.assert_clean();
}
