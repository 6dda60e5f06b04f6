//! Embeds the data files of the charts in `charts/` (Chart.yaml, values*.yaml,
//! values.schema.json, claimd-mapping.yaml) so `claimd` runs without a registry.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // Read when the script runs, not baked in when it is compiled: a build script built
    // for another checkout sharing the target folder must read this one's charts.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("charts");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut charts: Vec<_> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    charts.sort();
    let mut out = String::from("pub fn chart(name: &str) -> Option<&'static [(&'static str, &'static str)]> {\n    match name {\n");
    for chart in &charts {
        println!("cargo:rerun-if-changed={}", chart.display());
        let name = chart.file_name().unwrap().to_string_lossy().to_string();
        let mut files: Vec<String> = std::fs::read_dir(chart)
            .expect("chart folder")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|f| {
                f == "Chart.yaml"
                    || f == "claimd-mapping.yaml"
                    || f == "values.schema.json"
                    || (f.starts_with("values") && f.ends_with(".yaml"))
            })
            .collect();
        files.sort();
        let _ = write!(out, "        {name:?} => Some(&[");
        for f in files {
            let path = chart.join(&f);
            println!("cargo:rerun-if-changed={}", path.display());
            let _ = write!(
                out,
                "({f:?}, include_str!({:?})), ",
                path.display().to_string()
            );
        }
        out.push_str("]),\n");
    }
    out.push_str("        _ => None,\n    }\n}\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded_charts.rs");
    std::fs::write(dest, out).expect("write embedded_charts.rs");
}
