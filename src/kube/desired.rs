//! Claims → what claimd wants in the cluster: one managed namespace per preview
//! Environment and per application namespace, and the preview builds. Pure.

use super::objects::{self, Build, Owner};
use super::Settings;
use crate::claims::{Claim, Spec};
use crate::render::preview_target;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// Everything claimd wants in the cluster for one repository.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Written into every namespace's ownership annotation.
    pub repository: String,
    /// Sorted by name.
    pub namespaces: Vec<Managed>,
    /// Sorted by namespace.
    pub previews: Vec<Preview>,
    /// Claim files whose namespaces are kept even if nothing wants them now: files that
    /// do not read, Environments whose Project or team cannot be told.
    pub kept_files: BTreeSet<String>,
    /// Claims whose namespace cannot be had: (claim id, message).
    pub problems: Vec<(String, String)>,
}

/// One namespace and the objects in it; `objects[0]` is the Namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub name: String,
    pub claims: Vec<String>,
    pub objects: Vec<Json>,
}

/// One preview Environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The Environment claim's id (`file#Environment/name`).
    pub claim: String,
    pub environment: String,
    pub namespace: String,
    pub commit: Option<String>,
    /// `<image.repository>:<commit>`, when the Project names an image repository.
    pub image: Option<String>,
    pub url: String,
    /// The build Job to create when the image does not exist.
    pub job: Option<Json>,
}

impl Desired {
    pub fn namespace(&self, name: &str) -> Option<&Managed> {
        self.namespaces
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.namespaces[i])
    }
}

/// What `claims` want, for the repository named `repository`.
/// `failed_files` are claim files that did not read: their namespaces are kept.
pub fn desired(
    claims: &[Claim],
    failed_files: &[String],
    repository: &str,
    preview_domain: &str,
    s: &Settings,
) -> Desired {
    let mut sorted: Vec<&Claim> = claims.iter().collect();
    sorted.sort_by_key(|c| c.id());
    // Application namespaces: every namespace a workload goes to.
    let mut apps: BTreeMap<String, (Owner, BTreeSet<String>)> = BTreeMap::new();
    for c in &sorted {
        let Some((wc, _)) = c.workloads() else {
            continue;
        };
        for w in wc.workloads.iter() {
            let ns = wc.namespace_of(w).value.clone();
            apps.entry(ns)
                .or_insert_with(|| {
                    let owner = Owner::Applications {
                        cluster_type: wc.cluster_type.value.clone(),
                        environment: wc.environment.value.clone(),
                    };
                    (owner, BTreeSet::new())
                })
                .1
                .insert(c.source.clone());
        }
    }
    let mut out = Desired {
        repository: repository.to_string(),
        kept_files: failed_files.iter().cloned().collect(),
        ..Desired::default()
    };
    let mut namespaces: BTreeMap<String, Managed> = BTreeMap::new();
    for (name, (owner, files)) in apps {
        let files: Vec<String> = files.into_iter().collect();
        let objects = vec![
            objects::namespace(&name, &owner, repository, &files),
            objects::limit_range(&name, s),
            objects::network_policy(&name, s),
        ];
        namespaces.insert(
            name.clone(),
            Managed {
                name,
                claims: files,
                objects,
            },
        );
    }
    for c in &sorted {
        let Spec::Environment(e) = &c.spec else {
            continue;
        };
        let Ok(t) = preview_target(c, e, claims) else {
            out.kept_files.insert(c.source.clone()); // the render reports why
            continue;
        };
        if let Some(other) = namespaces.get(&t.namespace) {
            out.kept_files.insert(c.source.clone());
            out.problems.push((
                c.id(),
                format!(
                    "namespace `{}` is already wanted by {}; rename the Environment",
                    t.namespace,
                    other.claims.join(", ")
                ),
            ));
            continue;
        }
        let commit = e.commit_sha.as_ref().map(|s| s.value.clone());
        let image = match (image_repository(&t.project.values), &commit) {
            (Some(repo), Some(sha)) => Some(format!("{repo}:{sha}")),
            _ => None,
        };
        let owner = Owner::Environment {
            team: t.team.clone(),
            project: t.project_claim.name.value.clone(),
            environment: c.name.value.clone(),
            branch: e.branch.as_ref().map(|b| b.value.clone()),
            quota_cpu: t.project.quota_cpu.as_ref().map(|q| q.value.clone()),
            quota_memory: t.project.quota_memory.as_ref().map(|q| q.value.clone()),
        };
        let files = vec![c.source.clone()];
        let ns = &t.namespace;
        let mut objs = vec![
            objects::namespace(ns, &owner, repository, &files),
            objects::quota(
                ns,
                t.project.quota_cpu.as_ref().map(|q| q.value.as_str()),
                t.project.quota_memory.as_ref().map(|q| q.value.as_str()),
                s,
            ),
            objects::limit_range(ns, s),
            objects::network_policy(ns, s),
        ];
        let job = match (&image, &commit) {
            (Some(image), Some(sha)) => {
                objs.push(objects::build_network_policy(ns, s));
                Some(objects::build_job(
                    &Build {
                        namespace: ns,
                        environment: &c.name.value,
                        repository_url: &t.project.repository_url.value,
                        commit: sha,
                        image,
                        claim: &c.source,
                        repository,
                    },
                    s,
                ))
            }
            _ => None,
        };
        out.previews.push(Preview {
            claim: c.id(),
            environment: c.name.value.clone(),
            namespace: ns.clone(),
            commit,
            image,
            url: format!("https://{ns}.{preview_domain}"),
            job,
        });
        namespaces.insert(
            ns.clone(),
            Managed {
                name: ns.clone(),
                claims: files,
                objects: objs,
            },
        );
    }
    out.previews.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    out.namespaces = namespaces.into_values().collect();
    out
}

fn image_repository(values: &serde_json::Map<String, Json>) -> Option<&str> {
    values
        .get("image")?
        .get("repository")?
        .as_str()
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::parse_file;
    use crate::yaml::Limits;

    const CLAIMS: &str = r#"
apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Project
metadata:
  name: my-project
  namespace: my-team
spec:
  source:
    repositoryUrl: "https://github.com/org/repo"
    branch: "main"
  deployment:
    type: "helm"
    path: "./charts/app"
    values:
      image:
        repository: "registry.cluster.local/org/repo"
  resources:
    defaultQuota:
      cpu: "1"
      memory: "2Gi"
---
apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Environment
metadata:
  name: pr-123
  namespace: my-team-my-project
  labels:
    catalyst.dev/branch: "feature/login"
spec:
  projectRef:
    name: my-project
  type: "development"
  source:
    commitSha: "a1b2c3d4e5f6"
    branch: "feature/login"
    prNumber: 123
"#;

    fn claims() -> Vec<Claim> {
        let (claims, diags) = parse_file("claims/previews.yaml", CLAIMS, &Limits::default());
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        claims
    }

    #[test]
    fn a_preview_gets_a_locked_down_namespace_and_a_build() {
        let d = desired(
            &claims(),
            &[],
            "org/gitops",
            "preview.example.com",
            &Settings::default(),
        );
        assert_eq!(d.namespaces.len(), 1);
        let m = &d.namespaces[0];
        assert_eq!(m.name, "my-team-my-project-pr-123");
        let kinds: Vec<&str> = m
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ResourceQuota",
                "LimitRange",
                "NetworkPolicy",
                "NetworkPolicy"
            ]
        );
        let labels = &m.objects[0]["metadata"]["labels"];
        assert_eq!(labels["catalyst.dev/branch"], "feature-login");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "claimd");
        assert_eq!(m.objects[1]["spec"]["hard"]["requests.cpu"], "1");
        assert_eq!(m.objects[1]["spec"]["hard"]["requests.memory"], "2Gi");
        let p = &d.previews[0];
        assert_eq!(
            p.image.as_deref(),
            Some("registry.cluster.local/org/repo:a1b2c3d4e5f6")
        );
        assert_eq!(
            p.url,
            "https://my-team-my-project-pr-123.preview.example.com"
        );
        assert_eq!(
            p.job.as_ref().unwrap()["metadata"]["name"],
            "build-pr-123-a1b2c3d"
        );
    }

    #[test]
    fn same_input_same_objects() {
        let a = desired(&claims(), &[], "r", "d", &Settings::default());
        let mut reversed = claims();
        reversed.reverse();
        assert_eq!(a, desired(&reversed, &[], "r", "d", &Settings::default()));
    }
}
