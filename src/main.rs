use clap::Parser;
use std::process::ExitCode;

/// mimalloc: the memo and the render allocate many small objects (a hook's run is half
/// malloc/free with glibc's allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = claimd::cli::Cli::parse();
    if cli.is_daemon() {
        no_huge_pages();
        purge_freed_memory_after(0);
    } else {
        purge_freed_memory_after(-1);
    }
    // The daemon tells what it does (bot commits, namespaces applied, dry-run objects);
    // one-shot commands and hooks only warn.
    let default = if cli.is_daemon() {
        "warn,claimd=info"
    } else {
        "warn"
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLAIMD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        // One JSON object a line: the event's fields at the top level, the fields of
        // the push or reconcile it belongs to under "span" (and every enclosing span's
        // under "spans").
        claimd::cli::LogFormat::Json => logs.json().flatten_event(true).init(),
        // Colours only for a person at a terminal, never into a log file or journald.
        claimd::cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match claimd::cli::run(cli) {
        Ok(code) => code,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            // The reader went away (`claimd plan | head`): not an error.
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("claimd: {}", claimd::cli::error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// mimalloc asks for transparent huge pages on its arenas, so a long-lived daemon's
/// resident memory grows and stays in 2 MiB steps (10,000 applications: 122–125 MiB
/// peak with them, 113 MiB without). Hooks keep them: a short process faulting in tens
/// of MiB once is quicker with fewer, larger pages (P1 p50 86 against 97 ms). It applies
/// to every page faulted in afterwards.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) only sets a flag on this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// glibc gives every thread that allocates its own malloc arena; with the render's
/// worker threads and the daemon's blocking pool, freed memory is spread over arenas
/// and not reused (10,000 applications: 177 MiB peak instead of 142 MiB). Two arenas
/// are enough for two cores' worth of rendering.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; called first thing, before any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// How long mimalloc keeps freed pages before it gives them back to the system (ms; -1:
/// never). The daemon lives long and its peak is what an operator sizes it by: at once.
/// A command lives seconds at most: never. With mimalloc's default (1 s), a render of
/// 100,000 applications gave back each batch's pages (its worker threads end with it)
/// only to fault in fresh ones for the next: 6,669 page faults of mostly huge pages and
/// 9.8 s of CPU, against 927 and 8.6 s (the first commit of 100,000 applications: 5 %
/// less time for 7 % more peak memory).
fn purge_freed_memory_after(ms: libc::c_long) {
    /// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (not exported by the
    /// Rust binding).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a tunable that mimalloc reads on each purge; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
}
