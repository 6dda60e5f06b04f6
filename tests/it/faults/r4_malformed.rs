//! R4: malformed claims. The corpus in `tests/faults/claims/` (one broken claim file
//! each; its header says what is wrong and, in `# expect: line:col: text` lines, every
//! error it must get) is checked by `claimd validate` and by the pre-receive hook:
//! each file is refused with exactly those positions and no other error. Then a
//! property-based fuzz (proptest) of the YAML reader and the claim reader: no input
//! makes them panic, and every error points inside the input.

use super::*;
use claimd::yaml::Limits;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::time::Instant;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/faults/claims");

struct Case {
    /// `NN-what.yaml`
    name: String,
    text: String,
    /// `line:col` and a piece of the message, for every error.
    expect: Vec<(String, String)>,
}

fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = std::fs::read_dir(CORPUS)
        .expect("tests/faults/claims")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("read");
            let expect: Vec<(String, String)> = text
                .lines()
                .take_while(|l| l.starts_with('#'))
                .filter_map(|l| l.strip_prefix("# expect: "))
                .map(|e| {
                    let mut parts = e.splitn(3, ':');
                    let (line, col) = (parts.next().expect("line"), parts.next().expect("col"));
                    let text = parts.next().expect("text").trim().to_string();
                    (format!("{line}:{col}"), text)
                })
                .collect();
            assert!(!expect.is_empty(), "{name}: no `# expect:` line");
            Case { name, text, expect }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// The error lines for `file` among `lines` (after `prefix`, e.g. `remote: `):
/// (`line:col`, message), warnings left out.
fn errors_of(lines: &str, prefix: &str, file: &str) -> Vec<(String, String)> {
    let head = format!("{prefix}{file}:");
    lines
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix(&head))
        .filter_map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let (line, col, msg) = (parts.next()?, parts.next()?, parts.next()?.trim());
            (!msg.starts_with("warning:")).then(|| (format!("{line}:{col}"), msg.to_string()))
        })
        .collect()
}

/// The errors found are exactly the expected ones (same positions, messages containing
/// the expected text).
fn assert_exactly(case: &Case, found: &[(String, String)], how: &str, output: &str) {
    let mut missing = Vec::new();
    for (pos, text) in &case.expect {
        if !found
            .iter()
            .any(|(p, m)| p == pos && m.contains(text.as_str()))
        {
            missing.push(format!("{pos}: {text}"));
        }
    }
    assert!(
        missing.is_empty() && found.len() == case.expect.len(),
        "{}: {how}: expected {:?}, missing {missing:?}; got {found:?}\n{output}",
        case.name,
        case.expect
    );
}

/// `claimd validate` in `root` (its claims/ folder): exit 1, the output.
fn validate(root: &Path) -> String {
    let o = Command::new(BIN)
        .arg("validate")
        .current_dir(root)
        .output()
        .expect("claimd validate");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    stderr
}

/// A push of `cases` on one commit (on top of origin/main) is refused; the output.
fn push_refused(s: &Server, work: &Path, cases: &[&Case]) -> String {
    git(work, &["reset", "-q", "--hard", "origin/main"]);
    for case in cases {
        std::fs::write(work.join("claims").join(&case.name), &case.text).expect("write");
    }
    git(work, &["add", "-A"]);
    git(work, &["commit", "-qm", "malformed"]);
    let tip = s.tip();
    let o = try_git(work, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "accepted\n{stderr}");
    assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
    assert_eq!(s.tip(), tip, "main moved");
    stderr
}

#[test]
fn r4_malformed_claims_are_refused_with_their_position() {
    let part = "R4 corpus";
    let started = Instant::now();
    let cases = corpus();
    assert!(cases.len() >= 60, "{} malformed claims", cases.len());
    let examples_clean = |output: &str| {
        for (path, _) in claimd::examples::CLAIMS {
            for prefix in ["", "remote: "] {
                assert!(
                    errors_of(output, prefix, path).is_empty(),
                    "an error in {path}: {output}"
                );
            }
        }
    };
    let check = |output: &str, prefix: &str, how: &str, case: &Case| {
        let file = format!("claims/{}", case.name);
        assert_exactly(case, &errors_of(output, prefix, &file), how, output);
    };

    // All of them at once, beside the example claims (their repository): through
    // `claimd validate`, then pushed on one commit through pre-receive.
    let dir = tempfile::tempdir().expect("tmp");
    let all = dir.path().join("all");
    write_examples(&all);
    for case in &cases {
        std::fs::write(all.join("claims").join(&case.name), &case.text).expect("write");
    }
    let output = validate(&all);
    examples_clean(&output);
    for case in &cases {
        check(&output, "", "claimd validate, all files", case);
    }
    let s = Server::new(true);
    let work = s.clone("work");
    write_examples(&work);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "examples"]);
    git(&work, &["push", "-q", "origin", "main"]);
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    let output = push_refused(&s, &work, &cases.iter().collect::<Vec<_>>());
    examples_clean(&output);
    for case in &cases {
        check(&output, "remote: ", "pre-receive, all files", case);
    }

    // Full scale: each file on its own too (validate and a push each).
    let mut alone = 0;
    if full() {
        for case in &cases {
            let root = dir.path().join(&case.name);
            write_examples(&root);
            std::fs::write(root.join("claims").join(&case.name), &case.text).expect("write");
            let output = validate(&root);
            examples_clean(&output);
            check(&output, "", "claimd validate", case);
            let output = push_refused(&s, &work, &[case]);
            examples_clean(&output);
            check(&output, "remote: ", "pre-receive", case);
            alone += 1;
        }
    }
    fsck(&s.bare);

    let positions: usize = cases.iter().map(|c| c.expect.len()).sum();
    report(
        part,
        format!(
            "tried: {} malformed claim files (tests/faults/claims: YAML syntax, hostile YAML, structure, names, values), all at once through claimd validate and one push through pre-receive, and {alone} of them alone through both; in {:.1?}",
            cases.len(),
            started.elapsed()
        ),
    );
    report(
        part,
        format!(
            "held: every file refused by claimd validate (exit 1) and by pre-receive with exactly its expected file:line:col errors ({positions} in all), no other error in it or in the example claims beside it; main never moved; git fsck clean"
        ),
    );
}

/// Pieces YAML is made of, hostile ones included.
const TOKENS: &[&str] = &[
    "a",
    "name",
    "spec",
    "kind",
    "apiVersion",
    ":",
    ": ",
    " ",
    "  ",
    "    ",
    "\n",
    "\n  ",
    "\n    - ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "\\",
    "\\u00e9",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: *a",
    "!!str ",
    "!!map ",
    "!tag ",
    "|",
    "|-",
    ">",
    ">+",
    "#",
    " # c",
    "\t",
    "---",
    "...",
    "? ",
    "%YAML 1.2\n",
    "~",
    "null",
    "yes",
    "on",
    "0x1F",
    "0o17",
    "1e400",
    "-.inf",
    ".nan",
    "12:30",
    "\"\\x41\"",
    "é",
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "\r\n",
    "\r",
    "%",
    "@",
    "`",
    "../",
    "/etc",
    "\u{0}",
    "1.0.0",
    "\"1.0.0\"",
    "platform.infraforge.io/v1",
    "ApplicationClaim",
    "applications",
    "environment",
];

fn yaml_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..120).prop_map(|v| v.concat())
}

/// An example claim file with up to 8 edits: a range cut, a token put in, a line
/// doubled, a line's indentation removed.
fn mutated_example() -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            0u8..4,
            any::<u16>(),
            any::<u16>(),
            prop::sample::select(TOKENS),
        ),
        1..8,
    );
    (0..claimd::examples::CLAIMS.len(), edits).prop_map(|(i, edits)| {
        let mut text = claimd::examples::CLAIMS[i].1.to_string();
        for (kind, at, len, token) in edits {
            let at = floor_char(&text, at as usize % (text.len() + 1));
            match kind {
                0 => {
                    let end = floor_char(&text, (at + len as usize % 40).min(text.len()));
                    text.replace_range(at..end, "");
                }
                1 => text.insert_str(at, token),
                2 => {
                    let start = text[..at].rfind('\n').map_or(0, |p| p + 1);
                    let end = text[at..].find('\n').map_or(text.len(), |p| at + p + 1);
                    let line = text[start..end].to_string();
                    text.insert_str(start, &line);
                }
                _ => {
                    let start = text[..at].rfind('\n').map_or(0, |p| p + 1);
                    let spaces = text[start..].len() - text[start..].trim_start_matches(' ').len();
                    text.replace_range(start..start + spaces, "");
                }
            }
        }
        text
    })
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Whether `line:col` (1-based) is inside `text` or just past the end of a line (lines
/// end at `\n`, `\r\n` or `\r`, as YAML counts them; a column counts bytes at most).
fn inside(text: &str, line: u32, col: u32) -> bool {
    let normal = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normal.split('\n').collect();
    line >= 1
        && col >= 1
        && (line as usize) <= lines.len()
        && (col as usize) <= lines[line as usize - 1].len() + 1
}

#[test]
fn r4_fuzz_the_yaml_and_claim_readers() {
    let part = "R4 fuzz";
    let cases = scaled(400, 20_000) as u32;
    let started = Instant::now();
    let mut rng = super::Rng::new(part);
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    let limits = Limits::default();
    let total = std::cell::Cell::new(0u64);
    let errors = std::cell::Cell::new(0u64);
    let strategies: [(&str, BoxedStrategy<String>); 3] = [
        ("YAML-like token soup", yaml_like().boxed()),
        ("edited example claims", mutated_example().boxed()),
        ("arbitrary strings", any::<String>().boxed()),
    ];
    for (what, strategy) in strategies {
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        let result = runner.run(&strategy, |text| {
            total.set(total.get() + 1);
            // The YAML reader: a value or an error inside the input.
            if let Err(e) = claimd::yaml::parse_documents(&text, &limits) {
                errors.set(errors.get() + 1);
                prop_assert!(
                    inside(&text, e.pos.line, e.pos.col),
                    "YAML error outside the input: {e}"
                );
                prop_assert!(!e.message.is_empty());
            }
            // The claim reader: every diagnostic of this file, inside it.
            let loaded = claimd::claims::load(&[("claims/f.yaml".into(), text.clone())], &limits);
            for d in &loaded.diagnostics {
                prop_assert_eq!(d.file.as_str(), "claims/f.yaml");
                prop_assert!(
                    inside(&text, d.pos.line, d.pos.col),
                    "diagnostic outside the input: {}",
                    d
                );
                prop_assert!(!d.message.is_empty());
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{what}: {e}");
        }
    }
    let (total, errors) = (total.get(), errors.get());
    report(
        part,
        format!(
            "tried: {total} generated inputs ({cases} each of YAML-like token soup, edited example claims, arbitrary strings) through claimd::yaml::parse_documents and claimd::claims::load, in {:.1?}",
            started.elapsed()
        ),
    );
    report(
        part,
        format!("held: 0 panics; {errors} YAML errors and every claim diagnostic at a line:col inside its input, with a message"),
    );
}
