//! Differential test: claimd's values merge against real Helm (v4.3.0, `tests/helm`),
//! installing into a real kube-apiserver and reading Helm's values back.
//!
//! For every case, two things must hold:
//! 1. what Argo CD will do — Helm over the chart's defaults plus the ONE values file
//!    claimd commits — gives exactly claimd's final values (null deletions included);
//! 2. Helm's own handling of the chain (`-f values-production.yaml -f values-<env>.yaml
//!    -f overrides.yaml`) gives the same final values.

use claimd::charts::{chart_from_files, ChartFiles};
use claimd::values::{self, ChartRef, Profile, Request};
use claimd::yaml::{self, Limits};
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::helm;
use crate::support::kube;
use helm::helm_pythonpath;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Helm's computed values for `chart` with `-f` files: a real `helm install` into the
/// real API server (tests/support/kube.rs), then `GetValues(all=True)`; coalesce.py
/// also checks them against what the chart's templates saw (`.Values | toJson`).
fn helm_values(chart: &Path, files: &[PathBuf]) -> Json {
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{ROOT}/tests/helm/coalesce.py")).arg(chart);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd
        .env("PYTHONPATH", helm_pythonpath())
        .env("CLAIMD_KUBECONFIG", kube::Cluster::shared().kubeconfig())
        .output()
        .expect("run coalesce.py");
    assert!(
        out.status.success(),
        "helm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("coalesce.py prints JSON")
}

/// Keys sorted and every number as f64 (Helm's values are float64).
fn canonical(v: &Json) -> Json {
    match v {
        Json::Number(n) => serde_json::Number::from_f64(n.as_f64().expect("finite"))
            .map(Json::Number)
            .expect("finite"),
        Json::Array(a) => Json::Array(a.iter().map(canonical).collect()),
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

fn parse_map(text: &str) -> Map<String, Json> {
    let docs = yaml::parse_documents(text, &Limits::default()).expect("valid YAML");
    match docs.first().map(yaml::Node::to_json) {
        Some(Json::Object(m)) => m,
        None | Some(Json::Null) => Map::new(),
        other => panic!("not a map: {other:?}"),
    }
}

struct Case<'a> {
    name: &'a str,
    defaults: &'a str,
    production: Option<&'a str>,
    /// values-<env>.yaml: (env, text)
    env_file: Option<(&'a str, &'a str)>,
    profile: Profile,
    /// The claim's raw `values:`.
    overrides: &'a str,
}

fn case<'a>(name: &'a str, defaults: &'a str, overrides: &'a str) -> Case<'a> {
    Case {
        name,
        defaults,
        production: None,
        env_file: None,
        profile: Profile::Default,
        overrides,
    }
}

fn run_case(c: &Case<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let chart_dir = dir.path().join("chart");
    std::fs::create_dir_all(&chart_dir).expect("mkdir");
    let mut files = ChartFiles::new();
    files.insert(
        "Chart.yaml".into(),
        "apiVersion: v2\nname: t\nversion: 1.0.0\n".into(),
    );
    files.insert("values.yaml".into(), c.defaults.into());
    if let Some(p) = c.production {
        files.insert("values-production.yaml".into(), p.into());
    }
    if let Some((env, text)) = c.env_file {
        files.insert(format!("values-{env}.yaml"), text.into());
    }
    for (name, text) in &files {
        std::fs::write(chart_dir.join(name), text).expect("write chart file");
    }
    let reference = ChartRef {
        repository: "oci://example.invalid/charts".into(),
        name: "t".into(),
        version: "1.0.0".into(),
    };
    let chart = chart_from_files(&reference, &files, "test", claimd::charts::digest(&files))
        .expect("chart");
    let env = c.env_file.map_or("dev", |(e, _)| e);
    let merged = values::merge(&Request {
        chart: &chart,
        environment: env,
        profile: c.profile,
        claim_fields: &Json::Object(Map::new()),
        raw_values: &parse_map(c.overrides),
    })
    .expect("merge");
    let ours = canonical(&Json::Object(merged.final_values.clone()));

    // 1. The committed file, as Argo CD's Helm reads it.
    let file = dir.path().join("committed.yaml");
    std::fs::write(&file, merged.file_yaml()).expect("write");
    let via_file = canonical(&helm_values(&chart_dir, &[file]));
    assert_eq!(
        via_file,
        ours,
        "case `{}`: Helm over the committed file differs from claimd's values\ncommitted file:\n{}",
        c.name,
        merged.file_yaml()
    );

    // 2. Helm's own merge of the chain.
    let mut chain = Vec::new();
    if c.profile == Profile::Production {
        if let Some(p) = c.production {
            let f = dir.path().join("prod.yaml");
            std::fs::write(&f, p).expect("write");
            chain.push(f);
        }
    }
    if let Some((_, text)) = c.env_file {
        let f = dir.path().join("env.yaml");
        std::fs::write(&f, text).expect("write");
        chain.push(f);
    }
    let f = dir.path().join("overrides.yaml");
    std::fs::write(&f, c.overrides).expect("write");
    chain.push(f);
    let via_chain = canonical(&helm_values(&chart_dir, &chain));
    assert_eq!(
        via_chain, ours,
        "case `{}`: Helm's own -f chain differs from claimd",
        c.name
    );
}

#[test]
fn merge_matches_helm() {
    let prod = |mut c: Case<'static>, p: &'static str| {
        c.production = Some(p);
        c.profile = Profile::Production;
        c
    };
    let cases = vec![
        case(
            "nested null deletes",
            "a:\n  b: 1\n  c: 2\n",
            "a:\n  b: null\n",
        ),
        case(
            "top-level null deletes a map",
            "resources:\n  limits: {cpu: 1}\nx: 1\n",
            "resources: null\n",
        ),
        case(
            "lists replace",
            "l: [1, 2, 3]\nm: {l: [a]}\n",
            "l: [9]\nm: {l: []}\n",
        ),
        case("scalar over map", "a: {b: 1}\n", "a: 5\n"),
        case("map over scalar", "a: 5\n", "a: {b: 1}\n"),
        case("top-level null for unknown key", "a: 1\n", "z: null\n"),
        case(
            "nested null for unknown key",
            "m: {a: 1}\n",
            "m: {z: null}\n",
        ),
        case(
            "chart nulls untouched",
            "a: null\nm: {b: null, c: 1}\n",
            "{}\n",
        ),
        case(
            "user null over chart null",
            "m: {b: null}\n",
            "m: {b: null}\n",
        ),
        case(
            "user map over chart null",
            "a: null\n",
            "a: {b: 1, c: null}\n",
        ),
        case(
            "user value over nested chart null",
            "m: {b: null}\n",
            "m: {b: 2}\n",
        ),
        case("empty map merges", "a: {b: 1}\n", "a: {}\n"),
        case("empty string is a value", "a: x\n", "a: \"\"\n"),
        case(
            "ambiguous strings stay strings",
            "a: 1\n",
            "s: ['yes', 'no', 'on', 'off', 'y', '1.0', '012', '0x1F', 'null', '~', '1e3', '']\n",
        ),
        case(
            "YAML 1.1 booleans in chart values",
            "enabled: yes\nother: off\nname: n\n",
            "{}\n",
        ),
        case(
            "numbers",
            "i: 1\nf: 1.5\n",
            "big: 10000000000\nneg: -3\nfl: 2.0\noct: 0755\nhex: 0x1F\n",
        ),
        case(
            "keys with dots and slashes",
            "annotations: {}\n",
            "annotations:\n  cert-manager.io/cluster-issuer: letsencrypt\n  \"a.b\": c\n",
        ),
        case(
            "multi-line strings",
            "a: 1\n",
            "script: |\n  #!/bin/sh\n  echo hi\nnoeol: |-\n  one\n  two\n",
        ),
        case(
            "deep mixed",
            "a:\n  b:\n    c:\n      d: 1\n      e: [1]\n    f: x\n",
            "a:\n  b:\n    c:\n      d: null\n      g: {h: 1}\n    f: null\n",
        ),
        prod(
            case(
                "production overlay",
                "replicaCount: 1\nhpa: {enabled: false, max: 3}\n",
                "{}\n",
            ),
            "replicaCount: 3\nhpa: {enabled: true}\n",
        ),
        prod(
            case(
                "production null, claim re-adds",
                "pdb: {minAvailable: 1}\nresources: {limits: {cpu: 1}}\n",
                "pdb: {minAvailable: 2}\n",
            ),
            "pdb: {minAvailable: null, maxUnavailable: 1}\nresources: null\n",
        ),
        prod(
            case(
                "claim deletes production-only key",
                "a: 1\n",
                "extra: {b: null}\n",
            ),
            "extra: {b: 1, c: 2}\n",
        ),
        Case {
            env_file: Some(("qa", "replicaCount: 2\nlist: [q]\n")),
            ..case(
                "environment file",
                "replicaCount: 1\nlist: [a, b]\n",
                "list: null\n",
            )
        },
    ];
    assert!(cases.len() >= 20);
    for c in &cases {
        run_case(c);
    }
}

/// Every shipped chart, in both profiles, with the example claims' fields mapped in.
#[test]
fn shipped_charts_match_helm() {
    let claims_for = |chart: &str| -> Json {
        let text = match chart {
            "microservice" => "image: {repository: ghcr.io/x/notification-service, tag: v1.2.3}\nreplicas: 5\nresources: {requests: {cpu: 500m, memory: 512Mi}}\ningress: {enabled: true, host: notifications.example.com}\nenv: [{name: A, value: \"yes\"}]\n",
            "postgresql" => "storage: {size: 200Gi}\nbackup: {s3Bucket: s3://my-backups}\n",
            _ => "storage: {size: 50Gi}\n",
        };
        Json::Object(parse_map(text))
    };
    for name in [
        "microservice",
        "postgresql",
        "mongodb",
        "redis",
        "rabbitmq",
        "kafka",
    ] {
        let chart_dir = Path::new(ROOT).join("charts").join(name);
        let source = claimd::charts::Source::Dir(Path::new(ROOT).join("charts"));
        let meta =
            parse_map(&std::fs::read_to_string(chart_dir.join("Chart.yaml")).expect("Chart.yaml"));
        let reference = ChartRef {
            repository: "oci://example.invalid/charts".into(),
            name: name.into(),
            version: meta["version"].as_str().expect("version").into(),
        };
        let chart = source.load(&reference).expect("chart loads");
        for profile in [Profile::Default, Profile::Production] {
            let merged = values::merge(&Request {
                chart: &chart,
                environment: "dev",
                profile,
                claim_fields: &claims_for(name),
                raw_values: &Map::new(),
            })
            .expect("all claim fields are mapped");
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("values.yaml");
            std::fs::write(&file, merged.file_yaml()).expect("write");
            assert_eq!(
                canonical(&helm_values(&chart_dir, &[file])),
                canonical(&Json::Object(merged.final_values)),
                "chart {name}, {profile:?}"
            );
        }
    }
}
