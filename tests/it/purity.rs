//! The core — `yaml`, `claims`, `values`, `render` and the pipeline's pure function
//! (`pipeline/core.rs`, with the daemon's name index `pipeline/names.rs`) — takes in-memory inputs and returns in-memory outputs. This
//! checks what it imports: no adapter module of the crate (git, charts, kube, daemon,
//! server, cli, reconcile, the pipeline's read side, …) and no I/O (file system,
//! environment, clock, network, processes, async runtime, git objects beyond their id).
//! And the adapters' layering: `oci` (the registry client) sits below `charts` and
//! `kube`, and `kube` knows neither charts nor registries.

use std::path::{Path, PathBuf};

/// Folders and files of the core.
const CORE: [&str; 6] = [
    "src/yaml",
    "src/claims",
    "src/values",
    "src/render",
    "src/pipeline/core.rs",
    "src/pipeline/names.rs",
];

/// The crate's modules the core may use.
const ALLOWED_MODULES: [&str; 7] = [
    "yaml",
    "claims",
    "values",
    "render",
    "par",
    "pipeline::core",
    "pipeline::names",
];

/// Paths that mean I/O, wherever they appear in code (`use` or inline).
const FORBIDDEN_PATHS: [&str; 14] = [
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::thread",
    "std::time::Instant",
    "std::time::SystemTime",
    "tokio::",
    "warp::",
    "kube::",
    "oci_client::",
    "notify::",
    "reqwest::",
    "k8s_openapi::",
];

/// `gix` may appear only for object ids.
const GIX_ALLOWED: [&str; 2] = ["gix::ObjectId", "gix::hash"];

/// The code without comments, string literals (their content becomes spaces) and the
/// test module at the end, line numbers kept.
fn code_only(text: &str) -> String {
    let text = text.find("#[cfg(test)]").map_or(text, |i| &text[..i]);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_str, mut in_line_comment, mut block_depth) = (false, false, 0u32);
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        if c == '\n' {
            in_line_comment = false;
            out.push('\n');
            continue;
        }
        if in_line_comment {
            continue;
        }
        if block_depth > 0 {
            if c == '*' && next == Some('/') {
                chars.next();
                block_depth -= 1;
            } else if c == '/' && next == Some('*') {
                chars.next();
                block_depth += 1;
            }
            continue;
        }
        if in_str {
            if c == '\\' {
                chars.next();
                out.push(' ');
            } else if c == '"' {
                in_str = false;
                out.push('"');
                continue;
            }
            out.push(' ');
            continue;
        }
        match (c, next) {
            ('/', Some('/')) => in_line_comment = true,
            ('/', Some('*')) => {
                chars.next();
                block_depth = 1;
            }
            ('"', _) => {
                in_str = true;
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every forbidden import or path in `text` (the source of the core file `label`), as
/// `label:line: what`.
fn violations(label: &str, text: &str) -> Vec<String> {
    let code = code_only(text);
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let at = format!("{label}:{}", n + 1);
        let compact: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
        for word in FORBIDDEN_PATHS {
            if compact.contains(word) {
                out.push(format!("{at}: `{word}` (I/O) in `{}`", compact.trim()));
            }
        }
        // `use std::{fs, ...}` and the like.
        if compact.contains("std::{") {
            for m in ["fs", "net", "process", "env", "thread"] {
                let inner = &compact[compact.find("std::{").unwrap_or(0)..];
                if inner
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == m)
                {
                    out.push(format!("{at}: `std::{m}` (I/O) in `{}`", compact.trim()));
                }
            }
        }
        if ["Instant::now", "SystemTime::now"]
            .iter()
            .any(|w| compact.contains(w))
        {
            out.push(format!("{at}: the clock in `{}`", compact.trim()));
        }
        for (i, _) in compact.match_indices("gix::") {
            if !GIX_ALLOWED.iter().any(|ok| compact[i..].starts_with(ok)) {
                out.push(format!(
                    "{at}: `gix` beyond object ids in `{}`",
                    compact.trim()
                ));
            }
        }
        for (i, _) in compact.match_indices("crate::") {
            let rest = &compact[i + "crate::".len()..];
            let allowed = ALLOWED_MODULES.iter().any(|m| {
                rest.starts_with(m)
                    && !rest[m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if !allowed {
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                out.push(format!(
                    "{at}: imports the adapter `crate::{module}`; the core may use only {ALLOWED_MODULES:?}"
                ));
            }
        }
        // The pipeline's pure function may not reach its siblings (snapshot, store).
        let pure_pipeline =
            label.ends_with("pipeline/core.rs") || label.ends_with("pipeline/names.rs");
        if pure_pipeline && compact.contains("super::") {
            out.push(format!(
                "{at}: `super::` from the pipeline's core reaches its adapters"
            ));
        }
    }
    out
}

fn core_files(root: &Path) -> Vec<PathBuf> {
    rust_files(root, &CORE)
}

/// The `.rs` files (but `tests.rs`) of these folders and files, sorted.
fn rust_files(root: &Path, places: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = places.iter().map(|c| root.join(c)).collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for entry in std::fs::read_dir(&p).expect("core dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if p.extension().is_some_and(|e| e == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            files.push(p);
        }
    }
    files.sort();
    files
}

#[test]
fn the_core_imports_no_adapter_and_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = core_files(root);
    assert!(files.len() >= 20, "only {} core files found", files.len());
    assert!(
        files.iter().any(|f| f.ends_with("pipeline/core.rs")),
        "the pipeline's pure function is checked"
    );
    let mut found = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read");
        let label = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        found.extend(violations(&label, &text));
    }
    assert!(
        found.is_empty(),
        "the core must stay free of adapters and I/O:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_imports_and_not_comments_or_strings() {
    let bad = "use crate::git::Repo;\nuse std::{collections::BTreeMap, fs};\nfn f() {\n    let t = std::time::Instant::now();\n    crate::charts::Source::Embedded;\n    let id: gix::ObjectId = todo!();\n    gix::open(\".\");\n}\n";
    let found = violations("x.rs", bad);
    let lines: Vec<&str> = found
        .iter()
        .map(|v| v.split(": ").next().unwrap_or(""))
        .collect();
    assert!(lines.contains(&"x.rs:1"), "{found:?}");
    assert!(lines.contains(&"x.rs:2"), "{found:?}");
    assert!(lines.contains(&"x.rs:4"), "{found:?}");
    assert!(lines.contains(&"x.rs:5"), "{found:?}");
    assert!(lines.contains(&"x.rs:7"), "{found:?}");
    assert!(
        !lines.contains(&"x.rs:6"),
        "an object id is fine: {found:?}"
    );
    let fine = "use crate::claims::{self, Diagnostic};\nuse crate::pipeline::core::Objects;\n// crate::git::Repo in a comment\nconst U: &str = \"oci://x crate::kube:: std::fs\";\n/* std::process */\n#[cfg(test)]\nmod tests { use crate::git::Repo; }\n";
    assert_eq!(violations("y.rs", fine), Vec::<String>::new());
    assert!(!violations("p/pipeline/core.rs", "use super::snapshot::Reads;").is_empty());
}

/// Adapters and the crate modules each may not use (an adapter below another).
const LAYERS: [(&str, &[&str]); 2] = [
    (
        "src/oci",
        &[
            "charts",
            "kube",
            "render",
            "pipeline",
            "reconcile",
            "daemon",
            "server",
            "cli",
            "git",
        ],
    ),
    ("src/kube", &["charts", "oci", "daemon", "server", "cli"]),
];

/// Uses of `crate::<module>` in the code of `text` (the source of `label`).
fn uses_of(label: &str, text: &str, modules: &[&str]) -> Vec<String> {
    let code = code_only(text);
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let compact: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
        for (i, _) in compact.match_indices("crate::") {
            let rest = &compact[i + "crate::".len()..];
            for m in modules {
                if rest.starts_with(m)
                    && !rest[m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                {
                    out.push(format!(
                        "{label}:{}: uses `crate::{m}` in `{}`",
                        n + 1,
                        compact.trim()
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_registry_client_sits_below_charts_and_kube() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for (place, forbidden) in LAYERS {
        let files = rust_files(root, &[place]);
        assert!(!files.is_empty(), "no files in {place}");
        for path in files {
            let text = std::fs::read_to_string(&path).expect("read");
            let label = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            found.extend(uses_of(&label, &text, forbidden));
        }
    }
    assert!(found.is_empty(), "layering:\n{}", found.join("\n"));
    let bad = "use crate::charts::Memo;\n// crate::kube in a comment\nfn f() { crate::kubes(); }\n";
    assert_eq!(uses_of("x.rs", bad, &["charts", "kube"]).len(), 1);
}
