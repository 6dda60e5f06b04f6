//! Claim files in outline, split for the memo: the claims go through serde, their
//! applications and services (10,000 at 10,000 applications, each a name, a chart and a
//! namespace with their positions) are framed by hand, about four times faster to read
//! back. Only outlines are stored (see [`ParsedFile::outline`]): the claim fields, their
//! positions and raw values are not written and read back empty.

use super::bytes::{In, Out};
use crate::claims::{ChartSpec, ParsedFile, ServiceType, Spanned, Spec, Workload};
use crate::yaml::Pos;
use std::io;
use std::sync::Arc;

/// `file` without its workloads (to go through serde), and the workloads of each of
/// its claims that has them, in claim order.
pub(super) fn split(mut file: ParsedFile) -> (ParsedFile, Vec<Arc<[Workload]>>) {
    let mut lists = Vec::new();
    for claim in &mut file.claims {
        if let Spec::Application(w) | Spec::Platform(w) = &mut claim.spec {
            lists.push(std::mem::replace(&mut w.workloads, Arc::from([])));
        }
    }
    (file, lists)
}

/// Gives the claims of `shell` that have workloads theirs back, as [`write`] left them.
pub(super) fn join(shell: &mut ParsedFile, r: &mut In<'_>) -> Option<()> {
    for claim in &mut shell.claims {
        if let Spec::Application(w) | Spec::Platform(w) = &mut claim.spec {
            w.workloads = read(r)?.into();
        }
    }
    Some(())
}

/// Writes the outline of each workload.
pub(super) fn write<W: io::Write>(out: &mut Out<W>, workloads: &[Workload]) -> io::Result<()> {
    out.len(workloads.len())?;
    for w in workloads {
        // Every field named: one added to Workload must be decided on here.
        let Workload {
            name,
            service_type,
            production,
            chart,
            namespace,
            fields: _,
            field_pos: _,
            values: _,
        } = w;
        let ChartSpec {
            name: chart_name,
            version,
            repository,
        } = chart;
        spanned(out, name)?;
        out.flag(service_type.is_some())?;
        if let Some(t) = service_type {
            let i = ServiceType::ALL.iter().position(|(_, s)| *s == t.value);
            out.len(i.unwrap_or(usize::MAX))?;
            pos(out, t.pos)?;
        }
        out.flag(*production)?;
        spanned(out, chart_name)?;
        for s in [version, repository, namespace] {
            out.flag(s.is_some())?;
            if let Some(s) = s {
                spanned(out, s)?;
            }
        }
    }
    Ok(())
}

fn read(r: &mut In<'_>) -> Option<Vec<Workload>> {
    let n = r.len()?;
    if n > r.remaining() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = read_spanned(r)?;
        let service_type = if r.flag()? {
            let value = ServiceType::ALL.get(r.len()?)?.1;
            Some(Spanned::new(value, read_pos(r)?))
        } else {
            None
        };
        let production = r.flag()?;
        let chart_name = read_spanned(r)?;
        let mut optional = || -> Option<Option<Spanned<String>>> {
            if r.flag()? {
                read_spanned(r).map(Some)
            } else {
                Some(None)
            }
        };
        let (version, repository, namespace) = (optional()?, optional()?, optional()?);
        out.push(Workload {
            name,
            service_type,
            production,
            chart: ChartSpec {
                name: chart_name,
                version,
                repository,
            },
            namespace,
            fields: serde_json::Value::Null,
            field_pos: Vec::new(),
            values: serde_json::Map::new(),
        });
    }
    Some(out)
}

fn spanned<W: io::Write>(out: &mut Out<W>, s: &Spanned<String>) -> io::Result<()> {
    out.bytes(s.value.as_bytes())?;
    pos(out, s.pos)
}

fn pos<W: io::Write>(out: &mut Out<W>, p: Pos) -> io::Result<()> {
    out.len(p.line as usize)?;
    out.len(p.col as usize)
}

fn read_spanned(r: &mut In<'_>) -> Option<Spanned<String>> {
    let value = r.string()?;
    Some(Spanned::new(value, read_pos(r)?))
}

fn read_pos(r: &mut In<'_>) -> Option<Pos> {
    Some(Pos {
        line: r.len()?.try_into().ok()?,
        col: r.len()?.try_into().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlines_read_back_as_they_were() {
        // The examples have platform services, workload namespaces and chart versions.
        let mut claims = crate::examples::claim_files();
        claims.extend(crate::examples::synthetic(30));
        let limits = crate::yaml::Limits::default();
        let (mut any, mut services) = (0, 0);
        for (path, text) in &claims {
            let loaded = crate::claims::load(&[(path.clone(), text.clone())], &limits);
            let file = ParsedFile {
                path: path.clone(),
                claims: loaded.claims,
                diagnostics: Vec::new(),
            }
            .outline();
            let (mut shell, lists) = split(file.clone());
            let mut out = Out::new(Vec::new());
            for list in &lists {
                write(&mut out, list).expect("write");
                any += list.len();
                services += list.iter().filter(|w| w.service_type.is_some()).count();
            }
            let bytes = out.into_inner();
            let mut r = In::new(&bytes);
            join(&mut shell, &mut r).expect("read");
            assert!(r.is_empty());
            assert_eq!(shell.claims, file.claims, "{path}");
            assert_eq!(shell.diagnostics, file.diagnostics, "{path}");
        }
        assert!(
            any > 30 && services > 0,
            "{any} workloads, {services} services"
        );
    }
}
