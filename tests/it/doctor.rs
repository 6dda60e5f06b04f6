//! `claimd doctor` against real parts: a bare repository with the hooks `claimd hooks
//! install` wrote, the daemon, the Gitea contract server with the webhook the daemon
//! registered, a real registry (htpasswd) holding the charts, and the real
//! kube-apiserver with claimd's role bound. Healthy: every line ✔ and exit 0. Then one
//! thing at a time is broken, and the exact failing line and its fix are checked (exit
//! 1), and put back.

use crate::support::catalyst;
use crate::support::daemon::{wait_until, Daemon};
use crate::support::git::git;
use crate::support::gitea_api::GiteaApi;
use crate::support::kube::Cluster as TestCluster;
use crate::support::registry::Registry;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_claimd");
const SECRET: &str = "a-webhook-secret";
const WEBHOOK_URL: &str = "http://127.0.0.1:7463/hooks/gitea";

/// `claimd doctor --config FILE` with the daemon at `listen`: (exit code, the report).
fn doctor(config: &Path, listen: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(config)
        .env("CLAIMD_LISTEN", listen)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("CLAIMD_CACHE")
        .output()
        .expect("run claimd doctor");
    // (stderr has only logs, such as kube's warning about the test cluster's
    // insecure-skip-tls-verify.)
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("$ claimd doctor (exit {:?})\n{stdout}", out.status.code());
    (out.status.code().unwrap_or(-1), stdout)
}

/// Whether the output has exactly `line`.
fn has(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

/// `claimd doctor` fails (exit 1) with `line` as its only line that does not pass.
fn fails_only_with(config: &Path, listen: &str, line: &str) {
    let (code, out) = doctor(config, listen);
    assert_eq!(code, 1, "{out}");
    assert_eq!(not_passing(&out), [line], "{out}");
}

/// `checks` lines only, without the ones starting with `✔`.
fn not_passing(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.starts_with("✔ ")).collect()
}

fn claimd(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().expect("claimd");
    assert!(
        out.status.success(),
        "claimd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One signed delivery to the receiver, as Gitea makes it (a ping: verified, ignored).
fn deliver(addr: &str, secret: &str) -> u16 {
    use hmac::{Hmac, Mac};
    use std::io::{Read, Write};
    let body = br#"{"zen":"ping"}"#;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /hooks/gitea HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Gitea-Event: ping\r\nX-Gitea-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write");
    s.write_all(body).expect("body");
    let mut r = String::new();
    s.read_to_string(&mut r).expect("read");
    r.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A DELETE of a hook through the contract server (as a person would in Gitea's UI).
fn delete_hook(api: &GiteaApi, id: i64) {
    let host = api.url.trim_start_matches("http://");
    let auth = format!("token {}", api.token);
    let r = crate::support::registry::http_request(
        host,
        "DELETE",
        &format!("/api/v1/repos/platform/voltran/hooks/{id}"),
        &[("Authorization", &auth)],
        b"",
    )
    .expect("DELETE");
    assert_eq!(r.status, 204, "{}", r.text());
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    config: PathBuf,
    daemon_config: PathBuf,
}

/// The parts of a healthy setup, and the config naming them (`kubeconfig` impersonates
/// `user`).
fn setup(api: &GiteaApi, reg: &Registry, cluster: &TestCluster, user: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("platform")).expect("mkdir");
    git(
        &root.join("platform"),
        &["init", "-q", "--bare", "-b", "main", "voltran.git"],
    );
    let bare = root.join("platform/voltran.git");
    let host = reg.host();
    let (user_name, password) = reg.credentials().expect("credentials");
    let password_file = root.join("registry-password");
    std::fs::write(&password_file, password).expect("password");
    let hosts = format!(
        "hosts:\n  \"{host}\": {{plainHttp: true, username: {user_name}, passwordFile: {}}}\n",
        password_file.display()
    );
    // The registry settings for `claimd chart push`, and the same in claimd's config.
    std::fs::write(
        root.join("registries.yaml"),
        format!("cache: {}\n{hosts}", root.join("publish-cache").display()),
    )
    .expect("registries");
    let registries = format!(
        "registries:\n  cache: chart-cache\n  {}",
        hosts.replace('\n', "\n  ").trim_end()
    );
    let repository = reg.oci("charts");
    claimd(&[
        "chart",
        "push",
        "--registry-config",
        root.join("registries.yaml").to_str().expect("utf-8"),
        "--all",
        concat!(env!("CARGO_MANIFEST_DIR"), "/charts"),
        &repository,
    ]);
    // The claims take their charts from the test registry.
    let work = crate::support::git::clone_with_examples(&root, &bare);
    for (path, text) in claimd::examples::CLAIMS {
        let text = text.replace("oci://ghcr.io/nimbusprotch", &repository);
        std::fs::write(work.join(path), text).expect("write");
    }
    git(&work, &["commit", "-qam", "charts from the test registry"]);
    git(&work, &["push", "-q", "origin", "main"]);
    claimd(&["hooks", "install", bare.to_str().expect("utf-8")]);

    std::fs::write(root.join("gitea-token"), &api.token).expect("token");
    std::fs::write(root.join("webhook-secret"), format!("{SECRET}\n")).expect("secret");
    std::fs::write(
        root.join("kubeconfig"),
        catalyst::kubeconfig(&cluster.server(), cluster.token(), Some(user)),
    )
    .expect("kubeconfig");
    // The daemon's configuration, and the same with the cluster for the doctor (the
    // daemon is kept from applying the example claims' namespaces to the shared cluster).
    let daemon_config = root.join("daemon.yaml");
    // (The contract server speaks the API only: bot commits go by a file:// push.)
    let text = format!(
        "listen: 127.0.0.1:0\nrepositories:\n  - path: platform/voltran.git\n    pushUrl: file://{}\ncharts: oci\nchartsRepository: {repository}\n{registries}\ngitea:\n  url: {}\n  tokenFile: gitea-token\n  webhookListen: 127.0.0.1:0\n  webhookSecretFile: webhook-secret\n  webhookUrl: {WEBHOOK_URL}\n",
        bare.display(),
        api.url
    );
    std::fs::write(&daemon_config, &text).expect("config");
    let config = root.join("claimd.yaml");
    std::fs::write(
        &config,
        format!("{text}kubernetes:\n  kubeconfig: kubeconfig\n"),
    )
    .expect("config");
    Setup {
        _dir: dir,
        root,
        bare,
        config,
        daemon_config,
    }
}

fn webhook_addr(d: &Daemon) -> String {
    d.line
        .split("gitea webhooks on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no webhook address in {:?}", d.line))
        .trim()
        .to_string()
}

fn permissions() -> usize {
    claimd::kube::access::cluster_role_permissions(claimd::kube::access::RBAC)
        .expect("rbac.yaml")
        .len()
}

#[test]
fn a_healthy_setup_passes_and_each_broken_part_is_named_with_its_fix() {
    let Some(api) = GiteaApi::start("a_healthy_setup_passes_and_each_broken_part") else {
        return;
    };
    api.add_repo("platform", "voltran");
    let mut reg = Registry::start(Some(("claimd", "registry-pass")));
    let cluster = TestCluster::shared();
    crate::kube_namespaces::apply_rbac(cluster);
    let s = setup(&api, &reg, cluster, crate::kube_namespaces::CLAIMD_USER);
    let d = Daemon::start(&s.daemon_config);
    wait_until("the webhook registered", || {
        api.hooks("platform", "voltran").len() == 1
    });
    wait_until("ready", || d.get("/readyz").starts_with("HTTP/1.1 200"));
    let receiver = webhook_addr(&d);
    let bare = s.bare.display().to_string();
    let pre = format!("{bare}/hooks/pre-receive");
    let post = format!("{bare}/hooks/post-receive");

    // Before any delivery the secret cannot be judged: a warning with the way to check it.
    let (code, out) = doctor(&s.config, &d.addr);
    assert_eq!(code, 0, "{out}");
    assert_eq!(not_passing(&out).len(), 1, "{out}");
    assert!(
        has(&out, "! webhook secret: cannot be checked yet: Gitea never shows a hook's secret, its API here offers no test delivery, and no delivery reached the daemon since it started — in Gitea, press \"Test Delivery\" on the webhook (repository Settings → Webhooks), then run claimd doctor again; claimd's log says `gitea webhook with a wrong signature refused` when the secrets differ"),
        "{out}"
    );

    // Healthy: a delivery signed as Gitea signs it came; every line ✔, exit 0.
    assert_eq!(deliver(&receiver, SECRET), 200);
    let (code, out) = doctor(&s.config, &d.addr);
    assert_eq!(code, 0, "{out}");
    assert!(not_passing(&out).is_empty(), "{out}");
    let bin = Path::new(BIN).canonicalize().expect("binary");
    for line in [
        format!("✔ config: {} loads: 1 repository, Gitea {}, charts: oci, a kubeconfig", s.config.display(), api.url),
        format!("✔ repository: {bare} is a git repository (branch main)"),
        // Installed without --daemon: the kernel starts the full claimd on the hooks.
        format!("✔ hooks: {bare}: pre-receive and post-receive installed (hooks/<hook>), executable, calling {} (a daemon named in CLAIMD_DAEMON gets pre-receive's pushes from the full claimd; `claimd hooks install --daemon ADDR` starts {}-hook instead, about 1 ms faster a push)", bin.display(), bin.display()),
        format!("✔ daemon: ready at {}", d.addr),
        format!("✔ gitea: Gitea 1.22.0 at {} answers and takes the token", api.url),
        format!("✔ kubernetes: API server v1.20.2: claimd's user has all {} permissions of the ClusterRole claimd", permissions()),
    ] {
        assert!(has(&out, &line), "no line {line:?} in\n{out}");
    }
    for prefix in [
        "✔ git: git 2.",
        "✔ webhook: platform/voltran: hook ",
        "✔ webhook secret: 1 deliveries verified with claimd's secret since the daemon started",
        &format!(
            "✔ registry: {}: login and read work (kafka ",
            reg.oci("charts")
        ),
        "✔ clock: within 5 s of Gitea; within 5 s of the API server",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(prefix)),
            "no line {prefix:?}… in\n{out}"
        );
    }
    let json = Command::new(BIN)
        .args(["doctor", "--output", "json", "--config"])
        .arg(&s.config)
        .env("CLAIMD_LISTEN", &d.addr)
        .output()
        .expect("json");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .all(|c| c["level"] == "pass"),
        "{v}"
    );

    // Installed with --daemon, as install.sh does: the kernel starts the small client.
    claimd(&["hooks", "install", "--daemon", &d.addr, &bare]);
    let (code, out) = doctor(&s.config, &d.addr);
    assert_eq!(code, 0, "{out}");
    let line = format!("✔ hooks: {bare}: pre-receive and post-receive installed (hooks/<hook>), executable, calling {} through {}-hook, the daemon's small client", bin.display(), bin.display());
    assert!(has(&out, &line), "no line {line:?} in\n{out}");
    claimd(&["hooks", "install", &bare]);

    // A hook that is not executable.
    std::fs::set_permissions(&pre, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    fails_only_with(
        &s.config,
        &d.addr,
        &format!("✗ hooks: {pre} is not executable — run: chmod +x {pre}"),
    );
    std::fs::set_permissions(&pre, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // A hook whose first line names a program that is gone: git could not start it.
    let text = std::fs::read_to_string(&pre).expect("hook");
    let (first, rest) = text.split_once('\n').expect("lines");
    assert!(first.starts_with("#!/"), "{text}");
    std::fs::write(&pre, format!("#!/gone/claimd hook\n{rest}")).expect("write");
    fails_only_with(&s.config, &d.addr, &format!("✗ hooks: {pre} is run by /gone/claimd (its first line), which is not an executable file — run: claimd hooks install {bare} (it writes this claimd's path)"));
    claimd(&["hooks", "install", &bare]);
    assert_eq!(std::fs::read_to_string(&pre).expect("hook"), text);

    // A hook missing; the command the line names puts it back.
    std::fs::remove_file(&post).expect("rm");
    fails_only_with(
        &s.config,
        &d.addr,
        &format!("✗ hooks: {post} is missing — run: claimd hooks install {bare}"),
    );
    claimd(&["hooks", "install", &bare]);
    assert_eq!(doctor(&s.config, &d.addr).0, 0);

    // The webhook removed in Gitea; the command the line names puts it back.
    let id = api.hooks("platform", "voltran")[0]["id"]
        .as_i64()
        .expect("id");
    delete_hook(&api, id);
    let token = s.root.join("gitea-token").display().to_string();
    let secret = s.root.join("webhook-secret").display().to_string();
    fails_only_with(&s.config, &d.addr, &format!("✗ webhook: platform/voltran has no webhook delivering to {WEBHOOK_URL} — run: claimd gitea register-webhook platform/voltran --gitea-url {} --token-file {token} --secret-file {secret} --webhook-url {WEBHOOK_URL} (or restart claimd: it registers the webhook at start)", api.url));
    claimd(&[
        "gitea",
        "register-webhook",
        "platform/voltran",
        "--gitea-url",
        &api.url,
        "--token-file",
        &token,
        "--secret-file",
        &secret,
        "--webhook-url",
        WEBHOOK_URL,
    ]);
    assert_eq!(doctor(&s.config, &d.addr).0, 0);

    // A delivery with a wrong signature (Gitea's secret is not claimd's), then a good one.
    assert_eq!(deliver(&receiver, "not-the-secret"), 401);
    let (code, out) = doctor(&s.config, &d.addr);
    assert_eq!(code, 1, "{out}");
    let bad = not_passing(&out);
    assert_eq!(bad.len(), 1, "{out}");
    assert!(
        bad[0].starts_with("✗ webhook secret: the receiver refused the last delivery ("),
        "{out}"
    );
    assert!(bad[0].contains("; 1 refused, 1 verified since the daemon started) for a missing or wrong X-Gitea-Signature: the webhook's secret in Gitea differs from claimd's — write claimd's secret into each repository's webhook: claimd gitea register-webhook OWNER/NAME --gitea-url "), "{out}");
    assert_eq!(deliver(&receiver, SECRET), 200);
    assert_eq!(doctor(&s.config, &d.addr).0, 0);

    // A wrong token.
    std::fs::write(s.root.join("gitea-token"), "not-the-token").expect("token");
    fails_only_with(&s.config, &d.addr, &format!("✗ gitea: Gitea at {} refuses the token (401: invalid token) — write a valid access token (scope write:repository) into {token}", api.url));
    std::fs::write(s.root.join("gitea-token"), &api.token).expect("token");

    // The registry stopped.
    reg.stop();
    let (code, out) = doctor(&s.config, &d.addr);
    assert_eq!(code, 1, "{out}");
    let bad = not_passing(&out);
    assert_eq!(bad.len(), 1, "{out}");
    let host = reg.host();
    assert!(
        bad[0].starts_with(&format!(
            "✗ registry: {}: cannot reach {host}: ",
            reg.oci("charts")
        )),
        "{out}"
    );
    assert!(
        bad[0].ends_with(&format!("[unreachable] — start the registry or fix the host in chartsRepository; a plain-HTTP registry needs registries.hosts.\"{host}\".plainHttp: true")),
        "{out}"
    );
    reg.start_again();
    assert_eq!(doctor(&s.config, &d.addr).0, 0);

    // A kube user without the role: every permission denied, one line per resource.
    std::fs::write(
        s.root.join("kubeconfig"),
        catalyst::kubeconfig(
            &cluster.server(),
            cluster.token(),
            Some("claimd-doctor-nobody"),
        ),
    )
    .expect("kubeconfig");
    let (code, out) = doctor(&s.config, &d.addr);
    assert_eq!(code, 1, "{out}");
    let n = permissions();
    let fix = "run: kubectl apply -f deploy/kubernetes/rbac.yaml (the ClusterRole claimd, bound to the ServiceAccount claimd/claimd); if claimd's kubeconfig is another user, bind the role to it: kubectl create clusterrolebinding claimd-USER --clusterrole=claimd --user=USER";
    assert!(
        has(&out, &format!("✗ kubernetes: claimd's user may not create, delete, get, list, patch namespaces ({n} of the ClusterRole's {n} permissions denied) — {fix}")),
        "{out}"
    );
    assert!(
        has(&out, &format!("✗ kubernetes: claimd's user may not create, get, list, patch, watch jobs.batch ({n} of the ClusterRole's {n} permissions denied) — {fix}")),
        "{out}"
    );
    assert!(
        not_passing(&out)
            .iter()
            .all(|l| l.starts_with("✗ kubernetes: claimd's user may not ")),
        "{out}"
    );
    std::fs::write(
        s.root.join("kubeconfig"),
        catalyst::kubeconfig(
            &cluster.server(),
            cluster.token(),
            Some(crate::kube_namespaces::CLAIMD_USER),
        ),
    )
    .expect("kubeconfig");

    // The daemon stopped: a warning only (the hooks render inline), exit 0.
    let addr = d.addr.clone();
    assert!(d.terminate().success());
    let (code, out) = doctor(&s.config, &addr);
    assert_eq!(code, 0, "{out}");
    let warned = not_passing(&out);
    assert_eq!(warned.len(), 2, "{out}");
    assert!(
        warned[0].starts_with(&format!("! daemon: not running at {addr} (")),
        "{out}"
    );
    assert!(
        warned[0].ends_with(&format!("): the hooks render inline meanwhile — start it: systemctl start claimd (or claimd serve --config {})", s.config.display())),
        "{out}"
    );
    assert!(warned[1].starts_with("! webhook secret: cannot be checked: Gitea never shows a hook's secret, and the daemon (which counts verified deliveries) does not answer — start the daemon, then in Gitea"), "{out}");
    api.assert_clean();
}

#[test]
fn giteas_layout_needs_giteas_dispatcher_in_front_of_claimds_hook() {
    let dir = tempfile::tempdir().expect("tmp");
    let bare = dir.path().join("x.git");
    git(dir.path(), &["init", "-q", "--bare", "x.git"]);
    let hooks = bare.join("hooks");
    for hook in ["pre-receive", "post-receive"] {
        std::fs::create_dir_all(hooks.join(format!("{hook}.d"))).expect("mkdir");
        // Gitea's delegating script (its own hooks/<hook>).
        std::fs::write(
            hooks.join(hook),
            "#!/usr/bin/env bash\n# AUTO GENERATED BY GITEA, DO NOT MODIFY\n",
        )
        .expect("write");
        std::fs::set_permissions(hooks.join(hook), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    claimd(&["hooks", "install", bare.to_str().expect("utf-8")]);
    assert!(hooks.join("pre-receive.d/claimd").is_file());
    assert_eq!(claimd::doctor::hooks::problems(&bare), []);
    std::fs::remove_file(hooks.join("post-receive")).expect("rm");
    let found = claimd::doctor::hooks::problems(&bare);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].0,
        format!(
            "Gitea's dispatcher {} is missing or not executable, so {} never runs",
            hooks.join("post-receive").display(),
            hooks.join("post-receive.d/claimd").display()
        )
    );
    assert!(found[0].1.contains("Resynchronize git hooks"), "{found:?}");
    std::fs::remove_file(hooks.join("pre-receive.d/claimd")).expect("rm");
    let found = claimd::doctor::hooks::problems(&bare);
    assert!(
        found.iter().any(|(m, f)| *m
            == format!(
                "{} is missing",
                hooks.join("pre-receive.d/claimd").display()
            )
            && *f == format!("run: claimd hooks install --gitea {}", bare.display())),
        "{found:?}"
    );
}
