//! `aepiot-stream dead-letters stats|replay`: the flags, and the call into
//! [`aepiot_stream::dead_letters`].

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::overrides;

#[derive(Subcommand)]
pub(crate) enum DeadLettersCommand {
    /// Count the dead letters of a topic by kind (webhook ones also by endpoint), with the oldest
    /// and newest: read from the topic's beginning to its end.
    Stats {
        #[command(flatten)]
        on: DeadLetterTopicArgs,
        /// Only dead letters written at or after: RFC 3339 or before now (`-2h`).
        #[arg(long, allow_hyphen_values = true)]
        since: Option<String>,
    },
    /// Send dead letters through again: a processor dead letter's event (payload, key, headers)
    /// to the topic it came from, a webhook dead letter's record to its endpoint (same
    /// `webhook-id`, signed). Progress is kept in a consumer group named after the selection, so
    /// running the same command again replays nothing twice. Stops at the first dead letter
    /// whose replay fails.
    Replay {
        #[command(flatten)]
        on: DeadLetterTopicArgs,
        /// Only this kind: an error kind (`invalid_field`, `output_too_large`, …) or `webhook`.
        #[arg(long)]
        kind: Option<String>,
        /// Only webhook dead letters of this endpoint (its URL; compared by origin).
        #[arg(long)]
        endpoint: Option<String>,
        /// Only dead letters written at or after: RFC 3339 or before now (`-2h`).
        #[arg(long, allow_hyphen_values = true)]
        since: Option<String>,
        /// Only dead letters written before: RFC 3339 or before now (`-30m`).
        #[arg(long, allow_hyphen_values = true)]
        until: Option<String>,
        /// Produce processor dead letters' events to this topic instead of their source topic.
        #[arg(long)]
        to: Option<String>,
        /// Print what would be replayed; send and commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The dead-letter topic a `dead-letters` command reads, and how to reach it.
#[derive(Args)]
pub(crate) struct DeadLetterTopicArgs {
    /// TOML configuration file (brokers, security; `[[webhooks.endpoints]]` and their secrets for
    /// replaying webhook dead letters).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    set: BrokersSettings,
    /// The dead-letter topic (`dead_letter_topic` or `webhooks.dead_letter_topic`).
    #[arg(long)]
    topic: String,
}

/// `--brokers`, the one configuration key the `dead-letters` flags set.
#[derive(Args, Serialize)]
pub(crate) struct BrokersSettings {
    /// Kafka bootstrap servers (host:port,…).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
}

impl DeadLettersCommand {
    /// Runs the command, printing to stdout.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        use aepiot_stream::dead_letters;
        let now = aepiot_stream::kafka::clock::now_ms();
        let config = |on: &DeadLetterTopicArgs| -> anyhow::Result<aepiot_stream::config::Config> {
            Ok(aepiot_stream::config::Config::load(
                on.config.as_deref(),
                std::env::vars(),
                overrides(&on.set)?,
            )?)
        };
        match self {
            DeadLettersCommand::Stats { on, since } => {
                let stats =
                    dead_letters::stats(&config(&on)?, &on.topic, since.as_deref(), now).await?;
                print!("{}", stats.render(&on.topic));
            }
            DeadLettersCommand::Replay {
                on,
                kind,
                endpoint,
                since,
                until,
                to,
                dry_run,
            } => {
                let options = dead_letters::ReplayOptions {
                    topic: on.topic.clone(),
                    kind,
                    endpoint,
                    since,
                    until,
                    to,
                    dry_run,
                };
                let mut out = std::io::stdout();
                dead_letters::replay(&config(&on)?, &options, now, &mut out).await?;
            }
        }
        Ok(())
    }
}
