//! A partition worker's supervision: a worker that panics, or ends while nobody told it to stop,
//! is noticed instead of leaving its partition silently unread. Such an end is a defect of the
//! processor, not of one record: the instance stops with [`FatalCause::Worker`] (readiness goes
//! false as it stops) and without committing past what the worker did, and the partition's next
//! owner (a restart of this instance or another one) reads it again from the committed offset.
//!
//! Expected ends are not reported: a stop (revoke, shutdown, rewind), a stop of the instance
//! already under way, and under exactly-once a worker that gave up for a rewind (the rewind
//! replaces it).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::processor::fatal::{Fatal, FatalCause};

/// What tells an expected end from an early one.
pub struct Watch {
    pub topic: String,
    pub partition: i32,
    /// The worker's stop token.
    pub stop: CancellationToken,
    pub fatal: Arc<Fatal>,
    /// Exactly-once: the rewind request.
    pub rewind: Option<Arc<AtomicBool>>,
}

/// Runs `worker`, raises [`FatalCause::Worker`] if it panicked or ended early, then signals
/// `done` (which a panic would otherwise also drop, unseen).
pub async fn supervise(worker: impl Future<Output = ()>, watch: Watch, done: oneshot::Sender<()>) {
    let ended = AssertUnwindSafe(worker).catch_unwind().await;
    let expected = watch.stop.is_cancelled()
        || watch.fatal.is_raised()
        || watch
            .rewind
            .as_ref()
            .is_some_and(|r| r.load(Ordering::SeqCst));
    let error = match ended {
        Err(panic) => Some(format!(
            "it panicked: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into())
        )),
        Ok(()) if !expected => Some("it ended while its partition was still assigned".into()),
        Ok(()) => None,
    };
    if let Some(error) = error {
        watch.fatal.raise(FatalCause::Worker {
            topic: watch.topic,
            partition: watch.partition,
            error,
        });
    }
    let _ = done.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> (Watch, Arc<Fatal>) {
        let fatal = Arc::new(Fatal::default());
        let w = Watch {
            topic: "in".into(),
            partition: 3,
            stop: CancellationToken::new(),
            fatal: fatal.clone(),
            rewind: Some(Arc::default()),
        };
        (w, fatal)
    }

    fn run(worker: impl Future<Output = ()>, watch: Watch) -> bool {
        let (tx, rx) = oneshot::channel();
        futures::executor::block_on(supervise(worker, watch, tx));
        futures::executor::block_on(rx).is_ok()
    }

    #[test]
    fn a_worker_that_panics_stops_the_instance_with_its_partition_named() {
        let (w, fatal) = watch();
        assert!(run(async { panic!("boom") }, w), "done is still signalled");
        assert_eq!(
            fatal.cause(),
            Some(&FatalCause::Worker {
                topic: "in".into(),
                partition: 3,
                error: "it panicked: boom".into()
            })
        );
    }

    #[test]
    fn a_worker_that_ends_unasked_stops_the_instance() {
        let (w, fatal) = watch();
        run(async {}, w);
        assert!(matches!(fatal.cause(), Some(FatalCause::Worker { .. })));
    }

    #[test]
    fn a_stopped_worker_or_one_given_up_for_a_rewind_ends_quietly() {
        let (w, fatal) = watch();
        w.stop.cancel();
        run(async {}, w);
        let (w, fatal2) = watch();
        w.rewind.as_ref().unwrap().store(true, Ordering::SeqCst);
        run(async {}, w);
        assert!(!fatal.is_raised() && !fatal2.is_raised());
    }
}
