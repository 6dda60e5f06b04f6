//! The charts compiled into the binary (their data files; see build.rs).

use super::ChartFiles;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/embedded_charts.rs"));
}

/// The data files of an embedded chart.
pub fn chart(name: &str) -> Option<ChartFiles> {
    let files = generated::chart(name)?;
    Some(
        files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect(),
    )
}
