//! Waiting for readiness (`sd_notify`'s READY=1): the condition of `GET /readyz`,
//! woken by each request a worker serves and by each new configuration, never polled.

use super::Daemon;

impl Daemon {
    /// Resolves once [`Daemon::ready`] holds: every repository reconciled since start-up.
    pub async fn wait_ready(&self) {
        loop {
            // Listen before looking, so a change in between is not missed.
            let configured = self.configured.notified();
            tokio::pin!(configured);
            configured.as_mut().enable();
            let mut served: Vec<_> = self
                .slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|s| s.served.subscribe())
                .collect();
            if self.ready() {
                return;
            }
            if served.is_empty() {
                configured.await;
                continue;
            }
            // A worker served a request (a reconcile counts before it is published), a
            // repository went away (its sender dropped), or the configuration changed.
            let any =
                futures_util::future::select_all(served.iter_mut().map(|r| Box::pin(r.changed())));
            tokio::select! {
                _ = any => {}
                _ = &mut configured => {}
            }
        }
    }
}
