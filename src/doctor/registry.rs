//! The chart registry (with `charts: oci`): a login and a read of the configured
//! `chartsRepository` through `oci::Registry`, with the configured credentials:
//! the tags of each chart claimd ships (`<repository>/<chart>`).

use super::{chain, Check};
use crate::daemon::config::Config;
use crate::oci::{Error, Location, Registry};

/// The charts claimd ships (`charts/`): what a chart repository is expected to hold.
pub const CHARTS: [&str; 6] = [
    "kafka",
    "microservice",
    "mongodb",
    "postgresql",
    "rabbitmq",
    "redis",
];

pub async fn check(c: &Config) -> Vec<Check> {
    if c.charts.as_deref() != Some("oci") {
        return vec![Check::skip(
            "registry",
            format!(
                "charts come from {} (charts: oci uses a registry)",
                c.charts
                    .as_deref()
                    .unwrap_or("the charts built into claimd")
            ),
        )];
    }
    let settings = c.registries.clone().with_env();
    if settings.offline {
        return vec![Check::warn(
            "registry",
            "offline (registries.offline or CLAIMD_OFFLINE): only charts in the cache are used",
            None,
        )];
    }
    let Some(repository) = c.charts_repository.as_deref() else {
        return vec![Check::warn(
            "registry",
            "charts: oci without chartsRepository: the BootstrapClaims name the chart repository, which is not checked here",
            Some("set chartsRepository: oci://HOST/PATH to have it checked".into()),
        )];
    };
    let registry = match Registry::new(settings) {
        Ok(r) => r,
        Err(e) => {
            return vec![Check::fail(
                "registry",
                chain(&e),
                "fix the file named in registries.hosts (caFile)",
            )]
        }
    };
    vec![repository_check(&registry, repository).await]
}

/// A login and a read of one chart repository (`oci://host/path`).
pub async fn repository_check(registry: &Registry, repository: &str) -> Check {
    let mut found = Vec::new();
    let mut host = String::new();
    for chart in CHARTS {
        let at = match Location::of(repository, chart, "0") {
            Ok(at) => at,
            Err(e) => {
                return Check::fail(
                    "registry",
                    e.to_string(),
                    "set chartsRepository to oci://HOST/PATH",
                )
            }
        };
        host.clone_from(&at.host);
        match registry.tags(&at.host, &at.repository).await {
            Ok(Some(tags)) if !tags.is_empty() => {
                found.push(format!("{chart} {}", tags.join(", ")));
            }
            Ok(_) => {}
            Err(e) => return failed(repository, &at.host, &e),
        }
    }
    if found.is_empty() {
        return Check::warn(
            "registry",
            format!(
                "{repository}: the login works, but none of claimd's charts ({}) is published there",
                CHARTS.join(", ")
            ),
            Some(format!("run: claimd chart push --all charts/ {repository}")),
        );
    }
    Check::pass(
        "registry",
        format!("{repository}: login and read work ({})", found.join("; ")),
    )
}

fn failed(repository: &str, host: &str, e: &Error) -> Check {
    let hosts = format!("registries.hosts.\"{host}\"");
    let (message, fix) = match e.kind() {
        "unauthorized" => (
            format!("{repository}: {host} refuses the login (or none was given) [{}]", e.kind()),
            format!("set {hosts}.username and passwordFile (or tokenFile) in claimd's config, or `docker login {host}` as claimd's user"),
        ),
        "unreachable" | "server_error" => (
            format!("{repository}: cannot reach {host}: {} [{}]", source_text(e), e.kind()),
            format!("start the registry or fix the host in chartsRepository; a plain-HTTP registry needs {hosts}.plainHttp: true"),
        ),
        "certificate" => (
            format!("{repository}: {} [{}]", chain(e), e.kind()),
            format!("set {hosts}.caFile to the CA that signed its certificate (or plainHttp: true for plain HTTP)"),
        ),
        "credentials" => (
            format!("{repository}: {} [{}]", chain(e), e.kind()),
            format!("fix the credential files named in {hosts}"),
        ),
        kind => (
            format!("{repository}: {} [{kind}]", chain(e)),
            "see the registry's log for the request claimd made".into(),
        ),
    };
    Check::fail("registry", message, fix)
}

/// The cause under "registry unreachable …; will retry" (claimd's retry wording is for
/// the daemon's log, not for this line).
fn source_text(e: &Error) -> String {
    std::error::Error::source(e).map_or_else(|| e.to_string(), chain)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_charts_listed_are_the_ones_claimd_ships() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/charts");
        let mut shipped: Vec<String> = std::fs::read_dir(dir)
            .expect("charts/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        shipped.sort();
        assert_eq!(shipped, super::CHARTS);
    }
}
