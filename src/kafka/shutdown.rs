//! The end of an instance's shutdown, bounded: with the broker or the group coordinator gone,
//! librdkafka's synchronous commit and its group leave wait without a deadline, and an instance
//! that never exits holds its Kubernetes pod until SIGKILL, with no word of why. Shared by the
//! processor and the webhook service.

use std::time::Duration;

/// After the drain, the final commit, the group leave and the producer flush (up to 10 s) must
/// fit in this much more time. Helm's `terminationGracePeriodSeconds` check asks for the same.
pub const AFTER_DRAIN: Duration = Duration::from_secs(15);

/// Waits for the thread that drains, commits and closes the consumer (`what` names it), for at
/// most `drain_timeout_ms` + [`AFTER_DRAIN`]. Past that, returns the cause: the thread is left
/// behind (the process is exiting) and the offsets since the last commit are processed again by
/// the partitions' next owner.
pub async fn wait(
    thread: std::thread::JoinHandle<()>,
    drain_timeout_ms: u64,
    what: &str,
) -> anyhow::Result<()> {
    within(
        thread,
        Duration::from_millis(drain_timeout_ms) + AFTER_DRAIN,
        what,
    )
    .await
}

async fn within(
    thread: std::thread::JoinHandle<()>,
    bound: Duration,
    what: &str,
) -> anyhow::Result<()> {
    // A plain thread, not spawn_blocking: the runtime waits for its blocking tasks when dropped.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("aepiot-shutdown".into())
        .spawn(move || {
            let _ = tx.send(thread.join().is_ok());
        })?;
    match tokio::time::timeout(bound, rx).await {
        Ok(Ok(true)) => Ok(()),
        Ok(_) => anyhow::bail!("the {what} thread panicked"),
        Err(_) => {
            let cause = format!(
                "the shutdown did not finish within {:.1} s (drain_timeout_ms + {} s): the \
                 cluster did not answer the final offset commit or the group leave (broker or group \
                 coordinator unavailable); offsets since the last commit were not committed and \
                 will be processed again by the partitions' next owner",
                bound.as_secs_f64(),
                AFTER_DRAIN.as_secs()
            );
            tracing::error!(%cause, "shutdown incomplete");
            anyhow::bail!("stopped: {cause}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_finished_thread_is_ok_and_a_stuck_one_is_named_after_the_bound() {
        let done = std::thread::spawn(|| {});
        assert!(wait(done, 0, "consumer").await.is_ok());
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let stuck = std::thread::spawn(move || {
            let _ = release.recv();
        });
        let bound = Duration::from_millis(50);
        let e = within(stuck, bound, "consumer")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not finish within 0.1 s"), "{e}");
        assert!(e.contains("group coordinator unavailable"), "{e}");
        drop(hold);
        let panics = std::thread::spawn(|| panic!("boom"));
        let e = within(panics, Duration::from_secs(60), "consumer").await;
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("consumer thread panicked"));
    }
}
