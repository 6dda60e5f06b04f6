//! Kubernetes, for exactly two things: the namespaces claimd manages (labels,
//! ResourceQuota, LimitRange, NetworkPolicy) and the Kaniko build Jobs of preview
//! environments. Everything else reaches the cluster through git and Argo CD.
//!
//! - `objects.rs` (pure): the objects, as JSON for server-side apply;
//! - `desired.rs` (pure): claims → the namespaces and previews they want;
//! - `status.rs` (pure): an Environment's phase and conditions;
//! - `lease.rs` (pure): the Leases several replicas share repositories with;
//! - `cluster.rs` (adapter, kube-rs): apply what differs, clean up, run builds;
//! - `access.rs` (adapter): the shipped ClusterRole's permissions, and access reviews
//!   of them as claimd's user (`claimd doctor`).

pub mod access;
pub mod cluster;
pub mod desired;
pub mod lease;
pub mod objects;
pub mod status;

pub use cluster::{Cluster, Sync};
pub use desired::{desired, Desired, Managed, Preview};
pub use status::{Condition, EnvironmentStatus, Phase};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `kubernetes:` section of the daemon's configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// Kubeconfig file; default: `KUBECONFIG`, `~/.kube/config`, then the in-cluster
    /// service account. None of them: dry-run (the objects are logged, not applied).
    pub kubeconfig: Option<PathBuf>,
    /// Never apply namespaces or start builds, only log what would be applied (the
    /// Leases of `leases`, when set, still use the cluster).
    pub dry_run: bool,
    /// `key=value` label of the ingress controller's namespace (allowed in).
    pub ingress_namespace_label: String,
    /// More namespaces allowed in, by `key=value` label (e.g. the monitoring
    /// namespace that scrapes metrics).
    pub ingress_from_namespaces: Vec<String>,
    /// CIDRs every managed namespace may reach besides DNS and itself.
    pub egress_allow: Vec<String>,
    /// ResourceQuota counts (cpu and memory come from the Project's `defaultQuota`).
    pub quota_pods: String,
    pub quota_services: String,
    /// LimitRange defaults for containers without requests or limits.
    pub default_request_cpu: String,
    pub default_request_memory: String,
    pub default_limit_cpu: String,
    pub default_limit_memory: String,
    /// Secret (type kubernetes.io/dockerconfigjson) in the environment's namespace that
    /// Kaniko pushes with.
    pub registry_secret: String,
    pub kaniko_image: String,
    pub git_image: String,
    pub dockerfile: String,
    pub build_backoff_limit: u32,
    pub build_deadline_seconds: u64,
    pub build_request_cpu: String,
    pub build_request_memory: String,
    pub build_limit_cpu: String,
    pub build_limit_memory: String,
    /// Where build pods may connect (git server, registry), and on which TCP ports.
    pub build_egress: Vec<String>,
    pub build_egress_ports: Vec<u16>,
    /// Several replicas: one Lease per repository, so only its holder works on it
    /// (off unless set).
    pub leases: Option<LeaseSettings>,
}

/// `kubernetes.leases`: where the Leases live and who this replica is.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LeaseSettings {
    /// Namespace of the Leases (default: the kubeconfig's, or the pod's own).
    pub namespace: Option<String>,
    /// This replica's name in the Leases (default: `POD_NAME`, else the host name).
    /// Every replica needs its own.
    pub identity: Option<String>,
    /// A Lease not renewed for this long is taken over; renewed every third of it.
    pub duration_seconds: u32,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            namespace: None,
            identity: None,
            duration_seconds: 15,
        }
    }
}

impl LeaseSettings {
    /// The identity: as configured, else `POD_NAME`, else the host name.
    pub fn identity(&self) -> String {
        if let Some(id) = self.identity.as_deref().filter(|i| !i.is_empty()) {
            return id.to_string();
        }
        if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()) {
            return pod;
        }
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
        // within it on success.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
        match std::str::from_utf8(&buf[..end]) {
            Ok(host) if ok && !host.is_empty() => host.to_string(),
            _ => format!("claimd-{}", std::process::id()),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kubeconfig: None,
            dry_run: false,
            ingress_namespace_label: "kubernetes.io/metadata.name=ingress-nginx".into(),
            ingress_from_namespaces: Vec::new(),
            egress_allow: Vec::new(),
            quota_pods: "20".into(),
            quota_services: "10".into(),
            default_request_cpu: "50m".into(),
            default_request_memory: "64Mi".into(),
            default_limit_cpu: "500m".into(),
            default_limit_memory: "512Mi".into(),
            registry_secret: "claimd-registry".into(),
            kaniko_image: "gcr.io/kaniko-project/executor:v1.23.2".into(),
            git_image: "alpine/git:2.45.2".into(),
            dockerfile: "Dockerfile".into(),
            build_backoff_limit: 1,
            build_deadline_seconds: 1800,
            build_request_cpu: "250m".into(),
            build_request_memory: "512Mi".into(),
            build_limit_cpu: "1".into(),
            build_limit_memory: "2Gi".into(),
            build_egress: vec!["0.0.0.0/0".into()],
            build_egress_ports: vec![22, 80, 443],
            leases: None,
        }
    }
}

impl Settings {
    /// The labels (key, value) of the namespaces allowed in: the ingress controller's
    /// first, then `ingress_from_namespaces`.
    pub fn ingress_namespace_labels(&self) -> Vec<(&str, &str)> {
        std::iter::once(&self.ingress_namespace_label)
            .chain(&self.ingress_from_namespaces)
            .map(|l| l.split_once('=').unwrap_or((l.as_str(), "")))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig {path}: {source}")]
    Config {
        path: String,
        #[source]
        source: ::kube::config::KubeconfigError,
    },
    #[error("Kubernetes client: {0}")]
    Client(#[source] ::kube::Error),
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } => "kubeconfig",
            Error::Client(_) => "client",
        }
    }
}

/// Whether a container image exists in its registry: the one thing the Kubernetes
/// step needs from a registry (the OCI adapter implements it; tests may fake it).
pub trait ImageLookup: Send + std::marker::Sync {
    fn exists<'a>(
        &'a self,
        image: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, LookupError>> + Send + 'a>>;
}

/// Why an image lookup failed (the registry's own error, kept as the source).
pub type LookupError = Box<dyn std::error::Error + Send + std::marker::Sync>;
