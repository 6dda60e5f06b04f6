//! What claimd may do in the cluster: the ClusterRole it ships
//! (`deploy/kubernetes/rbac.yaml`, embedded) read into (verb, group, resource)
//! permissions, and a `SelfSubjectAccessReview` of each, as claimd's own user.

use super::{Cluster, Error};
use ::kube::api::{Api, PostParams};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use serde::Deserialize;

/// The RBAC file claimd ships: its ServiceAccount, ClusterRole and binding.
pub const RBAC: &str = include_str!("../../deploy/kubernetes/rbac.yaml");

/// One thing claimd does in the cluster: `verb` on `resource` of API `group` (`""`:
/// the core group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

impl std::fmt::Display for Permission {
    /// `create namespaces`, `list applications.argoproj.io` (as kubectl names them).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{} {}", self.verb, self.resource)
        } else {
            write!(f, "{} {}.{}", self.verb, self.resource, self.group)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("the RBAC file does not read: {0}")]
    Parse(#[source] serde_yaml::Error),
    #[error("the RBAC file has no ClusterRole with rules")]
    NoClusterRole,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
}

/// Every (verb, group, resource) the ClusterRoles of `yaml` grant, each once, sorted
/// (a rule grants each verb on each resource of each group it lists).
pub fn cluster_role_permissions(yaml: &str) -> Result<Vec<Permission>, RulesError> {
    let mut out = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let obj = Object::deserialize(doc).map_err(RulesError::Parse)?;
        if obj.kind != "ClusterRole" {
            continue;
        }
        for rule in &obj.rules {
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    for verb in &rule.verbs {
                        out.insert(Permission {
                            verb: verb.clone(),
                            group: group.clone(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return Err(RulesError::NoClusterRole);
    }
    Ok(out.into_iter().collect())
}

impl Cluster {
    /// Whether the API server lets this client's user do `p` in every namespace
    /// (a `SelfSubjectAccessReview`; what the server would answer the real request).
    pub async fn allowed(&self, p: &Permission) -> Result<bool, Error> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(p.verb.clone()),
                    group: Some(p.group.clone()),
                    resource: Some(p.resource.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::Client)?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// The API server's version (`GET /version`) and the `Date` header of its answer
    /// (the server's clock).
    pub async fn version_and_date(&self) -> Result<(String, Option<String>), Error> {
        let request = http::Request::get("/version")
            .body(::kube::client::Body::empty())
            .map_err(|e| Error::Client(::kube::Error::HttpError(e)))?;
        let response = self.client.send(request).await.map_err(Error::Client)?;
        let date = response
            .headers()
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
            .map(str::to_string);
        let status = response.status();
        if !status.is_success() {
            return Ok((format!("unknown (GET /version answered {status})"), date));
        }
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(Error::Client)?;
        let version = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["gitVersion"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        Ok((version, date))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(verb: &str, group: &str, resource: &str) -> Permission {
        Permission {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
        }
    }

    #[test]
    fn a_rule_grants_each_verb_on_each_resource_of_each_group() {
        let yaml = "kind: ServiceAccount\nmetadata: {name: x}\n---\nkind: ClusterRole\nrules:\n  - apiGroups: [\"\"]\n    resources: [namespaces, pods]\n    verbs: [get, list]\n  - apiGroups: [batch, extensions]\n    resources: [jobs]\n    verbs: [create, get]\n  - apiGroups: [\"\"]\n    resources: [pods]\n    verbs: [get]\n";
        let got = cluster_role_permissions(yaml).expect("reads");
        assert_eq!(
            got,
            [
                p("create", "batch", "jobs"),
                p("create", "extensions", "jobs"),
                p("get", "", "namespaces"),
                p("get", "", "pods"),
                p("get", "batch", "jobs"),
                p("get", "extensions", "jobs"),
                p("list", "", "namespaces"),
                p("list", "", "pods"),
            ]
        );
        assert_eq!(
            p("list", "argoproj.io", "applications").to_string(),
            "list applications.argoproj.io"
        );
        assert_eq!(p("patch", "", "namespaces").to_string(), "patch namespaces");
        assert!(matches!(
            cluster_role_permissions("kind: ServiceAccount\n"),
            Err(RulesError::NoClusterRole)
        ));
        assert!(matches!(
            cluster_role_permissions("kind: [\n"),
            Err(RulesError::Parse(_))
        ));
    }

    #[test]
    fn the_shipped_role_reads_and_holds_what_claimd_calls() {
        let all = cluster_role_permissions(RBAC).expect("rbac.yaml reads");
        for want in [
            p("patch", "", "namespaces"),
            p("delete", "", "namespaces"),
            p("create", "", "resourcequotas"),
            p("patch", "networking.k8s.io", "networkpolicies"),
            p("watch", "batch", "jobs"),
            p("list", "argoproj.io", "applications"),
        ] {
            assert!(all.contains(&want), "{want} missing from {all:?}");
        }
        assert!(!all.contains(&p("delete", "batch", "jobs")));
    }
}
