//! Which partitions wait for the registry, and why: what `/readyz` and the status page say while
//! the registry cannot answer.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// One partition's wait for a schema.
#[derive(Debug, Clone, Serialize)]
pub struct Wait {
    pub topic: String,
    pub partition: i32,
    pub schema_id: u32,
    /// Seconds since the partition started waiting.
    pub waiting_secs: u64,
    /// Attempts that failed so far.
    pub attempts: u64,
    /// The last failure.
    pub error: String,
}

#[derive(Debug)]
struct Entry {
    schema_id: u32,
    since: Instant,
    attempts: u64,
    error: String,
}

/// The partitions of a process waiting for the registry.
#[derive(Debug, Default)]
pub struct Waits(Mutex<BTreeMap<(String, i32), Entry>>);

impl Waits {
    /// Notes a failed attempt of `topic`/`partition` to get `schema_id`; returns how many
    /// partitions wait.
    pub fn failed(&self, topic: &str, partition: i32, schema_id: u32, error: &str) -> usize {
        let mut waits = self.0.lock().expect("waits lock");
        let entry = waits
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| Entry {
                schema_id,
                since: Instant::now(),
                attempts: 0,
                error: String::new(),
            });
        if entry.schema_id != schema_id {
            entry.schema_id = schema_id;
            entry.since = Instant::now();
            entry.attempts = 0;
        }
        entry.attempts += 1;
        entry.error = error.chars().take(300).collect();
        waits.len()
    }

    /// The partition waits no more (its schema came, or it stopped); returns how many wait.
    pub fn done(&self, topic: &str, partition: i32) -> usize {
        let mut waits = self.0.lock().expect("waits lock");
        waits.remove(&(topic.to_owned(), partition));
        waits.len()
    }

    pub fn list(&self) -> Vec<Wait> {
        let waits = self.0.lock().expect("waits lock");
        waits
            .iter()
            .map(|((topic, partition), e)| Wait {
                topic: topic.clone(),
                partition: *partition,
                schema_id: e.schema_id,
                waiting_secs: e.since.elapsed().as_secs(),
                attempts: e.attempts,
                error: e.error.clone(),
            })
            .collect()
    }

    /// One line for `/readyz`, when some partition waits.
    pub fn describe(&self) -> Option<String> {
        let list = self.list();
        let first = list.first()?;
        Some(format!(
            "waiting for the schema registry: {} partition(s), e.g. {}/{} needs schema id {} (for {} s, {} attempts; last: {})",
            list.len(),
            first.topic,
            first.partition,
            first.schema_id,
            first.waiting_secs,
            first.attempts,
            first.error
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_described_until_it_is_done() {
        let w = Waits::default();
        assert!(w.describe().is_none());
        assert_eq!(w.failed("t", 0, 7, "connection refused"), 1);
        assert_eq!(w.failed("t", 0, 7, "timed out"), 1);
        assert_eq!(w.failed("t", 1, 7, "timed out"), 2);
        let text = w.describe().unwrap();
        assert!(text.contains("2 partition(s)"), "{text}");
        assert!(text.contains("t/0 needs schema id 7"), "{text}");
        assert!(text.contains("2 attempts; last: timed out"), "{text}");
        assert_eq!(w.done("t", 0), 1);
        assert_eq!(w.done("t", 1), 0);
        assert!(w.describe().is_none());
    }
}
