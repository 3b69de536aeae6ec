//! The commit and rewind logic against scripted client answers (see [`super::super::txn_calls`]).

use std::cell::RefCell;
use std::collections::VecDeque;

use super::*;

/// One call's answers, in order.
type Answers = VecDeque<Result<(), TxnError>>;

/// A scripted client: each call takes the next answer of its own script (`Ok` once empty) and
/// is written into the log.
#[derive(Default)]
struct Script {
    answers: RefCell<Vec<(&'static str, Answers)>>,
    log: RefCell<Vec<String>>,
    committed: Vec<(Tp, Option<i64>)>,
}

fn err(class: Class) -> Result<(), TxnError> {
    Err(TxnError {
        class,
        message: format!("{class:?}"),
    })
}

const RETRIABLE: Class = Class::Retriable;
const ABORTABLE: Class = Class::Abortable;
const FATAL: Class = Class::Fatal { fenced: false };
const FENCED: Class = Class::Fatal { fenced: true };

impl Script {
    fn on(self, call: &'static str, answers: &[Class]) -> Self {
        self.answers
            .borrow_mut()
            .push((call, answers.iter().map(|c| err(*c)).collect()));
        self
    }

    fn answer(&self, call: &str) -> Result<(), TxnError> {
        self.log.borrow_mut().push(call.to_owned());
        let mut answers = self.answers.borrow_mut();
        answers
            .iter_mut()
            .find(|(c, _)| *c == call)
            .and_then(|(_, a)| a.pop_front())
            .unwrap_or(Ok(()))
    }

    fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

impl TxnCalls for Script {
    fn send_offsets(&self, offsets: &TopicPartitionList, _: Duration) -> Result<(), TxnError> {
        assert!(offsets.count() > 0);
        self.answer("send_offsets")
    }
    fn commit(&self, _: Duration) -> Result<(), TxnError> {
        self.answer("commit")
    }
    fn abort(&self, _: Duration) -> Result<(), TxnError> {
        self.answer("abort")
    }
    fn begin(&self) -> Result<(), TxnError> {
        self.answer("begin")
    }
}

impl OffsetCalls for Script {
    fn committed(
        &self,
        partitions: &[Tp],
        _: Duration,
    ) -> Result<Vec<(Tp, Option<i64>)>, TxnError> {
        self.answer("committed")?;
        assert_eq!(partitions.len(), self.committed.len());
        Ok(self.committed.clone())
    }
    fn seek(&self, tp: &Tp, offset: Offset, _: Duration) -> Result<(), TxnError> {
        self.answer("seek")?;
        self.log
            .borrow_mut()
            .push(format!("seek {} {} {offset:?}", tp.0, tp.1));
        Ok(())
    }
}

fn positions() -> Vec<(Tp, i64)> {
    vec![(("in".into(), 0), 42)]
}

fn commit(script: &Script, rewind: bool) -> Result<(), CommitError> {
    commit_until(script, rewind, usize::MAX)
}

/// A commit while the instance stops after `stop_after` calls.
fn commit_until(script: &Script, rewind: bool, stop_after: usize) -> Result<(), CommitError> {
    let flag = AtomicBool::new(rewind);
    let stopping = || script.log.borrow().len() >= stop_after;
    let r = Retrying {
        timeout: Duration::from_secs(5),
        backoff: Duration::ZERO,
        stopping: &stopping,
    };
    commit_with(script, &positions(), &flag, &r)
}

fn rewind(script: &Script, stop_after: usize) -> Result<Option<Vec<(Tp, i64)>>, FatalCause> {
    let stopping = || script.log.borrow().len() >= stop_after;
    let r = Retrying {
        timeout: Duration::from_secs(5),
        backoff: Duration::ZERO,
        stopping: &stopping,
    };
    let partitions: Vec<Tp> = script.committed.iter().map(|(tp, _)| tp.clone()).collect();
    rewind_with(script, script, &partitions, true, &r)
}

#[test]
fn a_clean_commit_sends_the_offsets_commits_and_begins_the_next() {
    let s = Script::default();
    assert_eq!(commit(&s, false), Ok(()));
    assert_eq!(s.log(), ["send_offsets", "commit", "begin"]);
}

#[test]
fn a_retriable_commit_error_is_tried_again_not_aborted() {
    // CONCURRENT_TRANSACTIONS, or a time-out while the coordinator moves.
    let s = Script::default().on("commit", &[RETRIABLE, RETRIABLE]);
    assert_eq!(commit(&s, false), Ok(()));
    assert_eq!(
        s.log(),
        ["send_offsets", "commit", "commit", "commit", "begin"]
    );
    let s = Script::default().on("send_offsets", &[RETRIABLE]);
    assert_eq!(commit(&s, false), Ok(()));
    assert_eq!(s.log(), ["send_offsets", "send_offsets", "commit", "begin"]);
}

#[test]
fn a_retriable_commit_is_resumed_until_it_resolves_never_aborted_meanwhile() {
    // The hung broker: the commit times out (retriable) for as long as the broker is away, and an
    // abort meanwhile would be refused as a conflicting call; past transaction.timeout.ms the
    // coordinator has aborted the transaction and the resumed commit says so (abortable).
    let s = Script::default().on("commit", &[RETRIABLE; 20]);
    assert_eq!(commit(&s, false), Ok(()));
    assert_eq!(s.log().iter().filter(|c| *c == "commit").count(), 21);
    assert!(!s.log().contains(&"abort".to_owned()));
    let mut answers = [RETRIABLE; 6];
    answers[5] = ABORTABLE;
    let s = Script::default().on("commit", &answers);
    assert!(matches!(commit(&s, false), Err(CommitError::Abort(_))));
    assert_eq!(s.log().len(), 7);
}

#[test]
fn a_retriable_commit_is_given_up_when_the_instance_stops() {
    let s = Script::default().on("commit", &[RETRIABLE; 100]);
    assert!(matches!(
        commit_until(&s, false, 4),
        Err(CommitError::Abort(_))
    ));
    assert_eq!(s.log().len(), 4);
}

#[test]
fn an_abortable_error_aborts_at_once() {
    for call in ["send_offsets", "commit"] {
        let s = Script::default().on(call, &[ABORTABLE]);
        assert!(
            matches!(commit(&s, false), Err(CommitError::Abort(_))),
            "{call}"
        );
        assert_eq!(s.log().last().map(String::as_str), Some(call));
    }
}

#[test]
fn a_fatal_error_stops_and_fencing_says_so() {
    let s = Script::default().on("commit", &[FATAL]);
    assert!(matches!(
        commit(&s, false),
        Err(CommitError::Fatal(FatalCause::Transaction(_)))
    ));
    let s = Script::default().on("send_offsets", &[FENCED]);
    assert!(matches!(
        commit(&s, false),
        Err(CommitError::Fatal(FatalCause::Fenced(_)))
    ));
    assert_eq!(s.log(), ["send_offsets"]);
}

#[test]
fn an_undelivered_output_aborts_without_committing() {
    // A worker's output timed out (`_TIMED_OUT, requires epoch bump`): the transaction cannot
    // commit, and the instance goes on after the rewind.
    let s = Script::default();
    assert!(matches!(commit(&s, true), Err(CommitError::Abort(_))));
    assert!(s.log().is_empty());
}

fn two_partitions() -> Script {
    Script {
        committed: vec![(("in".into(), 0), Some(42)), (("in".into(), 1), None)],
        ..Script::default()
    }
}

#[test]
fn a_rewind_aborts_seeks_to_the_committed_offsets_and_begins() {
    let s = two_partitions();
    assert_eq!(
        rewind(&s, usize::MAX),
        Ok(Some(vec![(("in".into(), 0), 42), (("in".into(), 1), -1)]))
    );
    assert_eq!(
        s.log(),
        [
            "abort",
            "committed",
            "seek",
            "seek in 0 Offset(42)",
            "seek",
            "seek in 1 Beginning",
            "begin"
        ]
    );
}

#[test]
fn a_rewind_waits_for_the_cluster_instead_of_stopping() {
    // The black-holed broker: the abort and the committed offsets time out for a while.
    let s = two_partitions()
        .on("abort", &[RETRIABLE, RETRIABLE])
        .on("committed", &[RETRIABLE, RETRIABLE, RETRIABLE])
        .on("seek", &[RETRIABLE]);
    let positions = rewind(&s, usize::MAX).unwrap().unwrap();
    assert_eq!(positions.len(), 2);
    let count = |c: &str| s.log().iter().filter(|l| *l == c).count();
    assert_eq!(
        (count("abort"), count("committed"), count("begin")),
        (3, 4, 1)
    );
}

#[test]
fn a_rewind_gives_up_when_the_instance_stops() {
    let s = two_partitions().on("committed", &[RETRIABLE; 100]);
    assert_eq!(rewind(&s, 5), Ok(None));
    assert!(!s.log().contains(&"begin".to_owned()));
}

#[test]
fn a_fatal_abort_stops_the_instance() {
    let s = two_partitions().on("abort", &[FENCED]);
    assert!(matches!(rewind(&s, usize::MAX), Err(FatalCause::Fenced(_))));
    let s = two_partitions().on("begin", &[FATAL]);
    assert!(matches!(
        rewind(&s, usize::MAX),
        Err(FatalCause::Transaction(_))
    ));
}

#[test]
fn calls_time_out_before_the_transaction_does() {
    let mut c = ClientConfig::new();
    c.set("transaction.timeout.ms", "10000");
    assert_eq!(call_timeout(&c), Duration::from_secs(5));
}
