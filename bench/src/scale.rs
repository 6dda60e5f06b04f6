//! `claimd-bench scale`: issue 17's measurements. Many applications in one repository
//! (full render, first render and commit against `git fast-import`, the daemon's push →
//! bot commit beside the hook-less push, peak memory) and many repositories on one
//! daemon (time until ready, peak memory, idle CPU, a restart with unchanged
//! repositories).

use crate::daemon::Daemon;
use crate::push::{generate, git, percentile};
use anyhow::{ensure, Context, Result};
use claimd::examples::APPS_PER_CLAIM;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// A finished child's wall time and peak resident memory (KiB), from `wait4`.
struct Ran {
    took: Duration,
    peak_kib: i64,
    stderr: String,
}

fn run_measured(cmd: &mut Command) -> Result<Ran> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    let (status, peak_kib) = wait4(&mut child)?;
    let took = start.elapsed();
    ensure!(status == 0, "exit status {status}: {stderr}");
    Ok(Ran {
        took,
        peak_kib,
        stderr,
    })
}

/// Waits for `child`; its exit status and peak resident memory (KiB).
fn wait4(child: &mut Child) -> Result<(i32, i64)> {
    let pid = child.id() as libc::pid_t;
    // SAFETY: wait4 writes into the two values we pass; the child is ours.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(pid, &mut status, 0, &mut usage);
        ensure!(r == pid, "wait4 failed");
        (status, usage)
    };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, usage.ru_maxrss))
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

/// Loose objects and packs in a bare repository: (loose objects, loose bytes, packs).
fn objects_of(bare: &Path) -> (usize, u64, usize) {
    let objects = bare.join("objects");
    let (mut loose, mut bytes, mut packs) = (0, 0, 0);
    if let Ok(dirs) = std::fs::read_dir(&objects) {
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().to_string();
            if name.len() == 2 {
                for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                    loose += 1;
                    bytes += f.metadata().map_or(0, |m| m.len());
                }
            }
        }
    }
    if let Ok(files) = std::fs::read_dir(objects.join("pack")) {
        packs = files
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().ends_with(".pack"))
            .count();
    }
    (loose, bytes, packs)
}

/// Pushes of one changed claim file each, timed until the push returns; with `daemon`
/// the hooks wait for its bot commit (CLAIMD_WAIT).
fn pushes(work: &Path, count: usize, tag: &str, daemon: Option<&str>) -> Result<Vec<Duration>> {
    let mut times = Vec::new();
    for i in 0..count {
        let file = work.join(format!("claims/apps-{:05}.yaml", i % 7));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text.replacen("tag: ", &format!("tag: {tag}{i}-"), 1))?;
        git(work, &["commit", "-q", "-am", &format!("{tag} change {i}")])?;
        let mut cmd = Command::new("git");
        cmd.args(["push", "-q", "origin", "main"]).current_dir(work);
        if let Some(addr) = daemon {
            cmd.env("CLAIMD_DAEMON", addr).env("CLAIMD_WAIT", "1");
        }
        let start = Instant::now();
        let out = cmd.output()?;
        times.push(start.elapsed());
        ensure!(
            out.status.success(),
            "push failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if daemon.is_some() {
            git(work, &["pull", "-q", "--rebase", "origin", "main"])?;
        }
    }
    times.sort();
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `dir`, empty (what an earlier run left there is removed).
fn fresh(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

/// One repository with `apps` applications.
fn one_repository(root: &Path, apps: usize, count: usize) -> Result<()> {
    let exe = crate::claimd_binary()?;
    let dir = fresh(&root.join(format!("apps-{apps}")))?;
    let work = dir.join("work");
    let bare = dir.join("server.git");
    git(&dir, &["init", "-q", "--bare", "-b", "main", "server.git"])?;
    git(
        &dir,
        &["clone", "-q", &format!("file://{}", bare.display()), "work"],
    )?;
    generate(&work, apps)?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "claims"])?;
    git(&work, &["push", "-q", "origin", "main"])?;

    // The full render into an empty folder.
    let render = run_measured(
        Command::new(&exe)
            .arg("render")
            .arg("--repo")
            .arg(&work)
            .arg("--out")
            .arg(dir.join("out")),
    )
    .context("claimd render")?;

    // The first render and commit into the bare repository.
    let first = run_measured(
        Command::new(&exe)
            .args(["reconcile", "--repo"])
            .arg(&bare)
            .args(["--branch", "main"]),
    )
    .context("claimd reconcile")?;
    let (loose, loose_bytes, packs) = objects_of(&bare);

    // The same generated files through git fast-import.
    let repo = claimd::git::Repo::open(&bare)?;
    let tip = repo.branch_tip("main")?.context("main")?;
    let files = repo.read_files(tip, &["root-apps", "appsets", "environments"])?;
    drop(repo);
    let stream_path = dir.join("fast-import.stream");
    {
        let mut stream = std::io::BufWriter::new(std::fs::File::create(&stream_path)?);
        stream.write_all(b"commit refs/heads/fastimport\ncommitter Bench <bench@example.com> 0 +0000\ndata 4\nbulk\n")?;
        for (path, content) in &files {
            write!(stream, "M 100644 inline {path}\ndata {}\n", content.len())?;
            stream.write_all(content)?;
            stream.write_all(b"\n")?;
        }
    }
    let file_count = files.len();
    drop(files);
    git(&dir, &["init", "-q", "--bare", "fastimport.git"])?;
    let fast_import = run_measured(
        Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(dir.join("fastimport.git"))
            .stdin(std::fs::File::open(&stream_path)?),
    )?;
    std::fs::remove_file(&stream_path).ok();

    // The daemon on the committed repository: push → bot commit, then git alone. The
    // hooks name the daemon, as install.sh installs them (`--daemon`: the kernel starts
    // the small claimd-hook, not the full claimd).
    let exe_s = exe.display().to_string();
    git(&work, &["pull", "-q", "--rebase", "origin", "main"])?;
    let start = Instant::now();
    let daemon = Daemon::serve(&dir, &bare)?;
    let ready = daemon.wait_ready(start, Duration::from_secs(900))?;
    let installed = Command::new(&exe_s)
        .args(["hooks", "install", "--daemon", &daemon.addr])
        .arg(&bare)
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(installed.success(), "hooks install failed");
    let with_daemon = pushes(&work, count, "d", Some(&daemon.addr))?;
    let daemon_peak = daemon.peak_kib();
    let daemon_rss = daemon.rss_kib();
    daemon.stop()?;
    let hooks = bare.join("hooks");
    for h in ["pre-receive", "post-receive"] {
        std::fs::rename(hooks.join(h), hooks.join(format!("{h}.off")))?;
    }
    let plain = pushes(&work, count, "g", None)?;

    println!(
        "{apps} applications in one repository ({} claim files of {APPS_PER_CLAIM}), {}:",
        apps.div_ceil(APPS_PER_CLAIM),
        dir.display()
    );
    println!(
        "  full render (claimd render into an empty folder, {} files): {:.2} s, peak RSS {:.0} MiB",
        file_count,
        render.took.as_secs_f64(),
        mib(render.peak_kib)
    );
    println!(
        "  first render and commit (claimd reconcile): {:.2} s, peak RSS {:.0} MiB; {} loose objects ({:.0} MB), {} pack(s)",
        first.took.as_secs_f64(),
        mib(first.peak_kib),
        loose,
        loose_bytes as f64 / 1e6,
        packs
    );
    println!(
        "  git fast-import of the same files: {:.2} s, peak RSS {:.0} MiB (render + fast-import: {:.2} s)",
        fast_import.took.as_secs_f64(),
        mib(fast_import.peak_kib),
        render.took.as_secs_f64() + fast_import.took.as_secs_f64()
    );
    println!(
        "  daemon: ready after {:.2} s; push of one changed claim file → bot commit p50 {:.0} ms, p99 {:.0} ms ({count} pushes)",
        ready.as_secs_f64(),
        ms(percentile(&with_daemon, 0.5)),
        ms(percentile(&with_daemon, 0.99)),
    );
    println!(
        "  the same push with no hooks (git alone): p50 {:.0} ms, p99 {:.0} ms; ratio {:.2}x",
        ms(percentile(&plain, 0.5)),
        ms(percentile(&plain, 0.99)),
        percentile(&with_daemon, 0.5).as_secs_f64() / percentile(&plain, 0.5).as_secs_f64()
    );
    println!(
        "  daemon peak RSS {:.0} MiB, RSS at the end {:.0} MiB",
        mib(daemon_peak),
        mib(daemon_rss)
    );
    if !render.stderr.is_empty() && std::env::var_os("CLAIMD_BENCH_VERBOSE").is_some() {
        eprintln!("{}", render.stderr);
    }
    Ok(())
}

/// `repos` repositories of `apps` applications each, on one daemon.
fn many_repositories(root: &Path, repos: usize, apps: usize) -> Result<()> {
    let dir = fresh(&root.join(format!("repos-{repos}")))?;
    // One repository made with git, copied: each copy is a repository of its own.
    let template = dir.join("template.git");
    let work = dir.join("work");
    git(
        &dir,
        &["init", "-q", "--bare", "-b", "main", "template.git"],
    )?;
    git(
        &dir,
        &[
            "clone",
            "-q",
            &format!("file://{}", template.display()),
            "work",
        ],
    )?;
    generate(&work, apps)?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "claims"])?;
    git(&work, &["push", "-q", "origin", "main"])?;
    let repos_dir = dir.join("repos");
    std::fs::create_dir_all(&repos_dir)?;
    let mut config = String::from("listen: 127.0.0.1:0\nrepositories:\n");
    for i in 0..repos {
        let to = repos_dir.join(format!("r{i:04}.git"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&to)
            .status()?;
        ensure!(status.success(), "cp failed");
        config.push_str(&format!("  - path: {}\n", to.display()));
    }
    let config_path = dir.join("claimd.yaml");
    std::fs::write(&config_path, config)?;

    let mut rows = Vec::new();
    for run in ["first start", "restart"] {
        let start = Instant::now();
        let daemon = Daemon::start(
            &config_path,
            &dir.join(format!("daemon-{}.log", rows.len())),
        )?;
        let ready = daemon.wait_ready(start, Duration::from_secs(1800))?;
        let peak = daemon.peak_kib();
        // The first 10 s after ready (memos still being parked), then the next 10 s.
        let settling = daemon.idle_cpu(Duration::from_secs(10));
        let idle = daemon.idle_cpu(Duration::from_secs(10));
        let (rss, threads) = (daemon.rss_kib(), daemon.threads());
        let peak = peak.max(daemon.peak_kib());
        daemon.stop()?;
        rows.push((run, ready, peak, rss, settling, idle, threads));
    }
    println!(
        "{repos} repositories of {apps} applications on one daemon, {}:",
        dir.display()
    );
    for (run, ready, peak, rss, settling, idle, threads) in rows {
        println!(
            "  {run}: ready after {:.2} s, peak RSS {:.0} MiB, RSS at rest {:.0} MiB; CPU in the 10 s after ready {:.2} %, in the 10 s after that {:.2} % of a core; {threads} threads",
            ready.as_secs_f64(),
            mib(peak),
            mib(rss),
            settling,
            idle
        );
    }
    Ok(())
}

pub fn run(
    apps: &[usize],
    repos: &[usize],
    apps_per_repo: usize,
    count: usize,
    dir: Option<PathBuf>,
) -> Result<ExitCode> {
    let keep = dir.is_some();
    let root = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("claimd-bench-scale-{}", std::process::id()))
    });
    std::fs::create_dir_all(&root)?;
    for &n in apps {
        one_repository(&root, n, count)?;
        if !keep {
            std::fs::remove_dir_all(root.join(format!("apps-{n}"))).ok();
        }
    }
    for &n in repos {
        many_repositories(&root, n, apps_per_repo)?;
        if !keep {
            std::fs::remove_dir_all(root.join(format!("repos-{n}"))).ok();
        }
    }
    if !keep {
        std::fs::remove_dir_all(&root).ok();
    }
    Ok(ExitCode::SUCCESS)
}
