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

/// The environments of [`synthetic`].
pub const SYNTHETIC_ENVS: [&str; 4] = ["dev", "qa", "staging", "prod"];
/// Applications per claim file of [`synthetic`].
pub const APPS_PER_CLAIM: usize = 100;

/// A synthetic repository's claim files, `(path, text)`: `apps` applications
/// (microservice chart) spread over four environments, in claim files of 100
/// applications each, plus a BootstrapClaim. What the benchmarks measure.
pub fn synthetic(apps: usize) -> Vec<(String, String)> {
    use std::fmt::Write as _;
    let mut out = vec![(
        "claims/bootstrap.yaml".to_string(),
        "apiVersion: platform.infraforge.io/v1\nkind: BootstrapClaim\nmetadata:\n  name: bench\nspec:\n  giteaURL: http://gitea:3000\n  organization: platform\n  chartsRepository: {type: oci, url: oci://ghcr.io/nimbusprotch, version: \"1.0.0\"}\n  repositories: {voltran: voltran}\n  gitOps: {branch: main, clusterType: bench, environments: [dev, qa, staging, prod]}\n".to_string(),
    )];
    let mut i = 0;
    let mut file = 0;
    while i < apps {
        let env = SYNTHETIC_ENVS[file % SYNTHETIC_ENVS.len()];
        let mut text = format!(
            "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata:\n  name: apps-{file:05}\nspec:\n  environment: {env}\n  clusterType: bench\n  applications:\n"
        );
        for _ in 0..APPS_PER_CLAIM.min(apps - i) {
            let _ = write!(
                text,
                "    - name: app-{i:05}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n      image: {{repository: registry.example.com/app-{i:05}, tag: v1.{}.0}}\n      replicas: {}\n      resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}\n      ingress: {{enabled: true, host: app-{i:05}.{env}.example.com}}\n      env:\n        - {{name: APP_ID, value: \"{i}\"}}\n      values:\n        podAnnotations: {{team: team-{}}}\n",
                i % 7,
                1 + i % 3,
                i % 13
            );
            i += 1;
        }
        out.push((format!("claims/apps-{file:05}.yaml"), text));
        file += 1;
    }
    out
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
