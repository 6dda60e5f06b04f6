//! What an operator sees: `claimd status` (table, JSON, YAML; and `--repo` without a
//! daemon) and the HTML status page (`GET /`) in a real headless Chromium, against the
//! real daemon after a good push and a push with a broken claim.
//!
//! `CLAIMD_STATUS_SCREENSHOT=<file>`: the browser test also copies its screenshot there
//! (how docs/status-page.png is made).

use crate::support::contracts::in_ci;
use crate::support::daemon::{wait_until, Daemon};
use crate::support::git::git;
use claimd::daemon::{record::ClaimStatus, Status};
use claimd::reconcile::ClaimState;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_claimd");

/// A broken claim file: an unknown field whose name is HTML (the page must escape it).
const BROKEN: &str = "apiVersion: platform.infraforge.io/v1
kind: ApplicationClaim
metadata:
  name: checkout
spec:
  environment: dev
  clusterType: nonprod
  applications:
    - name: checkout
      chart: {name: microservice, version: \"1.0.0\"}
      image: {repository: example.com/checkout, tag: v2}
      <script>alert(1)</script>: true
";

struct Running {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    daemon: Daemon,
    /// The commit that added the broken claim.
    pushed: String,
}

/// A daemon serving a repository with the example claims (rendered, a bot commit), then
/// a push adding a broken claim, handed off to the daemon and reconciled.
fn start() -> Running {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    git(root, &["init", "-q", "--bare", "-b", "main", "server.git"]);
    let bare = root.join("server.git");
    let work = crate::support::git::clone_with_examples(root, &bare);
    git(&work, &["push", "-q", "origin", "main"]);
    let config = root.join("claimd.yaml");
    // Gitea's URL without a token: no statuses, bot commits on disk, but the page links
    // the commits and files to where Gitea shows them.
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\ngitea:\n  url: https://gitea.example.com/\nrepositories:\n  - path: server.git\n    giteaRepository: platform/gitops\n",
    )
    .expect("config");
    let daemon = Daemon::start(&config);
    wait_until("the start-up reconcile", || {
        status(&daemon).repositories[0]
            .record
            .last_bot_commit
            .is_some()
    });
    std::fs::write(work.join("claims/checkout.yaml"), BROKEN).expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "checkout"]);
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let pushed = String::from_utf8_lossy(&git(&work, &["rev-parse", "HEAD"]).stdout)
        .trim()
        .to_string();
    let repo = bare.canonicalize().expect("canonical");
    assert!(claimd::server::hand_off(&daemon.addr, &repo).expect("hand off"));
    wait_until("the push's reconcile", || {
        status(&daemon).repositories[0]
            .record
            .last_push
            .as_ref()
            .is_some_and(|p| p.commit == pushed)
    });
    Running {
        _dir: dir,
        bare,
        daemon,
        pushed,
    }
}

fn status(d: &Daemon) -> Status {
    let resp = d.get("/v1/status");
    let body = resp.split_once("\r\n\r\n").expect("a body").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn claim<'a>(claims: &'a [ClaimStatus], file: &str) -> &'a ClaimStatus {
    claims
        .iter()
        .find(|c| c.file == file)
        .unwrap_or_else(|| panic!("no {file} in {claims:?}"))
}

fn claimd(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("CLAIMD_DAEMON")
        .output()
        .expect("run claimd");
    assert!(
        out.status.success(),
        "claimd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The broken claim's first error, as the daemon reports it.
fn broken_error(s: &Status) -> String {
    let c = claim(&s.repositories[0].record.claims, "claims/checkout.yaml");
    assert_eq!(c.state, ClaimState::Failed);
    c.error.clone().expect("an error")
}

#[test]
fn claimd_status_shows_each_claim_file_with_its_first_error() {
    let r = start();
    let s = status(&r.daemon);
    let repo = &s.repositories[0];
    let rec = &repo.record;
    // The daemon's record of its last work.
    let error = broken_error(&s);
    assert!(
        error.starts_with("claims/checkout.yaml:12:7: unknown field"),
        "{error}"
    );
    let push = rec.last_push.as_ref().expect("last push");
    assert_eq!(
        (push.commit.as_str(), push.reference.as_str()),
        (r.pushed.as_str(), "refs/heads/main")
    );
    let bot = rec
        .last_bot_commit
        .as_ref()
        .expect("the start-up bot commit");
    let tip = String::from_utf8_lossy(&git(&r.bare, &["rev-parse", "main"]).stdout)
        .trim()
        .to_string();
    // The pushed commit was rebased onto the start-up bot commit.
    let parent = String::from_utf8_lossy(&git(&r.bare, &["rev-parse", "main~1"]).stdout)
        .trim()
        .to_string();
    assert_eq!(bot.commit, parent);
    assert_eq!(tip, r.pushed, "nothing to commit for a broken claim");
    let last = rec.last_reconcile.as_ref().expect("last reconcile");
    assert!(last.ok, "{last:?}");
    assert_eq!(last.tip.as_deref(), Some(tip.as_str()));
    assert_eq!(
        rec.gitea.as_deref(),
        Some("https://gitea.example.com/platform/gitops")
    );
    let good = claim(&rec.claims, "claims/dev-apps.yaml");
    assert_eq!((good.state, good.error.as_ref()), (ClaimState::Ok, None));
    assert_eq!(good.applications, 4);
    assert!(
        good.generated
            .contains(&"environments/nonprod/dev/applications/notification-service".to_string()),
        "{good:?}"
    );
    assert_eq!(
        rec.claims.len(),
        claimd::examples::CLAIMS.len() + 1,
        "one entry per claim file"
    );
    assert!(!repo.environments.is_empty(), "the example's preview");

    // `claimd status`: JSON and YAML are the daemon's answer, the table shows the error.
    let addr = r.daemon.addr.as_str();
    let json: Status =
        serde_json::from_str(&claimd(&["status", "--addr", addr, "--output", "json"]))
            .expect("JSON of the status");
    assert_eq!(broken_error(&json), error);
    assert_eq!(json.repositories[0].record, *rec);
    let alias: Status =
        serde_json::from_str(&claimd(&["status", "--daemon", addr, "--json"])).expect("--json");
    assert_eq!(alias.repositories[0].record, *rec);
    let yaml: Status = serde_yaml::from_str(&claimd(&["status", "--addr", addr, "-o", "yaml"]))
        .expect("YAML of the status");
    assert_eq!(yaml.repositories[0].record, *rec);
    let table = claimd(&["status", "--addr", addr]);
    let line = table
        .lines()
        .find(|l| l.contains("claims/checkout.yaml"))
        .unwrap_or_else(|| panic!("no line for the broken claim:\n{table}"));
    assert!(
        line.trim_start().starts_with("failed") && line.contains(&error),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("last push")
                && l.contains(&format!("{} on refs/heads/main", &r.pushed[..12]))),
        "{table}"
    );
    assert!(table.contains("pr-123"), "the preview:\n{table}");

    // Without a daemon: the same states from the one pipeline at the branch tip.
    let bare = r.bare.display().to_string();
    let local = claimd(&["status", "--repo", &bare]);
    assert!(local.contains(&error), "{local}");
    let local: serde_json::Value =
        serde_json::from_str(&claimd(&["status", "--repo", &bare, "-o", "json"])).expect("json");
    let claims: Vec<ClaimStatus> = serde_json::from_value(local["claims"].clone()).expect("claims");
    assert_eq!(claims, rec.claims, "the daemon and --repo agree");
    r.daemon.kill9();
}

/// Debian's chromium (tests/chromium/setup.sh installs it; scripts/test runs that).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"]
        .iter()
        .filter_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
        })
        .next();
    found.or_else(|| {
        let p = PathBuf::from("/usr/bin/chromium");
        p.is_file().then_some(p)
    })
}

/// Runs headless Chromium with `args` on `url` (deadline 90 s): its stdout.
fn browse(bin: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).expect("read"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().expect("reader");
    assert!(status.success(), "chromium {args:?}: {status}");
    out
}

#[test]
fn the_status_page_in_a_real_browser_shows_red_and_green_claims() {
    let Some(bin) = chromium() else {
        assert!(
            !in_ci(),
            "chromium is missing and CI=true: run tests/chromium/setup.sh (scripts/test does)"
        );
        eprintln!("\n!!!!!!!!\n!! SKIPPED the status page browser test: chromium is not installed\n!! (run tests/chromium/setup.sh, or scripts/test, to install Debian's chromium)\n!!!!!!!!\n");
        return;
    };
    let r = start();
    let error = broken_error(&status(&r.daemon));
    let url = format!("http://{}/", r.daemon.addr);
    let dir = tempfile::tempdir().expect("tmp");
    let dom = browse(&bin, &dir.path().join("profile-dom"), &["--dump-dom"], &url);
    // The failing claim, red, with its file:line:col error, escaped: no script element
    // came from the claim.
    assert!(
        dom.contains("data-claim=\"claims/checkout.yaml\" data-state=\"failed\""),
        "{dom}"
    );
    let escaped = error.replace('<', "&lt;").replace('>', "&gt;");
    assert!(
        escaped.starts_with("claims/checkout.yaml:12:7: ") && dom.contains(&escaped),
        "{escaped} in {dom}"
    );
    assert!(!dom.contains("<script"), "{dom}");
    // The good claim, green, with links to its generated files on Gitea.
    assert!(
        dom.contains("data-claim=\"claims/dev-apps.yaml\" data-state=\"ok\""),
        "{dom}"
    );
    assert!(dom.contains("href=\"https://gitea.example.com/platform/gitops/src/commit/"));
    assert!(dom.contains(&format!(
        "href=\"https://gitea.example.com/platform/gitops/commit/{}\"",
        r.pushed
    )));
    assert!(dom.contains("data-environment=\"pr-123\""), "the preview");
    let shot = dir.path().join("status.png");
    browse(
        &bin,
        &dir.path().join("profile-shot"),
        &[&format!("--screenshot={}", shot.display())],
        &url,
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // The IHDR chunk: the width and height asked for.
    let width = u32::from_be_bytes(png[16..20].try_into().expect("width"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("height"));
    assert_eq!((width, height), (1280, 900));
    assert!(
        png.len() > 10_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    if let Some(to) = std::env::var_os("CLAIMD_STATUS_SCREENSHOT") {
        std::fs::copy(&shot, to).expect("copy the screenshot");
    }
    r.daemon.kill9();
}
