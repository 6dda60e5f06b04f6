//! Self-tests of the CRD validator in `tests/support/crd.rs`: it must accept
//! what Argo CD accepts and, above all, be able to fail.

use crate::support::crd;

use serde_json::{json, Value};
use std::path::PathBuf;

fn crds_or_skip(test: &str) -> Option<PathBuf> {
    crd::crds_dir_or_skip(test)
}

/// A minimal `ApplicationSet` as claimd would generate it: git files generator,
/// goTemplate, multi-source template with a `ref: values` source, automated sync.
fn appset() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {
            "name": "team-a-claims",
            "namespace": "argocd",
            "labels": { "app.kubernetes.io/managed-by": "claimd" }
        },
        "spec": {
            "goTemplate": true,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{
                "git": {
                    "repoURL": "https://git.example.com/platform/claims.git",
                    "revision": "HEAD",
                    "files": [{ "path": "claims/team-a/*/claim.yaml" }]
                }
            }],
            "template": {
                "metadata": {
                    "name": "{{.name}}",
                    "labels": { "claimd.io/team": "team-a" }
                },
                "spec": {
                    "project": "team-a",
                    "sources": [
                        {
                            "repoURL": "https://charts.example.com",
                            "chart": "web",
                            "targetRevision": "1.2.3",
                            "helm": {
                                "releaseName": "{{.name}}",
                                "valueFiles": ["$values/claims/team-a/{{.name}}/values.yaml"]
                            }
                        },
                        {
                            "repoURL": "https://git.example.com/platform/claims.git",
                            "targetRevision": "HEAD",
                            "ref": "values"
                        }
                    ],
                    "destination": {
                        "server": "https://kubernetes.default.svc",
                        "namespace": "{{.namespace}}"
                    },
                    "syncPolicy": {
                        "automated": { "prune": true, "selfHeal": true },
                        "syncOptions": ["CreateNamespace=true"]
                    }
                }
            }
        }
    })
}

fn application() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "orders-api",
            "namespace": "argocd",
            "finalizers": ["resources-finalizer.argocd.argoproj.io"]
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://git.example.com/platform/deploy.git",
                "path": "apps/orders-api",
                "targetRevision": "main",
                "helm": {
                    "valuesObject": { "replicaCount": 2, "image": { "tag": "1.4.0" } }
                }
            },
            "destination": { "name": "in-cluster", "namespace": "orders" },
            "syncPolicy": {
                "automated": { "prune": true, "selfHeal": false },
                "retry": { "limit": 3, "backoff": { "duration": "5s", "factor": 2, "maxDuration": "3m" } }
            }
        }
    })
}

/// Sets (or adds) the member at `pointer`; its parent must exist.
fn set(obj: &mut Value, pointer: &str, value: Value) {
    if let Some(slot) = obj.pointer_mut(pointer) {
        *slot = value;
        return;
    }
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let key = key.replace("~1", "/").replace("~0", "~");
    obj.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("fixture has an object at {parent}"))
        .insert(key, value);
}

fn remove(obj: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    obj.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(key))
        .unwrap_or_else(|| panic!("fixture has {pointer}"));
}

/// Asserts validation fails and some error starts with `pointer`; returns the errors.
fn expect_error_at(dir: &std::path::Path, obj: &Value, pointer: &str) -> Vec<String> {
    let errs = match crd::validate(dir, obj) {
        Ok(()) => panic!("expected an error at {pointer}, but the object validated"),
        Err(errs) => errs,
    };
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("{pointer}: "))),
        "expected an error at {pointer}, got {errs:#?}"
    );
    assert!(
        errs.iter().all(|e| e.starts_with('/')),
        "errors are '<json pointer>: msg': {errs:#?}"
    );
    errs
}

#[test]
fn minimal_applicationset_passes() {
    let Some(dir) = crds_or_skip("minimal_applicationset_passes") else {
        return;
    };
    assert_eq!(crd::validate(&dir, &appset()), Ok(()));
}

#[test]
fn self_heal_as_string_fails() {
    let Some(dir) = crds_or_skip("self_heal_as_string_fails") else {
        return;
    };
    let mut obj = appset();
    set(
        &mut obj,
        "/spec/template/spec/syncPolicy/automated/selfHeal",
        json!("yes"),
    );
    let errs = expect_error_at(
        &dir,
        &obj,
        "/spec/template/spec/syncPolicy/automated/selfHeal",
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
}

#[test]
fn unknown_field_fails_strictly() {
    let Some(dir) = crds_or_skip("unknown_field_fails_strictly") else {
        return;
    };
    let mut obj = appset();
    // The classic typo: `automatic` instead of `automated`.
    remove(&mut obj, "/spec/template/spec/syncPolicy/automated");
    set(
        &mut obj,
        "/spec/template/spec/syncPolicy",
        json!({ "automatic": { "prune": true, "selfHeal": true } }),
    );
    let errs = expect_error_at(&dir, &obj, "/spec/template/spec/syncPolicy/automatic");
    assert!(
        errs[0].contains("unknown field") && errs[0].contains("automated"),
        "{errs:#?}"
    );
}

#[test]
fn unknown_field_at_top_level_of_spec_fails() {
    let Some(dir) = crds_or_skip("unknown_field_at_top_level_of_spec_fails") else {
        return;
    };
    let mut obj = appset();
    set(&mut obj, "/spec/goTemplates", json!(true));
    expect_error_at(&dir, &obj, "/spec/goTemplates");
}

#[test]
fn missing_required_field_fails() {
    let Some(dir) = crds_or_skip("missing_required_field_fails") else {
        return;
    };
    // sources[].repoURL is required.
    let mut obj = appset();
    remove(&mut obj, "/spec/template/spec/sources/1/repoURL");
    let errs = expect_error_at(&dir, &obj, "/spec/template/spec/sources/1");
    assert!(errs[0].contains("repoURL"), "{errs:#?}");

    // The git generator needs a revision.
    let mut obj = appset();
    remove(&mut obj, "/spec/generators/0/git/revision");
    expect_error_at(&dir, &obj, "/spec/generators/0/git");

    // spec.template.spec.destination is required.
    let mut obj = appset();
    remove(&mut obj, "/spec/template/spec/destination");
    expect_error_at(&dir, &obj, "/spec/template/spec");
}

#[test]
fn valid_application_passes() {
    let Some(dir) = crds_or_skip("valid_application_passes") else {
        return;
    };
    assert_eq!(crd::validate(&dir, &application()), Ok(()));
}

#[test]
fn valid_appproject_passes() {
    let Some(dir) = crds_or_skip("valid_appproject_passes") else {
        return;
    };
    let obj = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": { "name": "team-a", "namespace": "argocd" },
        "spec": {
            "description": "Team A",
            "sourceRepos": ["https://git.example.com/platform/*"],
            "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": "team-a-*" }],
            "clusterResourceWhitelist": [{ "group": "", "kind": "Namespace" }]
        }
    });
    assert_eq!(crd::validate(&dir, &obj), Ok(()));
}

#[test]
fn preserve_unknown_fields_accepts_anything_below() {
    let Some(dir) = crds_or_skip("preserve_unknown_fields_accepts_anything_below") else {
        return;
    };
    let mut obj = application();
    set(
        &mut obj,
        "/spec/source/helm/valuesObject",
        json!({ "anything": { "deep": [1, "two", { "three": null }] } }),
    );
    assert_eq!(crd::validate(&dir, &obj), Ok(()));
}

#[test]
fn int_or_string_accepts_both_and_nothing_else() {
    let Some(dir) = crds_or_skip("int_or_string_accepts_both_and_nothing_else") else {
        return;
    };
    let mut obj = application();
    for count in [json!(3), json!("3")] {
        set(
            &mut obj,
            "/spec/source/kustomize",
            json!({ "replicas": [{ "name": "orders-api", "count": count }] }),
        );
        assert_eq!(crd::validate(&dir, &obj), Ok(()), "count = {count}");
    }
    set(
        &mut obj,
        "/spec/source/kustomize/replicas/0/count",
        json!(true),
    );
    expect_error_at(&dir, &obj, "/spec/source/kustomize/replicas/0/count");
}

#[test]
fn map_values_are_typed() {
    let Some(dir) = crds_or_skip("map_values_are_typed") else {
        return;
    };
    let mut obj = appset();
    // template labels are additionalProperties: {type: string}
    set(
        &mut obj,
        "/spec/template/metadata/labels/claimd.io~1team",
        json!(7),
    );
    expect_error_at(&dir, &obj, "/spec/template/metadata/labels/claimd.io~1team");
}

#[test]
fn null_on_non_nullable_field_is_pruned_like_the_api_server() {
    let Some(dir) = crds_or_skip("null_on_non_nullable_field_is_pruned_like_the_api_server") else {
        return;
    };
    let mut obj = application();
    set(&mut obj, "/spec/syncPolicy", Value::Null);
    assert_eq!(crd::validate(&dir, &obj), Ok(()));
    // ...but pruning a required field leaves it missing.
    set(&mut obj, "/spec/project", Value::Null);
    expect_error_at(&dir, &obj, "/spec");
}

#[test]
fn metadata_is_checked() {
    let Some(dir) = crds_or_skip("metadata_is_checked") else {
        return;
    };
    let mut obj = application();
    remove(&mut obj, "/metadata/name");
    expect_error_at(&dir, &obj, "/metadata/name");

    let mut obj = application();
    set(&mut obj, "/metadata/name", json!("Orders_API"));
    expect_error_at(&dir, &obj, "/metadata/name");

    let mut obj = application();
    set(&mut obj, "/metadata/label", json!({ "a": "b" }));
    expect_error_at(&dir, &obj, "/metadata/label");

    let mut obj = appset();
    set(
        &mut obj,
        "/metadata/labels/app.kubernetes.io~1managed-by",
        json!("not a label value!"),
    );
    expect_error_at(&dir, &obj, "/metadata/labels/app.kubernetes.io~1managed-by");

    let mut obj = application();
    set(&mut obj, "/metadata", json!("orders-api"));
    expect_error_at(&dir, &obj, "/metadata");

    let mut obj = application();
    remove(&mut obj, "/metadata");
    let errs = expect_error_at(&dir, &obj, "/metadata");
    assert_eq!(errs.len(), 1, "reported once: {errs:#?}");
}

#[test]
fn unknown_kind_or_version_fails() {
    let Some(dir) = crds_or_skip("unknown_kind_or_version_fails") else {
        return;
    };
    let mut obj = application();
    set(&mut obj, "/apiVersion", json!("argoproj.io/v1beta9"));
    expect_error_at(&dir, &obj, "/apiVersion");

    let mut obj = application();
    set(&mut obj, "/kind", json!("Applicaton"));
    expect_error_at(&dir, &obj, "/kind");

    let mut obj = application();
    remove(&mut obj, "/apiVersion");
    expect_error_at(&dir, &obj, "/apiVersion");
}

#[test]
fn every_problem_is_reported() {
    let Some(dir) = crds_or_skip("every_problem_is_reported") else {
        return;
    };
    let mut obj = appset();
    set(
        &mut obj,
        "/spec/template/spec/syncPolicy/automated/selfHeal",
        json!("yes"),
    );
    set(
        &mut obj,
        "/spec/template/spec/syncPolicy/automated/prune",
        json!("no"),
    );
    set(
        &mut obj,
        "/spec/template/spec/sources/0/chartt",
        json!("web"),
    );
    remove(&mut obj, "/spec/template/spec/project");
    let errs = crd::validate(&dir, &obj).expect_err("four problems");
    for at in [
        "/spec/template/spec/syncPolicy/automated/selfHeal: ",
        "/spec/template/spec/syncPolicy/automated/prune: ",
        "/spec/template/spec/sources/0/chartt: ",
        "/spec/template/spec: ",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(at)),
            "missing {at}: {errs:#?}"
        );
    }
    assert_eq!(errs.len(), 4, "{errs:#?}");
}
