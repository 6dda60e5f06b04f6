//! The claim → chart values mapping that ships inside each chart (`claimd-mapping.yaml`).
//!
//! ```yaml
//! apiVersion: claimd.dev/v1
//! kind: ValuesMapping
//! fields:
//!   replicas: replicaCount                 # claim field path: values path
//!   ingress.host: ingress.hosts[0].host    # through a list: copied from the chart's values
//!   backup.s3Bucket:                       # long form
//!     to: [backup.destinationPath]
//!     set: {backup.enabled: true}
//!   resources: {to: resources, replace: true}   # the claim's map replaces the chart's
//! ```

use super::path::Path;
use crate::yaml::{Node, NodeValue, Pos};
use serde_json::{Map, Value as Json};

/// File name of the mapping inside a chart.
pub const MAPPING_FILE: &str = "claimd-mapping.yaml";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping {
    pub fields: Vec<FieldMapping>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    /// Path in the claim (relative to the application or service entry).
    pub from: Path,
    pub to: Vec<Path>,
    /// Constants set whenever the claim field is present.
    pub set: Vec<(Path, Json)>,
    /// The claim's map replaces the chart's map at `to` instead of merging into it
    /// (chart keys the claim does not have are written as `null`).
    pub replace: bool,
}

/// A problem in a mapping file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct MappingError {
    pub pos: Pos,
    pub message: String,
}

fn err(pos: Pos, message: impl Into<String>) -> MappingError {
    MappingError {
        pos,
        message: message.into(),
    }
}

fn path_at(text: &str, pos: Pos) -> Result<Path, MappingError> {
    Path::parse(text).map_err(|m| err(pos, m))
}

impl Mapping {
    /// Reads a parsed mapping document.
    pub fn from_node(doc: &Node) -> Result<Mapping, MappingError> {
        let Some(entries) = doc.as_map() else {
            return Err(err(doc.pos, "a mapping file must be a map"));
        };
        let mut fields = Vec::new();
        for (key, value) in entries {
            match key.name.as_str() {
                "apiVersion" if value.as_str() == Some("claimd.dev/v1") => {}
                "apiVersion" => return Err(err(value.pos, "apiVersion must be claimd.dev/v1")),
                "kind" if value.as_str() == Some("ValuesMapping") => {}
                "kind" => return Err(err(value.pos, "kind must be ValuesMapping")),
                "fields" => {
                    let Some(list) = value.as_map() else {
                        return Err(err(
                            value.pos,
                            "fields must be a map of claim path: values path",
                        ));
                    };
                    for (from, target) in list {
                        fields.push(field(&from.name, from.pos, target)?);
                    }
                }
                other => {
                    return Err(err(
                        key.pos,
                        format!("unknown key `{other}` (expected apiVersion, kind, fields)"),
                    ))
                }
            }
        }
        Ok(Mapping { fields })
    }

    /// Turns a claim entry's fields into chart value overrides. `claim` holds only the
    /// mappable fields; `base` is the chart's merged values (for list paths).
    /// Returns the overrides, or the claim fields this chart has no mapping for.
    pub fn apply(&self, claim: &Json, base: &Json) -> Result<Map<String, Json>, Vec<Path>> {
        let unmapped: Vec<Path> = leaves(claim)
            .into_iter()
            .filter(|leaf| !self.fields.iter().any(|f| f.from.is_prefix_of(leaf)))
            .collect();
        if !unmapped.is_empty() {
            return Err(unmapped);
        }
        let mut out = Map::new();
        for f in &self.fields {
            let Some(value) = f.from.get(claim) else {
                continue;
            };
            for to in &f.to {
                let value = match (f.replace, to.get(base)) {
                    (true, Some(chart_value)) => replacing(chart_value, value),
                    _ => value.clone(),
                };
                to.set(&mut out, base, value);
            }
            for (to, constant) in &f.set {
                to.set(&mut out, base, constant.clone());
            }
        }
        Ok(out)
    }
}

/// `value` plus `null` for every key of `chart_value` it lacks, so that a Helm merge
/// of `value` over `chart_value` gives exactly `value`.
fn replacing(chart_value: &Json, value: &Json) -> Json {
    match (chart_value, value) {
        (Json::Object(c), Json::Object(v)) => {
            let mut out = Map::new();
            for (k, vv) in v {
                let nv = match c.get(k) {
                    Some(cv) => replacing(cv, vv),
                    None => vv.clone(),
                };
                out.insert(k.clone(), nv);
            }
            for k in c.keys() {
                if !v.contains_key(k) {
                    out.insert(k.clone(), Json::Null);
                }
            }
            Json::Object(out)
        }
        _ => value.clone(),
    }
}

fn field(from: &str, pos: Pos, target: &Node) -> Result<FieldMapping, MappingError> {
    let from = path_at(from, pos)?;
    match &target.value {
        NodeValue::Str(to) => Ok(FieldMapping {
            from,
            to: vec![path_at(to, target.pos)?],
            set: Vec::new(),
            replace: false,
        }),
        NodeValue::Map(entries) => {
            let mut out = FieldMapping {
                from,
                to: Vec::new(),
                set: Vec::new(),
                replace: false,
            };
            for (k, v) in entries {
                match (k.name.as_str(), &v.value) {
                    ("to", NodeValue::Str(s)) => out.to.push(path_at(s, v.pos)?),
                    ("to", NodeValue::Seq(items)) => {
                        for item in items {
                            let s = item
                                .as_str()
                                .ok_or_else(|| err(item.pos, "`to` entries must be value paths"))?;
                            out.to.push(path_at(s, item.pos)?);
                        }
                    }
                    ("set", NodeValue::Map(consts)) => {
                        for (ck, cv) in consts {
                            out.set.push((path_at(&ck.name, ck.pos)?, cv.to_json()));
                        }
                    }
                    ("replace", NodeValue::Bool(b)) => out.replace = *b,
                    ("to" | "set" | "replace", _) => {
                        return Err(err(
                            v.pos,
                            "`to` is a path or list of paths; `set` is a map; `replace` is true or false",
                        ))
                    }
                    (other, _) => {
                        return Err(err(
                            k.pos,
                            format!("unknown key `{other}` (expected to, set, replace)"),
                        ))
                    }
                }
            }
            if out.to.is_empty() && out.set.is_empty() {
                return Err(err(target.pos, "a field needs `to` or `set`"));
            }
            Ok(out)
        }
        _ => Err(err(
            target.pos,
            "expected a values path or a map with to/set",
        )),
    }
}

/// Paths of the leaves of a claim value: scalars and lists (lists map as a whole).
fn leaves(v: &Json) -> Vec<Path> {
    fn walk(v: &Json, prefix: &mut Vec<super::path::Segment>, out: &mut Vec<Path>) {
        match v {
            Json::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(super::path::Segment::Key(k.clone()));
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ if !prefix.is_empty() => out.push(Path(prefix.clone())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse_documents, Limits};
    use serde_json::json;

    fn mapping(text: &str) -> Result<Mapping, MappingError> {
        let docs = parse_documents(text, &Limits::default()).expect("yaml");
        Mapping::from_node(&docs[0])
    }

    const MAP: &str = "apiVersion: claimd.dev/v1\nkind: ValuesMapping\nfields:\n  replicas: replicaCount\n  resources: resources\n  ingress.host: ingress.hosts[0].host\n  backup.s3Bucket:\n    to: [backup.destinationPath]\n    set: {backup.enabled: true}\n";

    #[test]
    fn maps_claim_fields_to_values() {
        let m = mapping(MAP).expect("valid");
        let base = json!({"ingress": {"hosts": [{"host": "x", "paths": ["/"]}]}});
        let claim = json!({"replicas": 3, "resources": {"requests": {"cpu": "1"}}, "ingress": {"host": "a.b"}, "backup": {"s3Bucket": "s3://b"}});
        let got = m.apply(&claim, &base).expect("all mapped");
        assert_eq!(
            Json::Object(got),
            json!({"replicaCount": 3, "resources": {"requests": {"cpu": "1"}}, "ingress": {"hosts": [{"host": "a.b", "paths": ["/"]}]}, "backup": {"destinationPath": "s3://b", "enabled": true}})
        );
    }

    #[test]
    fn replace_drops_chart_keys_the_claim_lacks() {
        let m = mapping("fields:\n  resources: {to: resources, replace: true}\n").expect("valid");
        let base = json!({"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}});
        let claim = json!({"resources": {"requests": {"cpu": "2"}}});
        let got = m.apply(&claim, &base).expect("mapped");
        assert_eq!(
            Json::Object(got),
            json!({"resources": {"requests": {"cpu": "2", "memory": null}, "limits": null}})
        );
    }

    #[test]
    fn unmapped_fields_are_reported() {
        let m = mapping(MAP).expect("valid");
        let unmapped = m
            .apply(
                &json!({"replicas": 1, "storage": {"size": "1Gi"}}),
                &json!({}),
            )
            .unwrap_err();
        assert_eq!(unmapped, vec![Path::parse("storage.size").unwrap()]);
    }

    #[test]
    fn bad_mapping_files_are_refused_with_positions() {
        let e = mapping("apiVersion: claimd.dev/v1\nfields:\n  replicas: a..b\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (3, 13));
        let e = mapping("fieldz: {}\n").unwrap_err();
        assert!(e.message.contains("unknown key `fieldz`"));
        let e = mapping("fields:\n  a:\n    too: b\n").unwrap_err();
        assert!(e.message.contains("unknown key `too`"));
    }
}
