//! The partitions a consumer owns now, each with the handle of the task that reads it (the
//! processor's partition worker, the webhook service's partition reader): what both services'
//! rebalance handlers keep, so that starting, stopping within a deadline and the lag computation
//! are written once.
//!
//! Stopping blocks: it runs on the thread that polls the consumer's main queue (or the commit
//! thread), never an async worker, so a revoke waits for the partitions' drains and a partition is
//! only handed over once its work is committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::{Statistics, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::split::Tp;

/// The rebalance handler's side of a partition's task.
pub struct PartitionHandle {
    /// Cancelled to stop the task (a revoke, a shutdown).
    pub stop: CancellationToken,
    /// Completes when the task has finished.
    pub done: oneshot::Receiver<()>,
    /// The partition's next offset as the task sees it (-1 until it has one): where its lag is
    /// counted from, and, for the processor under exactly-once, the offset committed with the
    /// transaction.
    pub position: Arc<AtomicI64>,
}

/// Owned partitions and their tasks' handles.
#[derive(Default)]
pub struct Assignments {
    handles: Mutex<HashMap<Tp, PartitionHandle>>,
}

impl Assignments {
    /// The map itself, for starting tasks (several partitions under one lock) and reading
    /// positions.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<Tp, PartitionHandle>> {
        self.handles.lock().expect("assignments lock")
    }

    /// Takes the handles of `partitions` (all for `None`) out of the map; `left` is told how many
    /// partitions remain, under the lock, so that a gauge of them never goes back in time.
    pub fn take(
        &self,
        partitions: Option<&TopicPartitionList>,
        left: impl FnOnce(usize),
    ) -> Vec<(Tp, PartitionHandle)> {
        let mut handles = self.lock();
        let keys: Vec<Tp> = match partitions {
            Some(tpl) => tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect(),
            None => handles.keys().cloned().collect(),
        };
        let taken = keys
            .into_iter()
            .filter_map(|k| handles.remove(&k).map(|h| (k, h)))
            .collect();
        left(handles.len());
        taken
    }

    /// Gives `each` every owned partition's lag in librdkafka's `statistics`: from the task's
    /// position to the high watermark, or librdkafka's own figure while either is unknown.
    /// Partitions the statistics do not name are left out. Runs under the lock, so a partition
    /// being stopped is never reported after it was taken out.
    pub fn for_each_lag(&self, statistics: &Statistics, mut each: impl FnMut(&Tp, i64)) {
        let handles = self.lock();
        for (tp, handle) in handles.iter() {
            let Some(p) = statistics
                .topics
                .get(&tp.0)
                .and_then(|t| t.partitions.get(&tp.1))
            else {
                continue;
            };
            let position = handle.position.load(Ordering::Relaxed);
            each(tp, lag(position, p.hi_offset, p.consumer_lag));
        }
    }
}

/// A partition's lag: from `position` to the high watermark `hi_offset`, or librdkafka's
/// `consumer_lag` while either is unknown (-1).
fn lag(position: i64, hi_offset: i64, consumer_lag: i64) -> i64 {
    if position >= 0 && hi_offset >= 0 {
        (hi_offset - position).max(0)
    } else {
        consumer_lag.max(0)
    }
}

/// Stops the tasks of `taken` and waits until they are done: at most their drain timeout
/// (`drain_timeout`, 10 s while unknown) and a second more, then warns `late`. Returns their
/// final positions.
pub fn stop_all(
    taken: Vec<(Tp, PartitionHandle)>,
    rt: &tokio::runtime::Handle,
    drain_timeout: Option<Duration>,
    late: &str,
) -> Vec<(Tp, i64)> {
    stop_all_lingering(taken, rt, drain_timeout, late).0
}

/// A task that had not finished at its deadline: completes when it has.
pub type Late = (Tp, oneshot::Receiver<()>);

/// The ends of tasks that had not finished stopping by their deadline, by partition: a task
/// started later for the same partition first waits for its predecessor's end
/// ([`after_predecessor`]), so that a partition is never read by two tasks.
#[derive(Default)]
pub struct Lingering(Mutex<HashMap<Tp, oneshot::Receiver<()>>>);

impl Lingering {
    /// Keeps the ends of `late` tasks; forgets the ends already reached.
    pub fn keep(&self, late: Vec<Late>) {
        let mut waiting = self.0.lock().expect("lingering lock");
        waiting
            .retain(|_, done| matches!(done.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        waiting.extend(late);
    }

    /// The end a new task of `tp` waits for: its predecessor's, if that had not finished.
    pub fn predecessor(&self, tp: &Tp) -> Option<oneshot::Receiver<()>> {
        self.0.lock().expect("lingering lock").remove(tp)
    }
}

/// Waits until the partition's previous task has ended (`predecessor`, from
/// [`Lingering::predecessor`]): true once the new task may read, false if it was stopped first.
pub async fn after_predecessor(
    predecessor: Option<oneshot::Receiver<()>>,
    stop: &CancellationToken,
) -> bool {
    let Some(predecessor) = predecessor else {
        return true;
    };
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        _ = predecessor => true,
    }
}

/// [`stop_all`], also returning the ends of the tasks that had not finished by the deadline: a
/// task started for the same partition later waits for its predecessor's.
pub fn stop_all_lingering(
    taken: Vec<(Tp, PartitionHandle)>,
    rt: &tokio::runtime::Handle,
    drain_timeout: Option<Duration>,
    late: &str,
) -> (Vec<(Tp, i64)>, Vec<Late>) {
    let deadline = drain_timeout.unwrap_or(Duration::from_secs(10)) + Duration::from_secs(1);
    for (_, h) in &taken {
        h.stop.cancel();
    }
    let mut positions = Vec::with_capacity(taken.len());
    let mut dones = Vec::with_capacity(taken.len());
    for (tp, h) in taken {
        dones.push((tp.clone(), h.done));
        positions.push((tp, h.position));
    }
    let lingering = rt.block_on(async {
        let until = tokio::time::Instant::now() + deadline;
        let mut lingering = Vec::new();
        for (tp, mut done) in dones {
            if tokio::time::timeout_at(until, &mut done).await.is_err() {
                lingering.push((tp, done));
            }
        }
        lingering
    });
    if !lingering.is_empty() {
        tracing::warn!(partitions = lingering.len(), "{late}");
    }
    let positions = positions
        .into_iter()
        .map(|(tp, p)| (tp, p.load(Ordering::Relaxed)))
        .collect();
    (positions, lingering)
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// A task that finishes once stopped (or never, for `stuck`), at `position`.
    fn task(rt: &tokio::runtime::Runtime, position: i64, stuck: bool) -> PartitionHandle {
        let stop = CancellationToken::new();
        let (done_tx, done) = oneshot::channel();
        let s = stop.clone();
        rt.spawn(async move {
            s.cancelled().await;
            if stuck {
                std::future::pending::<()>().await;
            }
            let _ = done_tx.send(());
        });
        PartitionHandle {
            stop,
            done,
            position: Arc::new(AtomicI64::new(position)),
        }
    }

    #[test]
    fn the_lag_counts_from_the_position_when_both_ends_are_known() {
        assert_eq!(lag(90, 100, 7), 10);
        assert_eq!(lag(120, 100, 7), 0, "never negative");
        assert_eq!(lag(-1, 100, 7), 7, "no position yet: librdkafka's figure");
        assert_eq!(lag(90, -1, -1), 0);
    }

    #[test]
    fn stopping_takes_the_partitions_out_and_waits_for_their_tasks() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let a = Assignments::default();
        {
            let mut handles = a.lock();
            for p in 0..3 {
                handles.insert(("t".into(), p), task(&rt, 10 + i64::from(p), false));
            }
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 1);
        tpl.add_partition("t", 9);
        let mut left = None;
        let taken = a.take(Some(&tpl), |n| left = Some(n));
        assert_eq!(left, Some(2));
        let positions = stop_all(taken, rt.handle(), Some(Duration::ZERO), "late");
        assert_eq!(positions, vec![(("t".to_owned(), 1), 11)]);
        let rest = stop_all(a.take(None, |_| {}), rt.handle(), None, "late");
        assert_eq!(rest.len(), 2);
        assert!(a.lock().is_empty());
    }

    #[test]
    fn a_task_that_does_not_finish_is_given_up_after_the_deadline() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let a = Assignments::default();
        a.lock().insert(("t".into(), 0), task(&rt, 5, true));
        let started = std::time::Instant::now();
        let (positions, lingering) = stop_all_lingering(
            a.take(None, |_| {}),
            rt.handle(),
            Some(Duration::ZERO),
            "late",
        );
        assert_eq!(positions, vec![(("t".to_owned(), 0), 5)]);
        assert_eq!(
            lingering.len(),
            1,
            "its end is kept for its successor to wait on"
        );
        assert_eq!(lingering[0].0, ("t".to_owned(), 0));
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    /// Rule 12 of docs/delivery.md: a partition is never read by two tasks.
    #[test]
    fn a_new_task_of_a_partition_waits_for_its_predecessor_that_did_not_finish_stopping() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (release, released) = oneshot::channel::<()>();
        // The old task ignores its stop until released (a drain waiting for the cluster).
        let stop = CancellationToken::new();
        let (done_tx, done) = oneshot::channel();
        rt.spawn(async move {
            let _ = released.await;
            let _ = done_tx.send(());
        });
        let old = PartitionHandle {
            stop,
            done,
            position: Arc::new(AtomicI64::new(5)),
        };
        let tp: Tp = ("t".into(), 0);
        let (_, late) = stop_all_lingering(
            vec![(tp.clone(), old)],
            rt.handle(),
            Some(Duration::ZERO),
            "late",
        );
        let lingering = Lingering::default();
        lingering.keep(late);
        assert!(lingering.predecessor(&("t".into(), 1)).is_none());
        let predecessor = lingering.predecessor(&tp);
        assert!(predecessor.is_some(), "the old task's end is kept");

        let new_stop = CancellationToken::new();
        let mut start = Box::pin(after_predecessor(predecessor, &new_stop));
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(
            start.as_mut().poll(&mut cx).is_pending(),
            "the new task does not read while the old one runs"
        );
        release.send(()).unwrap();
        assert!(rt.block_on(start), "it reads once the old one has ended");

        // Stopped before its predecessor ended: it never reads.
        let (_keep, never) = oneshot::channel::<()>();
        let stopped = CancellationToken::new();
        stopped.cancel();
        assert!(!rt.block_on(after_predecessor(Some(never), &stopped)));
        // An end already reached is forgotten.
        let (tx, rx) = oneshot::channel();
        tx.send(()).unwrap();
        lingering.keep(vec![(tp.clone(), rx)]);
        lingering.keep(Vec::new());
        assert!(lingering.predecessor(&tp).is_none());
    }
}
