//! claimd's own Prometheus metrics (`GET /metrics`): one registry with typed handles.
//!
//! The daemon owns a [`Metrics`] and counts what it knows: a reconcile's result and
//! duration, bot commits, refused publications, claim failures, the work queue, build
//! Jobs, webhook verdicts. The adapters deep below it (the chart cache and registry
//! client in `charts`/`oci`, the Kubernetes client in `kube`) are shared with the
//! one-shot commands and the hooks, which have no `/metrics`: they count through
//! [`chart_cache`], [`registry_error`] and [`kube_request`], which reach the metrics the
//! daemon [`install`]ed and do nothing in any other process. Passing a handle down to
//! them would thread it through `charts::Source`, `oci::Registry` and `kube::Cluster`
//! for three counters.
//!
//! Label values are bounded: results and reasons are `&'static str` (an error's
//! `kind()`, a fixed list), and `repository` is a configured repository's name. No claim
//! name, commit id or file path is ever a label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How a reconcile ended (`claimd_reconcile_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A bot commit was published.
    Committed,
    /// Nothing to change (or no branch yet).
    Unchanged,
    /// The reconcile failed (it is retried with backoff).
    Failed,
    /// The bot commit's publication was refused (the branch kept moving, or the git
    /// server refused the push); it is retried.
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Committed,
        Outcome::Unchanged,
        Outcome::Failed,
        Outcome::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
        }
    }
}

/// What the Gitea webhook receiver answered (`claimd_webhook_requests_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    Accepted,
    Ignored,
    Unauthorized,
    BadRequest,
    TooLarge,
    UnknownRepository,
}

impl Webhook {
    pub const ALL: [Webhook; 6] = [
        Webhook::Accepted,
        Webhook::Ignored,
        Webhook::Unauthorized,
        Webhook::BadRequest,
        Webhook::TooLarge,
        Webhook::UnknownRepository,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Accepted => "accepted",
            Webhook::Ignored => "ignored",
            Webhook::Unauthorized => "unauthorized",
            Webhook::BadRequest => "bad_request",
            Webhook::TooLarge => "too_large",
            Webhook::UnknownRepository => "unknown_repository",
        }
    }

    /// The verdict behind the receiver's HTTP status (None: not a verdict of ours).
    pub fn of_status(status: u16) -> Option<Webhook> {
        Some(match status {
            202 => Webhook::Accepted,
            200 => Webhook::Ignored,
            401 => Webhook::Unauthorized,
            400 | 411 | 415 => Webhook::BadRequest,
            413 => Webhook::TooLarge,
            404 => Webhook::UnknownRepository,
            _ => return None,
        })
    }
}

/// Why a claim file failed (`claimd_claim_failures_total{reason}`): its chart could not
/// be had, or the claim itself is wrong.
pub const CLAIM_FAILURE_REASONS: [&str; 2] = ["invalid_claim", "chart_unavailable"];

/// A build Job's phase (`claimd_build_jobs{phase}`).
pub const JOB_PHASES: [&str; 3] = ["running", "succeeded", "failed"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepositoryLabels {
    pub repository: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub repository: Arc<str>,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeLabels {
    pub verb: &'static str,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

/// Seconds, for the reconcile duration: from a few milliseconds (nothing changed) to
/// minutes (a cold start of thousands of applications, a slow registry).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every metric of claimd, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub build_info: Family<VersionLabels, Gauge>,
    pub reconcile: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub bot_commits: Family<RepositoryLabels, Counter>,
    pub bot_push_rejections: Family<RepositoryLabels, Counter>,
    pub noop_reconciles: Counter,
    pub last_reconcile: Family<RepositoryLabels, Gauge<f64, AtomicU64>>,
    pub claim_failures: Family<ReasonLabels, Counter>,
    pub queue_depth: Gauge,
    pub chart_cache: Family<ResultLabels, Counter>,
    pub registry_errors: Family<KindLabels, Counter>,
    pub kube_requests: Family<KubeLabels, Counter>,
    pub build_jobs: Family<PhaseLabels, Gauge>,
    pub webhook_requests: Family<ResultLabels, Counter>,
    pub lease_held: Family<RepositoryLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("claimd");
        let m = Metrics {
            build_info: Family::default(),
            reconcile: Family::default(),
            reconcile_duration: Histogram::new(DURATION_BUCKETS),
            bot_commits: Family::default(),
            bot_push_rejections: Family::default(),
            noop_reconciles: Counter::default(),
            last_reconcile: Family::default(),
            claim_failures: Family::default(),
            queue_depth: Gauge::default(),
            chart_cache: Family::default(),
            registry_errors: Family::default(),
            kube_requests: Family::default(),
            build_jobs: Family::default(),
            webhook_requests: Family::default(),
            lease_held: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "build_info",
            "claimd's version (always 1)",
            m.build_info.clone(),
        );
        r.register(
            "reconcile",
            "Reconciles of a repository by result: committed, unchanged, failed, rejected (the bot commit's publication was refused; retried)",
            m.reconcile.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "How long a reconcile took (fetch, render, commit, publish)",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        r.register(
            "bot_commits",
            "Bot commits published",
            m.bot_commits.clone(),
        );
        r.register(
            "bot_push_rejections",
            "Publications of a bot commit refused (the branch moved under it, or the git server refused the push)",
            m.bot_push_rejections.clone(),
        );
        r.register(
            "noop_reconciles",
            "Requests served without rendering because the branch had not moved (the daemon's own bot commit, a repeated event)",
            m.noop_reconciles.clone(),
        );
        r.register_with_unit(
            "last_reconcile_timestamp",
            "Unix time of the last finished reconcile",
            Unit::Seconds,
            m.last_reconcile.clone(),
        );
        r.register(
            "claim_failures",
            "Claim files that failed in a reconcile, by reason: invalid_claim, chart_unavailable",
            m.claim_failures.clone(),
        );
        r.register(
            "queue_depth",
            "Repositories with work asked and not yet done",
            m.queue_depth.clone(),
        );
        r.register(
            "chart_cache",
            "Charts wanted by a render: hit (parsed in memory, or its layer in the chart cache) or miss (pulled from the registry)",
            m.chart_cache.clone(),
        );
        r.register(
            "registry_errors",
            "Errors of OCI registries (charts, preview images), by kind",
            m.registry_errors.clone(),
        );
        r.register(
            "kube_requests",
            "Requests to the Kubernetes API server, by verb and result (ok, error)",
            m.kube_requests.clone(),
        );
        r.register(
            "build_jobs",
            "claimd's preview build Jobs in the cluster, by phase: running, succeeded, failed",
            m.build_jobs.clone(),
        );
        r.register(
            "webhook_requests",
            "Gitea webhook requests by result: accepted, ignored, unauthorized, bad_request, too_large, unknown_repository",
            m.webhook_requests.clone(),
        );
        r.register(
            "lease_held",
            "1 while this replica holds the repository's lease (only with leases configured)",
            m.lease_held.clone(),
        );
        m.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        // Series that will exist start at 0, so that `increase()` sees their first
        // increment (a series appearing at 1 shows no increase).
        for reason in CLAIM_FAILURE_REASONS {
            let _ = m.claim_failures.get_or_create(&ReasonLabels { reason });
        }
        for result in ["hit", "miss"] {
            let _ = m.chart_cache.get_or_create(&ResultLabels { result });
        }
        Metrics { registry, ..m }
    }

    /// Starts `repository`'s series at 0 (a repository in the configuration).
    pub fn repository(&self, repository: &Arc<str>) {
        for outcome in Outcome::ALL {
            let _ = self.reconcile.get_or_create(&ReconcileLabels {
                repository: repository.clone(),
                result: outcome.as_str(),
            });
        }
        let labels = RepositoryLabels {
            repository: repository.clone(),
        };
        let _ = self.bot_commits.get_or_create(&labels);
        let _ = self.bot_push_rejections.get_or_create(&labels);
    }

    /// Starts the webhook verdicts at 0 (the receiver listens).
    pub fn webhooks(&self) {
        for verdict in Webhook::ALL {
            let _ = self.webhook_requests.get_or_create(&ResultLabels {
                result: verdict.as_str(),
            });
        }
    }

    /// The registry in the OpenMetrics text format (`openmetrics`) or the classic
    /// Prometheus one, with its `Content-Type`. Reads counters; does no other work.
    pub fn encode(&self, openmetrics: bool) -> (String, &'static str) {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if openmetrics {
            let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
            (out, OPENMETRICS)
        } else {
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
            (out, PROMETHEUS_TEXT)
        }
    }

    /// Starts timing a reconcile: its duration is recorded when the guard is dropped,
    /// however the reconcile ends.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            start: Instant::now(),
        }
    }

    /// A finished reconcile of `repository`.
    pub fn reconciled(&self, repository: &Arc<str>, outcome: Outcome) {
        self.reconcile
            .get_or_create(&ReconcileLabels {
                repository: repository.clone(),
                result: outcome.as_str(),
            })
            .inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reconcile
            .get_or_create(&RepositoryLabels {
                repository: repository.clone(),
            })
            .set(now);
        if outcome == Outcome::Committed {
            self.bot_commits
                .get_or_create(&RepositoryLabels {
                    repository: repository.clone(),
                })
                .inc();
        }
    }

    /// `count` publications of a bot commit of `repository` refused.
    pub fn push_rejections(&self, repository: &Arc<str>, count: u64) {
        if count > 0 {
            self.bot_push_rejections
                .get_or_create(&RepositoryLabels {
                    repository: repository.clone(),
                })
                .inc_by(count);
        }
    }

    /// A claim file failed in a reconcile.
    pub fn claim_failed(&self, reason: &'static str) {
        self.claim_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn webhook(&self, result: Webhook) {
        self.webhook_requests
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// claimd's build Jobs as the last list found them: (running, succeeded, failed).
    pub fn set_build_jobs(&self, counts: [usize; 3]) {
        for (phase, n) in JOB_PHASES.into_iter().zip(counts) {
            self.build_jobs
                .get_or_create(&PhaseLabels { phase })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Whether this replica holds `repository`'s lease.
    pub fn set_lease_held(&self, repository: &Arc<str>, held: bool) {
        self.lease_held
            .get_or_create(&RepositoryLabels {
                repository: repository.clone(),
            })
            .set(i64::from(held));
    }
}

/// Records a reconcile's duration when dropped (see [`Metrics::reconcile_timer`]).
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The metrics the adapters count into (the daemon's; none in other processes).
static INSTALLED: OnceLock<Arc<Metrics>> = OnceLock::new();

/// Makes `metrics` the one the adapters count into. The first call wins (a process has
/// one daemon); false when another was installed before.
pub fn install(metrics: &Arc<Metrics>) -> bool {
    INSTALLED.set(metrics.clone()).is_ok()
}

fn installed() -> Option<&'static Metrics> {
    INSTALLED.get().map(|m| &**m)
}

/// A chart a render wanted: found without the registry (`hit`) or pulled (miss).
pub fn chart_cache(hit: bool) {
    if let Some(m) = installed() {
        let result = if hit { "hit" } else { "miss" };
        m.chart_cache.get_or_create(&ResultLabels { result }).inc();
    }
}

/// An OCI registry error, by its `kind()`.
pub fn registry_error(kind: &'static str) {
    if let Some(m) = installed() {
        m.registry_errors.get_or_create(&KindLabels { kind }).inc();
    }
}

/// A request to the Kubernetes API server (`verb`: get, list, patch, delete, watch).
pub fn kube_request(verb: &'static str, ok: bool) {
    if let Some(m) = installed() {
        let result = if ok { "ok" } else { "error" };
        m.kube_requests
            .get_or_create(&KubeLabels { verb, result })
            .inc();
    }
}

/// The name a repository has in labels: its `giteaRepository`, else the folder name of
/// its path without `.git`, else (two configured repositories share a folder name)
/// `owner/name` from the path's last two parts. Bounded by the configuration.
pub fn repository_label(
    gitea_repository: Option<&str>,
    path: &std::path::Path,
    unique_folder: bool,
) -> Arc<str> {
    if let Some(name) = gitea_repository {
        return name.to_lowercase().into();
    }
    let folder = |p: &std::path::Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.strip_suffix(".git")
            .map(str::to_string)
            .unwrap_or(name)
    };
    if unique_folder {
        return folder(path).into();
    }
    let owner = path.parent().map(folder).unwrap_or_default();
    format!("{owner}/{}", folder(path)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_the_contract_is_encoded_with_its_labels() {
        let m = Metrics::new();
        let repo: Arc<str> = "voltran".into();
        let _ = m.reconcile_timer();
        m.reconciled(&repo, Outcome::Committed);
        m.reconciled(&repo, Outcome::Failed);
        m.push_rejections(&repo, 2);
        m.noop_reconciles.inc();
        m.claim_failed("invalid_claim");
        m.queue_depth.set(1);
        m.set_build_jobs([1, 2, 0]);
        m.webhook(Webhook::TooLarge);
        m.set_lease_held(&repo, true);
        m.chart_cache
            .get_or_create(&ResultLabels { result: "hit" })
            .inc();
        m.registry_errors
            .get_or_create(&KindLabels {
                kind: "unreachable",
            })
            .inc();
        m.kube_requests
            .get_or_create(&KubeLabels {
                verb: "list",
                result: "ok",
            })
            .inc();
        let (text, content_type) = m.encode(false);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        for line in [
            format!(
                "claimd_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "claimd_reconcile_total{repository=\"voltran\",result=\"committed\"} 1".into(),
            "claimd_reconcile_total{repository=\"voltran\",result=\"failed\"} 1".into(),
            "claimd_reconcile_duration_seconds_count 1".into(),
            "claimd_bot_commits_total{repository=\"voltran\"} 1".into(),
            "claimd_bot_push_rejections_total{repository=\"voltran\"} 2".into(),
            "claimd_noop_reconciles_total 1".into(),
            "claimd_claim_failures_total{reason=\"invalid_claim\"} 1".into(),
            "claimd_queue_depth 1".into(),
            "claimd_chart_cache_total{result=\"hit\"} 1".into(),
            "claimd_registry_errors_total{kind=\"unreachable\"} 1".into(),
            "claimd_kube_requests_total{verb=\"list\",result=\"ok\"} 1".into(),
            "claimd_build_jobs{phase=\"running\"} 1".into(),
            "claimd_build_jobs{phase=\"succeeded\"} 2".into(),
            "claimd_build_jobs{phase=\"failed\"} 0".into(),
            "claimd_webhook_requests_total{result=\"too_large\"} 1".into(),
            "claimd_lease_held{repository=\"voltran\"} 1".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(text.contains("claimd_last_reconcile_timestamp_seconds{repository=\"voltran\"} "));
        // The same registry in OpenMetrics: its units, and the end marker.
        let (open, content_type) = m.encode(true);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(open.contains("# UNIT claimd_reconcile_duration_seconds seconds"));
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn labels_take_only_a_fixed_set_of_values() {
        assert_eq!(
            Outcome::ALL.map(Outcome::as_str),
            ["committed", "unchanged", "failed", "rejected"]
        );
        let m = Metrics::new();
        m.repository(&"voltran".into());
        m.webhooks();
        let (text, _) = m.encode(false);
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        // Every labelled series that exists before anything happened, all at 0.
        for line in series
            .iter()
            .filter(|l| l.contains("=\"") && !l.contains("_bucket"))
        {
            assert!(
                line.ends_with(" 0") || line.starts_with("claimd_build_info"),
                "{line}"
            );
        }
        assert_eq!(
            series
                .iter()
                .filter(|l| l.starts_with("claimd_reconcile_total"))
                .count(),
            4
        );
        assert_eq!(
            series
                .iter()
                .filter(|l| l.starts_with("claimd_webhook_requests_total"))
                .count(),
            6
        );
        let verdicts: Vec<&str> = [202, 200, 401, 400, 413, 404]
            .into_iter()
            .filter_map(Webhook::of_status)
            .map(Webhook::as_str)
            .collect();
        assert_eq!(
            verdicts,
            [
                "accepted",
                "ignored",
                "unauthorized",
                "bad_request",
                "too_large",
                "unknown_repository"
            ]
        );
        assert_eq!(Webhook::of_status(500), None);
    }

    #[test]
    fn a_repository_is_named_after_its_configuration_not_its_full_path() {
        let path = std::path::Path::new("/srv/git/platform/voltran.git");
        assert_eq!(&*repository_label(None, path, true), "voltran");
        assert_eq!(&*repository_label(None, path, false), "platform/voltran");
        assert_eq!(
            &*repository_label(Some("Platform/Voltran"), path, true),
            "platform/voltran"
        );
    }

    #[test]
    fn the_timer_records_once_when_dropped() {
        let m = Metrics::new();
        let count = |m: &Metrics| {
            m.encode(false)
                .0
                .lines()
                .find_map(|l| l.strip_prefix("claimd_reconcile_duration_seconds_count "))
                .map(str::to_string)
        };
        {
            let _t = m.reconcile_timer();
            assert_eq!(count(&m).as_deref(), Some("0"));
        }
        assert_eq!(count(&m).as_deref(), Some("1"));
    }
}
