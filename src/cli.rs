//! The command line: clap's structs for every subcommand. The flags that set configuration keys
//! are grouped in `*Settings` structs that serde turns into the configuration overrides
//! ([`overrides`]), so a flag's key is its field name and nothing is copied by hand.

use std::path::PathBuf;

use aepiot_stream::demo;
use aepiot_stream::generate::Profile;
use clap::{Args, Parser, Subcommand};
use serde::{Serialize, Serializer};

mod dead_letters;
pub(crate) use dead_letters::DeadLettersCommand;

/// The configuration table a `*Settings` struct stands for: only the flags given.
pub(crate) fn overrides<T: Serialize>(settings: &T) -> anyhow::Result<toml::Table> {
    Ok(toml::Table::try_from(settings)?)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `--input-topic T` is `input_topics = [T]`.
#[allow(clippy::ptr_arg)] // serde's serialize_with hands over the field as it is: &String
fn one_element<S: Serializer>(v: &String, s: S) -> Result<S::Ok, S::Error> {
    [v].serialize(s)
}

/// `--webhooks-group-id G` is `[webhooks] group_id = G`.
fn group_id_table<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Webhooks<'a> {
        group_id: &'a Option<String>,
    }
    Webhooks { group_id: v }.serialize(s)
}

/// `--schema-registry-url U` is `[schema_registry] url = U`.
fn registry_url_table<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct SchemaRegistry<'a> {
        url: &'a Option<String>,
    }
    SchemaRegistry { url: v }.serialize(s)
}

/// The `[tracing]` keys `run`'s and `webhooks`' flags set (serialized by [`tracing_table`]).
#[derive(Args)]
pub(crate) struct TracingSettings {
    /// OTLP/HTTP traces endpoint (`[tracing] otlp_endpoint`), e.g.
    /// http://collector:4318/v1/traces; empty turns tracing off.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Share of records without a sampled traceparent that start a trace (`[tracing]
    /// sample_ratio`, 0 to 1).
    #[arg(long)]
    trace_sample_ratio: Option<f64>,
}

impl TracingSettings {
    fn is_empty(&self) -> bool {
        self.otlp_endpoint.is_none() && self.trace_sample_ratio.is_none()
    }
}

/// `--otlp-endpoint E --trace-sample-ratio R` is `[tracing] otlp_endpoint = E, sample_ratio = R`.
fn tracing_table<S: Serializer>(v: &TracingSettings, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Tracing<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        otlp_endpoint: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sample_ratio: &'a Option<f64>,
    }
    Tracing {
        otlp_endpoint: &v.otlp_endpoint,
        sample_ratio: &v.trace_sample_ratio,
    }
    .serialize(s)
}

#[derive(Parser)]
#[command(
    name = "aepiot-stream",
    version,
    about = "IoT events from Kafka in, aéPiot backlink URL records out"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the whole pipeline against an in-process mock Kafka: needs nothing installed.
    Demo(DemoArgs),
    /// Consume device events from Kafka and produce URL records (the main job).
    Run(RunArgs),
    /// Produce synthetic device events to a Kafka topic (load generator).
    Simulate(SimulateArgs),
    /// Process JSON Lines events offline: one URL record per line out, dead letters apart.
    Process(ProcessArgs),
    /// POST every `success` URL record of the output topic to the `[webhooks]` endpoints, in a
    /// consumer group of its own (retries, dead letters, signatures).
    Webhooks(WebhooksArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Read state without a running instance.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Move a stopped consumer group's committed offsets to a point in time, to replay from there.
    ResetOffsets(ResetOffsetsArgs),
    /// Count a dead-letter topic's records, or send them through again once the cause is fixed
    /// (no instance needed).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Benchmark reference: copy the input topic's records unchanged to the output topic with the
    /// processor's client settings and offset handling (see src/passthrough.rs, benches/e2e.sh).
    #[command(hide = true)]
    Passthrough(PassthroughArgs),
}

#[derive(Args)]
pub(crate) struct PassthroughArgs {
    /// TOML configuration file (client settings, `[kafka]` properties, processing_guarantee).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) set: PassthroughSettings,
}

/// The configuration keys `passthrough`'s flags set.
#[derive(Args, Serialize)]
pub(crate) struct PassthroughSettings {
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    #[arg(long)]
    #[serde(rename = "input_topics", serialize_with = "one_element")]
    input_topic: String,
    #[arg(long)]
    output_topic: String,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    /// Address for /metrics (empty string disables).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_addr: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the configuration and print the effective values, secrets redacted.
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum InspectCommand {
    /// Print a device's state from the state changelog as JSON (what `GET /api/devices/ID`
    /// answers on the instance that owns it).
    Device {
        /// The device id.
        device_id: String,
        #[command(flatten)]
        group: GroupArgs,
    },
}

/// A consumer group and its input topics (`inspect`, `reset-offsets`).
#[derive(Args)]
pub(crate) struct GroupArgs {
    /// TOML configuration file (brokers, security, group, topics, limits).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) set: GroupSettings,
}

/// The configuration keys the group flags set.
#[derive(Args, Serialize)]
pub(crate) struct GroupSettings {
    /// Kafka bootstrap servers (host:port,…).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// Consumer group id.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group_id: Option<String>,
    /// Input topics, comma-separated (default: the configuration's `input_topics`).
    #[arg(long = "input-topic", alias = "input-topics", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    input_topics: Option<Vec<String>>,
}

#[derive(Args)]
pub(crate) struct ResetOffsetsArgs {
    #[command(flatten)]
    pub(crate) group: GroupArgs,
    /// RFC 3339 (`2026-11-30T00:00:00Z`) or before now (`-2h`, `-90m`, `-1d`): each partition
    /// moves to its first record at or after it.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) to_datetime: String,
    /// Print the moves without making them.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) set: RunSettings,
    /// Also deliver webhooks (`[webhooks]`), as `aepiot-stream webhooks` would, in this process.
    #[arg(long)]
    pub(crate) webhooks: bool,
    /// Replay from a point in time: RFC 3339 (`2026-11-30T00:00:00Z`) or before now (`-2h`). For
    /// a group with no committed offsets; each partition starts at its first record at or after it.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) start_from: Option<String>,
}

/// The configuration keys `run`'s flags set.
#[derive(Args, Serialize)]
pub(crate) struct RunSettings {
    /// Kafka bootstrap servers (host:port,…).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// Input topics, comma-separated; an entry starting with `^` is a regular expression.
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    input_topics: Option<Vec<String>>,
    /// Topic for URL records (Kafka key = region).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    output_topic: Option<String>,
    /// Topic for dead letters.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_topic: Option<String>,
    /// Consumer group id.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    /// Also write `cached` and `rate_limited` records.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    emit_suppressed: bool,
    /// Address for /metrics, /healthz and /readyz (empty string disables).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_addr: Option<String>,
    /// Create missing output and dead-letter topics at start.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    create_topics: bool,
    /// Schema Registry base URL: records starting with byte 0 are read in its wire format.
    #[arg(long, value_name = "URL")]
    #[serde(
        rename = "schema_registry",
        skip_serializing_if = "Option::is_none",
        serialize_with = "registry_url_table"
    )]
    schema_registry_url: Option<String>,
    #[command(flatten)]
    #[serde(
        serialize_with = "tracing_table",
        skip_serializing_if = "TracingSettings::is_empty"
    )]
    tracing: TracingSettings,
}

#[derive(Args)]
pub(crate) struct WebhooksArgs {
    /// TOML configuration file (endpoints are configured there, under `[[webhooks.endpoints]]`).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) set: WebhooksSettings,
}

/// The configuration keys `webhooks`' flags set.
#[derive(Args, Serialize)]
pub(crate) struct WebhooksSettings {
    /// Kafka bootstrap servers (host:port,…).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// The topic of URL records to deliver.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    output_topic: Option<String>,
    /// The webhook service's consumer group (default `<group_id>-webhooks`).
    #[arg(long)]
    #[serde(
        rename = "webhooks",
        serialize_with = "group_id_table",
        skip_serializing_if = "Option::is_none"
    )]
    webhooks_group_id: Option<String>,
    /// Address for /metrics, /healthz and /readyz (empty string disables).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_addr: Option<String>,
    /// Create a missing webhook dead-letter topic at start.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    create_topics: bool,
    #[command(flatten)]
    #[serde(
        serialize_with = "tracing_table",
        skip_serializing_if = "TracingSettings::is_empty"
    )]
    tracing: TracingSettings,
}

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    /// Topic to produce to.
    #[arg(long)]
    pub(crate) topic: String,
    /// Fleet shape.
    #[arg(long, value_enum, default_value = "factory")]
    pub(crate) profile: Profile,
    /// Distinct devices.
    #[arg(long, default_value_t = 5000)]
    pub(crate) devices: u64,
    /// Events per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// Stop after this many events.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Random seed: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Share of invalid records (0.0–1.0), for dead-letter testing.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) invalid_ratio: f64,
    /// Pad valid events to about this many bytes with a long `location` and a `description`
    /// (0: their natural size, ~200 B).
    #[arg(long, default_value_t = 0)]
    pub(crate) event_bytes: usize,
    /// Extra librdkafka producer properties, KEY=VALUE.
    #[arg(long = "kafka", value_parser = parse_kv)]
    pub(crate) kafka: Vec<(String, String)>,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// How long to generate events, in seconds.
    #[arg(long, default_value_t = demo::defaults::DURATION_SECS)]
    pub(crate) duration: u64,
    /// Events per second.
    #[arg(long, default_value_t = demo::defaults::RATE)]
    pub(crate) rate: u64,
    /// Distinct devices.
    #[arg(long, default_value_t = demo::defaults::DEVICES)]
    pub(crate) devices: u64,
    /// Fleet shape.
    #[arg(long, value_enum, default_value_t = demo::defaults::PROFILE)]
    pub(crate) profile: Profile,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = demo::defaults::METRICS_ADDR)]
    pub(crate) metrics_addr: String,
    /// URL records to print as samples.
    #[arg(long, default_value_t = 3)]
    pub(crate) samples: usize,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Args)]
pub(crate) struct ProcessArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Input file of JSON Lines, `-` for stdin.
    #[arg(long, default_value = "-")]
    pub(crate) input: String,
    /// Output file for URL records, `-` for stdout.
    #[arg(long, default_value = "-")]
    pub(crate) output: String,
    /// File for dead letters (invalid lines); stderr by default.
    #[arg(long)]
    pub(crate) dead_letter: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) set: ProcessSettings,
}

/// The configuration keys `process`' flags set.
#[derive(Args, Serialize)]
pub(crate) struct ProcessSettings {
    /// Also write `cached` and `rate_limited` records.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    emit_suppressed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(args: &[&str]) -> toml::Table {
        let cli = Cli::try_parse_from(std::iter::once("aepiot-stream").chain(args.iter().copied()))
            .unwrap();
        match cli.command {
            Command::Run(a) => overrides(&a.set),
            Command::Webhooks(a) => overrides(&a.set),
            Command::Passthrough(a) => overrides(&a.set),
            Command::Process(a) => overrides(&a.set),
            Command::ResetOffsets(a) => overrides(&a.group.set),
            _ => unreachable!(),
        }
        .unwrap()
    }

    fn toml(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn flags_given_become_the_keys_they_name_and_nothing_else() {
        assert_eq!(table(&["run"]), toml::Table::new());
        assert_eq!(
            table(&[
                "run",
                "--brokers",
                "k:9092",
                "--input-topics",
                "a,^b.*",
                "--emit-suppressed"
            ]),
            toml(
                r#"brokers = "k:9092"
                    input_topics = ["a", "^b.*"]
                    emit_suppressed = true"#
            )
        );
        assert_eq!(
            table(&["webhooks", "--webhooks-group-id", "g", "--create-topics"]),
            toml("create_topics = true\n[webhooks]\ngroup_id = \"g\"")
        );
        assert_eq!(
            table(&[
                "passthrough",
                "--input-topic",
                "in",
                "--output-topic",
                "out"
            ]),
            toml(
                r#"input_topics = ["in"]
                    output_topic = "out""#
            )
        );
        assert_eq!(table(&["process"]), toml::Table::new());
        assert_eq!(
            table(&[
                "reset-offsets",
                "--group-id",
                "g",
                "--input-topic",
                "t",
                "--to-datetime",
                "-1h"
            ]),
            toml(
                r#"group_id = "g"
                    input_topics = ["t"]"#
            )
        );
    }
}
