use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLAIMD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match claimd::cli::run(claimd::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("claimd: {e:#}");
            ExitCode::from(2)
        }
    }
}
