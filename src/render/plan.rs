//! What a render changes in the repository: pure, from the files there now.

use super::{parse_owners, Rendered};
use std::collections::{BTreeMap, BTreeSet};

/// Folders claimd writes into. Files elsewhere are never read or touched.
pub const OUTPUT_ROOTS: [&str; 3] = ["root-apps/", "appsets/", "environments/"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Add,
    Modify,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Generated files left exactly as they are because their claim failed.
    pub kept: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Compares the files in the repository (`existing`, paths under [`OUTPUT_ROOTS`]) with a
/// render. Safety rules:
/// - a file of a claim that failed (its claim file did not validate, or its chart could
///   not be had) is neither rewritten nor deleted;
/// - when anything failed, no ApplicationSet or root app is deleted;
/// - files claimd did not generate are never deleted.
pub fn plan(
    existing: &BTreeMap<String, String>,
    rendered: Rendered,
    failed_files: &[String],
) -> Plan {
    let mut failed_sources: BTreeSet<&str> = failed_files.iter().map(String::as_str).collect();
    // A failure confined to one folder protects that folder; any other protects its file.
    failed_sources.extend(
        rendered
            .failures
            .iter()
            .filter(|f| f.keep.is_none())
            .map(|f| f.diagnostic.file.as_str()),
    );
    let keep_dirs: Vec<String> = rendered
        .failures
        .iter()
        .filter_map(|f| f.keep.as_ref().map(|d| format!("{d}/")))
        .collect();
    let any_failure = !failed_sources.is_empty() || !keep_dirs.is_empty();

    let is_protected = |path: &str, content: Option<&String>| -> bool {
        if keep_dirs.iter().any(|d| path.starts_with(d.as_str())) {
            return true;
        }
        let workload_file = path.starts_with("environments/");
        if !workload_file {
            return false;
        }
        content.and_then(|c| parse_owners(c)).is_some_and(|owners| {
            owners
                .iter()
                .any(|id| failed_sources.contains(id.split('#').next().unwrap_or(id)))
        })
    };

    let mut out = Plan::default();
    for (path, old) in existing {
        if rendered.files.contains_key(path) || parse_owners(old).is_none() {
            continue;
        }
        let shared = !path.starts_with("environments/");
        if is_protected(path, Some(old)) || (shared && any_failure) {
            out.kept.push(path.clone());
            continue;
        }
        out.changes.push(Change {
            path: path.clone(),
            kind: ChangeKind::Delete,
            old: Some(old.clone()),
            new: None,
        });
    }
    for (path, new) in rendered.files {
        let old = existing.get(&path);
        if old == Some(&new) {
            continue;
        }
        if is_protected(&path, old) {
            out.kept.push(path);
            continue;
        }
        out.changes.push(Change {
            kind: if old.is_some() {
                ChangeKind::Modify
            } else {
                ChangeKind::Add
            },
            path,
            old: old.cloned(),
            new: Some(new),
        });
    }
    out.changes.sort_by(|a, b| a.path.cmp(&b.path));
    out.kept.sort();
    out
}

/// The unified diff of a plan (what `claimd plan` prints, what a branch preview shows).
pub fn unified_diff(plan: &Plan) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        let old = c.old.as_deref().unwrap_or("");
        let new = c.new.as_deref().unwrap_or("");
        let (a, b) = match c.kind {
            ChangeKind::Add => ("/dev/null".to_string(), format!("b/{}", c.path)),
            ChangeKind::Delete => (format!("a/{}", c.path), "/dev/null".to_string()),
            ChangeKind::Modify => (format!("a/{}", c.path), format!("b/{}", c.path)),
        };
        let diff = similar::TextDiff::from_lines(old, new);
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string(),
        );
    }
    out
}
