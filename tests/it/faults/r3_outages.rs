//! R3: the servers claimd depends on stop while it works and come back: the OCI
//! registry (the real CNCF Distribution), the Kubernetes API server (the real
//! kube-apiserver), and the git server (the smart-HTTP server in front of
//! `git http-backend`, which the Gitea mirror mode fetches from and pushes to). What
//! must hold: nothing is pruned (a claim whose chart cannot be had keeps its generated
//! files; no namespace is deleted), the error is reported in the daemon's status, and
//! the daemon recovers by itself (its retry with backoff) once the server is back,
//! without a restart and without a new push.

use super::*;
use crate::support::catalyst;
use crate::support::daemon::Daemon;
use crate::support::kube;
use crate::support::registry::Registry;
use crate::support::smart_http::SmartHttp;
use std::time::Instant;

/// How long the daemon's own retry may take to notice a server is back.
const RECOVERY_SECS: u64 = 120;

/// The one-line result of the last request the daemon's worker served.
fn last_result(d: &Daemon) -> String {
    daemon_status(d)
        .repositories
        .first()
        .map(|r| r.work.last.clone())
        .unwrap_or_default()
}

fn hand_off(d: &Daemon, repo: &Path) {
    let repo = repo.canonicalize().expect("canonical");
    assert!(claimd::server::hand_off(&d.addr, &repo).expect("hand off"));
}

#[test]
fn r3_registry_stopped_and_started_again() {
    let part = "R3 registry";
    let started = Instant::now();
    let mut reg = Registry::start(None);
    let host = reg.host();
    let repository = reg.oci("charts");
    let s = Server::new(false);
    let publish = |chart: &Path, all: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["chart", "push"]);
        if all {
            cmd.arg("--all");
        }
        let o = cmd
            .arg(chart)
            .arg(&repository)
            .env("CLAIMD_PLAIN_HTTP", &host)
            .env("CLAIMD_CACHE", s.root.join("publish-cache"))
            .output()
            .expect("chart push");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    publish(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/charts")),
        true,
    );
    // microservice 1.1.0: published, never fetched by the daemon before the outage.
    let newer = s.root.join("microservice-1.1.0");
    crate::support::setup::copy_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/microservice")),
        &newer,
    );
    let chart_yaml = std::fs::read_to_string(newer.join("Chart.yaml")).expect("Chart.yaml");
    std::fs::write(
        newer.join("Chart.yaml"),
        chart_yaml.replace("version: \"1.0.0\"", "version: \"1.1.0\""),
    )
    .expect("write");
    publish(&newer, false);

    let work = s.clone("work");
    write_examples(&work);
    for (path, text) in claimd::examples::CLAIMS {
        std::fs::write(
            work.join(path),
            text.replace("oci://ghcr.io/nimbusprotch", &repository),
        )
        .expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "charts from the test registry"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let config = s.daemon_config(&format!(
        "charts: oci\nregistries:\n  cache: chart-cache\n  refresh: 0\n  hosts:\n    \"{host}\": {{plainHttp: true}}\n"
    ));
    let d = Daemon::start(&config);
    wait_for("the first render", RECOVERY_SECS, || {
        !bot_commits(&s.bare).is_empty() && daemon_idle(&d)
    });
    let rendered = generated_files(&s.bare);
    let values = "environments/nonprod/dev/applications/notification-service/config.yaml";
    let before = out(&s.bare, &["show", &format!("main:{values}")]);
    assert!(before.contains("1.0.0"), "{before}");

    // The registry goes away; a push asks for the chart version never fetched.
    reg.stop();
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    let path = work.join("claims/dev-apps.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen("version: \"1.0.0\"", "version: \"1.1.0\"", 1),
    )
    .expect("write");
    git(&work, &["commit", "-qam", "microservice 1.1.0"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let pushed = s.tip();
    hand_off(&d, &s.bare);
    wait_for("the render to fail", RECOVERY_SECS, || {
        daemon_idle(&d) && !last_result(&d).is_empty()
    });
    let error = last_result(&d);
    assert!(
        error.contains("kept as they were, trying again") && error.contains("dev-apps.yaml"),
        "the outage is not reported: {error}"
    );
    // Nothing pruned: every generated file is still there, the claim's unchanged.
    let during = generated_files(&s.bare);
    let pruned: Vec<&String> = rendered.iter().filter(|f| !during.contains(f)).collect();
    assert!(
        pruned.is_empty(),
        "pruned while the registry was down: {pruned:?}"
    );
    assert_eq!(out(&s.bare, &["show", &format!("main:{values}")]), before);

    // Back: the daemon's retry renders it, no push, no restart.
    reg.start_again();
    wait_for("the retried render", RECOVERY_SECS, || {
        out(&s.bare, &["show", &format!("main:{values}")]).contains("1.1.0")
    });
    wait_for("the daemon idle", RECOVERY_SECS, || daemon_idle(&d));
    assert!(is_ancestor(&s.bare, &pushed, &s.tip()));
    let recovered = last_result(&d);
    fresh_clone_plans_nothing_with(
        &s.root,
        &s.bare,
        "fresh",
        &["--charts", "oci"],
        &[
            ("CLAIMD_PLAIN_HTTP", host.as_str()),
            (
                "CLAIMD_CACHE",
                s.root.join("plan-cache").to_str().expect("utf-8"),
            ),
        ],
    );
    fsck(&s.bare);
    assert!(d.terminate().success());
    report(
        part,
        format!(
            "tried: the registry killed after the first render, then a push asking for a chart version never fetched (handed to the daemon), then the registry started again; in {:.1?}",
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: while down all {} generated files kept (the claim's files unchanged), status said `{}`; once back the daemon's retry rendered 1.1.0 without a push or restart (status `{}`); plan on a fresh clone: nothing to change",
            rendered.len(),
            error.trim(),
            recovered.trim()
        ),
    );
}

#[test]
fn r3_api_server_stopped_and_started_again() {
    let part = "R3 API server";
    let started = Instant::now();
    let mut c = kube::Cluster::start();
    let team = format!("out{}", std::process::id());
    let s = Server::new(false);
    let work = s.clone("work");
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    let (path, text) = claimd::examples::CLAIMS
        .iter()
        .find(|(p, _)| p.ends_with("bootstrap-nonprod.yaml"))
        .expect("bootstrap");
    std::fs::write(
        work.join(path),
        text.replace("voltran: voltran", &format!("voltran: fault-{team}")),
    )
    .expect("write");
    std::fs::write(
        work.join("claims/project.yaml"),
        catalyst::project(&team, "\"\""),
    )
    .expect("write");
    let env = |name: &str| {
        catalyst::environment(
            name,
            "1111111111111111111111111111111111111111",
            &format!("feature/{name}"),
        )
    };
    std::fs::write(work.join("claims/one.yaml"), env("one")).expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "one environment"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let config = s.daemon_config(&format!(
        "kubernetes:\n  kubeconfig: {}\n",
        c.kubeconfig().display()
    ));
    let d = Daemon::start(&config);
    let ns = |e: &str| format!("/api/v1/namespaces/{team}-shop-{e}");
    wait_for("namespace one", RECOVERY_SECS, || {
        c.kubectl_like("GET", &ns("one"), None).0 == 200
    });
    let one_uid = c.get_json(&ns("one"))["metadata"]["uid"].clone();

    // The API server goes away; a push adds an Environment.
    c.stop_apiserver();
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    std::fs::write(work.join("claims/two.yaml"), env("two")).expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "environment two"]);
    push_rebasing(&work);
    hand_off(&d, &s.bare);
    let two = format!("{team}-shop-two");
    let reported = |d: &Daemon| {
        daemon_status(d)
            .repositories
            .first()
            .and_then(|r| r.environments.iter().find(|e| e.namespace == two).cloned())
    };
    wait_for("the outage reported", RECOVERY_SECS, || {
        reported(&d).is_some_and(|e| {
            serde_json::to_string(&e)
                .expect("json")
                .contains("nreachable")
        })
    });
    let error = {
        let v = serde_json::to_value(reported(&d).expect("status")).expect("json");
        let message = v["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{}: {}", c["reason"], c["message"]))
            .find(|m| m.contains("nreachable"))
            .unwrap_or_default();
        format!("phase {}, {message}", v["phase"])
    };
    // A preview is held while its namespace cannot be made: nothing committed for it.
    assert!(!generated_files(&s.bare).iter().any(|f| f.contains(&two)));

    // Back on the same port: the retry applies namespace two; one was never deleted.
    c.start_apiserver_again();
    wait_for("namespace two", RECOVERY_SECS, || {
        c.kubectl_like("GET", &ns("two"), None).0 == 200
    });
    wait_for("two's values committed", RECOVERY_SECS, || {
        generated_files(&s.bare).iter().any(|f| f.contains(&two))
    });
    let one = c.get_json(&ns("one"));
    assert_eq!(
        one["metadata"]["uid"], one_uid,
        "namespace one was recreated"
    );
    assert!(
        one["metadata"]["deletionTimestamp"].is_null(),
        "namespace one deleted"
    );
    assert!(d.terminate().success());
    report(
        part,
        format!(
            "tried: kube-apiserver killed after the first namespace was applied, a push adding an Environment, then kube-apiserver started again on the same port (etcd kept); in {:.1?}",
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: the status reported the outage ({}) and the new preview was held (nothing committed for it); once back the daemon's retry created its namespace and committed its values without a push or restart; the first namespace was neither deleted nor recreated",
            error
        ),
    );
}

#[test]
fn r3_git_server_stopped_and_started_again() {
    let part = "R3 git server";
    let started = Instant::now();
    let s = Server::new(false);
    let gitea_root = s.root.join("gitea");
    std::fs::create_dir_all(gitea_root.join("platform")).expect("mkdir");
    git(
        &gitea_root.join("platform"),
        &["init", "-q", "--bare", "-b", "main", "voltran.git"],
    );
    let bare = gitea_root.join("platform/voltran.git");
    git(
        &s.root,
        &[
            "clone",
            "-q",
            &format!("file://{}", bare.display()),
            "people",
        ],
    );
    let work = s.root.join("people");
    write_examples(&work);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "examples"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let mut http = SmartHttp::start(&gitea_root);
    std::fs::write(s.root.join("gitea-token"), &http.token).expect("token");
    std::fs::write(
        s.root.join("webhook-secret"),
        format!("{}\n", super::r5_hostile::SECRET),
    )
    .expect("secret");
    let config = s.root.join("claimd.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nrepositories:\n  - giteaRepository: platform/voltran\n    branch: main\ngitea:\n  url: {}\n  tokenFile: gitea-token\n  webhookListen: 127.0.0.1:0\n  webhookSecretFile: webhook-secret\ndataDir: state\n",
            http.url
        ),
    )
    .expect("config");
    let d = Daemon::start(&config);
    let mirror = s.root.join("state/mirrors/platform/voltran.git");
    wait_for(
        "the first bot commit through smart HTTP",
        RECOVERY_SECS,
        || !bot_commits(&bare).is_empty() && daemon_idle(&d),
    );
    let rendered = generated_files(&bare);

    // The git server goes away; a person's push lands on its disk and is announced.
    http.stop();
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    std::fs::write(work.join("claims/extra.yaml"), app_claim("extra", 2, "v1")).expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "extra"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let pushed = out(&bare, &["rev-parse", "main"]);
    let event = super::r5_hostile::push_event("platform/voltran", "refs/heads/main", &pushed);
    let (code, answer) = super::r5_hostile::post(
        &super::r5_hostile::webhook_addr(&d),
        &[
            ("X-Gitea-Signature", super::r5_hostile::sign(&event)),
            ("X-Gitea-Delivery", "outage-1".into()),
        ],
        &event,
        super::r5_hostile::Body::Exact,
    );
    assert_eq!(code, 202, "{answer}");
    wait_for("the failed fetch", RECOVERY_SECS, || {
        daemon_idle(&d) && !last_result(&d).is_empty()
    });
    let error = last_result(&d);
    assert_eq!(
        out(&bare, &["rev-parse", "main"]),
        pushed,
        "nothing reached the server"
    );
    let during = generated_files(&mirror);
    let pruned: Vec<&String> = rendered.iter().filter(|f| !during.contains(f)).collect();
    assert!(pruned.is_empty(), "pruned in the mirror: {pruned:?}");

    // Back on the same address: the retry fetches, renders and pushes.
    http.start_again();
    wait_for("the bot commit on the pushed commit", RECOVERY_SECS, || {
        out(&bare, &["log", "-1", "--format=%P", "main"]) == pushed
    });
    assert!(converged(&bare));
    let after = generated_files(&bare);
    assert!(
        rendered.iter().all(|f| after.contains(f)),
        "a generated file of the other claims went away"
    );
    fsck(&bare);
    assert!(d.terminate().success());
    report(
        part,
        format!(
            "tried: the smart-HTTP git server (Gitea mirror mode) stopped after the first bot commit, a person's push announced to the daemon, then the server started again on the same address; in {:.1?}",
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: nothing reached the server and the mirror kept all {} generated files; the status said `{}`; once back the daemon's retry fetched, rendered and pushed the bot commit on the person's commit without a push or restart; git fsck clean",
            rendered.len(),
            error.trim()
        ),
    );
}
