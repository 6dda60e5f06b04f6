//! The example claims, built into the binary: the seeds' examples (with a real commit
//! id for the Environment), a prod BootstrapClaim and dev claims. `claimd demo` renders
//! them; tests use them.

macro_rules! example {
    ($name:literal) => {
        (
            concat!("claims/", $name),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/claims/",
                $name
            )),
        )
    };
}

/// `(path in the repository, text)` of every file in `examples/claims/`.
pub const CLAIMS: [(&str, &str); 7] = [
    example!("bootstrap-nonprod.yaml"),
    example!("bootstrap-prod.yaml"),
    example!("dev-apps.yaml"),
    example!("environment-pr-123.yaml"),
    example!("prod-apps.yaml"),
    example!("prod-platform.yaml"),
    example!("project.yaml"),
];

/// The examples as owned `(path, text)` pairs, the shape `claims::load` takes.
pub fn claim_files() -> Vec<(String, String)> {
    CLAIMS
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_in_examples_claims_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/claims");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("examples/claims")
            .map(|e| format!("claims/{}", e.expect("entry").file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = super::CLAIMS.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(listed, on_disk);
    }
}
