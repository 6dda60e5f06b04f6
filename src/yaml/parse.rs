//! Event-driven YAML reader that keeps positions (yaml-rust2's parser underneath).

use super::{Key, Limits, Node, NodeValue, Pos, YamlError};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Parses every document of a YAML stream (an empty document is a `Null` node).
pub fn parse_documents(text: &str, limits: &Limits) -> Result<Vec<Node>, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError {
            pos: Pos { line: 1, col: 1 },
            message: format!(
                "file is {} bytes, more than the limit of {} bytes; split it into several files",
                text.len(),
                limits.max_bytes
            ),
        });
    }
    let mut builder = Builder {
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        nodes: 0,
    };
    let mut parser = Parser::new_from_str(text);
    let end = End::of(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            pos: end.clamp(pos_of(e.marker())),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, end.clamp(pos_of(&mark)))?;
    }
    Ok(builder.docs)
}

/// The last position of a text. The scanner puts what ends with the stream (an empty
/// scalar, an error at the end) on the line after a last line that has no line break:
/// such positions are taken as the end of the last line, so every position is inside
/// the text.
struct End {
    line: u32,
    col: u32,
}

impl End {
    /// Lines end at `\n`, `\r\n` or `\r`, as the scanner counts them.
    fn of(text: &str) -> End {
        let bytes = text.as_bytes();
        let (mut line, mut start) = (1, 0);
        for (i, b) in bytes.iter().enumerate() {
            let breaks = *b == b'\n' || (*b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            if breaks {
                line += 1;
                start = i + 1;
            }
        }
        End {
            line,
            col: text[start..].chars().count() as u32 + 1,
        }
    }

    fn clamp(&self, pos: Pos) -> Pos {
        if pos.line <= self.line {
            return pos;
        }
        Pos {
            line: self.line,
            col: self.col,
        }
    }
}

fn pos_of(mark: &Marker) -> Pos {
    Pos {
        line: mark.line() as u32,
        col: mark.col() as u32 + 1,
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
    Map {
        entries: Vec<(Key, Node)>,
        /// Values of `<<` merge keys, in order.
        merges: Vec<Node>,
        key: Option<(Key, bool)>,
        pos: Pos,
        anchor: usize,
    },
}

struct Builder<'a> {
    limits: &'a Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    docs: Vec<Node>,
    nodes: usize,
}

impl Builder<'_> {
    fn on_event(&mut self, event: Event, pos: Pos) -> Result<(), YamlError> {
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart => {
                self.anchors.clear();
                Ok(())
            }
            Event::Alias(id) => {
                let (node, count) = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos,
                    message: "alias refers to an unknown anchor".into(),
                })?;
                self.count(count, pos)?;
                let mut node = node;
                node.pos = pos;
                self.push_node(node, false, 0)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, pos)?;
                let is_merge = style == TScalarStyle::Plain && text == "<<";
                let value = if style == TScalarStyle::Plain && !is_str_tag(tag.as_ref()) {
                    resolve_plain(&text)
                } else {
                    NodeValue::Str(text)
                };
                self.push_node(Node { value, pos }, is_merge, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(pos)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    pos,
                    anchor,
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(pos)?;
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    merges: Vec::new(),
                    key: None,
                    pos,
                    anchor,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { items, pos, anchor }) => {
                    // The start marker is the `[` or the first `-`.
                    self.push_node(
                        Node {
                            value: NodeValue::Seq(items),
                            pos,
                        },
                        false,
                        anchor,
                    )
                }
                _ => Err(YamlError {
                    pos,
                    message: "unbalanced sequence".into(),
                }),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    entries,
                    merges,
                    pos,
                    anchor,
                    ..
                }) => {
                    let entries = apply_merges(entries, merges)?;
                    // yaml-rust2 marks block maps after their first key: use that key.
                    let pos = entries.first().map_or(pos, |(k, _)| k.pos);
                    self.push_node(
                        Node {
                            value: NodeValue::Map(entries),
                            pos,
                        },
                        false,
                        anchor,
                    )
                }
                _ => Err(YamlError {
                    pos,
                    message: "unbalanced mapping".into(),
                }),
            },
        }
    }

    fn open(&mut self, pos: Pos) -> Result<(), YamlError> {
        self.count(1, pos)?;
        if self.stack.len() >= self.limits.max_depth {
            return Err(YamlError {
                pos,
                message: format!(
                    "nesting deeper than {} levels; flatten the document",
                    self.limits.max_depth
                ),
            });
        }
        Ok(())
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(YamlError {
                pos,
                message: format!(
                    "more than {} YAML nodes after expanding aliases; refusing (alias bomb?)",
                    self.limits.max_nodes
                ),
            });
        }
        Ok(())
    }

    fn push_node(
        &mut self,
        node: Node,
        is_merge_key: bool,
        anchor: usize,
    ) -> Result<(), YamlError> {
        if anchor != 0 {
            let size = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                self.docs.push(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    let name = key_string(&node)?;
                    *key = Some((
                        Key {
                            name,
                            pos: node.pos,
                        },
                        is_merge_key,
                    ));
                    Ok(())
                }
                Some((_, true)) => {
                    merges.push(node);
                    Ok(())
                }
                Some((k, false)) => {
                    if let Some((first, _)) = entries.iter().find(|(e, _)| e.name == k.name) {
                        return Err(YamlError {
                            pos: k.pos,
                            message: format!(
                                "duplicate key `{}` (first defined at {}); remove one of them",
                                k.name, first.pos
                            ),
                        });
                    }
                    entries.push((k, node));
                    Ok(())
                }
            },
        }
    }
}

fn is_str_tag(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|t| t.suffix == "str" || t.suffix.ends_with(":str"))
}

fn node_count(node: &Node) -> usize {
    match &node.value {
        NodeValue::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        NodeValue::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| 1 + node_count(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// A mapping key as Helm sees it: YAML→JSON turns every key into a string.
fn key_string(node: &Node) -> Result<String, YamlError> {
    Ok(match &node.value {
        NodeValue::Null => "null".into(),
        NodeValue::Bool(b) => b.to_string(),
        NodeValue::Int(i) => i.to_string(),
        NodeValue::Float(f) => f.to_string(),
        NodeValue::Str(s) => s.clone(),
        NodeValue::Seq(_) | NodeValue::Map(_) => {
            return Err(YamlError {
                pos: node.pos,
                message: "a list or map cannot be a mapping key".into(),
            })
        }
    })
}

/// `<<` merge keys: explicit keys win, then earlier merge sources win over later ones.
fn apply_merges(
    mut entries: Vec<(Key, Node)>,
    merges: Vec<Node>,
) -> Result<Vec<(Key, Node)>, YamlError> {
    for source in merges {
        let maps: Vec<Node> = match source.value {
            NodeValue::Map(_) => vec![source],
            NodeValue::Seq(items) => items,
            _ => {
                return Err(YamlError {
                    pos: source.pos,
                    message: "a `<<` merge key needs a map or a list of maps".into(),
                })
            }
        };
        for map in maps {
            let pos = map.pos;
            let NodeValue::Map(merged) = map.value else {
                return Err(YamlError {
                    pos,
                    message: "a `<<` merge key needs a map or a list of maps".into(),
                });
            };
            for (k, v) in merged {
                if !entries.iter().any(|(e, _)| e.name == k.name) {
                    entries.push((k, v));
                }
            }
        }
    }
    Ok(entries)
}

/// Resolves a plain scalar exactly as go-yaml v2 (used by Helm via sigs.k8s.io/yaml) does:
/// YAML 1.1 booleans (`yes`, `on`, `y`…), Go integer syntax (`0x`, `0o`, `0b`, leading-0
/// octal, `_` separators), YAML floats, `.inf`/`.nan`. Everything else is a string.
pub fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return NodeValue::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return NodeValue::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first == b'.' {
        if let Ok(f) = text.parse::<f64>() {
            if is_yaml_float(text) {
                return NodeValue::Float(f);
            }
        }
        return NodeValue::Str(text.into());
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return NodeValue::Str(text.into());
    }
    if is_timestamp(text) {
        // go-yaml v2 keeps timestamps as strings when decoding into interface{}.
        return NodeValue::Str(text.into());
    }
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(i) = go_parse_int(&plain) {
        return i;
    }
    if is_yaml_float(&plain) {
        if let Ok(f) = plain.parse::<f64>() {
            return NodeValue::Float(f);
        }
    }
    NodeValue::Str(text.into())
}

/// Go's `strconv.ParseInt(s, 0, 64)` (then ParseUint) on an underscore-free string.
fn go_parse_int(s: &str) -> Option<NodeValue> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude <= (i64::MAX as u128) + 1 {
            return Some(NodeValue::Int((-(magnitude as i128)) as i64));
        }
        return None;
    }
    if magnitude <= i64::MAX as u128 {
        Some(NodeValue::Int(magnitude as i64))
    } else if magnitude <= u64::MAX as u128 {
        Some(NodeValue::Float(magnitude as f64))
    } else {
        None
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `YYYY-M-D` optionally followed by a time: what go-yaml v2 would treat as a timestamp.
fn is_timestamp(s: &str) -> bool {
    let date_end = s.find(['T', 't', ' ']).unwrap_or(s.len());
    let parts: Vec<&str> = s[..date_end].split('-').collect();
    parts.len() == 3
        && parts[0].len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut docs = parse_documents(text, &Limits::default()).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    #[test]
    fn resolves_scalars_like_go_yaml_v2() {
        let cases: &[(&str, NodeValue)] = &[
            ("yes", NodeValue::Bool(true)),
            ("Off", NodeValue::Bool(false)),
            ("y", NodeValue::Bool(true)),
            ("~", NodeValue::Null),
            ("", NodeValue::Null),
            ("012", NodeValue::Int(10)),
            ("0o17", NodeValue::Int(15)),
            ("0x1F", NodeValue::Int(31)),
            ("0b101", NodeValue::Int(5)),
            ("1_000", NodeValue::Int(1000)),
            ("-5", NodeValue::Int(-5)),
            ("08", NodeValue::Float(8.0)),
            ("1e3", NodeValue::Float(1000.0)),
            (".5", NodeValue::Float(0.5)),
            ("1.0.0", NodeValue::Str("1.0.0".into())),
            ("500m", NodeValue::Str("500m".into())),
            ("2001-12-14", NodeValue::Str("2001-12-14".into())),
            ("v1.2.3", NodeValue::Str("v1.2.3".into())),
            ("-", NodeValue::Str("-".into())),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve_plain(text), want, "{text:?}");
        }
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let node = one("a: 'yes'\nb: \"1\"\nc: !!str 2\n");
        assert_eq!(node.get("a").and_then(Node::as_str), Some("yes"));
        assert_eq!(node.get("b").and_then(Node::as_str), Some("1"));
        assert_eq!(node.get("c").and_then(Node::as_str), Some("2"));
    }

    #[test]
    fn positions_are_one_based() {
        let node = one("spec:\n  name: x\n  list:\n    - a\n");
        let spec = node.get("spec").expect("spec");
        assert_eq!(spec.pos, Pos { line: 2, col: 3 });
        let name = spec.get("name").expect("name");
        assert_eq!(name.pos, Pos { line: 2, col: 9 });
        let list = spec.get("list").expect("list");
        let NodeValue::Seq(items) = &list.value else {
            panic!("not a list")
        };
        assert_eq!(items[0].pos, Pos { line: 4, col: 7 });
    }

    #[test]
    fn merge_keys_and_aliases() {
        let node = one("base: &b {x: 1, z: 2}\nuse:\n  <<: *b\n  z: 3\n");
        let json = node.to_json();
        assert_eq!(json["use"], serde_json::json!({"z": 3, "x": 1}));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n", &Limits::default()).unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
    }

    #[test]
    fn several_documents() {
        let docs = parse_documents("a: 1\n---\nb: 2\n---\n", &Limits::default()).expect("ok");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2].value, NodeValue::Null);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse_documents(&text, &Limits::default()).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
    }

    #[test]
    fn depth_and_size_limits() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        let err = parse_documents(&deep, &Limits::default()).unwrap_err();
        assert!(err.message.contains("nesting deeper"), "{}", err.message);
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let err = parse_documents("a: 123456789012", &limits).unwrap_err();
        assert!(err.message.contains("bytes"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse_documents("a: [1, 2\nb: 3\n", &Limits::default()).unwrap_err();
        assert!(err.pos.line >= 1);
        assert!(err.message.starts_with("invalid YAML"));
    }
}
