//! `claimd gitea …`: wiring a repository to Gitea.

use crate::gitea::api::{self, Registered};
use crate::gitea::{self, Secret};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum GiteaAction {
    /// Create claimd's push webhook on OWNER/REPO, or update the one with the same URL
    /// (never a second one), with the secret claimd's receiver checks.
    RegisterWebhook {
        /// The repository, `owner/name`.
        repository: String,
        /// Gitea's root URL.
        #[arg(long, env = "CLAIMD_GITEA_URL")]
        gitea_url: String,
        /// A file holding an access token with scope write:repository.
        #[arg(long, env = "CLAIMD_GITEA_TOKEN_FILE")]
        token_file: PathBuf,
        /// Where Gitea delivers: claimd's receiver as Gitea reaches it
        /// (`http://claimd.example.com:7463/hooks/gitea`).
        #[arg(long, env = "CLAIMD_GITEA_WEBHOOK_URL")]
        webhook_url: String,
        /// A file holding the webhook secret (the daemon's gitea.webhookSecretFile).
        #[arg(long, env = "CLAIMD_GITEA_WEBHOOK_SECRET_FILE")]
        secret_file: PathBuf,
        /// A CA certificate (PEM) for Gitea's HTTPS, if not a public one.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Leave an existing webhook's secret as it is (Gitea never shows it, so it is
        /// otherwise written again): for when the secret file did not change.
        #[arg(long)]
        keep_secret: bool,
    },
}

pub fn run(action: GiteaAction) -> Result<ExitCode> {
    match action {
        GiteaAction::RegisterWebhook {
            repository,
            gitea_url,
            token_file,
            webhook_url,
            secret_file,
            ca_file,
            keep_secret,
        } => {
            let (owner, repo) = repository
                .split_once('/')
                .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
                .with_context(|| format!("{repository}: give the repository as OWNER/REPO"))?;
            let token = Secret::load(Some(&token_file), None)?;
            let secret = Secret::load(Some(&secret_file), None)?;
            let client = api::Client::new(&gitea_url, token, ca_file.as_deref())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let done = runtime.block_on(api::register_webhook(
                &client,
                owner,
                repo,
                &webhook_url,
                &secret,
                !keep_secret,
            ))?;
            let what = match done {
                Registered::Created(id) => format!("created webhook {id}"),
                Registered::Updated(id) => format!("updated webhook {id}"),
                Registered::Unchanged(id) => format!("webhook {id} is as wanted"),
            };
            println!("{what} on {owner}/{repo}: push events → {webhook_url}");
            if let Some(hint) = api::allowed_host_hint(&webhook_url) {
                println!("{hint}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Registers the webhook on every repository the daemon serves (at start), when the
/// settings name Gitea and the webhook URL. Failures are logged with what to do.
pub async fn register_all(settings: gitea::Settings, repositories: Vec<String>) {
    let Some(url) = settings.webhook_url.clone() else {
        return;
    };
    let client = match settings.client() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "webhooks not registered");
            return;
        }
    };
    let secret = match settings.webhook_secret() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "webhooks not registered");
            return;
        }
    };
    if let Some(hint) = api::allowed_host_hint(&url) {
        tracing::warn!("{hint}");
    }
    for name in repositories {
        let Some((owner, repo)) = name.split_once('/') else {
            continue;
        };
        match api::register_webhook(&client, owner, repo, &url, &secret, true).await {
            Ok(done) => tracing::info!(repository = %name, ?done, "gitea webhook registered"),
            Err(e) => {
                tracing::warn!(repository = %name, error = %e, kind = e.kind(), "gitea webhook not registered")
            }
        }
    }
}
