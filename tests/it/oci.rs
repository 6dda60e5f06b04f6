//! Charts from a real OCI registry (CNCF Distribution, `tests/support/registry.rs`):
//! publishing, pulling by digest, the cache, credentials, and what happens when the
//! registry is down or sends something broken.

use crate::support::registry;

use registry::Registry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs claimd with its chart cache in `cache` and plain HTTP to `host`.
fn claimd(cache: &Path, host: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args(args)
        .env("CLAIMD_CACHE", cache)
        .env("CLAIMD_PLAIN_HTTP", host)
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .env_remove("CLAIMD_REFRESH")
        .env_remove("CLAIMD_OFFLINE")
        .output()
        .expect("run claimd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "claimd failed:\n{t}");
    t
}

/// Every file under `dir` except `claims/`, by relative path.
fn generated(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("rel").display().to_string();
            if rel == "claims" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `claimd render --charts oci` of the repository at `dir`.
fn render_oci(cache: &Path, host: &str, dir: &str) -> Output {
    claimd(cache, host, &["render", "--repo", dir, "--charts", "oci"])
}

/// A repository with the example claims, charts pulled from `repository`.
fn example_repo(dir: &Path, repository: &str) {
    let claims = dir.join("claims");
    std::fs::create_dir_all(&claims).unwrap();
    for e in std::fs::read_dir(Path::new(ROOT).join("examples/claims")).unwrap() {
        let p = e.unwrap().path();
        let t = std::fs::read_to_string(&p).unwrap();
        let t = t.replace("oci://ghcr.io/nimbusprotch", repository);
        std::fs::write(claims.join(p.file_name().unwrap()), t).unwrap();
    }
}

/// A small repository: one BootstrapClaim and two ApplicationClaim files whose
/// microservice chart versions are given.
fn small_repo(dir: &Path, repository: &str, a_version: &str, b_version: &str, replicas: u32) {
    let claims = dir.join("claims");
    std::fs::create_dir_all(&claims).unwrap();
    std::fs::write(
        claims.join("bootstrap.yaml"),
        format!("apiVersion: platform.infraforge.io/v1\nkind: BootstrapClaim\nmetadata:\n  name: t\nspec:\n  giteaURL: http://gitea:3000\n  organization: platform\n  chartsRepository: {{type: oci, url: \"{repository}\", version: \"1.0.0\"}}\n  repositories: {{voltran: voltran}}\n  gitOps: {{branch: main, clusterType: t, environments: [dev]}}\n"),
    )
    .unwrap();
    for (file, app, version) in [
        ("a.yaml", "alpha", a_version),
        ("b.yaml", "beta", b_version),
    ] {
        std::fs::write(
            claims.join(file),
            format!("apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata:\n  name: {app}\nspec:\n  environment: dev\n  clusterType: t\n  applications:\n    - name: {app}\n      chart: {{name: microservice, version: \"{version}\"}}\n      image: {{repository: registry.example.com/{app}, tag: v1}}\n      replicas: {replicas}\n"),
        )
        .unwrap();
    }
}

/// A copy of charts/microservice at another version (and optionally other defaults).
fn chart_version(dir: &Path, version: &str, extra_values: &str) -> PathBuf {
    let src = Path::new(ROOT).join("charts/microservice");
    let dst = dir.join(format!("microservice-{version}"));
    crate::support::setup::copy_dir(&src, &dst);
    let chart = std::fs::read_to_string(dst.join("Chart.yaml")).unwrap();
    let chart = chart.replace("version: \"1.0.0\"", &format!("version: \"{version}\""));
    assert!(
        chart.contains(version),
        "version not replaced in Chart.yaml"
    );
    std::fs::write(dst.join("Chart.yaml"), chart).unwrap();
    let values = std::fs::read_to_string(dst.join("values.yaml")).unwrap();
    std::fs::write(dst.join("values.yaml"), format!("{values}{extra_values}")).unwrap();
    dst
}

fn values_of(dir: &Path, app: &str) -> String {
    std::fs::read_to_string(dir.join(format!("environments/t/dev/applications/{app}/values.yaml")))
        .unwrap_or_else(|e| panic!("values of {app}: {e}"))
}

#[test]
fn publish_skips_the_same_content_and_refuses_to_move_a_published_version() {
    let reg = Registry::start(None);
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let repo = reg.oci("charts");
    let c = cache.to_str().unwrap();
    let redis = format!("{ROOT}/charts/redis");
    let first = ok(claimd(&cache, &host, &["chart", "push", &redis, &repo]));
    assert!(first.starts_with("published "), "{first}");
    let again = ok(claimd(&cache, &host, &["chart", "push", &redis, &repo]));
    assert!(again.starts_with("unchanged "), "{again}");

    // Same version, other content: refused, and the published chart is still the old one.
    let changed = tmp.path().join("redis");
    crate::support::setup::copy_dir(Path::new(&redis), &changed);
    let values = std::fs::read_to_string(changed.join("values.yaml")).unwrap();
    std::fs::write(changed.join("values.yaml"), format!("{values}extra: 1\n")).unwrap();
    let refused = claimd(
        &cache,
        &host,
        &["chart", "push", changed.to_str().unwrap(), &repo],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("already published with different content"),
        "{}",
        text(&refused)
    );
    let digest = |out: String| out.split_whitespace().last().unwrap().to_string();
    let pulled = digest(ok(claimd(
        &cache,
        &host,
        &[
            "chart",
            "pull",
            &format!("{repo}/redis"),
            "--version",
            "1.0.0",
            "--chart-cache",
            c,
        ],
    )));
    assert!(
        first.contains(&pulled),
        "published {first}, pulled {pulled}"
    );

    let forced = ok(claimd(
        &cache,
        &host,
        &["chart", "push", changed.to_str().unwrap(), &repo, "--force"],
    ));
    assert!(forced.starts_with("replaced "), "{forced}");
    // A tag can move: a new cache sees the new digest.
    let cache2 = tmp.path().join("cache2");
    let moved = digest(ok(claimd(
        &cache2,
        &host,
        &[
            "chart",
            "pull",
            &format!("{repo}/redis"),
            "--version",
            "1.0.0",
        ],
    )));
    assert_ne!(moved, pulled);
    assert!(forced.contains(&moved), "{forced} vs {moved}");

    // --all publishes every chart folder, each at its own version; redis 1.0.0 now has
    // other content in the registry, so that one is refused (and the exit code says so).
    let all = claimd(
        &cache,
        &host,
        &["chart", "push", "--all", &format!("{ROOT}/charts"), &repo],
    );
    let t = text(&all);
    assert_eq!(all.status.code(), Some(1), "{t}");
    for chart in ["kafka", "microservice", "mongodb", "postgresql", "rabbitmq"] {
        assert!(
            t.contains(&format!("published {repo}/{chart}:1.0.0 sha256:")),
            "{chart}: {t}"
        );
    }
    assert!(
        t.contains("charts/redis: ") && t.contains("different content"),
        "{t}"
    );
}

#[test]
fn render_from_the_registry_equals_the_embedded_render_and_is_cached() {
    let reg = Registry::start(None);
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let repository = reg.oci("charts");
    ok(claimd(
        &cache,
        &host,
        &[
            "chart",
            "push",
            "--all",
            &format!("{ROOT}/charts"),
            &repository,
        ],
    ));
    let from_oci = tmp.path().join("oci");
    let embedded = tmp.path().join("embedded");
    example_repo(&from_oci, &repository);
    example_repo(&embedded, &repository);
    let before = reg.requests().len();
    ok(render_oci(&cache, &host, from_oci.to_str().unwrap()));
    let pulls = reg.requests()[before..].to_vec();
    assert!(
        pulls
            .iter()
            .any(|r| r.contains("/blobs/sha256:") && r.starts_with("GET")),
        "no blob pulled: {pulls:?}"
    );
    ok(claimd(
        &cache,
        &host,
        &["render", "--repo", embedded.to_str().unwrap()],
    ));
    let (a, b) = (generated(&from_oci), generated(&embedded));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same files"
    );
    // The same chart content gives the same values; only the chart digests differ: the
    // registry's manifest digest instead of the embedded content digest.
    let digest_line = |s: &str| -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("sha256:") {
            out.push_str(&rest[..i + 7]);
            out.push_str("<digest>");
            rest = rest[i + 7..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
        }
        out + rest
    };
    for (path, text) in &a {
        assert_eq!(digest_line(text), digest_line(&b[path]), "{path}");
    }
    let redis = a
        .iter()
        .find(|(_, t)| t.contains(&format!("# chart {repository}/redis:1.0.0@sha256:")))
        .map(|(p, _)| p.clone())
        .expect("a file rendered with the registry's redis chart");
    let pulled = ok(claimd(
        &cache,
        &host,
        &[
            "chart",
            "pull",
            &format!("{repository}/redis"),
            "--version",
            "1.0.0",
        ],
    ));
    let digest = pulled.split_whitespace().last().unwrap();
    assert!(a[&redis].contains(digest), "{redis} does not name {digest}");

    // A second render, in a new process, asks the registry nothing: the tags were
    // checked within the refresh interval and the blobs are in the cache.
    let before = reg.requests().len();
    ok(render_oci(&cache, &host, from_oci.to_str().unwrap()));
    assert_eq!(reg.requests()[before..].to_vec(), Vec::<String>::new());
    // Offline works from the cache alone; a chart never pulled is a clear error.
    let off = ok(claimd(
        &cache,
        &host,
        &[
            "render",
            "--repo",
            from_oci.to_str().unwrap(),
            "--charts",
            "oci",
            "--offline",
        ],
    ));
    assert!(off.contains("0 added, 0 modified, 0 removed"), "{off}");
    let fresh_cache = tmp.path().join("empty-cache");
    let offline = claimd(
        &fresh_cache,
        &host,
        &[
            "render",
            "--repo",
            from_oci.to_str().unwrap(),
            "--charts",
            "oci",
            "--offline",
            "--out",
            tmp.path().join("x").to_str().unwrap(),
        ],
    );
    assert!(!offline.status.success());
    assert!(text(&offline).contains("offline"), "{}", text(&offline));
}

/// A small repository rendered from the registry, with microservice 1.0.0 published.
struct Rendered {
    tmp: tempfile::TempDir,
    cache: PathBuf,
    repository: String,
    work: PathBuf,
    beta_before: String,
}

fn rendered_small_repo(reg: &Registry) -> Rendered {
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let repository = reg.oci("charts");
    let v100 = chart_version(tmp.path(), "1.0.0", "");
    ok(claimd(
        &cache,
        &host,
        &["chart", "push", v100.to_str().unwrap(), &repository],
    ));
    let work = tmp.path().join("repo");
    small_repo(&work, &repository, "1.0.0", "1.0.0", 1);
    ok(render_oci(&cache, &host, work.to_str().unwrap()));
    let beta_before = values_of(&work, "beta");
    Rendered {
        tmp,
        cache,
        repository,
        work,
        beta_before,
    }
}

#[test]
fn registry_down_fails_only_the_claims_it_cannot_serve_and_keeps_their_files() {
    let mut reg = Registry::start(None);
    let host = reg.host();
    let Rendered {
        tmp,
        cache,
        repository,
        work,
        beta_before,
    } = rendered_small_repo(&reg);
    let v101 = chart_version(tmp.path(), "1.0.1", "fromChart: \"1.0.1\"\n");
    let w = work.to_str().unwrap();

    // The registry goes away. alpha changes (its chart is cached: it renders, with the
    // digest last seen); beta moves to 1.0.1, never pulled: it fails, its files stay.
    reg.stop();
    small_repo(&work, &repository, "1.0.0", "1.0.1", 2);
    let out = Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args(["render", "--repo", w, "--charts", "oci"])
        .env("CLAIMD_CACHE", &cache)
        .env("CLAIMD_PLAIN_HTTP", &host)
        .env("CLAIMD_REFRESH", "0")
        .env("DOCKER_CONFIG", tmp.path())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("claims/b.yaml:"),
        "the error names beta's claim file: {t}"
    );
    assert!(t.contains("registry unreachable"), "{t}");
    assert_eq!(
        values_of(&work, "beta"),
        beta_before,
        "beta's files are untouched"
    );
    assert!(
        values_of(&work, "alpha").contains("replicaCount: 2"),
        "alpha rendered"
    );

    // Back up, 1.0.1 published: beta renders.
    reg.start_again();
    ok(claimd(
        &cache,
        &host,
        &["chart", "push", v101.to_str().unwrap(), &repository],
    ));
    ok(render_oci(&cache, &host, w));
    let beta = values_of(&work, "beta");
    assert!(beta.contains("/microservice:1.0.1@sha256:"), "{beta}");
    assert!(beta.contains("replicaCount: 2"), "{beta}");
}

#[test]
fn a_missing_tag_and_a_corrupt_chart_fail_that_claim_with_a_clear_error() {
    let reg = Registry::start(None);
    let host = reg.host();
    let Rendered {
        tmp,
        cache,
        repository,
        work,
        beta_before,
    } = rendered_small_repo(&reg);
    let w = work.to_str().unwrap();

    // A version that was never published.
    small_repo(&work, &repository, "1.0.0", "9.9.9", 1);
    let out = render_oci(&cache, &host, w);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("tag 9.9.9 not found"), "{t}");
    assert!(t.contains("claims/b.yaml:"), "{t}");
    assert_eq!(values_of(&work, "beta"), beta_before);

    // A "chart" whose layer is not a chart archive, pushed with the chart media types.
    push_raw_chart(
        &host,
        "charts/microservice",
        "2.0.0",
        b"this is not a tgz".to_vec(),
    );
    small_repo(&work, &repository, "1.0.0", "2.0.0", 1);
    let out = render_oci(&cache, &host, w);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("not a readable chart archive"), "{t}");
    assert_eq!(values_of(&work, "beta"), beta_before);

    // A corrupt blob in the cache is noticed and pulled again.
    let blobs = cache.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap() {
        std::fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    small_repo(&work, &repository, "1.0.0", "1.0.0", 3);
    let fresh = tmp.path().join("repo2");
    small_repo(&fresh, &repository, "1.0.0", "1.0.0", 3);
    ok(render_oci(&cache, &host, fresh.to_str().unwrap()));
    assert!(values_of(&fresh, "alpha").contains("replicaCount: 3"));
}

/// Pushes an artifact with Helm's media types but `layer` as its chart content.
fn push_raw_chart(host: &str, repository: &str, tag: &str, layer: Vec<u8>) {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let reference = oci_client::Reference::with_tag(host.into(), repository.into(), tag.into());
    let layers = [ImageLayer::new(
        layer,
        claimd::oci::CHART_LAYER.into(),
        None,
    )];
    let config = Config::new(
        br#"{"name":"microservice","version":"2.0.0","apiVersion":"v2"}"#.to_vec(),
        claimd::oci::HELM_CONFIG.into(),
        None,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(client.push(
        &reference,
        &layers,
        config,
        &oci_client::secrets::RegistryAuth::Anonymous,
        None,
    ))
    .expect("raw push");
}

#[test]
fn credentials_come_from_the_docker_config_file() {
    let reg = Registry::start(Some(("bot", "s3cret-pw")));
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let repository = reg.oci("charts");
    let redis = format!("{ROOT}/charts/redis");

    // No credentials: refused, with what to do.
    let denied = claimd(&cache, &host, &["chart", "push", &redis, &repository]);
    assert!(!denied.status.success());
    assert!(
        text(&denied).contains("refused the credentials"),
        "{}",
        text(&denied)
    );

    // From $DOCKER_CONFIG/config.json (what `docker login` / `helm registry login` write).
    let docker = tmp.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = registry::basic_auth("bot", "s3cret-pw");
    let auth = auth.trim_start_matches("Basic ");
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    let with = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_claimd"))
            .args(args)
            .env("CLAIMD_CACHE", &cache)
            .env("CLAIMD_PLAIN_HTTP", &host)
            .env("DOCKER_CONFIG", &docker)
            .output()
            .unwrap()
    };
    let pushed = with(&["chart", "push", &redis, &repository]);
    assert!(pushed.status.success(), "{}", text(&pushed));
    let pulled = with(&[
        "chart",
        "pull",
        &format!("{repository}/redis"),
        "--version",
        "1.0.0",
    ]);
    assert!(pulled.status.success(), "{}", text(&pulled));
    let exists = with(&["image", "exists", &format!("{host}/charts/redis:1.0.0")]);
    assert!(exists.status.success(), "{}", text(&exists));
    let missing = with(&["image", "exists", &format!("{host}/charts/redis:7.7.7")]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    // The password never shows up in what claimd prints.
    for o in [&denied, &pushed, &pulled, &exists, &missing] {
        assert!(!text(o).contains("s3cret-pw"));
    }
}

/// A registry over HTTPS with a certificate from a CA of our own (openssl).
struct TlsRegistry {
    child: std::process::Child,
    host: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_registry() -> TlsRegistry {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=claimd test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        d.join("config.yml"),
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls: {{certificate: {}, key: {}}}\n",
            d.join("data").display(),
            d.join("srv.pem").display(),
            d.join("srv.key").display()
        ),
    )
    .unwrap();
    let child = Command::new(registry::registry_binary())
        .arg("serve")
        .arg(d.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let host = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&host).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "TLS registry did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    TlsRegistry {
        child,
        host,
        ca: d.join("ca.pem"),
        _dir: dir,
    }
}

#[test]
fn https_with_a_custom_ca_from_the_registry_config() {
    let reg = tls_registry();
    let tmp = tempfile::tempdir().unwrap();
    let repository = format!("oci://{}/charts", reg.host);
    let redis = format!("{ROOT}/charts/redis");
    let run = |args: &[&str], config: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_claimd"));
        c.args(args)
            .env("CLAIMD_CACHE", tmp.path().join("cache"))
            .env("DOCKER_CONFIG", tmp.path())
            .env_remove("CLAIMD_PLAIN_HTTP");
        if let Some(config) = config {
            c.env("CLAIMD_REGISTRY_CONFIG", config);
        }
        c.output().unwrap()
    };
    // HTTPS by default; a certificate from an unknown CA is refused.
    let untrusted = run(&["chart", "push", &redis, &repository], None);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    assert!(
        text(&untrusted).contains("certificate of") && text(&untrusted).contains("caFile"),
        "{}",
        text(&untrusted)
    );
    // The CA named per host in the registry settings makes it trusted.
    let config = tmp.path().join("registries.yaml");
    std::fs::write(
        &config,
        format!(
            "hosts:\n  \"{}\": {{caFile: {}}}\n",
            reg.host,
            reg.ca.display()
        ),
    )
    .unwrap();
    let pushed = run(&["chart", "push", &redis, &repository], Some(&config));
    assert!(pushed.status.success(), "{}", text(&pushed));
    let pulled = run(
        &[
            "chart",
            "pull",
            &format!("{repository}/redis"),
            "--version",
            "1.0.0",
        ],
        Some(&config),
    );
    assert!(pulled.status.success(), "{}", text(&pulled));
}
