//! Chart sources (adapter): the chart data claimd needs, from a local charts folder or
//! the charts embedded in the binary (the embedded default). OCI registries come later.

mod embedded;

use crate::render::Charts;
use crate::values::{Chart, ChartRef, Mapping, MAPPING_FILE};
use crate::yaml::{self, Limits};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
}

/// The text files of one chart, by path inside the chart (`values.yaml`, …).
pub type ChartFiles = BTreeMap<String, String>;

/// Where charts come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The six charts compiled into claimd.
    Embedded,
    /// A folder with one sub-folder per chart (`charts/microservice/Chart.yaml`, …).
    Dir(PathBuf),
}

impl Source {
    fn place(&self) -> String {
        match self {
            Source::Embedded => "the charts embedded in claimd".into(),
            Source::Dir(d) => d.display().to_string(),
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
                read_dir_files(&chart_dir).map(Some)
            }
        }
    }

    /// Loads every chart in `refs`; each reference gets its chart or the reason it has none.
    /// The repository part of a reference is not checked: local charts stand in for it.
    pub fn resolve<'a>(&self, refs: impl IntoIterator<Item = &'a ChartRef>) -> Charts {
        refs.into_iter()
            .map(|r| (r.clone(), self.load(r).map_err(|e| e.to_string())))
            .collect()
    }

    pub fn load(&self, reference: &ChartRef) -> Result<Chart, Error> {
        let files = self.files(&reference.name)?.ok_or_else(|| Error::Missing {
            name: reference.name.clone(),
            place: self.place(),
        })?;
        chart_from_files(reference, &files, &self.place())
    }
}

fn read_dir_files(dir: &Path) -> Result<ChartFiles, Error> {
    let mut out = ChartFiles::new();
    {
        let d = dir.to_path_buf();
        let entries = std::fs::read_dir(&d).map_err(|source| Error::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            if ft.is_file() && is_chart_data(&entry.file_name().to_string_lossy()) {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                out.insert(rel, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    Ok(out)
}

/// The files claimd reads from a chart: metadata, values files, schema and mapping.
fn is_chart_data(name: &str) -> bool {
    name == "Chart.yaml"
        || name == MAPPING_FILE
        || name == "values.schema.json"
        || (name.starts_with("values") && name.ends_with(".yaml"))
}

/// Content digest of a chart's files: sha256 over (path, length, bytes) in path order.
pub fn digest(files: &ChartFiles) -> String {
    let mut h = Sha256::new();
    for (path, content) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update((content.len() as u64).to_be_bytes());
        h.update(content.as_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn parse_map(name: &str, text: &str) -> Result<Map<String, Json>, Error> {
    let invalid = |detail: String| Error::Invalid {
        path: name.to_string(),
        detail,
    };
    let docs =
        yaml::parse_documents(text, &Limits::default()).map_err(|e| invalid(format!("{e}")))?;
    match docs.first().map(yaml::Node::to_json) {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(m)) => Ok(m),
        Some(_) => Err(invalid("1:1: values must be a map".into())),
    }
}

/// Builds the [`Chart`] claimd needs from a chart's files.
pub fn chart_from_files(
    reference: &ChartRef,
    files: &ChartFiles,
    place: &str,
) -> Result<Chart, Error> {
    let name = &reference.name;
    let meta = parse_map(
        &format!("{name}/Chart.yaml"),
        files.get("Chart.yaml").map_or("", String::as_str),
    )?;
    let have = meta.get("version").and_then(Json::as_str).unwrap_or("");
    if have != reference.version {
        return Err(Error::Version {
            name: name.clone(),
            have: have.to_string(),
            want: reference.version.clone(),
            place: place.to_string(),
        });
    }
    let defaults = match files.get("values.yaml") {
        Some(t) => parse_map(&format!("{name}/values.yaml"), t)?,
        None => Map::new(),
    };
    let production = files
        .get("values-production.yaml")
        .map(|t| parse_map(&format!("{name}/values-production.yaml"), t))
        .transpose()?;
    let mut env_values = BTreeMap::new();
    for (path, text) in files {
        let Some(env) = path
            .strip_prefix("values-")
            .and_then(|p| p.strip_suffix(".yaml"))
        else {
            continue;
        };
        if env != "production" && !path.contains('/') {
            env_values.insert(env.to_string(), parse_map(&format!("{name}/{path}"), text)?);
        }
    }
    let mapping = match files.get(MAPPING_FILE) {
        Some(text) => {
            let path = format!("{name}/{MAPPING_FILE}");
            let docs =
                yaml::parse_documents(text, &Limits::default()).map_err(|e| Error::Invalid {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            match docs.first() {
                Some(doc) => Mapping::from_node(doc).map_err(|e| Error::Invalid {
                    path,
                    detail: e.to_string(),
                })?,
                None => Mapping::default(),
            }
        }
        None => Mapping::default(),
    };
    Ok(Chart {
        reference: reference.clone(),
        digest: digest(files),
        defaults,
        production,
        env_values,
        mapping,
    })
}
