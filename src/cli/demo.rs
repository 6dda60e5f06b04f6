//! `claimd demo`: the whole loop on real git, with nothing else installed. A fresh bare
//! repository with claimd's hooks (the git server), a clone (a platform user), the
//! example claims pushed, the bot commit shown, a second push of an edited claim, and a
//! refused push of a broken claim.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const BROKEN: &str = "apiVersion: platform.infraforge.io/v1
kind: ApplicationClaim
metadata:
  name: broken
spec:
  environment: qa
  clusterType: nonprod
  applications:
    - name: Payment_Service
      chart: {name: microservice, version: 1.0}
      replicas: three
      ingres:
        host: pay.example.com
";

struct Demo {
    root: PathBuf,
}

impl Demo {
    fn git(&self, dir: &Path, args: &[&str]) -> Result<std::process::Output> {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.root)
            .env("GIT_AUTHOR_NAME", "Platform User")
            .env("GIT_AUTHOR_EMAIL", "user@example.com")
            .env("GIT_COMMITTER_NAME", "Platform User")
            .env("GIT_COMMITTER_EMAIL", "user@example.com")
            .output()
            .with_context(|| format!("running git {}", args.join(" ")))
    }

    /// Runs git, echoing the command and everything it prints (as a terminal would).
    fn show(&self, out: &mut impl Write, dir: &Path, args: &[&str]) -> Result<bool> {
        writeln!(out, "\n$ git {}", args.join(" "))?;
        let o = self.git(dir, args)?;
        out.write_all(&o.stdout)?;
        out.write_all(&o.stderr)?;
        Ok(o.status.success())
    }

    fn must(&self, dir: &Path, args: &[&str]) -> Result<()> {
        let o = self.git(dir, args)?;
        if !o.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(())
    }
}

pub fn run(dir: Option<PathBuf>) -> Result<ExitCode> {
    let root = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("claimd-demo-{}", std::process::id())),
    };
    if root.exists() && std::fs::read_dir(&root)?.next().is_some() {
        bail!(
            "{} is not empty; pass --dir with a new folder",
            root.display()
        );
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let demo = Demo { root: root.clone() };
    let bare = root.join("voltran.git");
    let work = root.join("voltran");
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "claimd demo in {}: a git server with claimd's hooks, and a user's clone",
        root.display()
    )?;

    demo.must(
        &root,
        &["init", "-q", "--bare", "-b", "main", "voltran.git"],
    )?;
    writeln!(out, "\n$ claimd hooks install voltran.git")?;
    super::hooks::install(&bare, None, false, None)?;
    demo.must(
        &root,
        &[
            "clone",
            "-q",
            &format!("file://{}", bare.display()),
            "voltran",
        ],
    )?;

    std::fs::create_dir_all(work.join("claims"))?;
    for (path, text) in crate::examples::CLAIMS {
        std::fs::write(work.join(path), text)?;
    }
    demo.must(&work, &["add", "claims"])?;
    demo.must(&work, &["commit", "-q", "-m", "Add the platform's claims"])?;
    writeln!(
        out,
        "\n# 1. push the example claims: claimd validates them, renders, and commits once"
    )?;
    demo.show(&mut out, &work, &["push", "origin", "main"])?;
    demo.show(&mut out, &bare, &["log", "--stat=100", "-1", "main"])?;

    writeln!(
        out,
        "\n# 2. scale payment-service to 12 replicas: only its values.yaml changes"
    )?;
    demo.must(&work, &["pull", "-q", "--rebase", "origin", "main"])?;
    let claim = work.join("claims/prod-apps.yaml");
    let text = std::fs::read_to_string(&claim)?;
    std::fs::write(&claim, text.replace("replicas: 10", "replicas: 12"))?;
    demo.must(
        &work,
        &["commit", "-q", "-am", "Scale payment-service to 12"],
    )?;
    demo.show(&mut out, &work, &["push", "origin", "main"])?;
    demo.show(&mut out, &bare, &["log", "--stat=100", "-1", "main"])?;

    writeln!(
        out,
        "\n# 3. a broken claim is refused at push time, with file:line:col"
    )?;
    demo.must(&work, &["pull", "-q", "--rebase", "origin", "main"])?;
    std::fs::write(work.join("claims/broken.yaml"), BROKEN)?;
    demo.must(&work, &["add", "claims/broken.yaml"])?;
    demo.must(&work, &["commit", "-q", "-m", "Add a broken claim"])?;
    let accepted = demo.show(&mut out, &work, &["push", "origin", "main"])?;
    if accepted {
        bail!("the broken claim was accepted");
    }
    demo.show(&mut out, &bare, &["log", "--oneline", "main"])?;
    writeln!(
        out,
        "\nThe server repository is {}; the clone is {}",
        bare.display(),
        work.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
