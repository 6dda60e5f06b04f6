//! The one integration test binary: each module was a test file of its own.

mod support;

mod argocd;
mod charts;
mod claimd_chart;
mod cli;
mod crd_validator;
mod daemon;
mod doctor;
mod faults;
mod git_loop;
mod gitea;
mod gitea_contract;
mod helm_oci;
mod helm_values;
mod incremental;
mod install;
mod kube_harness;
mod kube_namespaces;
mod kube_previews;
mod leases;
mod metrics;
mod oci;
mod pack;
mod purity;
mod registry_harness;
mod render_examples;
mod smart_http;
mod status_page;
