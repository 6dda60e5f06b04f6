//! What the adapters' HTTPS clients (Gitea's API, Argo CD's webhooks) share.

use std::path::{Path, PathBuf};

/// A CA file that could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the CA file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} is not a PEM certificate: {source}")]
    Certificate {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
}

/// `builder` trusting the CA certificate (PEM) in `ca_file` too, when given.
pub fn trusting(
    builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, TrustError> {
    let Some(path) = ca_file else {
        return Ok(builder);
    };
    let pem = std::fs::read(path).map_err(|source| TrustError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let cert = reqwest::Certificate::from_pem(&pem).map_err(|source| TrustError::Certificate {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(builder.add_root_certificate(cert))
}
