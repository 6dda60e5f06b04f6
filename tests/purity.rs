//! The core (yaml, claims, values, render) takes in-memory inputs and returns in-memory
//! outputs: no file system, environment, clock, network or async runtime inside it.

use std::path::Path;

const CORE: [&str; 4] = ["src/yaml", "src/claims", "src/values", "src/render"];
const FORBIDDEN: [&str; 10] = [
    "std::fs",
    "std::env",
    "std::net",
    "std::process",
    "Instant",
    "SystemTime",
    "tokio::",
    "gix::",
    "kube::",
    "reqwest::",
];

fn non_test_code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn core_modules_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for dir in CORE {
        for entry in std::fs::read_dir(root.join(dir)).expect("core dir") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for word in FORBIDDEN {
                assert!(
                    !non_test_code(&text).contains(word),
                    "{} uses `{word}`: the core must stay free of I/O",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} files checked");
}
