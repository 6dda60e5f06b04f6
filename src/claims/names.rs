//! Names: DNS-1123 labels and the Catalyst namespace procedure.

use sha2::{Digest, Sha256};

/// Why `name` is not a DNS-1123 label (lower case alphanumerics and `-`, at most 63), if it is not.
pub fn label_problem(name: &str) -> Option<String> {
    let hint = "use lower case letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters (a DNS-1123 label)";
    if name.is_empty() {
        return Some(format!("the name is empty; {hint}"));
    }
    let full = name;
    // A long name is quoted by its beginning only.
    let name = &shortened(name);
    if full.contains('/') || full.contains("..") || full.contains('\\') {
        return Some(format!(
            "`{name}` is not a valid name: it contains a path separator and would escape the output folder; {hint}"
        ));
    }
    if full.len() > 63 {
        return Some(format!(
            "`{name}` is {} characters long; {hint}",
            full.len()
        ));
    }
    if full.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "`{name}` is not a valid name: it has upper case letters (try `{}`); {hint}",
            name.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
    }
    let valid_chars = full
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid_chars || !ends_ok(full.as_bytes().first()) || !ends_ok(full.as_bytes().last()) {
        return Some(format!("`{name}` is not a valid name; {hint}"));
    }
    None
}

/// `name`, or its first 64 characters and `…` when it is longer than 80.
fn shortened(name: &str) -> String {
    if name.chars().count() <= 80 {
        return name.to_string();
    }
    let mut short: String = name.chars().take(64).collect();
    short.push('…');
    short
}

/// Why `host` is not a DNS name usable as an ingress host (wildcard `*.` allowed).
pub fn host_problem(host: &str) -> Option<String> {
    let body = host.strip_prefix("*.").unwrap_or(host);
    if body.is_empty() || host.len() > 253 {
        return Some(format!("`{host}` is not a valid host name"));
    }
    for part in body.split('.') {
        if label_problem(part).is_some() {
            return Some(format!(
                "`{host}` is not a valid host name: each dot-separated part must be lower case letters, digits and `-` (no scheme, port or path)"
            ));
        }
    }
    None
}

/// The namespace of a Catalyst environment: `<team>-<project>-<environment>`, lower case,
/// other characters turned into `-`. Longer than 63 characters: the first 57 characters,
/// a trailing `-` trimmed, then `-` and the first 5 hex digits of the full name's sha256.
pub fn environment_namespace(team: &str, project: &str, environment: &str) -> String {
    let full: String = format!("{team}-{project}-{environment}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if full.len() <= 63 {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let head = full[..57].trim_end_matches('-');
    format!("{head}-{}", &hex[..5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "notification-service", "pr-123", "0abc"] {
            assert_eq!(label_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "-a",
            "a-",
            "../x",
            "a/b",
            "a..b",
            &"x".repeat(64),
        ] {
            assert!(label_problem(bad).is_some(), "{bad}");
        }
        assert!(label_problem("a/b").unwrap().contains("escape"));
        assert!(label_problem("MyApp").unwrap().contains("try `myapp`"));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_problem("notifications.example.com"), None);
        assert_eq!(host_problem("*.preview.example.com"), None);
        assert!(host_problem("https://x.com").is_some());
        assert!(host_problem("x.com:80").is_some());
    }

    #[test]
    fn namespace_short_and_sanitised() {
        assert_eq!(
            environment_namespace("my-team", "my-project", "pr-123"),
            "my-team-my-project-pr-123"
        );
        assert_eq!(
            environment_namespace("Team_A", "Proj.X", "pr 1"),
            "team-a-proj-x-pr-1"
        );
    }

    #[test]
    fn namespace_long_is_truncated_and_hashed() {
        let team = "platform-engineering";
        let project = "customer-notification-gateway";
        let env = "feature-login-page";
        let full = format!("{team}-{project}-{env}");
        assert_eq!(full.len(), 69);
        let ns = environment_namespace(team, project, env);
        // Reference computation, spelled out independently.
        let digest = Sha256::digest(full.as_bytes());
        let want = format!(
            "{}-{:02x}{:02x}{:x}",
            full[..57].trim_end_matches('-'),
            digest[0],
            digest[1],
            digest[2] >> 4
        );
        assert_eq!(ns, want);
        assert!(ns.len() <= 63);
        assert_eq!(label_problem(&ns), None);
    }

    #[test]
    fn namespace_trailing_dash_trimmed_at_cut() {
        // Character 57 of the full name is a `-`.
        let team = "a".repeat(56);
        let ns = environment_namespace(&team, "bbbbbbbb", "cc");
        assert!(ns.starts_with(&format!("{team}-")), "{ns}");
        assert_eq!(ns.len(), 56 + 1 + 5, "{ns}");
    }
}
