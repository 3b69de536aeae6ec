//! Replication of the topics the processor creates (`create_topics`, the state changelog), and the
//! start-up warning for an output, dead-letter or changelog topic with a single replica on a
//! cluster of several brokers: one broker lost would lose what was acknowledged there.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::ClientContext;
use rdkafka::metadata::{Metadata, MetadataTopic};

/// `min.insync.replicas` of a changelog with at least [`CHANGELOG_MIN_ISR_FROM`] replicas: an
/// acknowledged state change is then on two brokers, whatever the broker's own default.
pub const CHANGELOG_MIN_ISR: &str = "2";
pub const CHANGELOG_MIN_ISR_FROM: i32 = 3;

/// `min.insync.replicas` for a changelog of `replication_factor` replicas (-1: unknown), if it
/// sets one.
pub fn changelog_min_isr(replication_factor: i32) -> Option<&'static str> {
    (replication_factor >= CHANGELOG_MIN_ISR_FROM).then_some(CHANGELOG_MIN_ISR)
}

/// The fewest replicas any partition of `topic` has.
pub fn replicas_of(topic: &MetadataTopic) -> usize {
    topic
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .min()
        .unwrap_or(0)
}

/// Whether a topic of `replicas` replicas on a cluster of `brokers` brokers deserves the warning.
pub fn single_replica_on_a_cluster(replicas: usize, brokers: usize) -> bool {
    replicas == 1 && brokers > 1
}

/// Logs the warning if `topic` of `metadata` (a role: output, dead-letter, changelog) has a single
/// replica while the cluster has several brokers.
pub fn warn_if_single_replica(metadata: &Metadata, role: &str, topic: &str) {
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return;
    };
    let (replicas, brokers) = (replicas_of(t), metadata.brokers().len());
    if single_replica_on_a_cluster(replicas, brokers) {
        tracing::warn!(
            %topic,
            role,
            brokers,
            "{role} topic {topic:?} has a single replica on a cluster of {brokers} brokers: what \
             is acknowledged there is lost with that broker (raise its replication factor with \
             kafka-reassign-partitions)"
        );
    }
}

/// The replication factor of a topic to create: `configured` (`topics.replication_factor`) if
/// set, else the cluster's `default.replication.factor` as a broker of `metadata` reports it, or
/// -1 (the broker applies its default; unknown here) if none answers.
pub async fn replication_factor<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    metadata: &Metadata,
    configured: i16,
) -> i32 {
    if configured > 0 {
        return configured.into();
    }
    let Some(broker) = metadata.brokers().first() else {
        return -1;
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let asked = admin
        .describe_configs([&ResourceSpecifier::Broker(broker.id())], &opts)
        .await;
    let found = asked.ok().and_then(|results| {
        results.into_iter().find_map(|r| {
            r.ok()?
                .get("default.replication.factor")?
                .value
                .as_deref()?
                .parse::<i32>()
                .ok()
        })
    });
    found.unwrap_or_else(|| {
        tracing::warn!(
            broker = broker.id(),
            "cannot read the cluster's default.replication.factor; topics are created with it \
             all the same, a changelog without its own min.insync.replicas"
        );
        -1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changelog_of_three_or_more_replicas_needs_two_in_sync() {
        assert_eq!(changelog_min_isr(-1), None);
        assert_eq!(changelog_min_isr(1), None);
        assert_eq!(changelog_min_isr(2), None);
        assert_eq!(changelog_min_isr(3), Some("2"));
        assert_eq!(changelog_min_isr(5), Some("2"));
    }

    #[test]
    fn one_replica_is_worth_a_warning_only_on_a_cluster() {
        assert!(single_replica_on_a_cluster(1, 3));
        assert!(!single_replica_on_a_cluster(1, 1));
        assert!(!single_replica_on_a_cluster(3, 3));
        assert!(!single_replica_on_a_cluster(2, 3));
    }
}
