//! The bundled example claims, rendered with the embedded charts:
//! - every generated file is pinned by an insta snapshot;
//! - every ApplicationSet and root app validates against Argo CD's real CRDs
//!   (`../shared/contracts/crds`), and so does every Application that the
//!   ApplicationSets' git files generator would make from the generated config.yaml files.

use crate::support::crd;

use claimd::charts::Source;
use claimd::claims;
use claimd::render::{self, Rendered, Settings};
use claimd::yaml::{self, Limits};
use serde_json::{json, Map, Value as Json};

fn render_examples() -> Rendered {
    let files = claimd::examples::claim_files();
    let loaded = claims::load(&files, &Limits::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let settings = Settings::default();
    let charts = Source::Embedded.resolve(&render::chart_refs(&loaded.claims, &settings));
    let rendered = render::render(&loaded.claims, &charts, &settings).expect("render");
    assert!(rendered.failures.is_empty(), "{:?}", rendered.failures);
    rendered
}

fn parse(text: &str) -> Json {
    let docs = yaml::parse_documents(text, &Limits::default()).expect("generated YAML parses");
    assert_eq!(docs.len(), 1);
    docs[0].to_json()
}

#[test]
fn snapshots_of_every_generated_file() {
    let rendered = render_examples();
    assert_eq!(rendered.files.len(), 32);
    for (path, content) in &rendered.files {
        let name = path.replace('/', "__");
        insta::assert_snapshot!(name, content);
    }
}

#[test]
fn argo_cd_objects_validate_against_the_crds() {
    let Some(crds) = crd::crds_dir_or_skip("argo_cd_objects_validate_against_the_crds") else {
        return;
    };
    let rendered = render_examples();
    let mut checked = 0;
    for (path, content) in &rendered.files {
        if !(path.starts_with("appsets/") || path.starts_with("root-apps/")) {
            continue;
        }
        let obj = parse(content);
        if let Err(errors) = crd::validate(&crds, &obj) {
            panic!("{path} is refused by Argo CD's CRD:\n{}", errors.join("\n"));
        }
        checked += 1;
    }
    assert_eq!(checked, 14);
}

/// Substitutes `{{.a.b}}` from `ctx` in every string of `template` (what Argo CD's
/// goTemplate does for these simple field references).
fn instantiate(template: &Json, ctx: &Json) -> Json {
    match template {
        Json::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{.") {
                out.push_str(&rest[..start]);
                let end = rest[start..].find("}}").expect("closed") + start;
                let path = &rest[start + 3..end];
                let mut v = ctx;
                for key in path.split('.') {
                    v = v
                        .get(key)
                        .unwrap_or_else(|| panic!("missingkey=error: {path}"));
                }
                match v {
                    Json::String(x) => out.push_str(x),
                    other => out.push_str(&other.to_string()),
                }
                rest = &rest[end + 2..];
            }
            out.push_str(rest);
            Json::String(out)
        }
        Json::Array(a) => Json::Array(a.iter().map(|x| instantiate(x, ctx)).collect()),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), instantiate(v, ctx)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn glob_matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let f: Vec<&str> = path.split('/').collect();
    p.len() == f.len() && p.iter().zip(&f).all(|(a, b)| *a == "*" || a == b)
}

#[test]
fn generated_applications_validate_against_the_crd() {
    let Some(crds) = crd::crds_dir_or_skip("generated_applications_validate_against_the_crd")
    else {
        return;
    };
    let rendered = render_examples();
    let mut apps = 0;
    for (path, content) in &rendered.files {
        if !path.starts_with("appsets/") {
            continue;
        }
        let appset = parse(content);
        let glob = appset["spec"]["generators"][0]["git"]["files"][0]["path"]
            .as_str()
            .expect("files path");
        let template = &appset["spec"]["template"];
        for (config_path, config) in &rendered.files {
            if !glob_matches(glob, config_path) {
                continue;
            }
            let mut ctx = parse(config);
            let dir = config_path.rsplit_once('/').expect("dir").0;
            ctx.as_object_mut().expect("map").insert(
                "path".into(),
                json!({"path": dir, "basename": dir.rsplit('/').next()}),
            );
            let t = instantiate(template, &ctx);
            let mut metadata: Map<String, Json> =
                t["metadata"].as_object().expect("metadata").clone();
            metadata.insert("namespace".into(), json!("argocd"));
            let app = json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": metadata,
                "spec": t["spec"],
            });
            if let Err(errors) = crd::validate(&crds, &app) {
                panic!(
                    "Application from {config_path} via {path} is refused:\n{}\n{app:#}",
                    errors.join("\n")
                );
            }
            // The values file the Application points at exists in the repository.
            let values = app["spec"]["sources"][0]["helm"]["valueFiles"][0]
                .as_str()
                .expect("valueFiles")
                .trim_start_matches("$values/");
            assert!(rendered.files.contains_key(values), "{values} missing");
            apps += 1;
        }
    }
    // 3 applications + 5 services + 1 preview.
    assert_eq!(apps, 9);
}
