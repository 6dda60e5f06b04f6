//! A chart's `values.schema.json`, checked against the final values as `helm install`
//! does, so that a claim the chart would refuse is refused at push time instead.

use serde_json::Value as Json;
use std::sync::Arc;

/// A compiled values schema (the draft comes from its `$schema`, 2020-12 without one).
#[derive(Clone)]
pub struct Schema {
    source: Arc<Json>,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.source)
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// One way the values break the schema: where (a values path like `image.tag` or
/// `env[0].name`; empty for the root) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl Schema {
    pub fn compile(source: Json) -> Result<Schema, String> {
        let validator = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&source)
            .map_err(|e| e.to_string())?;
        Ok(Schema {
            source: Arc::new(source),
            validator: Arc::new(validator),
        })
    }

    /// Every violation, in a stable order.
    pub fn check(&self, values: &Json) -> Vec<Violation> {
        // The common case, valid values, without collecting errors (several times faster).
        if self.validator.is_valid(values) {
            return Vec::new();
        }
        let mut out: Vec<Violation> = self
            .validator
            .iter_errors(values)
            .map(|e| Violation {
                path: dotted(&e.instance_path().to_string()),
                message: e.to_string(),
            })
            .collect();
        out.sort_by(|a, b| (&a.path, &a.message).cmp(&(&b.path, &b.message)));
        out.dedup();
        out
    }
}

/// `/env/0/name` → `env[0].name` (the form claims and mapping files use).
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_every_violation_with_a_values_path() {
        let s = Schema::compile(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "replicaCount": {"type": "integer", "minimum": 0},
                "image": {"type": "object", "required": ["repository"],
                          "properties": {"repository": {"type": "string", "minLength": 1}}},
                "env": {"type": "array", "items": {"type": "object", "required": ["name"]}}
            }
        }))
        .unwrap();
        assert!(s
            .check(&json!({"replicaCount": 2, "image": {"repository": "x"}}))
            .is_empty());
        let v = s.check(
            &json!({"replicaCount": "three", "image": {"repository": ""}, "env": [{"value": "1"}]}),
        );
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["env[0]", "image.repository", "replicaCount"]);
        assert!(v[2].message.contains("\"three\""), "{}", v[2].message);
    }

    #[test]
    fn a_broken_schema_is_an_error_not_a_panic() {
        assert!(Schema::compile(json!({"type": 12})).is_err());
    }

    #[test]
    fn pointers_become_dotted_paths() {
        assert_eq!(dotted(""), "");
        assert_eq!(dotted("/a/b~1c/0/d"), "a.b/c[0].d");
    }
}
