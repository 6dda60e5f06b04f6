//! Chart sources (adapter): the chart data claimd needs, from an OCI registry (the
//! chart repository a claim names, through [`crate::oci`]), a local charts folder, or
//! the charts embedded in the binary (the embedded default). Parsed charts are kept in
//! memory by digest.

pub mod archive;
mod embedded;
mod files;
pub mod publish;
mod remote;

pub use files::{chart_from_files, digest, ChartFiles};
pub use remote::Remote;

use crate::oci;
use crate::render::{ChartUnavailable, Charts};
use crate::values::{Chart, ChartRef};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{detail}")]
    Invalid { path: String, detail: String },
    #[error("no chart `{name}` in {place}")]
    Missing { name: String, place: String },
    #[error("chart `{name}` is version {have} in {place}, the claim asks for {want}")]
    Version {
        name: String,
        have: String,
        want: String,
        place: String,
    },
    /// Anything that went wrong talking to a registry or with what it sent.
    #[error("{reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: oci::Error,
    },
    /// The registry client could not be set up (an unreadable CA file).
    #[error(transparent)]
    Setup(oci::Error),
    /// The chart layer a registry sent is not a chart archive claimd reads.
    #[error("{reference}: {source}")]
    Archive {
        reference: String,
        #[source]
        source: archive::Error,
    },
    /// A push would move a published version.
    #[error("{reference}: version {version} is already published with different content; bump the chart's version (or --force to overwrite it)")]
    Published { reference: String, version: String },
    #[error("{reference}: the tag holds an image index, not a chart")]
    NotAChart { reference: String },
    /// A source that could not be set up (see [`Source::Broken`]).
    #[error("chart source: {0}")]
    Broken(String),
}

impl Error {
    /// Worth trying again later (a registry that did not answer), as opposed to a
    /// problem that stays until someone changes a claim, a chart or the config.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Registry { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// A short name for metrics (a registry's problem by its own kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Invalid { .. } => "invalid",
            Error::Missing { .. } => "missing",
            Error::Version { .. } => "version",
            Error::Registry { source, .. } | Error::Setup(source) => source.kind(),
            Error::Archive { source, .. } => source.kind(),
            Error::Published { .. } => "published",
            Error::NotAChart { .. } => "not_a_chart",
            Error::Broken(_) => "broken",
        }
    }
}

impl From<&Error> for ChartUnavailable {
    fn from(e: &Error) -> ChartUnavailable {
        ChartUnavailable::new(e.to_string(), e.kind(), e.is_transient())
    }
}

/// Where charts come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The six charts compiled into claimd.
    Embedded,
    /// A folder with one sub-folder per chart (`charts/microservice/Chart.yaml`, …).
    Dir(PathBuf),
    /// The OCI registry each reference names (`oci://host/path`), with claimd's cache.
    Oci(Arc<Remote>),
    /// A source that could not be set up (e.g. an unreadable CA file): every chart fails
    /// with this reason, so claims fail and their files are kept.
    Broken(String),
}

impl Source {
    /// `embedded`, `oci` (with `registry` settings), or a charts folder.
    pub fn parse(spec: &str, registry: &oci::Settings) -> Result<Source, Error> {
        Ok(match spec {
            "" | "embedded" => Source::Embedded,
            "oci" => Source::Oci(Arc::new(Remote::new(Arc::new(
                oci::Registry::new(registry.clone()).map_err(Error::Setup)?,
            )))),
            dir => Source::Dir(PathBuf::from(dir)),
        })
    }

    /// Like [`Source::parse`]; a source that cannot be set up becomes [`Source::Broken`].
    pub fn parse_or_broken(spec: &str, registry: &oci::Settings) -> Source {
        Source::parse(spec, registry).unwrap_or_else(|e| {
            tracing::error!(error = %e, "chart source unavailable; every claim fails until fixed");
            Source::Broken(e.to_string())
        })
    }

    fn place(&self) -> String {
        match self {
            Source::Embedded => "the charts embedded in claimd".into(),
            Source::Dir(d) => d.display().to_string(),
            Source::Oci(_) => "the chart repository".into(),
            Source::Broken(e) => e.clone(),
        }
    }

    fn files(&self, name: &str) -> Result<Option<ChartFiles>, Error> {
        match self {
            Source::Embedded => Ok(embedded::chart(name)),
            Source::Dir(dir) => {
                let chart_dir = dir.join(name);
                if !chart_dir.join("Chart.yaml").is_file() {
                    return Ok(None);
                }
                files::read_dir_files(&chart_dir).map(Some)
            }
            Source::Oci(_) => Ok(None),
            Source::Broken(e) => Err(Error::Broken(e.clone())),
        }
    }

    /// Parses the charts of `refs` (asked for only from a local source: embedded, folder)
    /// so that a [`Source::resolve`] of them later finds them parsed: called on another
    /// thread while the claims are read. The OCI source does nothing here (it would ask
    /// the registry for references that may no longer be wanted).
    pub fn warm(&self, refs: impl FnOnce() -> Vec<ChartRef>) {
        if matches!(self, Source::Embedded | Source::Dir(_)) {
            for r in &refs() {
                // A chart that does not load is reported by the resolve that needs it.
                let _ = self.load(r);
            }
        }
    }

    /// Loads every chart in `refs`; each reference gets its chart or the reason it has
    /// none (with whether that is worth retrying later). Local sources (embedded,
    /// folder) stand in for the repository part of a reference; the OCI source pulls
    /// from it (several charts at once).
    pub fn resolve<'a>(&self, refs: impl IntoIterator<Item = &'a ChartRef>) -> Charts {
        let refs: Vec<&ChartRef> = refs.into_iter().collect();
        let unavailable = |e: Error| ChartUnavailable::from(&e);
        match self {
            Source::Oci(remote) => remote
                .resolve(&refs)
                .into_iter()
                .map(|(r, c)| (r, c.map_err(unavailable)))
                .collect(),
            _ => refs
                .into_iter()
                .map(|r| (r.clone(), self.load(r).map_err(unavailable)))
                .collect(),
        }
    }

    pub fn load(&self, reference: &ChartRef) -> Result<Arc<Chart>, Error> {
        if let Source::Oci(remote) = self {
            return remote
                .resolve(&[reference])
                .remove(reference)
                .unwrap_or_else(|| {
                    Err(Error::Missing {
                        name: reference.name.clone(),
                        place: self.place(),
                    })
                });
        }
        let files = self.files(&reference.name)?.ok_or_else(|| Error::Missing {
            name: reference.name.clone(),
            place: self.place(),
        })?;
        let digest = digest(&files);
        local_memo().get_or_parse(reference, &digest, || {
            chart_from_files(reference, &files, &self.place(), digest.clone())
        })
    }
}

/// Parsed charts by (reference, digest): a chart is parsed once per content. Holds at
/// most `capacity` charts (then starts again empty: old contents are rarely needed).
#[derive(Debug)]
pub struct Memo {
    charts: Mutex<HashMap<(ChartRef, String), Arc<Chart>>>,
    capacity: usize,
}

impl Memo {
    pub fn new(capacity: usize) -> Memo {
        Memo {
            charts: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn get(&self, reference: &ChartRef, digest: &str) -> Option<Arc<Chart>> {
        let memo = self.charts.lock().unwrap_or_else(|p| p.into_inner());
        memo.get(&(reference.clone(), digest.to_string())).cloned()
    }

    pub fn get_or_parse(
        &self,
        reference: &ChartRef,
        digest: &str,
        parse: impl FnOnce() -> Result<Chart, Error>,
    ) -> Result<Arc<Chart>, Error> {
        if let Some(chart) = self.get(reference, digest) {
            return Ok(chart);
        }
        let chart = Arc::new(parse()?);
        let mut memo = self.charts.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= self.capacity {
            memo.clear();
        }
        memo.insert((reference.clone(), digest.to_string()), chart.clone());
        Ok(chart)
    }
}

/// The memo of charts read from the binary or a folder (pure function of their content).
fn local_memo() -> &'static Memo {
    static MEMO: OnceLock<Memo> = OnceLock::new();
    // Old versions of a chart folder's content are not needed again.
    MEMO.get_or_init(|| Memo::new(256))
}
