//! OCI registries (adapter, oci-client): the one client claimd talks to registries
//! with, for chart pulls and pushes and for the Kubernetes step's image lookups. A tag
//! is pinned to a manifest digest and the artifact's layer ([`Registry::pin`]), a layer
//! is read by digest and verified ([`Registry::layer`]), both with a content-addressed
//! cache on disk ([`cache`]). Tags are re-checked at most every `refresh` seconds;
//! `offline` works from the cache alone. Credentials: [`credentials`].
//!
//! This module knows registries, not charts: what a layer holds is the caller's affair.

mod cache;
pub mod credentials;

pub use cache::Pinned;
pub use credentials::{Credentials, HostSettings};

use cache::{now_secs, sha256_hex, Cache};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciManifest;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Media types of a Helm chart artifact.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// What charts pushed by Helm before 3.8 (and some tools) carry.
pub const LEGACY_CHART_LAYER: &str = "application/tar+gzip";
pub const PROVENANCE_LAYER: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";

type ParseError = <Reference as std::str::FromStr>::Err;

/// What went wrong with a registry or with what it sent. The messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry client: {0}")]
    Client(#[source] Box<OciDistributionError>),
    #[error("chart repository `{repository}` is not an OCI reference (oci://host/path)")]
    NotOci { repository: String },
    #[error("chart repository `{repository}` has no host")]
    NoHost { repository: String },
    #[error("not an image reference: {source}")]
    NotAnImage {
        #[source]
        source: ParseError,
    },
    #[error("credentials for {host}: {source}")]
    Credentials {
        host: String,
        #[source]
        source: credentials::Error,
    },
    #[error("not in the chart cache, and claimd is offline (pull it once online, or run without --offline)")]
    TagNotCached,
    #[error("chart layer not in the cache, and claimd is offline")]
    LayerNotCached,
    #[error("tag {tag} not found in {host}/{repository}: publish the chart version (claimd chart push) or fix chart.version")]
    NotFound {
        tag: String,
        host: String,
        repository: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("the registry {host} refused the credentials (or none were given): set them in claimd's config (registries.hosts.\"{host}\") or the Docker config file")]
    Unauthorized {
        host: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("the TLS certificate of {host} is not trusted ({}): name its CA as caFile for the host in the registry settings (or plainHttp for a plain HTTP registry)", chain(source))]
    Certificate {
        host: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("registry unreachable: {host} did not answer ({source}); will retry")]
    Unreachable {
        host: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("registry unreachable: {host} answered {status}; will retry")]
    ServerError {
        host: String,
        status: u16,
        #[source]
        source: Box<OciDistributionError>,
    },
    /// Anything else the registry client reported.
    #[error(transparent)]
    Registry(Box<OciDistributionError>),
    #[error("the registry sent manifest {got} for digest {digest}")]
    ManifestMismatch { got: String, digest: String },
    #[error("is an image index, not a Helm chart")]
    ImageIndex,
    #[error("is not a Helm chart (config media type {media_type}, expected {HELM_CONFIG})")]
    NotHelm { media_type: String },
    #[error("has no chart layer ({CHART_LAYER})")]
    NoChartLayer,
    #[error("unsupported layer digest {digest}")]
    LayerDigest { digest: String },
    #[error("chart layer of {size} bytes is over the {} MiB limit", limit >> 20)]
    TooLarge { size: i64, limit: u64 },
    #[error("chart layer digest mismatch: expected sha256:{expected}, got sha256:{actual}; nothing was used")]
    DigestMismatch { expected: String, actual: String },
    #[error("writing the cache: {source}")]
    CacheWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image lookup failed (the reference it was about, and why).
    #[error("{image}: {source}")]
    Image {
        image: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Worth trying again later (the registry did not answer, or answered 5xx), as
    /// opposed to a problem that stays until someone changes a claim, a chart or the
    /// config.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::ServerError { .. } => true,
            Error::Image { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Client(_) => "client",
            Error::NotOci { .. } => "not_oci",
            Error::NoHost { .. } => "no_host",
            Error::NotAnImage { .. } => "not_an_image",
            Error::Credentials { .. } => "credentials",
            Error::TagNotCached | Error::LayerNotCached => "offline",
            Error::NotFound { .. } => "not_found",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Certificate { .. } => "certificate",
            Error::Unreachable { .. } => "unreachable",
            Error::ServerError { .. } => "server_error",
            Error::Registry(_) => "registry",
            Error::ManifestMismatch { .. } => "manifest_mismatch",
            Error::ImageIndex | Error::NotHelm { .. } | Error::NoChartLayer => "not_a_chart",
            Error::LayerDigest { .. } => "layer_digest",
            Error::TooLarge { .. } => "too_large",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::CacheWrite { .. } => "cache_write",
            Error::Image { source, .. } => source.kind(),
        }
    }

    /// Whether the registry said the manifest or repository does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// A registry client error about `at`, in words a person can act on.
    pub fn from_client(e: OciDistributionError, at: &Location) -> Error {
        if is_not_found(&e) {
            return Error::NotFound {
                tag: at.tag.clone(),
                host: at.host.clone(),
                repository: at.repository.clone(),
                source: Box::new(e),
            };
        }
        Error::about_host(e, &at.host)
    }

    /// Like [`Error::from_client`] without a location: a missing manifest is
    /// [`Error::Registry`].
    fn about_host(e: OciDistributionError, host: &str) -> Error {
        let host = host.to_string();
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => Error::Unauthorized {
                host,
                source: Box::new(e),
            },
            OciDistributionError::RequestError(ref r) if is_certificate_problem(r) => {
                Error::Certificate {
                    host,
                    source: Box::new(e),
                }
            }
            OciDistributionError::RequestError(ref r) if r.is_connect() || r.is_timeout() => {
                Error::Unreachable {
                    host,
                    source: Box::new(e),
                }
            }
            OciDistributionError::ServerError { code, .. } if code >= 500 => Error::ServerError {
                host,
                status: code,
                source: Box::new(e),
            },
            other => Error::Registry(Box::new(other)),
        }
    }
}

/// Registry settings (the daemon config's `registries:` section; env overrides).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Cache folder (default: `$CLAIMD_CACHE`, else `~/.cache/claimd`).
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// Seconds between checks of what a tag points to (default 300; 0: every time).
    #[serde(default)]
    pub refresh: Option<u64>,
    /// Use only what is in the cache; never ask a registry.
    #[serde(default)]
    pub offline: bool,
    /// Per registry host (`ghcr.io`, `127.0.0.1:5000`): transport and credentials.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSettings>,
}

impl Settings {
    /// Applies `CLAIMD_CACHE`, `CLAIMD_OFFLINE=1`, `CLAIMD_REFRESH=<seconds>` and
    /// `CLAIMD_PLAIN_HTTP=<host>,<host>`.
    pub fn with_env(mut self) -> Settings {
        if let Some(dir) = std::env::var_os("CLAIMD_CACHE") {
            self.cache = Some(PathBuf::from(dir));
        }
        if std::env::var("CLAIMD_OFFLINE").is_ok_and(|v| v != "0" && !v.is_empty()) {
            self.offline = true;
        }
        if let Some(secs) = std::env::var("CLAIMD_REFRESH")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            self.refresh = Some(secs);
        }
        if let Ok(hosts) = std::env::var("CLAIMD_PLAIN_HTTP") {
            for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                self.hosts.entry(host.to_string()).or_default().plain_http = true;
            }
        }
        self
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/claimd"))
                .unwrap_or_else(|| std::env::temp_dir().join("claimd-cache"))
        })
    }

    fn refresh(&self) -> Duration {
        Duration::from_secs(self.refresh.unwrap_or(300))
    }
}

/// A chart's location in a registry.
#[derive(Debug, Clone)]
pub struct Location {
    pub host: String,
    /// Repository path below the host, ending in the chart name.
    pub repository: String,
    pub tag: String,
}

impl Location {
    /// `oci://host/path` + chart name + version (Helm's `+` → `_` tag rule).
    pub fn of(repository: &str, name: &str, version: &str) -> Result<Location, Error> {
        let rest = repository
            .strip_prefix("oci://")
            .ok_or_else(|| Error::NotOci {
                repository: repository.to_string(),
            })?;
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(Error::NoHost {
                repository: repository.to_string(),
            });
        }
        let repository = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}/{name}")
        };
        Ok(Location {
            host: host.to_string(),
            repository,
            tag: version.replace('+', "_"),
        })
    }

    pub fn reference(&self) -> Reference {
        Reference::with_tag(self.host.clone(), self.repository.clone(), self.tag.clone())
    }

    fn at(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.host.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}:{}", self.host, self.repository, self.tag)
    }
}

/// A client for the registries, with its caches. Shared by every reconcile.
pub struct Registry {
    settings: Settings,
    client: Client,
    cache: Cache,
    runtime: OnceLock<tokio::runtime::Runtime>,
    tags: Mutex<HashMap<String, (Pinned, Instant)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("cache", &self.settings.cache_dir())
            .field("offline", &self.settings.offline)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(settings: Settings) -> Result<Registry, Error> {
        let mut plain = Vec::new();
        let mut roots = Vec::new();
        for (host, s) in &settings.hosts {
            if s.plain_http {
                plain.push(host.clone());
            }
            if let Some(ca) = &s.ca_file {
                let data = std::fs::read(ca).map_err(|source| Error::Io {
                    path: ca.clone(),
                    source,
                })?;
                roots.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                });
            }
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            extra_root_certificates: roots,
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(30)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| Error::Client(Box::new(e)))?;
        Ok(Registry {
            cache: Cache::new(settings.cache_dir()),
            settings,
            client,
            runtime: OnceLock::new(),
            tags: Mutex::new(HashMap::new()),
        })
    }

    /// Runs a future to completion from synchronous code: on the daemon's runtime when
    /// called from one of its blocking threads, else on a runtime of our own.
    pub fn block_on<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(f))
            }
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| self.own_runtime().block_on(f))
                    .join()
                    .expect("registry thread")
            }),
            Err(_) => self.own_runtime().block_on(f),
        }
    }

    fn own_runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
    }

    pub fn credentials(&self, host: &str) -> Result<Credentials, Error> {
        credentials::for_host(host, self.settings.hosts.get(host)).map_err(|source| {
            Error::Credentials {
                host: host.to_string(),
                source,
            }
        })
    }

    /// The manifest digest a tag points to and the Helm chart layer it names (from
    /// memory within `refresh`, else the registry; the cache when it does not answer).
    pub async fn pin(&self, at: &Location) -> Result<Pinned, Error> {
        let key = at.to_string();
        if let Some((p, when)) = self.tags.lock().expect("tags").get(&key) {
            if self.settings.offline || when.elapsed() < self.settings.refresh() {
                return Ok(p.clone());
            }
        }
        let on_disk = self.cache.read_tag(at);
        if self.settings.offline {
            return on_disk.ok_or(Error::TagNotCached);
        }
        // Checked recently by another claimd process (a hook): no request either.
        if let Some(p) = &on_disk {
            if now_secs().saturating_sub(p.checked) < self.settings.refresh().as_secs() {
                self.remember(&key, p);
                return Ok(p.clone());
            }
        }
        let auth = (&self.credentials(&at.host)?).into();
        let digest = match self
            .client
            .fetch_manifest_digest(&at.reference(), &auth)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                let why = Error::from_client(e, at);
                // The registry is down: what the tag pointed to when last seen is still
                // the best answer (a chart version is not expected to move).
                if let (true, Some(p)) = (why.is_transient(), &on_disk) {
                    tracing::warn!(chart = %key, digest = %p.manifest, "{why}; using the digest from the last check");
                    return Ok(p.clone());
                }
                return Err(why);
            }
        };
        let pinned = match on_disk {
            Some(p) if p.manifest == digest => Pinned {
                checked: now_secs(),
                ..p
            },
            _ => {
                let (manifest, got) = self
                    .client
                    .pull_manifest(&at.at(&digest), &auth)
                    .await
                    .map_err(|e| Error::from_client(e, at))?;
                if got != digest {
                    return Err(Error::ManifestMismatch { got, digest });
                }
                chart_layer(&manifest, &digest)?
            }
        };
        self.cache.write_tag(at, &pinned);
        self.remember(&key, &pinned);
        Ok(pinned)
    }

    fn remember(&self, key: &str, pinned: &Pinned) {
        self.tags
            .lock()
            .expect("tags")
            .insert(key.to_string(), (pinned.clone(), Instant::now()));
    }

    /// The pinned layer's bytes, verified against its digest: from the cache, else
    /// pulled (at most `max_bytes`) and cached.
    pub async fn layer(
        &self,
        at: &Location,
        pinned: &Pinned,
        max_bytes: u64,
    ) -> Result<Vec<u8>, Error> {
        let hex = pinned
            .layer
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| Error::LayerDigest {
                digest: pinned.layer.clone(),
            })?;
        if let Some(bytes) = self.cache.read_blob(hex) {
            crate::metrics::chart_cache(true);
            return Ok(bytes);
        }
        if self.settings.offline {
            return Err(Error::LayerNotCached);
        }
        if pinned.size < 0 || pinned.size as u64 > max_bytes {
            return Err(Error::TooLarge {
                size: pinned.size,
                limit: max_bytes,
            });
        }
        crate::metrics::chart_cache(false);
        let auth = (&self.credentials(&at.host)?).into();
        // Authenticates (a token for pull) before the blob request.
        self.client
            .auth(&at.reference(), &auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| Error::from_client(e, at))?;
        let mut bytes = Vec::with_capacity(pinned.size as usize);
        self.client
            .pull_blob(&at.reference(), pinned.layer.as_str(), &mut bytes)
            .await
            .map_err(|e| Error::from_client(e, at))?;
        let actual = sha256_hex(&bytes);
        if actual != hex {
            return Err(Error::DigestMismatch {
                expected: hex.to_string(),
                actual,
            });
        }
        self.cache
            .write_blob(hex, &bytes)
            .map_err(|source| Error::CacheWrite {
                path: self.cache.blob_path(hex),
                source,
            })?;
        Ok(bytes)
    }

    /// Does `image` (`host/repo:tag` or `…@sha256:…`) exist? A manifest HEAD request.
    pub async fn image_exists(&self, image: &str) -> Result<bool, Error> {
        let fail = |source: Error| Error::Image {
            image: image.to_string(),
            source: Box::new(source),
        };
        let reference: Reference = image
            .parse()
            .map_err(|source| fail(Error::NotAnImage { source }))?;
        let host = reference.registry().to_string();
        let auth = (&self.credentials(&host).map_err(fail)?).into();
        match self.client.fetch_manifest_digest(&reference, &auth).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(fail(Error::about_host(e, &host))),
        }
    }

    /// The tags of `host/repository` (a first page of at most 100), with the configured
    /// credentials: what a login and a read need. `None`: the repository does not exist
    /// (nothing was pushed to it).
    pub async fn tags(&self, host: &str, repository: &str) -> Result<Option<Vec<String>>, Error> {
        let reference =
            Reference::with_tag(host.to_string(), repository.to_string(), "latest".into());
        let auth = (&self.credentials(host)?).into();
        match self
            .client
            .list_tags(&reference, &auth, Some(100), None)
            .await
        {
            Ok(t) => Ok(Some(t.tags)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::about_host(e, host)),
        }
    }

    /// The client itself, for what this module does not wrap (a chart push).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Picks the chart layer of a Helm artifact's manifest (a provenance layer is ignored).
fn chart_layer(manifest: &OciManifest, digest: &str) -> Result<Pinned, Error> {
    let OciManifest::Image(m) = manifest else {
        return Err(Error::ImageIndex);
    };
    if m.config.media_type != HELM_CONFIG {
        return Err(Error::NotHelm {
            media_type: m.config.media_type.clone(),
        });
    }
    let layer = m
        .layers
        .iter()
        .find(|l| l.media_type == CHART_LAYER)
        .or_else(|| m.layers.iter().find(|l| l.media_type == LEGACY_CHART_LAYER))
        .ok_or(Error::NoChartLayer)?;
    Ok(Pinned {
        manifest: digest.to_string(),
        layer: layer.digest.clone(),
        size: layer.size,
        checked: now_secs(),
    })
}

/// Whether a client error says the manifest or the repository does not exist.
pub fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn is_certificate_problem(e: &dyn std::error::Error) -> bool {
    let text = chain(e);
    text.contains("certificate") || text.contains("UnknownIssuer")
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_follow_helm() {
        let l = Location::of("oci://ghcr.io/acme/charts", "redis", "1.2.3+build.4").unwrap();
        assert_eq!(l.host, "ghcr.io");
        assert_eq!(l.repository, "acme/charts/redis");
        assert_eq!(l.tag, "1.2.3_build.4");
        assert_eq!(
            l.to_string(),
            "oci://ghcr.io/acme/charts/redis:1.2.3_build.4"
        );
        let bare = Location::of("oci://127.0.0.1:5000/", "x", "1.0.0").unwrap();
        assert_eq!(
            (bare.host.as_str(), bare.repository.as_str()),
            ("127.0.0.1:5000", "x")
        );
        assert!(Location::of("https://charts.example.com", "x", "1.0.0")
            .unwrap_err()
            .to_string()
            .contains("not an OCI reference"));
        assert!(Location::of("oci:///x", "x", "1.0.0").is_err());
    }

    fn manifest(config: &str, layers: &[&str]) -> OciManifest {
        let json = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": config, "digest": "sha256:00", "size": 1},
            "layers": layers.iter().enumerate().map(|(i, t)| serde_json::json!({
                "mediaType": t, "digest": format!("sha256:{i:02}"), "size": 10 + i
            })).collect::<Vec<_>>(),
        });
        OciManifest::Image(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn picks_the_chart_layer_past_a_provenance_layer() {
        let m = manifest(HELM_CONFIG, &[PROVENANCE_LAYER, CHART_LAYER]);
        let p = chart_layer(&m, "sha256:m").unwrap();
        assert_eq!((p.layer.as_str(), p.size), ("sha256:01", 11));
        let legacy = manifest(HELM_CONFIG, &[LEGACY_CHART_LAYER]);
        assert_eq!(chart_layer(&legacy, "d").unwrap().layer, "sha256:00");
        let image = manifest("application/vnd.oci.image.config.v1+json", &[CHART_LAYER]);
        assert!(chart_layer(&image, "d")
            .unwrap_err()
            .to_string()
            .contains("not a Helm chart"));
        let empty = manifest(HELM_CONFIG, &[PROVENANCE_LAYER]);
        assert!(chart_layer(&empty, "d")
            .unwrap_err()
            .to_string()
            .contains("no chart layer"));
    }

    #[test]
    fn kinds_and_transience() {
        let at = Location::of("oci://127.0.0.1:5000/charts", "redis", "1.0.0").unwrap();
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "http://127.0.0.1:5000/v2/".into(),
            message: String::new(),
        };
        let down = Error::from_client(server(503), &at);
        assert!(down.is_transient());
        assert_eq!(down.kind(), "server_error");
        assert_eq!(
            down.to_string(),
            "registry unreachable: 127.0.0.1:5000 answered 503; will retry"
        );
        let missing = Error::from_client(server(404), &at);
        assert!(missing.is_not_found() && !missing.is_transient());
        assert_eq!(missing.kind(), "not_found");
        assert!(missing.to_string().starts_with(
            "tag 1.0.0 not found in 127.0.0.1:5000/charts/redis: publish the chart version"
        ));
        let denied = Error::from_client(
            OciDistributionError::UnauthorizedError { url: "u".into() },
            &at,
        );
        assert_eq!(denied.kind(), "unauthorized");
        assert!(std::error::Error::source(&denied).is_some());
        let image = Error::Image {
            image: "127.0.0.1:5000/app:v1".into(),
            source: Box::new(down),
        };
        assert!(image.is_transient());
        assert_eq!(image.kind(), "server_error");
        assert!(image
            .to_string()
            .starts_with("127.0.0.1:5000/app:v1: registry unreachable"));
        assert!(!Error::TagNotCached.is_transient());
        assert_eq!(Error::LayerNotCached.kind(), "offline");
    }
}
