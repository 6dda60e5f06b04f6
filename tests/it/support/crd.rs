// Test support: validate a generated Kubernetes custom object against the
// published `CustomResourceDefinition` (CRD) manifests in the shared contracts
// folder, the way the API server would with `kubectl apply --validate=strict`.
//
// Usage from a test module of `tests/it`:
//
// ```ignore
// use crate::support::crd;
//
// let Some(dir) = crd::crds_dir_or_skip("my_test") else { return };
// if let Err(errs) = crd::validate(&dir, &object) {
//     panic!("object does not match its CRD:\n{}", errs.join("\n"));
// }
// ```
//
// What is checked, in order:
// 1. `apiVersion` (`<group>/<version>`) and `kind` select a CRD in the folder and
//    a served version of it.
// 2. `metadata` is an object with only `ObjectMeta` fields; `metadata.name` exists
//    and is a DNS-1123 subdomain; namespace, labels, annotations and finalizers
//    are well-formed. (The CRD schema itself says only `metadata: {type: object}`.)
// 3. Strict unknown-field check: every property of an object schema must be listed
//    in its `properties`, unless the schema has `additionalProperties` or
//    `x-kubernetes-preserve-unknown-fields: true`. `x-kubernetes-list-type`
//    `set`/`map` duplicates are reported too.
// 4. The rest of the structural schema (types, required, enum, pattern, ...) with
//    the `jsonschema` crate after translating `OpenAPI` v3 to JSON Schema draft 4.
//
// Like the API server, a `null` on a field that is not `nullable` is pruned
// (treated as absent) and a missing field that has a `default` gets it, before
// the schema is checked. CEL rules (`x-kubernetes-validations`) are not evaluated.
//
// Errors are `"<json pointer>: message"`; the root of the object is shown as `/`.
//

use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// Directory of the published CRDs (see [`super::contracts`]), or `None` after a loud
/// skip line (a failure in CI).
pub fn crds_dir_or_skip(test: &str) -> Option<PathBuf> {
    super::contracts::dir_or_skip("crds", test)
}

/// Validates one object (apiVersion/kind pick the CRD and version).
/// `Err` holds every problem found, each as `"<json pointer>: message"`.
pub fn validate(crds: &Path, obj: &Value) -> Result<(), Vec<String>> {
    let mut errs = Errors::default();
    let Some(root) = obj.as_object() else {
        errs.push(
            "",
            format!("object must be a mapping, got {}", type_name(obj)),
        );
        return errs.finish();
    };

    let api_version = match root.get("apiVersion") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        Some(other) => {
            errs.push(
                "/apiVersion",
                format!("must be a non-empty string, got {}", short(other)),
            );
            None
        }
        None => {
            errs.push("/apiVersion", "required field is missing");
            None
        }
    };
    let kind = match root.get("kind") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        Some(other) => {
            errs.push(
                "/kind",
                format!("must be a non-empty string, got {}", short(other)),
            );
            None
        }
        None => {
            errs.push("/kind", "required field is missing");
            None
        }
    };

    check_metadata(root.get("metadata"), &mut errs);

    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return errs.finish();
    };
    let Some((group, version)) = api_version.split_once('/') else {
        errs.push(
            "/apiVersion",
            format!("{api_version:?} has no group; custom resources use <group>/<version>"),
        );
        return errs.finish();
    };

    let crd = match find_crd(crds, group, kind) {
        Ok(crd) => crd,
        Err(e) => {
            errs.push("/kind", e);
            return errs.finish();
        }
    };
    let Some(ver) = crd.versions.iter().find(|v| v.name == version) else {
        let known: Vec<&str> = crd.versions.iter().map(|v| v.name.as_str()).collect();
        errs.push(
            "/apiVersion",
            format!(
                "CRD {} has no version {version:?} (has {known:?})",
                crd.name
            ),
        );
        return errs.finish();
    };
    if !ver.served {
        errs.push(
            "/apiVersion",
            format!("version {version:?} of CRD {} is not served", crd.name),
        );
    }
    let validator = match &ver.validator {
        Ok(v) => v,
        Err(e) => {
            errs.push(
                "",
                format!("schema of CRD {} {version} is unusable: {e}", crd.name),
            );
            return errs.finish();
        }
    };

    // Strict unknown-field walk; also yields the object as the API server would
    // see it after pruning non-nullable nulls and applying defaults.
    let pruned = walk(&ver.schema, obj, "", true, &mut errs);

    for e in validator.iter_errors(&pruned) {
        let ptr = e.instance_path().as_str().to_owned();
        // metadata is checked by check_metadata; the CRD only says `type: object`.
        let metadata_missing = ptr.is_empty()
            && matches!(e.kind(), jsonschema::error::ValidationErrorKind::Required { property } if property == "metadata");
        if metadata_missing || ptr == "/metadata" || ptr.starts_with("/metadata/") {
            continue;
        }
        errs.push(&ptr, short_msg(e.to_string()));
    }
    errs.finish()
}

// ---------------------------------------------------------------------------
// Errors

#[derive(Default)]
struct Errors {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl Errors {
    fn push(&mut self, ptr: &str, msg: impl Into<String>) {
        let ptr = if ptr.is_empty() { "/" } else { ptr };
        let line = format!("{ptr}: {}", msg.into());
        if self.seen.insert(line.clone()) {
            self.list.push(line);
        }
    }

    fn finish(self) -> Result<(), Vec<String>> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(self.list)
        }
    }
}

fn join_ptr(base: &str, key: &str) -> String {
    format!("{base}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value shown in a message, cut to a readable length.
fn short(v: &Value) -> String {
    short_msg(v.to_string())
}

fn short_msg(mut s: String) -> String {
    const MAX: usize = 240;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

// ---------------------------------------------------------------------------
// metadata (ObjectMeta): the CRD schema leaves it to the API server.

const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

fn check_metadata(meta: Option<&Value>, errs: &mut Errors) {
    let meta = match meta {
        None => {
            errs.push("/metadata", "required field is missing");
            return;
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            errs.push(
                "/metadata",
                format!("must be an object, got {}", type_name(other)),
            );
            return;
        }
    };
    for key in meta.keys() {
        if !OBJECT_META_FIELDS.contains(&key.as_str()) {
            errs.push(
                &join_ptr("/metadata", key),
                format!("unknown field {key:?} in ObjectMeta"),
            );
        }
    }
    match meta.get("name") {
        None => errs.push("/metadata/name", "required field is missing"),
        Some(Value::String(name)) => {
            if let Err(why) = dns1123_subdomain(name) {
                errs.push(
                    "/metadata/name",
                    format!("{name:?} is not a valid DNS-1123 subdomain: {why}"),
                );
            }
        }
        Some(other) => errs.push(
            "/metadata/name",
            format!("must be a string, got {}", type_name(other)),
        ),
    }
    match meta.get("namespace") {
        None => {}
        Some(Value::String(ns)) => {
            if let Err(why) = dns1123_label(ns) {
                errs.push(
                    "/metadata/namespace",
                    format!("{ns:?} is not a valid DNS-1123 label: {why}"),
                );
            }
        }
        Some(other) => {
            errs.push(
                "/metadata/namespace",
                format!("must be a string, got {}", type_name(other)),
            );
        }
    }
    check_string_map(meta, "labels", true, errs);
    check_string_map(meta, "annotations", false, errs);
    check_finalizers(meta, errs);
    check_other_meta_types(meta, errs);
}

/// `labels` / `annotations`: qualified-name keys, string values (label syntax for labels).
fn check_string_map(meta: &Map<String, Value>, field: &str, is_label: bool, errs: &mut Errors) {
    let base = join_ptr("/metadata", field);
    match meta.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let ptr = join_ptr(&base, k);
                if let Err(why) = qualified_name(k) {
                    errs.push(
                        &ptr,
                        format!("key {k:?} is not a valid qualified name: {why}"),
                    );
                }
                match v {
                    Value::String(s) if is_label => {
                        if let Err(why) = label_value(s) {
                            errs.push(&ptr, format!("{s:?} is not a valid label value: {why}"));
                        }
                    }
                    Value::String(_) => {}
                    other => {
                        errs.push(&ptr, format!("must be a string, got {}", type_name(other)));
                    }
                }
            }
        }
        Some(other) => errs.push(
            &base,
            format!("must be a map of strings, got {}", type_name(other)),
        ),
    }
}

fn check_finalizers(meta: &Map<String, Value>, errs: &mut Errors) {
    match meta.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let ptr = format!("/metadata/finalizers/{i}");
                match item {
                    Value::String(s) => {
                        if let Err(why) = qualified_name(s) {
                            errs.push(&ptr, format!("{s:?} is not a valid finalizer name: {why}"));
                        }
                    }
                    other => errs.push(&ptr, format!("must be a string, got {}", type_name(other))),
                }
            }
        }
        Some(other) => {
            errs.push(
                "/metadata/finalizers",
                format!("must be a list of strings, got {}", type_name(other)),
            );
        }
    }
}

/// Shallow type checks of the `ObjectMeta` fields a generator should not set anyway.
fn check_other_meta_types(meta: &Map<String, Value>, errs: &mut Errors) {
    for field in [
        "generateName",
        "uid",
        "resourceVersion",
        "selfLink",
        "creationTimestamp",
        "deletionTimestamp",
    ] {
        if let Some(v) = meta.get(field) {
            if !v.is_string() && !v.is_null() {
                errs.push(
                    &join_ptr("/metadata", field),
                    format!("must be a string, got {}", type_name(v)),
                );
            }
        }
    }
    for field in ["generation", "deletionGracePeriodSeconds"] {
        if let Some(v) = meta.get(field) {
            if !v.is_i64() && !v.is_u64() && !v.is_null() {
                errs.push(
                    &join_ptr("/metadata", field),
                    format!("must be an integer, got {}", type_name(v)),
                );
            }
        }
    }
    for field in ["ownerReferences", "managedFields"] {
        if let Some(v) = meta.get(field) {
            if !v.is_array() && !v.is_null() {
                errs.push(
                    &join_ptr("/metadata", field),
                    format!("must be a list, got {}", type_name(v)),
                );
            }
        }
    }
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters, has {}", s.len()));
    }
    if !s.chars().all(|c| is_alnum_lower(c) || c == '-') {
        return Err("must consist of lower case alphanumeric characters or '-'".into());
    }
    if !s.starts_with(is_alnum_lower) || !s.ends_with(is_alnum_lower) {
        return Err("must start and end with a lower case alphanumeric character".into());
    }
    Ok(())
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("must be at most 253 characters, has {}", s.len()));
    }
    if !s.chars().all(|c| is_alnum_lower(c) || c == '-' || c == '.') {
        return Err("must consist of lower case alphanumeric characters, '-' or '.'".into());
    }
    for part in s.split('.') {
        if part.is_empty() || !part.starts_with(is_alnum_lower) || !part.ends_with(is_alnum_lower) {
            return Err(
                "each '.'-separated part must start and end with a lower case alphanumeric character"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Name part of a qualified name / a non-empty label value:
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn qualified_name_part(s: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters, has {}", s.len()));
    }
    if s.is_empty() || !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err("must start and end with an alphanumeric character".into());
    }
    if !s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')) {
        return Err("must consist of alphanumeric characters, '-', '_' or '.'".into());
    }
    Ok(())
}

/// Label/annotation key or finalizer: `[prefix/]name`, prefix a DNS-1123 subdomain.
fn qualified_name(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((prefix, name)) => {
            dns1123_subdomain(prefix).map_err(|e| format!("prefix {prefix:?}: {e}"))?;
            qualified_name_part(name).map_err(|e| format!("name {name:?}: {e}"))
        }
        None => qualified_name_part(s),
    }
}

fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Ok(())
    } else {
        qualified_name_part(s)
    }
}

// ---------------------------------------------------------------------------
// Strict walk over the OpenAPI (structural) schema.

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Walks `value` with `schema`, reporting unknown fields and list-type duplicates,
/// and returns the value with non-nullable nulls pruned and defaults applied.
fn walk(schema: &Value, value: &Value, ptr: &str, is_root: bool, errs: &mut Errors) -> Value {
    let Some(schema) = schema.as_object() else {
        return value.clone();
    };
    match value {
        Value::Object(obj) => walk_object(schema, obj, ptr, is_root, errs),
        Value::Array(items) => {
            let out: Vec<Value> = match schema.get("items") {
                Some(item_schema) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| walk(item_schema, v, &format!("{ptr}/{i}"), false, errs))
                    .collect(),
                None => items.clone(),
            };
            check_list_type(schema, &out, ptr, errs);
            Value::Array(out)
        }
        other => other.clone(),
    }
}

fn walk_object(
    schema: &Map<String, Value>,
    obj: &Map<String, Value>,
    ptr: &str,
    is_root: bool,
    errs: &mut Errors,
) -> Value {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let is_object_schema = schema.get("type").and_then(Value::as_str) == Some("object")
        || props.is_some()
        || additional.is_some();
    if !is_object_schema {
        // Wrong type (reported by the schema check) or untyped preserve/int-or-string.
        return Value::Object(obj.clone());
    }
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(schema, "x-kubernetes-embedded-resource");

    let mut out = Map::new();
    for (key, val) in obj {
        let child_ptr = join_ptr(ptr, key);
        // apiVersion/kind/metadata are implicit on the root and embedded resources.
        let implicit =
            (is_root || embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
        if implicit && key == "metadata" {
            out.insert(key.clone(), val.clone());
            continue;
        }
        let child_schema = props.and_then(|p| p.get(key)).or(match additional {
            Some(Value::Object(_)) => additional,
            _ => None,
        });
        if let Some(cs) = child_schema {
            let nullable = cs.get("nullable").and_then(Value::as_bool).unwrap_or(false);
            if val.is_null() && !nullable {
                continue; // the API server prunes it
            }
            out.insert(key.clone(), walk(cs, val, &child_ptr, false, errs));
        } else if implicit || preserve || matches!(additional, Some(Value::Bool(true))) {
            out.insert(key.clone(), val.clone());
        } else if props.is_some_and(|p| !p.is_empty()) {
            errs.push(&child_ptr, unknown_field_msg(key, props));
        } else {
            errs.push(
                &child_ptr,
                format!("unknown field {key:?} (schema declares no fields here)"),
            );
        }
    }
    if let Some(props) = props {
        for (key, cs) in props {
            if out.contains_key(key) {
                continue;
            }
            if let Some(default) = cs.get("default") {
                out.insert(key.clone(), default.clone());
            }
        }
    }
    Value::Object(out)
}

fn unknown_field_msg(key: &str, props: Option<&Map<String, Value>>) -> String {
    let known: Vec<&str> = props
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut msg = format!("unknown field {key:?}");
    if let Some(close) = known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(key) || near(k, key))
    {
        let _ = write!(msg, " (did you mean {close:?}?)");
    }
    let _ = write!(msg, "; known fields: {}", known.join(", "));
    short_msg(msg)
}

/// Crude "close spelling" test: a shared prefix of at least 4 bytes.
fn near(a: &str, b: &str) -> bool {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count() >= 4
}

fn check_list_type(schema: &Map<String, Value>, items: &[Value], ptr: &str, errs: &mut Errors) {
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errs.push(
                        &format!("{ptr}/{i}"),
                        format!("duplicate entry {} in a list-type=set", short(item)),
                    );
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if keys.is_empty() {
                return;
            }
            let mut seen: Vec<Vec<&Value>> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Some(obj) = item.as_object() else {
                    continue;
                };
                let mut tuple = Vec::with_capacity(keys.len());
                for k in &keys {
                    match obj.get(*k) {
                        Some(v) => tuple.push(v),
                        None => {
                            errs.push(
                                &format!("{ptr}/{i}"),
                                format!("list-map key {k:?} is missing"),
                            );
                        }
                    }
                }
                if tuple.len() != keys.len() {
                    continue;
                }
                if seen.contains(&tuple) {
                    errs.push(
                        &format!("{ptr}/{i}"),
                        format!("duplicate entry for list-map keys {keys:?}"),
                    );
                } else {
                    seen.push(tuple);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// OpenAPI v3 (Kubernetes structural schema) -> JSON Schema draft 4

/// Formats whose meaning is the same for the API server and for JSON Schema.
/// Others (`int64`, `int32`, `byte`, `duration` = Go duration, `int-or-string`,
/// ...) are dropped, as JSON Schema would ignore or misread them.
const KEPT_FORMATS: &[&str] = &["date-time", "ipv4", "ipv6", "uuid"];

/// A pattern is Go RE2 for the API server; JSON Schema's meta-schema wants ECMA-262,
/// which has no inline `(?i)` (the Prometheus Operator's CRDs use it). `(?i)` is
/// dropped and each ASCII letter outside a class or escape matches both cases, the same
/// language; letters inside a `[...]` class stay as written (stricter, never looser).
fn case_insensitive_without_flag(pattern: &str) -> String {
    if !pattern.contains("(?i)") {
        return pattern.to_owned();
    }
    let mut out = String::new();
    let (mut escaped, mut in_class) = (false, false);
    for c in pattern.replace("(?i)", "").chars() {
        match c {
            _ if escaped => {
                escaped = false;
                out.push(c);
            }
            '\\' => {
                escaped = true;
                out.push(c);
            }
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            c if c.is_ascii_alphabetic() && !in_class => {
                out.push('[');
                out.push(c.to_ascii_lowercase());
                out.push(c.to_ascii_uppercase());
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

fn to_json_schema(schema: &Value) -> Value {
    let Some(s) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, val) in s {
        let translated = match key.as_str() {
            "properties" | "patternProperties" | "definitions" => match val.as_object() {
                Some(m) => Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), to_json_schema(v)))
                        .collect(),
                ),
                None => continue,
            },
            "items" | "additionalProperties" | "additionalItems" | "not" => match val {
                Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
                other => to_json_schema(other),
            },
            "allOf" | "anyOf" | "oneOf" => match val.as_array() {
                Some(a) => Value::Array(a.iter().map(to_json_schema).collect()),
                None => continue,
            },
            "required" => match val.as_array() {
                Some(a) if !a.is_empty() => val.clone(),
                _ => continue,
            },
            "format" => match val.as_str() {
                Some(f) if KEPT_FORMATS.contains(&f) => val.clone(),
                _ => continue,
            },
            "pattern" => match val.as_str() {
                Some(p) => Value::String(case_insensitive_without_flag(p)),
                None => continue,
            },
            "type" | "enum" | "maxLength" | "minLength" | "maximum" | "minimum"
            | "exclusiveMaximum" | "exclusiveMinimum" | "multipleOf" | "maxItems" | "minItems"
            | "uniqueItems" | "maxProperties" | "minProperties" => val.clone(),
            // description, default, example, nullable, x-kubernetes-*, title, ...
            _ => continue,
        };
        out.insert(key.clone(), translated);
    }

    if flag(s, "x-kubernetes-int-or-string") {
        out.insert("type".into(), serde_json::json!(["integer", "string"]));
        // The usual `anyOf: [{type: integer}, {type: string}]` only repeats that.
        let only_types = out
            .get("anyOf")
            .and_then(Value::as_array)
            .is_some_and(|branches| {
                branches
                    .iter()
                    .all(|b| b.as_object().is_some_and(|o| o.keys().all(|k| k == "type")))
            });
        if only_types {
            out.remove("anyOf");
        }
    }
    if flag(s, "x-kubernetes-embedded-resource") {
        let mut required: Vec<Value> = out
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for k in ["apiVersion", "kind"] {
            if !required.iter().any(|r| r == k) {
                required.push(Value::String(k.into()));
            }
        }
        out.insert("required".into(), Value::Array(required));
    }
    if flag(s, "nullable") {
        return serde_json::json!({ "anyOf": [{ "type": "null" }, Value::Object(out)] });
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Loading and caching CRDs

struct CrdVersion {
    name: String,
    served: bool,
    /// The openAPIV3Schema as published (for the strict walk).
    schema: Value,
    /// The translated schema, compiled.
    validator: Result<jsonschema::Validator, String>,
}

struct Crd {
    /// metadata.name, e.g. `applicationsets.argoproj.io`.
    name: String,
    group: String,
    kind: String,
    versions: Vec<CrdVersion>,
}

type Loaded = Arc<Result<Vec<Arc<Crd>>, String>>;
/// Parsed files, keyed by path and modification time.
type Cache = Mutex<HashMap<(PathBuf, Option<SystemTime>), Loaded>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Parses (once per path and modification time) every CRD in one YAML file.
fn load_file(path: &Path) -> Loaded {
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let key = (path.to_path_buf(), mtime);
    // Holding the lock while parsing makes parallel tests wait for one parse
    // instead of all parsing the same large file.
    let mut map = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(hit) = map.get(&key) {
        return Arc::clone(hit);
    }
    let loaded: Loaded = Arc::new(parse_crd_file(path));
    map.insert(key, Arc::clone(&loaded));
    loaded
}

fn parse_crd_file(path: &Path) -> Result<Vec<Arc<Crd>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    let mut crds = Vec::new();
    for doc in &docs {
        let doc = yaml_to_json(doc);
        if doc.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            continue;
        }
        crds.push(Arc::new(
            crd_from_json(&doc).map_err(|e| format!("{}: {e}", path.display()))?,
        ));
    }
    Ok(crds)
}

fn crd_from_json(doc: &Value) -> Result<Crd, String> {
    let text = |ptr: &str| -> Result<String, String> {
        doc.pointer(ptr)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("CRD has no {ptr}"))
    };
    let name = text("/metadata/name")?;
    let group = text("/spec/group")?;
    let kind = text("/spec/names/kind")?;
    // apiextensions v1beta1 kept one schema for all versions.
    let shared_schema = doc.pointer("/spec/validation/openAPIV3Schema");
    let mut versions = Vec::new();
    let listed = doc
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in &listed {
        let vname = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("CRD version without a name")?;
        let served = v.get("served").and_then(Value::as_bool).unwrap_or(true);
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .or(shared_schema)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }));
        versions.push(compile(vname, served, schema));
    }
    if listed.is_empty() {
        if let (Some(vname), Some(schema)) = (
            doc.pointer("/spec/version").and_then(Value::as_str),
            shared_schema,
        ) {
            versions.push(compile(vname, true, schema.clone()));
        }
    }
    Ok(Crd {
        name,
        group,
        kind,
        versions,
    })
}

fn compile(name: &str, served: bool, schema: Value) -> CrdVersion {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .should_validate_formats(true)
        .build(&to_json_schema(&schema))
        .map_err(|e| e.to_string());
    CrdVersion {
        name: name.to_owned(),
        served,
        schema,
        validator,
    }
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Null => "null".to_owned(),
                        other => format!("{other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
    }
}

/// Finds the CRD for `group`/`kind`: first in files named `<group>_*.yaml`
/// (the usual `<group>_<plural>.yaml` layout), then in every other YAML file.
fn find_crd(dir: &Path, group: &str, kind: &str) -> Result<Arc<Crd>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .collect();
    files.sort();
    let prefix = format!("{group}_");
    let (likely, others): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix))
    });
    let mut problems = Vec::new();
    for (pass, list) in [likely, others].into_iter().enumerate() {
        for path in list {
            let loaded = load_file(&path);
            match loaded.as_ref() {
                Ok(crds) => {
                    if let Some(crd) = crds.iter().find(|c| c.group == group && c.kind == kind) {
                        return Ok(Arc::clone(crd));
                    }
                }
                // A broken file only matters when it was the likely home of the CRD.
                Err(e) if pass == 0 => problems.push(e.clone()),
                Err(_) => {}
            }
        }
    }
    let mut msg = format!(
        "no CRD for kind {kind:?} in group {group:?} in {}",
        dir.display()
    );
    if !problems.is_empty() {
        let _ = write!(msg, " ({})", problems.join("; "));
    }
    Err(msg)
}
