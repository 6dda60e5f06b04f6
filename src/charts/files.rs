//! A chart's data files: reading them from a folder, their digest, and the [`Chart`]
//! claimd builds from them.

use super::Error;
use crate::values::{Chart, ChartRef, Mapping, Schema, MAPPING_FILE};
use crate::yaml::{self, Limits};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The text files of one chart, by path inside the chart (`values.yaml`, …).
pub type ChartFiles = BTreeMap<String, String>;

pub(super) fn read_dir_files(dir: &Path) -> Result<ChartFiles, Error> {
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
pub(super) fn is_chart_data(name: &str) -> bool {
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
/// `digest` identifies the chart's content (see [`digest`], or a registry's manifest digest).
pub fn chart_from_files(
    reference: &ChartRef,
    files: &ChartFiles,
    place: &str,
    digest: String,
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
    let schema = match files.get("values.schema.json") {
        Some(text) => {
            let invalid = |detail: String| Error::Invalid {
                path: format!("{name}/values.schema.json"),
                detail: format!(" {detail}"),
            };
            let json: Json = serde_json::from_str(text)
                .map_err(|e| invalid(format!("{}:{}: {e}", e.line(), e.column())))?;
            Some(
                Schema::compile(json)
                    .map_err(|e| invalid(format!("not a valid JSON Schema: {e}")))?,
            )
        }
        None => None,
    };
    Ok(Chart {
        reference: reference.clone(),
        digest,
        defaults,
        production,
        env_values,
        mapping,
        schema,
    })
}
