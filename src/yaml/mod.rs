//! YAML reading and writing, in one place so the YAML crate can be swapped.
//!
//! Reading keeps the position of every node (for `file:line:col` messages), resolves
//! plain scalars the way Helm and Argo CD do (go-yaml v2, i.e. YAML 1.1: `yes`/`on` are
//! booleans), supports anchors, aliases and `<<` merge keys, and enforces limits
//! against hostile input. Writing emits block-style YAML that reads back identically
//! under both YAML 1.1 and 1.2 resolvers (anything ambiguous is quoted).

mod emit;
mod parse;

pub use emit::{emit, emit_over, emit_scalar_key};
pub use parse::{parse_documents, resolve_plain};

use serde_json::Value as Json;
use std::fmt;

/// 1-based line and column of a node in its file.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key (always a string, as Helm's YAML→JSON conversion makes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "boolean",
            NodeValue::Int(_) => "integer",
            NodeValue::Float(_) => "number",
            NodeValue::Str(_) => "string",
            NodeValue::Seq(_) => "list",
            NodeValue::Map(_) => "map",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            NodeValue::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up a key in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The node as JSON (the data model Helm works on), keeping key order.
    pub fn to_json(&self) -> Json {
        match &self.value {
            NodeValue::Null => Json::Null,
            NodeValue::Bool(b) => Json::Bool(*b),
            NodeValue::Int(i) => Json::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                // JSON has no NaN/Inf; Helm's YAML→JSON step fails on them too, keep text.
                .unwrap_or_else(|| Json::String(f.to_string())),
            NodeValue::Str(s) => Json::String(s.clone()),
            NodeValue::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Limits against hostile input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of maps and lists.
    pub max_depth: usize,
    /// Most nodes in one file after alias expansion ("billion laughs").
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 20,
            max_depth: 64,
            max_nodes: 200_000,
        }
    }
}

/// A YAML syntax error or a limit that was hit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}
