//! Typed reading of claim documents that records every problem with its position.

use super::diagnostic::{Diagnostic, Severity};
use crate::yaml::{Key, Node, NodeValue, Pos};
use std::cell::RefCell;

/// A value with the position it came from.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Spanned { value, pos }
    }
}

impl Spanned<String> {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// A message as it may be shown on a terminal, in `git push` output or a web page: the
/// claim's own text it quotes keeps no control characters (a NUL, an escape sequence)
/// and no invisible or bidirectional formatting characters (a zero-width space, a
/// right-to-left override); those are written as `\u{..}` escapes.
fn printable(message: String) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    if !message.chars().any(hidden) {
        return message;
    }
    message
        .chars()
        .map(|c| {
            if hidden(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub struct Ctx {
    pub file: String,
    pub diags: Vec<Diagnostic>,
}

impl Ctx {
    pub fn new(file: &str) -> Ctx {
        Ctx {
            file: file.to_string(),
            diags: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            pos,
            severity: Severity::Error,
            message: printable(message.into()),
        });
    }

    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            pos,
            severity: Severity::Warning,
            message: printable(message.into()),
        });
    }

    pub fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// A map node being read field by field. `finish` reports the fields nobody asked for.
pub struct Obj<'a> {
    pub node: &'a Node,
    /// Dotted path of this map, for messages (`spec.applications[0]`).
    pub path: String,
    entries: &'a [(Key, Node)],
    asked: RefCell<Vec<&'static str>>,
}

impl<'a> Obj<'a> {
    /// Reads `node` as a map, or reports that it is not one.
    pub fn new(ctx: &mut Ctx, node: &'a Node, path: impl Into<String>) -> Option<Obj<'a>> {
        let path = path.into();
        match &node.value {
            NodeValue::Map(entries) => Some(Obj {
                node,
                path,
                entries,
                asked: RefCell::new(Vec::new()),
            }),
            _ => {
                let what = if path.is_empty() {
                    "a claim document must be a map (apiVersion, kind, metadata, spec)".to_string()
                } else {
                    format!("`{path}` must be a map")
                };
                ctx.error(node.pos, format!("{what}, found {}", describe(node)));
                None
            }
        }
    }

    fn child_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The raw node of a field (marks it as known).
    pub fn get(&self, name: &'static str) -> Option<&'a Node> {
        self.asked.borrow_mut().push(name);
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    /// Position of a field's key.
    pub fn key_pos(&self, name: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, _)| k.pos)
    }

    fn missing(&self, ctx: &mut Ctx, name: &str, what: &str) {
        ctx.error(
            self.node.pos,
            format!(
                "missing required field `{}` ({what})",
                self.child_path(name)
            ),
        );
    }

    pub fn opt_str(&self, ctx: &mut Ctx, name: &'static str) -> Option<Spanned<String>> {
        let node = self.get(name)?;
        if let NodeValue::Str(s) = &node.value {
            // The dotted path is only for a message: not built for a field that is fine.
            return Some(Spanned::new(s.clone(), node.pos));
        }
        as_string(ctx, node, &self.child_path(name))
    }

    pub fn req_str(&self, ctx: &mut Ctx, name: &'static str) -> Option<Spanned<String>> {
        if self.get(name).is_none() {
            self.missing(ctx, name, "a string");
            return None;
        }
        self.opt_str(ctx, name)
    }

    pub fn opt_bool(&self, ctx: &mut Ctx, name: &'static str) -> Option<Spanned<bool>> {
        let node = self.get(name)?;
        match node.value {
            NodeValue::Bool(b) => Some(Spanned::new(b, node.pos)),
            _ => {
                ctx.error(
                    node.pos,
                    format!(
                        "`{}` must be true or false, found {}",
                        self.child_path(name),
                        describe(node)
                    ),
                );
                None
            }
        }
    }

    /// An integer within `range`.
    pub fn opt_int(
        &self,
        ctx: &mut Ctx,
        name: &'static str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<Spanned<i64>> {
        let node = self.get(name)?;
        match node.value {
            NodeValue::Int(i) if range.contains(&i) => Some(Spanned::new(i, node.pos)),
            NodeValue::Int(i) => {
                ctx.error(
                    node.pos,
                    format!(
                        "`{}` is {i}, expected a whole number from {} to {}",
                        self.child_path(name),
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
            _ => {
                ctx.error(
                    node.pos,
                    format!(
                        "`{}` must be a whole number, found {}",
                        self.child_path(name),
                        describe(node)
                    ),
                );
                None
            }
        }
    }

    pub fn opt_obj(&self, ctx: &mut Ctx, name: &'static str) -> Option<Obj<'a>> {
        let node = self.get(name)?;
        Obj::new(ctx, node, self.child_path(name))
    }

    pub fn req_obj(&self, ctx: &mut Ctx, name: &'static str) -> Option<Obj<'a>> {
        if self.get(name).is_none() {
            self.missing(ctx, name, "a map");
            return None;
        }
        self.opt_obj(ctx, name)
    }

    /// A list field; each item with its dotted path.
    pub fn opt_list(&self, ctx: &mut Ctx, name: &'static str) -> Option<Vec<(String, &'a Node)>> {
        let node = self.get(name)?;
        let path = self.child_path(name);
        match &node.value {
            NodeValue::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("{path}[{i}]"), n))
                    .collect(),
            ),
            _ => {
                ctx.error(
                    node.pos,
                    format!("`{path}` must be a list, found {}", describe(node)),
                );
                None
            }
        }
    }

    pub fn req_list(&self, ctx: &mut Ctx, name: &'static str) -> Option<Vec<(String, &'a Node)>> {
        if self.get(name).is_none() {
            self.missing(ctx, name, "a list");
            return None;
        }
        self.opt_list(ctx, name)
    }

    /// Reports every key that no reader asked for, with a suggestion when one is close.
    pub fn finish(self, ctx: &mut Ctx) {
        let asked = self.asked.borrow().clone();
        for (key, _) in self.entries {
            if asked.contains(&key.name.as_str()) {
                continue;
            }
            let mut msg = format!("unknown field `{}`", self.child_path(&key.name));
            match suggest(&key.name, &asked) {
                Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
                None if !asked.is_empty() => {
                    let mut known: Vec<&str> = asked.clone();
                    known.sort_unstable();
                    known.dedup();
                    msg.push_str(&format!("; expected one of: {}", known.join(", ")));
                }
                None => {}
            }
            ctx.error(key.pos, msg);
        }
    }
}

/// Reads a scalar as a string. Numbers and booleans are refused with a hint to quote them.
pub fn as_string(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Spanned<String>> {
    match &node.value {
        NodeValue::Str(s) => Some(Spanned::new(s.clone(), node.pos)),
        NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
            ctx.error(
                node.pos,
                format!(
                    "`{path}` must be a string, found {}; quote it if you mean text",
                    describe(node)
                ),
            );
            None
        }
        _ => {
            ctx.error(
                node.pos,
                format!("`{path}` must be a string, found {}", describe(node)),
            );
            None
        }
    }
}

/// "integer 5", "a map", … for messages.
pub fn describe(node: &Node) -> String {
    match &node.value {
        NodeValue::Null => "nothing (null)".into(),
        NodeValue::Bool(b) => format!("boolean {b}"),
        NodeValue::Int(i) => format!("number {i}"),
        NodeValue::Float(f) => format!("number {f}"),
        NodeValue::Str(s) => format!("string {s:?}"),
        NodeValue::Seq(_) => "a list".into(),
        NodeValue::Map(_) => "a map".into(),
    }
}

/// The closest known name, if it is close enough to be a likely typo.
pub fn suggest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (k, strsim::levenshtein(&lower, &k.to_ascii_lowercase())))
        .filter(|(k, d)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| *k)
}
