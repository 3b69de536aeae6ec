//! SIGTERM and SIGINT for the long-running commands (`run`, `webhooks`, `passthrough`): the first
//! starts the shutdown (each service drains within `drain_timeout_ms`, commits, leaves its group);
//! a second one, while that shutdown still runs, stops the process at once, as an operator who
//! presses Ctrl-C twice expects. What the drain had not finished is not committed: the partitions'
//! next owner processes it again (at-least-once), as after a crash.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The shutdown a first signal starts, and the immediate stop a second one asks for.
#[derive(Clone, Default)]
pub struct Signals {
    shutdown: CancellationToken,
    now: CancellationToken,
}

impl Signals {
    /// Listens for SIGTERM and SIGINT from now on (on the current tokio runtime).
    pub fn listen() -> anyhow::Result<Self> {
        let signals = Signals::default();
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| anyhow::anyhow!("cannot listen for SIGTERM: {e}"))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| anyhow::anyhow!("cannot listen for SIGINT: {e}"))?;
        let s = signals.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                if s.received(name) {
                    break;
                }
            }
        });
        Ok(signals)
    }

    /// What a signal named `name` does: the first starts the shutdown, the second stops at once.
    /// Returns whether that was the second (nothing is left to listen for).
    pub fn received(&self, name: &str) -> bool {
        if self.shutdown.is_cancelled() {
            tracing::warn!("{name} received again: stopping now, without waiting for the drain");
            self.now.cancel();
            return true;
        }
        tracing::info!("{name} received");
        self.shutdown.cancel();
        false
    }

    /// Cancelled by the first signal: what a service is handed as its shutdown.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs `service` to its end, unless a second signal comes first: then it is dropped where it
    /// stands and the stop is the error (the exit message).
    pub async fn run<T>(
        &self,
        service: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            r = service => r,
            _ = self.now.cancelled() => {
                let cause = "a second signal during the shutdown: stopped without waiting for the \
                             drain; offsets since the last commit were not committed and will be \
                             processed again by the partitions' next owner";
                tracing::error!(%cause, "shutdown incomplete");
                anyhow::bail!("stopped: {cause}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_shuts_down_and_the_second_stops_the_drain() {
        let signals = Signals::default();
        let shutdown = signals.shutdown();
        // A service that drains for as long as it is let.
        let draining = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                std::future::pending::<()>().await;
                Ok(())
            }
        };
        let run = tokio::spawn({
            let signals = signals.clone();
            async move { signals.run(draining).await }
        });
        assert!(!signals.received("SIGTERM"), "the first is not the last");
        assert!(shutdown.is_cancelled());
        tokio::task::yield_now().await;
        assert!(!run.is_finished(), "the first signal waits for the drain");
        assert!(signals.received("SIGINT"));
        let e = run.await.unwrap().unwrap_err().to_string();
        assert!(e.starts_with("stopped: a second signal"), "{e}");
        assert!(e.contains("processed again"), "{e}");
    }

    #[tokio::test]
    async fn a_service_that_ends_returns_its_own_result() {
        let signals = Signals::default();
        assert_eq!(signals.run(async { Ok(7) }).await.unwrap(), 7);
        signals.received("SIGTERM");
        let e = signals.run(async { anyhow::Result::<()>::Err(anyhow::anyhow!("boom")) });
        assert_eq!(e.await.unwrap_err().to_string(), "boom");
    }
}
