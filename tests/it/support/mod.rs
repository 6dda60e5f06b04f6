//! Test support: the real components the tests provision (Helm, an OCI registry, a
//! kube-apiserver), git and daemon helpers, the published CRDs.

pub mod catalyst;
pub mod contracts;
pub mod crd;
pub mod daemon;
pub mod git;
pub mod gitea_api;
pub mod helm;
pub mod kube;
pub mod registry;
pub mod setup;
pub mod smart_http;
