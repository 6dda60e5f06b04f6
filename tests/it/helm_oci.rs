//! Interoperability with real Helm (v4.3.0) through a real OCI registry: charts Helm
//! pushes are pulled by claimd, and charts claimd pushes are consumed by Helm.

use crate::support::helm;
use crate::support::registry;

use claimd::charts::{Remote as Client, Source};
use claimd::oci::{Registry, Settings};
use claimd::values::ChartRef;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHARTS: [&str; 6] = [
    "kafka",
    "microservice",
    "mongodb",
    "postgresql",
    "rabbitmq",
    "redis",
];

fn client(cache: &Path, host: &str, password_file: Option<PathBuf>) -> Client {
    let mut s = Settings {
        cache: Some(cache.to_path_buf()),
        ..Settings::default()
    };
    let h = s.hosts.entry(host.to_string()).or_default();
    h.plain_http = true;
    if password_file.is_some() {
        h.username = Some("helm".into());
        h.password_file = password_file;
    }
    Client::new(std::sync::Arc::new(
        Registry::new(s).expect("registry client"),
    ))
}

#[test]
fn charts_pushed_by_helm_are_pulled_by_claimd_exactly() {
    let reg = registry::Registry::start(Some(("helm", "pw-helm")));
    let host = reg.host();
    let repository = reg.oci("helm");
    let tmp = tempfile::tempdir().unwrap();
    // claimd reads the password from a file named in its config.
    let pw = tmp.path().join("password");
    std::fs::write(&pw, "pw-helm\n").unwrap();
    let claimd = client(&tmp.path().join("cache"), &host, Some(pw));
    for chart in CHARTS {
        let pushed = helm::run_json(
            "oci.py",
            &[
                "push",
                &format!("{ROOT}/charts/{chart}"),
                &repository,
                "--username",
                "helm",
                "--password",
                "pw-helm",
            ],
        )
        .unwrap();
        let reference = ChartRef {
            repository: repository.clone(),
            name: chart.into(),
            version: "1.0.0".into(),
        };
        let pulled = claimd
            .registry()
            .block_on(claimd.pull(&reference))
            .unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert_eq!(
            pulled.digest, pushed["digest"],
            "{chart}: claimd names the digest Helm pushed"
        );
        // What claimd read from Helm's archive is what the chart folder holds.
        let local = Source::Dir(format!("{ROOT}/charts").into())
            .load(&reference)
            .unwrap();
        assert_eq!(pulled.defaults, local.defaults, "{chart}: values.yaml");
        assert_eq!(pulled.production, local.production, "{chart}: production");
        assert_eq!(pulled.mapping, local.mapping, "{chart}: mapping");
    }
}

#[test]
fn charts_pushed_by_claimd_are_consumed_by_helm() {
    let reg = registry::Registry::start(None);
    let host = reg.host();
    let repository = reg.oci("claimd");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args([
            "chart",
            "push",
            "--all",
            &format!("{ROOT}/charts"),
            &repository,
        ])
        .env("CLAIMD_PLAIN_HTTP", &host)
        .env("CLAIMD_CACHE", tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for chart in CHARTS {
        // Helm loads the chart straight from the registry (Show chart + values).
        let seen = helm::run_json(
            "oci.py",
            &["fetch-check", &format!("{repository}/{chart}"), "1.0.0"],
        )
        .unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert_eq!(seen["name"], chart);
        assert_eq!(seen["version"], "1.0.0");
        let values = std::fs::read_to_string(format!("{ROOT}/charts/{chart}/values.yaml")).unwrap();
        // (Helm's `show values` ends the text with one more newline.)
        assert_eq!(
            seen["values_yaml"].as_str().map(str::trim_end),
            Some(values.trim_end()),
            "{chart}: values.yaml"
        );
        // And lints the archive claimd packages. The microservice chart needs the image a
        // claim gives (its schema refuses an empty image.repository): lint it with one.
        let dir = tmp.path().join(chart);
        crate::support::setup::copy_dir(Path::new(&format!("{ROOT}/charts/{chart}")), &dir);
        if chart == "microservice" {
            let values = std::fs::read_to_string(dir.join("values.yaml")).unwrap();
            let set = values.replacen(
                "  repository: \"\"",
                "  repository: \"registry.example.com/app\"",
                1,
            );
            assert_ne!(set, values, "image.repository default not found");
            std::fs::write(dir.join("values.yaml"), set).unwrap();
        }
        let tgz = Command::new(env!("CARGO_BIN_EXE_claimd"))
            .args(["chart", "package"])
            .arg(&dir)
            .arg("-d")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(tgz.status.success());
        let path = String::from_utf8_lossy(&tgz.stdout).trim().to_string();
        let lint =
            helm::run_json("oci.py", &["lint", &path]).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert_eq!(lint["errors"], 0, "{chart}: {lint}");
    }
}
