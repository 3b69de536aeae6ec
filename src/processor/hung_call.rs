//! A blocking client call that may never return, given a deadline of our own.
//!
//! librdkafka 2.12's `rd_kafka_send_offsets_to_transaction` waits for its answer without a
//! time-out of its own (`RD_POLL_INFINITE`; its `timeout_ms` is meant to be enforced by the
//! coordinator request, which never checks it: librdkafka issue #5456), and when the group
//! coordinator's broker has left the cluster's metadata (a broker SIGKILLed and restarted) the
//! request waits for that broker, which the client has decommissioned, for ever (issue #5511,
//! fix proposed in PR #5512, not released). Seen here: after the group coordinator's SIGKILL an
//! instance's commit thread sat in that call for the rest of the run, the instance processing
//! and committing nothing (`tests/cluster_faults.rs`, the coordinators' SIGKILL, 2 runs in 5).
//!
//! The call runs on a thread of its own, and the caller waits for it at most its time-out and a
//! margin. A call past that is left to finish on its own thread (it holds its own handle on the
//! client, which is freed when it does); the caller treats the client as unusable.

use std::time::Duration;

/// Runs `call` on a thread of its own; `None` when it has not returned within `deadline` (it goes
/// on in the background). `name`: the thread's.
pub fn within<T: Send + 'static>(
    name: &str,
    deadline: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<Option<T>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            // The caller may have stopped waiting: nobody to tell.
            let _ = tx.send(call());
        })?;
    Ok(rx.recv_timeout(deadline).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_returns_is_answered_and_one_that_hangs_is_left_behind() {
        let quick = within("quick", Duration::from_secs(5), || 7).unwrap();
        assert_eq!(quick, Some(7));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let hung = within("hung", Duration::from_millis(100), move || {
            let _ = hold.recv();
        })
        .unwrap();
        assert_eq!(hung, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Let the left-behind call end.
        drop(release);
    }
}
