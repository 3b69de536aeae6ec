//! Warming a producer up before the first event arrives.
//!
//! librdkafka learns a topic's partitions only when something is first produced to it: the first
//! records wait in an unassigned queue for a metadata round trip (and, for a topic created a
//! moment ago, for its leader to settle). Asking for each output topic's metadata at start puts it
//! in the producer's cache, so the first events after start pay none of that.

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};

/// Fetches the metadata of each of `topics` through `client`, within `timeout` each. Only an
/// optimisation: the start-up checks have already found the topics, so a failure is logged at debug.
pub fn warm_up<C: ClientContext>(client: &Client<C>, topics: &[String], timeout: Duration) {
    for topic in topics.iter().filter(|t| !t.is_empty()) {
        if let Err(error) = client.fetch_metadata(Some(topic), timeout) {
            tracing::debug!(%topic, %error, "could not fetch the metadata of an output topic at start");
        }
    }
}
