//! Kubernetes (when a cluster is configured, as the daemon finds it): the API server
//! answers, and claimd's user may do every verb of the ClusterRole claimd ships
//! (`deploy/kubernetes/rbac.yaml`, embedded), each asked with a SelfSubjectAccessReview.

use super::{chain, Check};
use crate::daemon::config::Config;
use crate::kube::access::{cluster_role_permissions, Permission, RBAC};
use crate::kube::Cluster;
use std::collections::BTreeMap;

/// What binds the role: the file, and a binding for a user of another name.
pub const FIX: &str = "run: kubectl apply -f deploy/kubernetes/rbac.yaml (the ClusterRole claimd, bound to the ServiceAccount claimd/claimd); if claimd's kubeconfig is another user, bind the role to it: kubectl create clusterrolebinding claimd-USER --clusterrole=claimd --user=USER";

/// The lines, and the API server's `Date` with the local time it was read at.
pub async fn check(c: &Config) -> (Vec<Check>, Option<super::clock::Reading>) {
    let s = &c.kubernetes;
    if s.dry_run {
        return (
            vec![Check::skip(
                "kubernetes",
                "kubernetes.dryRun: claimd logs the objects it would apply, and calls no cluster",
            )],
            None,
        );
    }
    let cluster = match Cluster::connect(s, "argocd").await {
        Ok(Some(cluster)) => cluster,
        Ok(None) => {
            return (
                vec![Check::skip(
                    "kubernetes",
                    "no cluster configured (kubernetes.kubeconfig, KUBECONFIG, ~/.kube/config, in-cluster): namespaces and builds are dry-run",
                )],
                None,
            )
        }
        Err(e) => {
            return (
                vec![Check::fail(
                    "kubernetes",
                    chain(&e),
                    "fix kubernetes.kubeconfig (a kubeconfig for claimd's ServiceAccount)",
                )],
                None,
            )
        }
    };
    let (version, date) = match cluster.version_and_date().await {
        Ok(v) => v,
        Err(e) => {
            return (
                vec![Check::fail(
                    "kubernetes",
                    format!("the API server does not answer: {}", chain(&e)),
                    "check the server and credentials of claimd's kubeconfig, and that the API server runs",
                )],
                None,
            )
        }
    };
    let reading = date.map(|d| super::clock::Reading::now("the API server", d));
    let permissions = match cluster_role_permissions(RBAC) {
        Ok(p) => p,
        Err(e) => {
            return (
                vec![Check::fail(
                    "kubernetes",
                    e.to_string(),
                    "a claimd build with a valid rbac.yaml",
                )],
                reading,
            )
        }
    };
    let mut denied: Vec<&Permission> = Vec::new();
    for p in &permissions {
        match cluster.allowed(p).await {
            Ok(true) => {}
            Ok(false) => denied.push(p),
            Err(e) => {
                return (
                    vec![Check::fail(
                        "kubernetes",
                        format!("cannot ask the API server whether claimd may {p}: {}", chain(&e)),
                        "the API server must serve authorization.k8s.io/v1 SelfSubjectAccessReview (any authenticated user may create one)",
                    )],
                    reading,
                )
            }
        }
    }
    if denied.is_empty() {
        return (
            vec![Check::pass(
                "kubernetes",
                format!(
                    "API server {version}: claimd's user has all {} permissions of the ClusterRole claimd",
                    permissions.len()
                ),
            )],
            reading,
        );
    }
    (lines(&denied, permissions.len()), reading)
}

/// One failing line per resource with the verbs denied on it.
pub fn lines(denied: &[&Permission], total: usize) -> Vec<Check> {
    let mut by_resource: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for p in denied {
        let resource = if p.group.is_empty() {
            p.resource.clone()
        } else {
            format!("{}.{}", p.resource, p.group)
        };
        by_resource.entry(resource).or_default().push(&p.verb);
    }
    by_resource
        .into_iter()
        .map(|(resource, verbs)| {
            Check::fail(
                "kubernetes",
                format!(
                    "claimd's user may not {} {resource} ({} of the ClusterRole's {total} permissions denied)",
                    verbs.join(", "),
                    denied.len()
                ),
                FIX,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_permissions_are_grouped_by_resource() {
        let all = cluster_role_permissions(RBAC).expect("rbac");
        let denied: Vec<&Permission> = all
            .iter()
            .filter(|p| {
                p.resource == "namespaces" && p.verb != "get" || p.resource == "applications"
            })
            .collect();
        let got: Vec<String> = lines(&denied, all.len())
            .iter()
            .map(|c| c.message.clone())
            .collect();
        assert_eq!(
            got,
            [
                format!("claimd's user may not list applications.argoproj.io (5 of the ClusterRole's {} permissions denied)", all.len()),
                format!("claimd's user may not create, delete, list, patch namespaces (5 of the ClusterRole's {} permissions denied)", all.len()),
            ]
        );
    }
}
