//! Block-style YAML writer for JSON values.
//!
//! Output reads back to the same value under YAML 1.1 (go-yaml v2: Helm, Argo CD) and
//! YAML 1.2: any string a resolver could take for something else is double-quoted.

use super::{resolve_plain, NodeValue};
use serde_json::Value as Json;
use std::fmt::Write;

/// Writes a value as a YAML document (no leading `---`), ending with a newline.
pub fn emit(value: &Json) -> String {
    let mut out = String::new();
    match value {
        Json::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Json::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            write_inline(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

/// A mapping key or scalar string, quoted when needed.
pub fn emit_scalar_key(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn quoted(s: &str) -> String {
    // YAML double-quoted strings accept JSON string escapes.
    serde_json::to_string(s).unwrap_or_default()
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Json>, level: usize) {
    for (key, value) in map {
        indent(out, level);
        out.push_str(&emit_scalar_key(key));
        out.push(':');
        write_value_after_key(out, value, level);
    }
}

fn write_value_after_key(out: &mut String, value: &Json, level: usize) {
    match value {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, level + 2);
        }
        Json::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, level + 2);
        }
        other => {
            out.push(' ');
            write_inline(out, other, level + 2);
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Json], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item {
            Json::Object(m) if !m.is_empty() => {
                // First entry on the dash line, the rest aligned under it.
                let mut first = true;
                for (key, value) in m {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(out, level + 2);
                    }
                    out.push_str(&emit_scalar_key(key));
                    out.push(':');
                    write_value_after_key(out, value, level + 2);
                }
            }
            Json::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            other => {
                out.push(' ');
                write_inline(out, other, level + 2);
                out.push('\n');
            }
        }
    }
}

/// Scalars and empty collections.
fn write_inline(out: &mut String, value: &Json, level: usize) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.is_nan() {
                    out.push_str(".nan");
                } else if f.is_infinite() {
                    out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
                } else if f.fract() == 0.0 && f.abs() < 1e15 {
                    let _ = write!(out, "{f:.1}");
                } else {
                    let _ = write!(out, "{f}");
                }
            } else {
                let _ = write!(out, "{n}");
            }
        }
        Json::String(s) => write_str(out, s, level),
        Json::Array(_) => out.push_str("[]"),
        Json::Object(_) => out.push_str("{}"),
    }
}

fn write_str(out: &mut String, s: &str, level: usize) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if is_literal_block_safe(s) {
        let body = s.trim_end_matches('\n');
        let trailing = s.len() - body.len();
        out.push_str(match trailing {
            0 => "|-",
            1 => "|",
            _ => "|+",
        });
        for line in s[..s.len() - trailing.min(1)].split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, level);
                out.push_str(line);
            }
        }
    } else {
        out.push_str(&quoted(s));
    }
}

/// A string that every YAML resolver reads back as this same string when written plain.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if s.ends_with(' ') || s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || " ._/-@+=,()$%^~:".contains(c);
    if !s.chars().all(allowed) {
        return false;
    }
    // YAML 1.1 and 1.2 keywords (booleans, nulls) must be quoted.
    matches!(resolve_plain(s), NodeValue::Str(_))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
}

/// Multi-line text that a literal block (`|`) carries exactly.
fn is_literal_block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.contains('\r')
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
        && !s.split('\n').any(|l| l.ends_with(' ') || l.ends_with('\t'))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_documents, Limits};
    use super::*;
    use serde_json::json;

    fn roundtrip(v: &Json) -> Json {
        let text = emit(v);
        let docs = parse_documents(&text, &Limits::default()).expect(&text);
        docs[0].to_json()
    }

    #[test]
    fn ambiguous_strings_are_quoted_and_round_trip() {
        let strings = [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "N",
            "~",
            "null",
            "1.0",
            "0x1F",
            "012",
            "1e3",
            "",
            " lead",
            "a: b",
            "#x",
            "- x",
            "true",
            "2001-12-14",
            "é",
            ".inf",
            "1_000",
            "0o17",
            "=",
            "<<",
            "500m",
            "v1.2.3",
            "a #b",
            "x:",
            "@at",
            "*ref",
            "&anchor",
            "!tag",
            "%p",
            "multi\nline\n",
            "no newline\nat end",
            "two\n\n",
            "\ttab",
            "back\\slash",
            "q\"uote",
            "ctl\u{7}",
            "trailing \nspace",
        ];
        for s in strings {
            let v = json!({ "k": s, "list": [s], s: 1 });
            assert_eq!(roundtrip(&v), v, "{s:?} emitted as:\n{}", emit(&v));
        }
    }

    #[test]
    fn nested_structures_round_trip() {
        let v = json!({
            "a": {"b": [1, 2.5, {"c": null, "d": []}], "e": {}},
            "hosts": [{"host": "x.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "nested": [[1, 2], []],
            "big": 10000000000i64, "neg": -3, "float": 1.0
        });
        assert_eq!(roundtrip(&v), v);
    }

    #[test]
    fn layout_is_block_style() {
        let v = json!({"image": {"repository": "nginx", "tag": "1.25"}, "env": [{"name": "A", "value": "yes"}]});
        assert_eq!(
            emit(&v),
            "image:\n  repository: nginx\n  tag: \"1.25\"\nenv:\n  - name: A\n    value: \"yes\"\n"
        );
    }
}
