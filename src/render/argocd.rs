//! Argo CD objects: ApplicationSets over config.yaml files, and root apps.

use super::{Settings, CATALYST_CLUSTER_TYPE};
use serde_json::{json, Value as Json};

const MANAGED_BY: &str = "claimd";
const FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// Argo CD names a Helm OCI repository without the `oci://` scheme.
pub fn helm_oci_repo(repository: &str) -> String {
    repository
        .trim_start_matches("oci://")
        .trim_end_matches('/')
        .to_string()
}

/// No `CreateNamespace`: claimd creates every namespace itself, with its labels, quota
/// and network policy (see `kube/`).
fn sync_policy() -> Json {
    json!({
        "automated": {"prune": true, "selfHeal": true},
        "syncOptions": ["ServerSideApply=true"],
        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
    })
}

fn values_source(repo_url: &str, branch: &str) -> Json {
    json!({"repoURL": repo_url, "targetRevision": branch, "ref": "values"})
}

fn appset_shell(
    s: &Settings,
    name: &str,
    labels: Json,
    files_glob: &str,
    repo_url: &str,
    branch: &str,
    template: Json,
) -> Json {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": s.argocd_namespace, "labels": labels},
        "spec": {
            "goTemplate": true,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"git": {
                "repoURL": repo_url,
                "revision": branch,
                "files": [{"path": files_glob}],
            }}],
            "template": template,
        },
    })
}

/// One ApplicationSet per (clusterType, env, apps|platform): every config.yaml below
/// `environments/{ct}/{env}/{applications|platform}/` becomes an Application that takes
/// the chart from the OCI registry and the values file from this repository.
pub fn appset(s: &Settings, repo_url: &str, branch: &str, ct: &str, env: &str, kind: &str) -> Json {
    let folder = if kind == "apps" {
        "applications"
    } else {
        "platform"
    };
    let name = if kind == "apps" {
        format!("{ct}-{env}-apps")
    } else {
        format!("{ct}-{env}-platform")
    };
    let labels = json!({
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "claimd.dev/cluster-type": ct,
        "claimd.dev/environment": env,
    });
    let template = json!({
        "metadata": {
            "name": "{{.app.environment}}-{{.app.name}}",
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "claimd.dev/cluster-type": "{{.app.clusterType}}",
                "claimd.dev/environment": "{{.app.environment}}",
                "claimd.dev/kind": "{{.app.kind}}",
            },
            "finalizers": [FINALIZER],
        },
        "spec": {
            "project": s.argocd_project,
            "sources": [
                {
                    "repoURL": "{{.chart.repoURL}}",
                    "chart": "{{.chart.name}}",
                    "targetRevision": "{{.chart.version}}",
                    "helm": {
                        "releaseName": "{{.app.name}}",
                        "valueFiles": ["$values/{{.path.path}}/values.yaml"],
                    },
                },
                values_source(repo_url, branch),
            ],
            "destination": {"server": s.destination_server, "namespace": "{{.namespace}}"},
            "syncPolicy": sync_policy(),
        },
    });
    appset_shell(
        s,
        &name,
        labels,
        &format!("environments/{ct}/{env}/{folder}/*/config.yaml"),
        repo_url,
        branch,
        template,
    )
}

/// The ApplicationSet of Catalyst Environments: the chart comes from the Project's own
/// repository at the environment's commit; claimd creates the namespaces itself.
pub fn preview_appset(s: &Settings, repo_url: &str, branch: &str) -> Json {
    let ct = CATALYST_CLUSTER_TYPE;
    let labels = json!({"app.kubernetes.io/managed-by": MANAGED_BY, "claimd.dev/cluster-type": ct});
    let template = json!({
        "metadata": {
            "name": "{{.namespace}}",
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "claimd.dev/cluster-type": ct,
                "catalyst.dev/team": "{{.app.team}}",
                "catalyst.dev/project": "{{.app.name}}",
                "catalyst.dev/environment": "{{.app.environment}}",
            },
            "finalizers": [FINALIZER],
        },
        "spec": {
            "project": s.argocd_project,
            "sources": [
                {
                    "repoURL": "{{.source.repoURL}}",
                    "path": "{{.source.path}}",
                    "targetRevision": "{{.source.commit}}",
                    "helm": {
                        "releaseName": "{{.app.name}}",
                        "valueFiles": ["$values/{{.path.path}}/values.yaml"],
                    },
                },
                values_source(repo_url, branch),
            ],
            "destination": {"server": s.destination_server, "namespace": "{{.namespace}}"},
            "syncPolicy": sync_policy(),
        },
    });
    appset_shell(
        s,
        &format!("{ct}-environments"),
        labels,
        &format!("environments/{ct}/*/applications/*/config.yaml"),
        repo_url,
        branch,
        template,
    )
}

/// App of apps: one per (clusterType, apps|platform), syncing the appsets folder.
pub fn root_app(s: &Settings, repo_url: &str, branch: &str, ct: &str, kind: &str) -> Json {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": format!("{ct}-{kind}-root"),
            "namespace": s.argocd_namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "claimd.dev/cluster-type": ct},
            "finalizers": [FINALIZER],
        },
        "spec": {
            "project": s.argocd_project,
            "source": {"repoURL": repo_url, "targetRevision": branch, "path": format!("appsets/{ct}/{kind}")},
            "destination": {"server": s.destination_server, "namespace": s.argocd_namespace},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
            },
        },
    })
}
