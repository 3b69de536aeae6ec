//! `aepiot-stream passthrough` (hidden): the end-to-end benchmark's reference point. It is
//! `aepiot-stream run` with the engine taken out: every input record's key, payload and headers go
//! to the output topic unchanged. Everything else is the pipeline's own — the same client settings
//! ([`crate::kafka::client`], so `[kafka]` properties and `AEPIOT_*` variables apply alike), one
//! task per partition queue, the producer and its ack routing, offsets stored only once outputs
//! are acknowledged (at-least-once) or committed in transactions (exactly-once) — but no parsing,
//! no state and no state changelog. Its throughput is what this broker, the client and the
//! pipeline's plumbing allow on this machine: `benches/e2e.sh` runs it beside `run` on the same
//! input, and the ratio between the two is the cost of the processing itself.
//!
//! Each forwarded record counts as `aepiot_events_total{outcome="success"}`, and
//! `aepiot_processing_latency_seconds` observes consumed → acknowledged, as for `run`.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::processor::{self, RunHooks};

/// Runs until `shutdown` (SIGTERM/SIGINT) or a delivery failure (error); serves the metrics on
/// `listener`, if any.
pub async fn run(
    mut config: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config
            .input_topics
            .iter()
            .all(|t| *t != config.output_topic),
        "the output topic must differ from the input topics"
    );
    // No device state, so nothing to restore or record; nothing is judged, so nothing is ever
    // dead-lettered (the output topic stands in for the dead-letter topic's start-up check).
    config.state_changelog = false;
    config.dead_letter_topic = config.output_topic.clone();
    let hooks = RunHooks {
        passthrough: true,
        ..RunHooks::default()
    };
    processor::run(config, listener, shutdown, hooks).await
}
