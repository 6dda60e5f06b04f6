//! `GET /metrics` of a real `claimd serve`, parsed by a Prometheus text parser: what a
//! good push, a bad claim, a failing reconcile and each kind of webhook request count;
//! the read-only listener (`metricsListen`); scraping does no work; `--log-format json`.

use claimd::server::Update;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::Path;

use crate::support::daemon::{wait_until, Daemon};
use crate::support::git::git;

use crate::gitea::{Setup, SECRET};

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A Gitea-style repository `platform/voltran.git` with the example claims pushed, and
/// a config with the webhook receiver and the read-only listener (no hooks: the test
/// hands pushes off itself, so a bad claim reaches the daemon).
fn setup() -> Setup {
    crate::gitea::setup_with("metricsListen: 127.0.0.1:0\n")
}

/// One HTTP/1.1 request: (status, head, body).
fn http(addr: &str, request: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut head = format!("{request} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| *k == "Content-Length") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    // A body announced larger than sent is refused from its length alone.
    if !headers.iter().any(|(k, _)| *k == "Content-Length") {
        s.write_all(body).expect("write body");
    }
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn get(addr: &str, path: &str) -> (u16, String, String) {
    http(addr, &format!("GET {path}"), &[], b"")
}

/// The address after `what` in the line the daemon printed.
fn address(d: &Daemon, what: &str) -> String {
    d.line
        .split(what)
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '\n']).next())
        .unwrap_or_else(|| panic!("no `{what}` in {:?}", d.line))
        .trim()
        .to_string()
}

/// `GET /metrics` (classic text format), parsed.
fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (code, head, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

/// The value of the sample `metric` whose labels include `labels` (0 when absent, as
/// Prometheus treats a series not yet seen).
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a number"),
        })
        .sum()
}

fn reconciles(scrape: &prometheus_parse::Scrape, result: &str) -> f64 {
    value(
        scrape,
        "claimd_reconcile_total",
        &[("repository", "voltran"), ("result", result)],
    )
}

fn webhooks(scrape: &prometheus_parse::Scrape, result: &str) -> f64 {
    value(
        scrape,
        "claimd_webhook_requests_total",
        &[("result", result)],
    )
}

fn tip(repo: &Path) -> String {
    let out = git(repo, &["rev-parse", "main"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commits `files` (None: remove) in the clone and pushes: (old tip, new tip).
fn push(s: &Setup, files: &[(&str, Option<String>)], message: &str) -> (String, String) {
    git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    let old = tip(&s.bare);
    for (path, text) in files {
        match text {
            Some(text) => std::fs::write(s.work.join(path), text).expect("write"),
            None => std::fs::remove_file(s.work.join(path)).expect("remove"),
        }
    }
    git(&s.work, &["add", "-A"]);
    git(&s.work, &["commit", "-qm", message]);
    git(&s.work, &["push", "-q", "origin", "main"]);
    (old, tip(&s.bare))
}

fn app_claim(name: &str, replicas: &str) -> String {
    format!(
        "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata: {{name: {name}}}\nspec:\n  environment: dev\n  clusterType: nonprod\n  applications:\n    - name: {name}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: example.com/{name}, tag: v1}}\n      replicas: {replicas}\n"
    )
}

fn push_event(full_name: &str, old: &str, new: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "before": old,
        "after": new,
        "repository": {"full_name": full_name},
        "head_commit": {"id": new, "message": "x", "author": {"email": "dev@example.com"}},
        "commits": [{"id": new, "message": "x", "author": {"email": "dev@example.com"},
                     "added": ["claims/metrics-demo.yaml"], "removed": [], "modified": []}],
    }))
    .expect("json")
}

fn is_commit_id(v: &str) -> bool {
    v.len() >= 7 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn pushes_webhooks_and_failures_count_and_the_log_lines_are_json_with_the_push() {
    let s = setup();
    let logs = tempfile::tempdir().expect("tmp");
    let log = logs.path().join("claimd.log");
    let d = Daemon::start_with(&s.config, Some(&log), &["--log-format", "json"]);
    let metrics = address(&d, "metrics on ");
    let receiver = address(&d, "gitea webhooks on ");
    wait_until("the start-up reconcile", || {
        get(&metrics, "/readyz").0 == 200
    });

    // The start-up reconcile committed the examples' files.
    let m = scrape(&metrics);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(value(&m, "claimd_build_info", &[("version", version)]), 1.0);
    assert_eq!(reconciles(&m, "committed"), 1.0);
    assert_eq!(
        value(&m, "claimd_bot_commits_total", &[("repository", "voltran")]),
        1.0
    );
    assert_eq!(
        value(&m, "claimd_reconcile_duration_seconds_count", &[]),
        1.0
    );
    assert!(value(&m, "claimd_last_reconcile_timestamp_seconds", &[]) > 1.6e9);
    // The worker goes on with the Kubernetes step (dry-run here), then rests.
    wait_until("an empty queue", || {
        value(&scrape(&metrics), "claimd_queue_depth", &[]) == 0.0
    });

    // At rest, scraping (either listener, either format) does no work.
    let status = |addr: &str| get(addr, "/v1/status").2;
    let before = status(&d.addr);
    for _ in 0..5 {
        scrape(&metrics);
        get(&d.addr, "/metrics");
        let (code, head, open) = http(
            &metrics,
            "GET /metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
            b"",
        );
        assert_eq!(code, 200);
        assert!(head.contains("application/openmetrics-text"), "{head}");
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
    assert_eq!(status(&d.addr), before, "scraping asked for work");
    assert_eq!(scrape(&metrics).samples.len(), m.samples.len());
    assert_eq!(reconciles(&scrape(&metrics), "committed"), 1.0);

    // A good claim pushed, Gitea's webhook delivered: one more bot commit.
    let demo = app_claim("metrics-demo", "2");
    let (old, good) = push(
        &s,
        &[("claims/metrics-demo.yaml", Some(demo))],
        "a good claim",
    );
    let event = push_event("platform/voltran", &old, &good);
    let (code, _, text) = http(
        &receiver,
        "POST /hooks/gitea",
        &[
            ("X-Gitea-Signature", &sign(&event)),
            ("X-Gitea-Delivery", "good-1"),
        ],
        &event,
    );
    assert_eq!(code, 202, "{text}");
    wait_until("the good push's bot commit", || {
        reconciles(&scrape(&metrics), "committed") == 2.0
    });
    let m = scrape(&metrics);
    assert_eq!(
        value(&m, "claimd_bot_commits_total", &[("repository", "voltran")]),
        2.0
    );
    assert_eq!(webhooks(&m, "accepted"), 1.0);
    assert_eq!(value(&m, "claimd_claim_failures_total", &[]), 0.0);

    // A bad claim handed off as a hook does: counted as a claim failure, by reason.
    git(&s.work, &["pull", "-q", "--rebase", "origin", "main"]);
    let (old_bad, bad) = push(
        &s,
        &[("claims/broken.yaml", Some(app_claim("broken", "many")))],
        "a bad claim",
    );
    let update = Update {
        reference: "refs/heads/main".into(),
        old: old_bad.clone(),
        new: bad.clone(),
    };
    let result = claimd::server::hand_off_and_wait(&d.addr, &s.bare, Some(&update))
        .expect("hand off")
        .expect("served");
    assert!(!result.contains("failed"), "{result}");
    let m = scrape(&metrics);
    assert_eq!(
        value(
            &m,
            "claimd_claim_failures_total",
            &[("reason", "invalid_claim")]
        ),
        1.0,
        "{result}"
    );
    assert_eq!(
        reconciles(&m, "committed") + reconciles(&m, "unchanged"),
        3.0
    );

    // Every kind of webhook request counts by its verdict.
    let junk = b"{\"not\": \"a push\"}";
    let other = push_event("someone/else", &old, &good);
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let requests: [(Headers, &[u8], u16); 5] = [
        (
            &[("X-Gitea-Signature", &sign(b"another body"))],
            &event,
            401,
        ),
        (&[("Content-Length", "4194304")], b"", 413),
        (&[("X-Gitea-Signature", &sign(junk))], junk, 400),
        (&[("X-Gitea-Signature", &sign(&other))], &other, 404),
        (
            &[
                ("X-Gitea-Signature", &sign(junk)),
                ("X-Gitea-Event", "issues"),
            ],
            junk,
            200,
        ),
    ];
    for (headers, body, want) in requests {
        let (code, _, text) = http(&receiver, "POST /hooks/gitea", headers, body);
        assert_eq!(code, want, "{text}");
    }
    let m = scrape(&metrics);
    for result in [
        "unauthorized",
        "too_large",
        "bad_request",
        "unknown_repository",
        "ignored",
    ] {
        assert_eq!(webhooks(&m, result), 1.0, "{result}");
    }

    // Without its BootstrapClaims nothing renders: the reconcile fails (and is retried).
    let (old_gone, gone) = push(
        &s,
        &[
            ("claims/bootstrap-nonprod.yaml", None),
            ("claims/bootstrap-prod.yaml", None),
        ],
        "no bootstrap",
    );
    let update = Update {
        reference: "refs/heads/main".into(),
        old: old_gone,
        new: gone,
    };
    let result = claimd::server::hand_off_and_wait(&d.addr, &s.bare, Some(&update))
        .expect("hand off")
        .expect("served");
    assert!(result.contains("reconcile failed"), "{result}");
    let m = scrape(&metrics);
    assert!(reconciles(&m, "failed") >= 1.0);
    assert_eq!(reconciles(&m, "committed"), 2.0);
    let total: f64 = ["committed", "unchanged", "failed", "rejected"]
        .iter()
        .map(|r| reconciles(&m, r))
        .sum();
    assert_eq!(
        value(&m, "claimd_reconcile_duration_seconds_count", &[]),
        total
    );

    // No label value is a commit id, a claim file or a path.
    for sample in &m.samples {
        for (name, v) in sample.labels.iter() {
            assert!(
                !is_commit_id(v) && !v.contains(".yaml") && !v.contains('/'),
                "{} has {name}={v:?}",
                sample.metric
            );
        }
    }

    // The read-only listener serves what it reads and nothing that writes.
    for path in ["/healthz", "/readyz", "/v1/status", "/metrics"] {
        assert_eq!(get(&metrics, path).0, 200, "{path}");
    }
    let body = serde_json::json!({ "repo": s.bare }).to_string();
    for path in ["/v1/push", "/v1/validate"] {
        let (code, _, _) = http(
            &metrics,
            &format!("POST {path}"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert!(code == 404 || code == 405, "POST {path}: {code}");
    }
    assert!(d.terminate().success());

    // Every log line is a JSON object; the lines of the good push's reconcile carry the
    // repository, the ref, the old and the new commit.
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l.is_object() && l["level"].is_string()));
    let of = |name: &str, new: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["span"]["name"] == name && l["span"]["new"] == new)
            .collect()
    };
    let work = of("reconcile", &good);
    assert!(
        work.iter().any(|l| l["message"] == "bot commit"),
        "no bot commit line in the good push's reconcile:\n{text}"
    );
    for l in &work {
        let span = &l["span"];
        assert_eq!(span["repository"], "voltran", "{l}");
        assert_eq!(span["ref"], "refs/heads/main", "{l}");
        assert!(span["old"].as_str().is_some_and(is_commit_id), "{l}");
    }
    let webhook = of("push", &good);
    assert!(
        webhook
            .iter()
            .any(|l| l["span"]["old"] == old.as_str() && l["span"]["repository"] == "voltran"),
        "no line of the webhook's push:\n{text}"
    );
    let handed = of("push", &bad);
    assert!(
        handed
            .iter()
            .any(|l| l["span"]["old"] == old_bad.as_str() && l["span"]["ref"] == "refs/heads/main"),
        "no line of the hook's hand-off:\n{text}"
    );
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_read_only_listener_comes_from_the_flag_or_the_environment() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("claimd.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nrepositories: []\n").expect("config");
    let flag: &[&str] = &["--metrics-listen", "127.0.0.1:0"];
    for (args, env) in [(flag, None), (&[][..], Some("127.0.0.1:0"))] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_claimd"));
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("CLAIMD_METRICS_LISTEN");
        if let Some(addr) = env {
            cmd.env("CLAIMD_METRICS_LISTEN", addr);
        }
        let mut child = Killed(cmd.spawn().expect("start claimd serve"));
        let mut line = String::new();
        std::io::BufReader::new(child.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let addr = line
            .split("metrics on ")
            .nth(1)
            .unwrap_or_else(|| panic!("{args:?} {env:?}: no read-only listener in {line:?}"))
            .trim();
        let (code, _, body) = get(addr, "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("claimd_build_info{"), "{body}");
    }
}

#[test]
fn a_registry_outage_counts_its_errors_and_the_chart_cache_its_pulls_and_hits() {
    use crate::support::registry;
    use std::process::Command;
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().to_path_buf();
    git(&root, &["init", "-q", "--bare", "-b", "main", "server.git"]);
    let bare = root.join("server.git");
    let work = crate::support::git::clone_with_examples(&root, &bare);
    let mut reg = registry::Registry::start(None);
    let host = reg.host();
    let repository = reg.publish_charts(&root.join("publish-cache"));
    // The registry is down when the daemon first needs its charts.
    reg.stop();
    for (path, text) in claimd::examples::CLAIMS {
        let text = text.replace("oci://ghcr.io/nimbusprotch", &repository);
        std::fs::write(work.join(path), text).expect("write");
    }
    git(&work, &["commit", "-qam", "charts from the test registry"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let config = root.join("claimd.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:0\nmetricsListen: 127.0.0.1:0\nrepositories:\n  - path: server.git\ncharts: oci\nregistries:\n  cache: chart-cache\n  refresh: 0\n  hosts:\n    \"{host}\": {{plainHttp: true}}\n"),
    )
    .expect("config");
    let d = Daemon::start(&config);
    let metrics = address(&d, "metrics on ");
    let cache = |m: &prometheus_parse::Scrape, result: &str| {
        value(m, "claimd_chart_cache_total", &[("result", result)])
    };
    wait_until("the registry's errors", || {
        let m = scrape(&metrics);
        value(
            &m,
            "claimd_registry_errors_total",
            &[("kind", "unreachable")],
        ) >= 1.0
            && value(
                &m,
                "claimd_claim_failures_total",
                &[("reason", "chart_unavailable")],
            ) >= 1.0
    });
    let m = scrape(&metrics);
    assert_eq!(cache(&m, "miss") + cache(&m, "hit"), 0.0);
    // Back with its charts: the retry pulls each chart once (misses), and the next
    // render finds them all in memory (hits, no new pull).
    reg.start_again();
    let values = "environments/nonprod/dev/applications/notification-service/values.yaml";
    wait_until("the retried render's bot commit", || {
        let out = Command::new("git")
            .args(["show", &format!("main:{values}")])
            .current_dir(&bare)
            .output()
            .expect("git show");
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&repository)
    });
    wait_until("the worker at rest", || {
        value(&scrape(&metrics), "claimd_queue_depth", &[]) == 0.0
    });
    let m = scrape(&metrics);
    let (misses, hits) = (cache(&m, "miss"), cache(&m, "hit"));
    assert!(misses >= 1.0, "no chart pulled");
    let result = claimd::server::hand_off_and_wait(&d.addr, &bare, None)
        .expect("hand off")
        .expect("served");
    assert!(result.contains("up to date"), "{result}");
    let m = scrape(&metrics);
    assert_eq!(cache(&m, "miss"), misses, "a chart pulled again");
    assert!(cache(&m, "hit") > hits, "no chart from the cache");
}
