//! Block-style YAML writer for JSON values.
//!
//! Output reads back to the same value under YAML 1.1 (go-yaml v2: Helm, Argo CD) and
//! YAML 1.2: any string a resolver could take for something else is double-quoted.

use serde_json::{Map, Value as Json};
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

/// Writes `over` as a YAML document with the keys of `base` first, in `base`'s order, a
/// `null` for each key of `base` that `over` lacks, and the two merged key by key where
/// both hold a map; then the keys only `over` has. The same text as emitting that map
/// (`values::merge::file_level`), without building it.
pub fn emit_over(base: &Map<String, Json>, over: &Map<String, Json>) -> String {
    let mut out = String::new();
    if base.is_empty() && over.is_empty() {
        out.push_str("{}\n");
    } else {
        write_map_over(&mut out, base, over, 0);
    }
    out
}

fn write_map_over(
    out: &mut String,
    base: &Map<String, Json>,
    over: &Map<String, Json>,
    level: usize,
) {
    // `over` usually has `base`'s keys first, in the same order (Helm's coalesce makes
    // them so): walked side by side, without hashing a key. A key found out of order
    // falls back to lookups.
    let mut rest = over.iter().peekable();
    let mut in_order = true;
    for (key, base_value) in base {
        indent(out, level);
        write_key(out, key);
        out.push(':');
        let value = match rest.peek() {
            Some((k, _)) if *k == key => rest.next().map(|(_, v)| v),
            _ => over.get(key).inspect(|_| in_order = false),
        };
        match (value, base_value) {
            (None, _) => write_value_after_key(out, &Json::Null, level),
            (Some(Json::Object(o)), Json::Object(b)) => {
                if b.is_empty() && o.is_empty() {
                    out.push_str(" {}\n");
                } else {
                    out.push('\n');
                    write_map_over(out, b, o, level + 2);
                }
            }
            (Some(value), _) => write_value_after_key(out, value, level),
        }
    }
    let mut extra = |key: &String, value: &Json| {
        indent(out, level);
        write_key(out, key);
        out.push(':');
        write_value_after_key(out, value, level);
    };
    if in_order {
        // Every key of `over` that `base` has was taken in order: the rest are its own.
        rest.for_each(|(k, v)| extra(k, v));
    } else {
        over.iter()
            .filter(|(k, _)| !base.contains_key(*k))
            .for_each(|(k, v)| extra(k, v));
    }
}

/// A mapping key or scalar string, quoted when needed.
pub fn emit_scalar_key(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn write_key(out: &mut String, s: &str) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else {
        out.push_str(&quoted(s));
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
        write_key(out, key);
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
                    write_key(out, key);
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
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == b'/' || first == b'_') {
        return false;
    }
    if matches!(bytes.last(), Some(b' ' | b':')) {
        return false;
    }
    // One pass: only these bytes (no `#`, which could start a comment), and no `: `
    // (which would start a mapping value).
    let mut prev = 0u8;
    for &c in bytes {
        let allowed = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b' ' | b'.'
                    | b'_'
                    | b'/'
                    | b'-'
                    | b'@'
                    | b'+'
                    | b'='
                    | b','
                    | b'('
                    | b')'
                    | b'$'
                    | b'%'
                    | b'^'
                    | b'~'
                    | b':'
            );
        if !allowed || (prev == b':' && c == b' ') {
            return false;
        }
        prev = c;
    }
    // YAML 1.1 and 1.2 keywords (booleans, nulls) must be quoted. Starting with a letter,
    // `/` or `_`, nothing else resolves to anything but a string (numbers, `.inf` and
    // `~` start otherwise).
    !is_keyword(s)
}

/// `true`, `false`, `null`, `yes`, `no`, `on`, `off`, `y`, `n` in any case (a superset
/// of what YAML 1.1 and 1.2 resolve as booleans and nulls).
fn is_keyword(s: &str) -> bool {
    s.len() <= 5
        && ["true", "false", "null", "yes", "no", "on", "off", "y", "n"]
            .iter()
            .any(|k| s.eq_ignore_ascii_case(k))
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
    use super::super::{parse_documents, resolve_plain, Limits, NodeValue};
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

    #[test]
    fn a_plain_string_never_resolves_to_anything_else() {
        // Every keyword YAML 1.1 or 1.2 knows, in every mix of cases, and strings that
        // start like numbers, floats and nulls.
        let keywords = ["true", "false", "null", "yes", "no", "on", "off", "y", "n"];
        let mut words: Vec<String> = Vec::new();
        for k in keywords {
            for mask in 0u32..(1 << k.len()) {
                let w = k
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if mask & (1 << i) != 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                words.push(w);
            }
        }
        words.extend(
            [
                "~",
                ".inf",
                "-.inf",
                ".nan",
                "0x1F",
                "1e3",
                "+1",
                "_1",
                "/1",
                "a:b",
                "2001-12-14",
            ]
            .map(String::from),
        );
        for w in &words {
            if is_plain_safe(w) {
                assert!(
                    matches!(resolve_plain(w), NodeValue::Str(_)),
                    "{w:?} is written plain but reads back as something else"
                );
            }
        }
    }

    #[test]
    fn over_writes_base_order_nulls_and_own_keys_in_or_out_of_order() {
        let map = |v: Json| v.as_object().cloned().expect("map");
        let base = map(json!({"a": 1, "b": {"c": 1, "d": 2}, "e": 3, "f": {}}));
        let want = "a: 2\nb:\n  c: null\n  d: 5\ne: null\nf: {}\nx: 9\n";
        // In base's order (as coalesce leaves it), and shuffled.
        let in_order = map(json!({"a": 2, "b": {"d": 5}, "f": {}, "x": 9}));
        let shuffled = map(json!({"x": 9, "f": {}, "b": {"d": 5}, "a": 2}));
        assert_eq!(emit_over(&base, &in_order), want);
        assert_eq!(emit_over(&base, &shuffled), want);
        assert_eq!(emit_over(&Map::new(), &Map::new()), "{}\n");
    }
}
