//! The shutdown signal: SIGTERM (Kubernetes, docker stop) or SIGINT (Ctrl-C).

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Installs the SIGTERM and SIGINT handlers now (so a signal that arrives while the
/// listeners are being bound is not fatal) and returns a future that resolves on the
/// first of them. Must be called inside the runtime. If the handlers cannot be
/// installed, the future never resolves and the process is stopped the hard way.
pub fn signal_received() -> impl Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!("cannot install signal handlers");
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    }
}
