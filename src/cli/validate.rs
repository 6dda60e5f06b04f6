//! `claimd validate`: the claim files given (default `claims/`), through the pipeline
//! on a work-tree snapshot, with the push-time rule for charts that cannot be had.

use super::print_diagnostics;
use crate::charts;
use crate::pipeline::{self, snapshot, Previews, Request};
use crate::render::Settings;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(paths: &[PathBuf], source: &charts::Source, settings: &Settings) -> Result<ExitCode> {
    let default = [PathBuf::from("claims")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let (snap, objects) = snapshot::of_work_tree(paths, None, None)?;
    let mut memo = pipeline::core::Memo::once();
    let claims = pipeline::core::load(&snap, &objects, &mut memo)?;
    // The values each valid claim makes, against its chart (as `helm install` would).
    // The files are let go batch by batch: only the diagnostics are wanted.
    let request = Request {
        settings,
        charts: source,
        previews: &Previews::All,
        branch: None,
        sink: Some(&|_| Ok(())),
    };
    let mut diagnostics = match pipeline::run(&snap, &objects, &request, &mut memo) {
        // A chart that cannot be had (or no chart repository named, when validating
        // some files only) is not the claim's fault: a warning, as at push time.
        Ok(planned) => planned.push_diagnostics(),
        Err(pipeline::core::Error::Render(why)) => {
            eprintln!("claimd: warning: the values were not checked against the charts: {why}");
            let mut d = claims.diagnostics.clone();
            d.extend(claims.loaded.diagnostics.iter().cloned());
            d
        }
        Err(e) => return Err(e.into()),
    };
    let (files, docs) = (snap.claim_files.len(), claims.loaded.claims.len());
    diagnostics.sort();
    print_diagnostics(&diagnostics);
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        let mut failed: Vec<&str> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.file.as_str())
            .collect();
        failed.dedup();
        eprintln!("{errors} error(s) in {} file(s)", failed.len());
        return Ok(ExitCode::from(1));
    }
    println!("{files} file(s), {docs} claim(s): valid");
    Ok(ExitCode::SUCCESS)
}
