//! The Kubernetes objects claimd applies, as JSON for server-side apply: a managed
//! namespace and its ResourceQuota, LimitRange and NetworkPolicies, and a preview's
//! Kaniko build Job. Pure: the same input gives the same bytes.

use super::Settings;
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "claimd";
/// The repository whose claims own a namespace.
pub const REPOSITORY_ANNOTATION: &str = "claimd.dev/repository";
/// The claim file(s) that own a namespace, comma-separated.
pub const CLAIM_ANNOTATION: &str = "claimd.dev/claim";
/// Pods of a build Job carry this label (their own egress policy selects them).
pub const BUILD_LABEL: &str = "claimd.dev/build";
pub const IMAGE_ANNOTATION: &str = "claimd.dev/image";
/// Names of the objects claimd puts into each namespace.
pub const QUOTA_NAME: &str = "claimd-quota";
pub const LIMITS_NAME: &str = "claimd-limits";
pub const POLICY_NAME: &str = "claimd-default";
pub const BUILD_POLICY_NAME: &str = "claimd-build";

/// What a namespace is for, and so which labels and quota it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A Catalyst Environment (preview).
    Environment {
        team: String,
        project: String,
        environment: String,
        branch: Option<String>,
        quota_cpu: Option<String>,
        quota_memory: Option<String>,
    },
    /// An application environment (`dev`, `prod`…) of Application/Platform claims.
    Applications {
        cluster_type: String,
        environment: String,
    },
}

/// A label value from free text (a branch name): at most 63 characters of
/// `[A-Za-z0-9._-]`, starting and ending alphanumeric; anything else becomes `-`.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cut: String = mapped.chars().take(63).collect();
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn managed_labels(extra: &[(&str, String)]) -> Map<String, Json> {
    let mut labels = Map::new();
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    for (k, v) in extra {
        labels.insert((*k).into(), json!(v));
    }
    labels
}

/// The Namespace, with its ownership labels and annotations.
pub fn namespace(name: &str, owner: &Owner, repository: &str, claims: &[String]) -> Json {
    let labels = match owner {
        Owner::Environment {
            team,
            project,
            environment,
            branch,
            ..
        } => {
            let mut l = vec![
                ("catalyst.dev/team", label_value(team)),
                ("catalyst.dev/project", label_value(project)),
                ("catalyst.dev/environment", label_value(environment)),
            ];
            if let Some(b) = branch {
                l.push(("catalyst.dev/branch", label_value(b)));
            }
            l
        }
        Owner::Applications {
            cluster_type,
            environment,
        } => vec![
            ("claimd.dev/cluster-type", label_value(cluster_type)),
            ("claimd.dev/environment", label_value(environment)),
        ],
    };
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": managed_labels(&labels),
            "annotations": {
                REPOSITORY_ANNOTATION: repository,
                CLAIM_ANNOTATION: claims.join(","),
            },
        },
    })
}

fn child_meta(name: &str, namespace: &str) -> Json {
    json!({"name": name, "namespace": namespace, "labels": managed_labels(&[])})
}

/// The ResourceQuota of an Environment namespace: the Project's `defaultQuota` for
/// requested cpu and memory, and the configured pod and service counts.
pub fn quota(namespace: &str, cpu: Option<&str>, memory: Option<&str>, s: &Settings) -> Json {
    let mut hard = Map::new();
    if let Some(cpu) = cpu {
        hard.insert("requests.cpu".into(), json!(cpu));
    }
    if let Some(memory) = memory {
        hard.insert("requests.memory".into(), json!(memory));
    }
    hard.insert("pods".into(), json!(s.quota_pods));
    hard.insert("services".into(), json!(s.quota_services));
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": child_meta(QUOTA_NAME, namespace),
        "spec": {"hard": hard},
    })
}

/// Defaults for containers that name no requests or limits, so that their pods start
/// under a quota.
pub fn limit_range(namespace: &str, s: &Settings) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": child_meta(LIMITS_NAME, namespace),
        "spec": {"limits": [{
            "type": "Container",
            "defaultRequest": {"cpu": s.default_request_cpu, "memory": s.default_request_memory},
            "default": {"cpu": s.default_limit_cpu, "memory": s.default_limit_memory},
        }]},
    })
}

fn dns_egress() -> Json {
    json!({
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    })
}

fn ip_blocks(cidrs: &[String]) -> Vec<Json> {
    cidrs
        .iter()
        .map(|c| json!({"ipBlock": {"cidr": c}}))
        .collect()
}

/// Locked down by default: ingress only from the namespace itself and the ingress
/// controller's namespace; egress only to DNS, the namespace itself and the allow-list.
pub fn network_policy(namespace: &str, s: &Settings) -> Json {
    let mut from = vec![json!({"podSelector": {}})];
    for (key, value) in s.ingress_namespace_labels() {
        from.push(json!({"namespaceSelector": {"matchLabels": {key: value}}}));
    }
    let mut egress = vec![json!({"to": [{"podSelector": {}}]}), dns_egress()];
    if !s.egress_allow.is_empty() {
        egress.push(json!({"to": ip_blocks(&s.egress_allow)}));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_meta(POLICY_NAME, namespace),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": from}],
            "egress": egress,
        },
    })
}

/// Build pods must reach the source repository and the registry: egress to the
/// configured build destinations on the git and registry ports, nothing else.
pub fn build_network_policy(namespace: &str, s: &Settings) -> Json {
    let ports: Vec<Json> = s
        .build_egress_ports
        .iter()
        .map(|p| json!({"protocol": "TCP", "port": p}))
        .collect();
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_meta(BUILD_POLICY_NAME, namespace),
        "spec": {
            "podSelector": {"matchLabels": {BUILD_LABEL: "true"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": ip_blocks(&s.build_egress), "ports": ports}],
        },
    })
}

/// `build-<environment>-<sha7>`, at most 63 characters: a long environment name is cut
/// and given 5 hex digits of its sha256 so two long names do not meet. A SHA shorter
/// than 7 characters is used whole.
pub fn build_job_name(environment: &str, commit: &str) -> String {
    let sha: String = commit
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(7)
        .collect::<String>()
        .to_ascii_lowercase();
    let room = 63 - "build-".len() - 1 - sha.len();
    let env = environment.to_ascii_lowercase();
    let env = if env.len() <= room {
        env
    } else {
        let hex: String = Sha256::digest(env.as_bytes())
            .iter()
            .take(3)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}-{}", env[..room - 6].trim_end_matches('-'), &hex[..5])
    };
    format!("build-{env}-{sha}")
}

/// What a preview build needs to know.
pub struct Build<'a> {
    pub namespace: &'a str,
    pub environment: &'a str,
    pub repository_url: &'a str,
    pub commit: &'a str,
    /// `<registry>/<repo>:<commit>`
    pub image: &'a str,
    pub claim: &'a str,
    pub repository: &'a str,
}

/// The Kaniko Job: an init container clones the source at exactly the commit, Kaniko
/// builds it and pushes the image with the registry credentials of a Secret. No
/// service-account token, bounded retries and run time.
pub fn build_job(b: &Build<'_>, s: &Settings) -> Json {
    let name = build_job_name(b.environment, b.commit);
    let labels = managed_labels(&[
        (BUILD_LABEL, "true".to_string()),
        ("catalyst.dev/environment", label_value(b.environment)),
        ("claimd.dev/commit", label_value(b.commit)),
    ]);
    let clone = r#"set -eu
git init -q /workspace
cd /workspace
git remote add origin "$REPOSITORY"
git fetch -q --depth 1 origin "$COMMIT" || git fetch -q origin
git checkout -q --detach "$COMMIT""#;
    let resources = json!({
        "requests": {"cpu": s.build_request_cpu, "memory": s.build_request_memory},
        "limits": {"cpu": s.build_limit_cpu, "memory": s.build_limit_memory},
    });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": b.namespace,
            "labels": labels,
            "annotations": {
                REPOSITORY_ANNOTATION: b.repository,
                CLAIM_ANNOTATION: b.claim,
                IMAGE_ANNOTATION: b.image,
            },
        },
        "spec": {
            "backoffLimit": s.build_backoff_limit,
            "activeDeadlineSeconds": s.build_deadline_seconds,
            // Finished Jobs go after a day (servers before 1.21 ignore this). A failed
            // build is then tried once more; a built image is found in the registry.
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "initContainers": [{
                        "name": "clone",
                        "image": s.git_image,
                        "command": ["sh", "-c", clone],
                        "env": [
                            {"name": "REPOSITORY", "value": b.repository_url},
                            {"name": "COMMIT", "value": b.commit},
                        ],
                        "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"}],
                        "resources": resources,
                    }],
                    "containers": [{
                        "name": "kaniko",
                        "image": s.kaniko_image,
                        "args": [
                            "--context=dir:///workspace",
                            format!("--dockerfile={}", s.dockerfile),
                            format!("--destination={}", b.image),
                            "--reproducible",
                        ],
                        "volumeMounts": [
                            {"name": "workspace", "mountPath": "/workspace"},
                            {"name": "registry-credentials", "mountPath": "/kaniko/.docker", "readOnly": true},
                        ],
                        "resources": resources,
                    }],
                    "volumes": [
                        {"name": "workspace", "emptyDir": {}},
                        {"name": "registry-credentials", "secret": {
                            "secretName": s.registry_secret,
                            "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                        }},
                    ],
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_from_branches() {
        assert_eq!(label_value("feature/login"), "feature-login");
        assert_eq!(label_value("main"), "main");
        assert_eq!(label_value("/x/"), "x");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
        assert_eq!(
            label_value(&format!("{}/b", "a".repeat(62))),
            "a".repeat(62)
        );
    }

    #[test]
    fn job_names() {
        let sha = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
        assert_eq!(build_job_name("pr-123", sha), "build-pr-123-a1b2c3d");
        assert_eq!(build_job_name("pr-1", "abc"), "build-pr-1-abc");
        let long = "x".repeat(70);
        let a = build_job_name(&long, sha);
        let b = build_job_name(&format!("{long}y"), sha);
        assert!(a.len() <= 63 && b.len() <= 63, "{a}");
        assert_ne!(a, b);
        assert!(a.ends_with("-a1b2c3d"));
        assert!(crate::claims::names::label_problem(&a).is_none(), "{a}");
    }

    #[test]
    fn network_policy_is_locked_down() {
        let s = Settings::default();
        let p = network_policy("t-p-e", &s);
        let text = p.to_string();
        assert!(!text.contains("0.0.0.0/0"), "{text}");
        let more = Settings {
            ingress_from_namespaces: vec!["team=monitoring".into()],
            ..Settings::default()
        };
        let p2 = network_policy("t-p-e", &more);
        assert_eq!(
            p2["spec"]["ingress"][0]["from"][2]["namespaceSelector"]["matchLabels"],
            json!({"team": "monitoring"})
        );
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(
            p["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"],
            json!({"kubernetes.io/metadata.name": "ingress-nginx"})
        );
    }

    #[test]
    fn job_has_no_token_and_bounded_retries() {
        let s = Settings::default();
        let j = build_job(
            &Build {
                namespace: "t-p-pr-1",
                environment: "pr-1",
                repository_url: "https://git.example.com/org/app.git",
                commit: "0123456789abcdef0123456789abcdef01234567",
                image: "registry.example.com/org/app:0123456789abcdef0123456789abcdef01234567",
                claim: "claims/env.yaml",
                repository: "repo",
            },
            &s,
        );
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], json!(false));
        assert_eq!(j["spec"]["backoffLimit"], json!(s.build_backoff_limit));
        assert!(j["spec"]["activeDeadlineSeconds"].is_u64());
        assert_eq!(j["metadata"]["name"], json!("build-pr-1-0123456"));
    }
}
