//! `claimd bootstrap -f claims/bootstrap.yaml`: a BootstrapClaim made real on Gitea. The
//! organization and the repositories it names are created when missing; an empty GitOps
//! repository gets the scaffold (README, the claim under `claims/`, the root apps and
//! ApplicationSets of its environments) as its first commit, pushed through Gitea; the
//! hooks are installed when the repository is on this disk; the webhook is registered.
//! Anything already there is left alone: a second run only reads.

use crate::claims::{self, Spec};
use crate::git::push::{self, Auth};
use crate::git::{Cas, Identity, Repo};
use crate::gitea::api::{self, Registered};
use crate::gitea::{self, Secret};
use crate::render::{self, Settings};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// The BootstrapClaim file.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// A file holding a Gitea access token (scopes write:organization, write:repository).
    #[arg(long, env = "CLAIMD_GITEA_TOKEN_FILE")]
    token_file: PathBuf,
    /// Gitea's URL as claimd reaches it (default: the claim's giteaURL).
    #[arg(long, env = "CLAIMD_GITEA_URL")]
    gitea_url: Option<String>,
    /// Where Gitea serves git over HTTP, if not at its URL.
    #[arg(long)]
    git_url: Option<String>,
    /// Gitea's repository root, when it is on this disk: the hooks are installed into
    /// `<root>/<org>/<repo>.git` (Gitea's hooks/<hook>.d layout).
    #[arg(long)]
    repos_root: Option<PathBuf>,
    /// Register claimd's webhook (its receiver's URL as Gitea reaches it)…
    #[arg(long, requires = "secret_file")]
    webhook_url: Option<String>,
    /// …with this secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// A CA certificate (PEM) for Gitea's HTTPS, if not a public one.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

pub fn run(args: BootstrapArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .context("the claim file's name")?
        .to_string();
    let shown = args.file.display().to_string();
    let (parsed, diagnostics) = claims::parse_file(&shown, &text, &crate::yaml::Limits::default());
    super::print_diagnostics(&diagnostics);
    if diagnostics.iter().any(claims::Diagnostic::is_error) {
        return Ok(ExitCode::from(1));
    }
    let Some((claim, b)) = parsed.iter().find_map(|c| match &c.spec {
        Spec::Bootstrap(b) => Some((c, b)),
        _ => None,
    }) else {
        bail!("{shown}: no BootstrapClaim in it");
    };
    let Some(wanted) = gitea::bootstrap::Wanted::of(b) else {
        bail!("{shown}: the organization or a repository is not a name Gitea allows (letters, digits, -, _, .)");
    };
    let org = b.organization.value.as_str();
    let url = args
        .gitea_url
        .clone()
        .unwrap_or_else(|| b.gitea_url.value.clone());
    let token = Secret::load(Some(&args.token_file), None)?;
    let client = api::Client::new(&url, token.clone(), args.ca_file.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    for line in runtime.block_on(gitea::bootstrap::ensure(&client, &wanted))? {
        println!("{line}");
    }

    // The scaffold, into an empty GitOps repository.
    let gitops = b.gitops_repository.value.as_str();
    let git_base = args.git_url.clone().unwrap_or_else(|| url.clone());
    let remote = gitea::Settings::clone_url(&git_base, &format!("{org}/{gitops}"));
    let auth = Auth::token("claimd", token.expose());
    if push::has_branch(&remote, Some(&auth), &b.branch)? {
        println!(
            "scaffold: {org}/{gitops} has branch {} already; left as it is",
            b.branch
        );
    } else {
        let mut files = scaffold(std::slice::from_ref(claim), org, gitops)?;
        files.push((format!("claims/{name}"), text.clone()));
        files.sort();
        // A scratch bare repository for the first commit, removed afterwards.
        let scratch =
            Scratch(std::env::temp_dir().join(format!("claimd-bootstrap-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&scratch.0);
        gix::init_bare(&scratch.0).context("a scratch repository")?;
        let repo = Repo::open(&scratch.0)?;
        let commit = repo.commit_root(
            &files,
            &format!("claimd: bootstrap {org}/{gitops} from {name}\n"),
            &Identity::default(),
        )?;
        match push::push_new(&scratch.0, &remote, Some(&auth), &b.branch, commit)? {
            Cas::Updated => println!(
                "scaffold: {} files pushed to {org}/{gitops} ({})",
                files.len(),
                b.branch
            ),
            Cas::Moved => {
                println!("scaffold: {org}/{gitops} got a branch meanwhile; left as it is")
            }
        }
    }

    if let Some(root) = &args.repos_root {
        let path = root
            .join(org.to_lowercase())
            .join(format!("{}.git", gitops.to_lowercase()));
        if path.join("objects").is_dir() {
            super::hooks::install(&path, None, true, None)?;
        } else {
            println!(
                "hooks: {} is not on this disk; the webhook triggers renders",
                path.display()
            );
        }
    }
    if let (Some(webhook), Some(secret_file)) = (&args.webhook_url, &args.secret_file) {
        let secret = Secret::load(Some(secret_file), None)?;
        let done = runtime.block_on(api::register_webhook(
            &client, org, gitops, webhook, &secret, false,
        ))?;
        let what = match done {
            Registered::Created(id) => format!("created ({id})"),
            Registered::Updated(id) => format!("updated ({id})"),
            Registered::Unchanged(id) => format!("exists ({id})"),
        };
        println!("webhook {webhook}: {what}");
        if let Some(hint) = api::allowed_host_hint(webhook) {
            println!("{hint}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The generated files of a repository holding only this BootstrapClaim (root apps and
/// ApplicationSets of its environments) and a README.
fn scaffold(claims: &[claims::Claim], org: &str, repo: &str) -> Result<Vec<(String, String)>> {
    let rendered = render::render(claims, &Default::default(), &Settings::default())?;
    let mut files: Vec<(String, String)> = rendered.files.into_iter().collect();
    files.push((
        "README.md".into(),
        format!(
            "# {org}/{repo}\n\nThe GitOps repository of {org}, kept by claimd. Push claims to `claims/`;\nclaimd renders `environments/`, `appsets/` and `root-apps/` in its own commits\n(do not edit those by hand), and Argo CD deploys from them.\n"
        ),
    ));
    Ok(files)
}

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
