//! claimd: turns claims pushed to a GitOps repository into the files Argo CD deploys from.
//!
//! Pure core: [`yaml`], [`claims`], [`values`], [`render`], the pipeline's pure function
//! ([`pipeline::core`]). Adapters: [`charts`], [`oci`] (below charts and kube), [`git`],
//! [`kube`] (and later gitea); [`metrics`], the daemon's Prometheus registry. The binary
//! (`main.rs`, [`cli`]) is glue.

pub mod argocd;
pub mod charts;
pub mod claims;
pub mod cli;
pub mod daemon;
pub mod doctor;
pub mod examples;
pub mod git;
pub mod gitea;
pub mod handoff;
pub mod https;
pub mod kube;
pub mod metrics;
pub mod oci;
pub mod par;
pub mod pipeline;
pub mod reconcile;
pub mod render;
pub mod server;
pub mod values;
pub mod yaml;

#[cfg(test)]
mod testing;
