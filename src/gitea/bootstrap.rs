//! A BootstrapClaim's organization and repositories on Gitea (seed 000: `giteaURL`,
//! `organization`, `repositories`): created when missing, left alone when there. Used
//! by `claimd bootstrap` and by the daemon when a BootstrapClaim changes.

use super::api::Client;
use super::{is_name, Error};
use crate::claims::Bootstrap;

/// What a BootstrapClaim asks of Gitea: the organization, its repositories (the GitOps
/// one first), the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub organization: String,
    pub repositories: Vec<String>,
    pub branch: String,
}

impl Wanted {
    /// From a BootstrapClaim; None when a name is not one Gitea allows.
    pub fn of(b: &Bootstrap) -> Option<Wanted> {
        let mut repositories = vec![b.gitops_repository.value.clone()];
        repositories.extend(b.charts_git_repository.as_ref().map(|r| r.value.clone()));
        let wanted = Wanted {
            organization: b.organization.value.clone(),
            repositories,
            branch: b.branch.clone(),
        };
        (is_name(&wanted.organization) && wanted.repositories.iter().all(|r| is_name(r)))
            .then_some(wanted)
    }
}

/// Creates what is missing; one line per thing (`organization platform: created`).
/// Only GET requests when everything is there.
pub async fn ensure(client: &Client, wanted: &Wanted) -> Result<Vec<String>, Error> {
    let said = |what: String, created: bool| {
        format!("{what}: {}", if created { "created" } else { "exists" })
    };
    let org = &wanted.organization;
    let mut lines = vec![said(
        format!("organization {org}"),
        client.ensure_org(org).await?,
    )];
    for repo in &wanted.repositories {
        lines.push(said(
            format!("repository {org}/{repo}"),
            client.ensure_repo(org, repo, &wanted.branch).await?,
        ));
    }
    Ok(lines)
}
