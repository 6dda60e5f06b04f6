//! `claimd-bench render|push`: reproducible measurements on a synthetic repository.

use anyhow::{Context, Result};
use claimd::examples::{APPS_PER_CLAIM, SYNTHETIC_ENVS};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Writes a repository with `apps` applications (see [`claimd::examples::synthetic`]).
pub fn generate(dir: &Path, apps: usize) -> Result<()> {
    let claims = dir.join("claims");
    std::fs::create_dir_all(&claims).with_context(|| format!("creating {}", claims.display()))?;
    for (path, text) in claimd::examples::synthetic(apps) {
        std::fs::write(dir.join(path), text)?;
    }
    Ok(())
}

/// Peak resident memory of finished child processes, in KiB (the largest one so far).
fn children_peak_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) == 0 {
            usage.ru_maxrss
        } else {
            -1
        }
    }
}

fn run_render(repo: &Path, out_dir: &Path) -> Result<Duration> {
    let exe = crate::claimd_binary()?;
    let start = Instant::now();
    let out = Command::new(exe)
        .arg("render")
        .arg("--repo")
        .arg(repo)
        .arg("--out")
        .arg(out_dir)
        .output()
        .context("running claimd render")?;
    let took = start.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn render(apps: usize, runs: usize, dir: Option<PathBuf>) -> Result<ExitCode> {
    let keep = dir.is_some();
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("claimd-bench-{}", std::process::id()))
    });
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    generate(&dir, apps)?;
    let runs = runs.max(1);
    let mut fresh = Vec::new();
    let mut noop = Vec::new();
    // Each run writes into a new, empty folder: deleting 20,000 files between runs
    // slows the file system down for a while and would be measured instead of claimd.
    for run in 0..runs {
        let out = dir.join(format!("out-{run}"));
        fresh.push(run_render(&dir, &out)?);
        noop.push(run_render(&dir, &out)?);
    }
    let peak_kib = children_peak_kib();
    println!(
        "claimd bench render: {apps} applications, {runs} run(s), repository {}",
        dir.display()
    );
    println!(
        "  full render into an empty tree (read claims, merge, render, write {} files): median {:.3} s, min {:.3} s",
        apps * 2,
        median(fresh.clone()).as_secs_f64(),
        fresh.iter().min().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "  re-render with nothing to change:                                            median {:.3} s, min {:.3} s",
        median(noop.clone()).as_secs_f64(),
        noop.iter().min().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "  peak resident memory of one render process: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    if !keep {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(ExitCode::SUCCESS)
}

pub fn git(dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .with_context(|| format!("git {}", args.join(" ")))?;
    anyhow::ensure!(
        out.status.success(),
        "git {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// P1/P2 of the git loop: a bare repository with claimd's hooks and a clone.
/// P2: the first push of `apps` applications (full render + one bot commit, timed inside
/// the post-receive hook by timing the whole push), next to `git fast-import` writing
/// the same generated files. P1: `pushes` pushes that each change one claim file.
pub fn push(apps: usize, pushes: usize, dir: Option<PathBuf>) -> Result<ExitCode> {
    let keep = dir.is_some();
    let root = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("claimd-bench-push-{}", std::process::id()))
    });
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    let bare = root.join("server.git");
    let work = root.join("work");
    git(&root, &["init", "-q", "--bare", "-b", "main", "server.git"])?;
    let exe = crate::claimd_binary()?;
    let installed = Command::new(&exe)
        .args(["hooks", "install"])
        .arg(&bare)
        .status()
        .context("claimd hooks install")?;
    anyhow::ensure!(installed.success(), "claimd hooks install failed");
    git(
        &root,
        &["clone", "-q", &format!("file://{}", bare.display()), "work"],
    )?;
    generate(&work, apps)?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "claims"])?;

    // P2: full render + commit of every application, as one push.
    let start = Instant::now();
    git(&work, &["push", "-q", "origin", "main"])?;
    let full = start.elapsed();
    git(&work, &["pull", "-q", "--rebase", "origin", "main"])?;

    // The same generated files written by git fast-import, for scale.
    let generated = claimd::git::Repo::open(&bare)?;
    let tip = generated.branch_tip("main")?.context("main")?;
    let files = generated.read_files(tip, &["root-apps", "appsets", "environments"])?;
    let mut stream = Vec::new();
    stream.extend_from_slice(b"commit refs/heads/fastimport\ncommitter Bench <bench@example.com> 0 +0000\ndata 4\nbulk\n");
    for (path, content) in &files {
        stream.extend_from_slice(
            format!("M 100644 inline {path}\ndata {}\n", content.len()).as_bytes(),
        );
        stream.extend_from_slice(content);
        stream.push(b'\n');
    }
    git(&root, &["init", "-q", "--bare", "fastimport.git"])?;
    let start = Instant::now();
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(root.join("fastimport.git"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("git fast-import")?;
    child.stdin.take().context("stdin")?.write_all(&stream)?;
    anyhow::ensure!(child.wait()?.success(), "git fast-import failed");
    let fast_import = start.elapsed();

    // P1: one changed claim file per push.
    let mut times = Vec::new();
    for i in 0..pushes {
        let file = work.join(format!(
            "claims/apps-{:05}.yaml",
            i % apps.div_ceil(APPS_PER_CLAIM)
        ));
        let text = std::fs::read_to_string(&file)?;
        let bumped = text.replacen("tag: v1.", &format!("tag: v2{i}."), 1);
        std::fs::write(&file, bumped)?;
        git(&work, &["commit", "-q", "-am", &format!("change {i}")])?;
        let start = Instant::now();
        git(&work, &["push", "-q", "origin", "main"])?;
        times.push(start.elapsed());
        git(&work, &["pull", "-q", "--rebase", "origin", "main"])?;
    }
    times.sort();
    let peak_kib = children_peak_kib();

    // P3: the same change to up to 1,000 applications, claimd vs a naive per-app script.
    let changed_files = apps.min(1000).div_ceil(APPS_PER_CLAIM);
    for f in 0..changed_files {
        let file = work.join(format!("claims/apps-{f:05}.yaml"));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text.replace("tag: v", "tag: p3-v"))?;
    }
    git(&work, &["commit", "-q", "-am", "p3: retag"])?;
    let start = Instant::now();
    git(&work, &["push", "-q", "origin", "main"])?;
    let claimd_p3 = start.elapsed();
    // The naive way, on a copy of the pre-change state: per application, write its
    // merged values and config and `git add` + `git commit` them.
    let naive_dir = root.join("naive");
    git(
        &root,
        &[
            "clone",
            "-q",
            &format!("file://{}", bare.display()),
            "naive",
        ],
    )?;
    git(&naive_dir, &["reset", "-q", "--hard", "HEAD~2"])?;
    let after = claimd::git::Repo::open(&bare)?;
    let tip = after.branch_tip("main")?.context("main")?;
    let rendered = after.read_files(tip, &["environments"])?;
    let changed_apps: Vec<usize> = (0..apps.min(1000)).collect();
    let start = Instant::now();
    for i in &changed_apps {
        let env = SYNTHETIC_ENVS[(i / APPS_PER_CLAIM) % SYNTHETIC_ENVS.len()];
        let dir = format!("environments/bench/{env}/applications/app-{i:05}");
        for name in ["values.yaml", "config.yaml"] {
            let rel = format!("{dir}/{name}");
            if let Some(content) = rendered.get(&rel) {
                std::fs::create_dir_all(naive_dir.join(&dir))?;
                std::fs::write(naive_dir.join(&rel), content)?;
            }
        }
        git(&naive_dir, &["add", &dir])?;
        git(
            &naive_dir,
            &["commit", "-q", "-m", &format!("update app-{i:05}")],
        )?;
    }
    let naive_p3 = start.elapsed();

    // The daemon's resident memory after reconciling this repository.
    let (daemon_kib, handoff) =
        daemon_peak_kib(&root, &bare, &work, apps.div_ceil(APPS_PER_CLAIM))?;
    println!(
        "claimd bench push: {apps} applications, repository {}",
        root.display()
    );
    println!(
        "  P2 first push, full render + one bot commit of {} files: {:.3} s; git fast-import of the same files: {:.3} s (ratio {:.1}x)",
        files.len(),
        full.as_secs_f64(),
        fast_import.as_secs_f64(),
        full.as_secs_f64() / fast_import.as_secs_f64()
    );
    if !times.is_empty() {
        println!(
            "  P1 push of one changed claim file until the bot commit is on the branch ({} pushes): p50 {:.0} ms, p99 {:.0} ms",
            times.len(),
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0
        );
    }
    println!(
        "  peak resident memory of any child process (git or the claimd hook): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    println!(
        "  P3 the same change to {} applications: claimd push {:.3} s; naive per-app add+commit {:.3} s (ratio {:.0}x)",
        changed_apps.len(),
        claimd_p3.as_secs_f64(),
        naive_p3.as_secs_f64(),
        naive_p3.as_secs_f64() / claimd_p3.as_secs_f64()
    );
    println!(
        "  post-receive hand-off to the daemon (whole hook process, median of 21): {:.1} ms",
        handoff.as_secs_f64() * 1000.0
    );
    println!(
        "  claimd serve peak resident memory (VmHWM) after reconciling and one pushed change: {:.1} MiB",
        daemon_kib as f64 / 1024.0
    );
    if !keep {
        std::fs::remove_dir_all(&root).ok();
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `claimd serve` for `bare`, waits until it has reconciled, hands it one change,
/// waits for the bot commit; returns the daemon's VmHWM (KiB) and the median time the
/// post-receive hook takes to hand a push to the daemon.
fn daemon_peak_kib(
    root: &Path,
    bare: &Path,
    work: &Path,
    claim_files: usize,
) -> Result<(u64, Duration)> {
    // The pushes change a few claim files in turn (all there are, below seven).
    let files = claim_files.clamp(1, 7);
    // Its log (root/daemon.log), for a look at where the time goes (CLAIMD_LOG=debug).
    let daemon = crate::daemon::Daemon::serve(root, bare)?;
    let addr = daemon.addr.clone();
    daemon.wait_ready(Instant::now(), Duration::from_secs(300))?;
    // The hooks name the daemon, as install.sh installs them (`--daemon`: the kernel
    // starts the small claimd-hook on them, not the full claimd).
    let installed = Command::new(crate::claimd_binary()?)
        .args(["hooks", "install", "--daemon", &addr])
        .arg(bare)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(installed.success(), "claimd hooks install --daemon failed");
    let deadline = Instant::now() + Duration::from_secs(300);
    git(work, &["pull", "-q", "--rebase", "origin", "main"])?;
    let file = work.join("claims/apps-00000.yaml");
    let text = std::fs::read_to_string(&file)?;
    std::fs::write(&file, text.replacen("replicas: ", "replicas: 1", 1))?;
    git(work, &["commit", "-q", "-am", "daemon change"])?;
    // The pushed commit (the daemon's bot commit may be on the branch before the push
    // returns).
    let head = git(work, &["rev-parse", "HEAD"])?;
    let pushed = Some(claimd::git::ObjectId::from_hex(
        String::from_utf8_lossy(&head.stdout).trim().as_bytes(),
    )?);
    let out = Command::new("git")
        .args(["push", "-q", "origin", "main"])
        .current_dir(work)
        .env("CLAIMD_DAEMON", &addr)
        .output()?;
    anyhow::ensure!(out.status.success(), "push to the daemon failed");
    while claimd::git::Repo::open(bare)?.branch_tip("main")? == pushed {
        anyhow::ensure!(Instant::now() < deadline, "no bot commit from the daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
    // P1 with the daemon: each push waits (CLAIMD_WAIT) until the daemon's bot commit is on
    // the branch; the daemon's cache makes it re-merge only the changed claim file.
    let mut p1 = Vec::new();
    for i in 0..20 {
        git(work, &["pull", "-q", "--rebase", "origin", "main"])?;
        let file = work.join(format!("claims/apps-{:05}.yaml", i % files));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text.replacen("tag: ", &format!("tag: d{i}-"), 1))?;
        git(
            work,
            &["commit", "-q", "-am", &format!("daemon change {i}")],
        )?;
        let start = Instant::now();
        let out = Command::new("git")
            .args(["push", "-q", "origin", "main"])
            .current_dir(work)
            .env("CLAIMD_DAEMON", &addr)
            .env("CLAIMD_WAIT", "1")
            .output()?;
        anyhow::ensure!(out.status.success(), "push to the daemon failed");
        p1.push(start.elapsed());
    }
    p1.sort();
    // The same pushes without claimd's hooks: git's own share of P1 (receive-pack with its
    // connectivity check over the whole tree).
    let hooks = bare.join("hooks");
    for h in ["pre-receive", "post-receive"] {
        std::fs::rename(hooks.join(h), hooks.join(format!("{h}.off")))?;
    }
    git(work, &["pull", "-q", "--rebase", "origin", "main"])?;
    let mut plain = Vec::new();
    for i in 0..20 {
        let file = work.join(format!("claims/apps-{:05}.yaml", i % files));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text.replacen("tag: ", &format!("tag: g{i}-"), 1))?;
        git(work, &["commit", "-q", "-am", &format!("plain push {i}")])?;
        let start = Instant::now();
        git(work, &["push", "-q", "origin", "main"])?;
        plain.push(start.elapsed());
    }
    plain.sort();
    for h in ["pre-receive", "post-receive"] {
        std::fs::rename(hooks.join(format!("{h}.off")), hooks.join(h))?;
    }
    // The hook's own cost with a daemon: read the ref lines, hand off, return.
    let tip = claimd::git::Repo::open(bare)?
        .branch_tip("main")?
        .context("main")?;
    let mut handoffs = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        // The hook git runs (the script, then claimd-hook).
        let mut hook = Command::new(bare.join("hooks/post-receive"))
            .env("GIT_DIR", bare)
            .env("CLAIMD_DAEMON", &addr)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        // A non-bot commit id, so the hook does hand off.
        let parent = format!("{tip}");
        hook.stdin.take().context("stdin")?.write_all(
            format!(
                "{parent} {} refs/heads/main\n",
                pushed.map(|p| p.to_string()).unwrap_or(parent.clone())
            )
            .as_bytes(),
        )?;
        hook.wait()?;
        handoffs.push(start.elapsed());
    }
    handoffs.sort();
    let hwm = u64::try_from(daemon.peak_kib()).unwrap_or(0);
    daemon.stop()?;
    println!(
        "  P1 with the daemon (push returns when its bot commit is on the branch, 20 pushes): p50 {:.0} ms, p99 {:.0} ms",
        percentile(&p1, 0.5).as_secs_f64() * 1000.0,
        percentile(&p1, 0.99).as_secs_f64() * 1000.0
    );
    println!(
        "  the same pushes with no hooks at all (git alone: receive-pack, connectivity check): p50 {:.0} ms, p99 {:.0} ms",
        percentile(&plain, 0.5).as_secs_f64() * 1000.0,
        percentile(&plain, 0.99).as_secs_f64() * 1000.0
    );
    Ok((hwm, handoffs[handoffs.len() / 2]))
}
