//! The `aepiot-stream` binary: parses flags, sets up logging and calls into the library.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use aepiot_stream::config::{Config, LogFormat};
use aepiot_stream::core::Shared;
use aepiot_stream::demo::{demo, DemoOptions};
use aepiot_stream::process::process_lines;
use aepiot_stream::processor::{self, RunHooks};
use aepiot_stream::replay::StartFrom;
use aepiot_stream::simulate::{simulate, SimulateOptions};
use aepiot_stream::webhook::{self, WebhookHooks};
use clap::Parser;
use tokio_util::sync::CancellationToken;

mod cli;
use cli::*;

/// jemalloc, also for librdkafka's C allocations (feature `jemalloc`, on by default; see Cargo.toml),
/// with each partition's device state in an arena of its own (see `allocator`).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: aepiot_stream::allocator::Allocator = aepiot_stream::allocator::Allocator;

/// jemalloc's options (`MALLOC_CONF` in the environment still applies on top): a background
/// thread gives freed memory back to the OS within about a second, so RSS follows what the process
/// holds (device state, queues) instead of its peak, e.g. after a burst of prefetched records.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only here, where the global allocator is the one that places.
    aepiot_stream::allocator::enable_placement();
    let result = match cli.command {
        Command::Demo(args) => block_on(run_demo(args)),
        Command::Run(args) => block_on(run(args)),
        Command::Simulate(args) => run_simulate(args),
        Command::Process(args) => process(args),
        Command::Webhooks(args) => block_on(run_webhooks(args)),
        Command::Config(ConfigCommand::Check { config }) => config_check(config),
        Command::Inspect(InspectCommand::Device { device_id, group }) => {
            inspect_device(group, &device_id)
        }
        Command::ResetOffsets(args) => reset_offsets(args),
        Command::Passthrough(args) => block_on(run_passthrough(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `job` on a multi-threaded runtime. The runtime is then shut down without waiting for
/// blocking work left behind (a shutdown that hit its deadline leaves a thread blocked in
/// librdkafka): the process is exiting.
fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(job: F) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(job);
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Cancelled on SIGTERM or SIGINT.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
        t.cancel();
    });
    token
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    init_logging(config.log_format, "info,rdkafka=warn");
    let hooks = RunHooks {
        start_from: args
            .start_from
            .map(|t| StartFrom::parse(&t, wall_clock_ms()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--start-from: {e}"))?,
        ..RunHooks::default()
    };
    if args.webhooks {
        return run_with_webhooks(config, hooks).await;
    }
    processor::run(config, shutdown_on_signals(), hooks).await?;
    Ok(())
}

fn group_config(g: GroupArgs) -> anyhow::Result<Config> {
    let config = load_config(g.config.as_deref(), overrides(&g.set)?)?;
    init_logging(config.log_format, "warn,rdkafka=error");
    Ok(config)
}

fn inspect_device(group: GroupArgs, device_id: &str) -> anyhow::Result<()> {
    let config = group_config(group)?;
    match aepiot_stream::inspect::device(&config, device_id)? {
        Some(state) => {
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(())
        }
        None => anyhow::bail!(
            "no state for device {device_id:?} in the state changelog of group {:?} ({}): it has              had no event within its window and the state grace period, or it is another              group's or topic's device",
            config.group_id,
            config.input_topics.iter().map(|t| config.changelog_topic(t)).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn reset_offsets(args: ResetOffsetsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.group.set.group_id.is_some(),
        "name the group whose offsets move: --group-id"
    );
    let config = group_config(args.group)?;
    let to = StartFrom::parse(&args.to_datetime, wall_clock_ms())
        .map_err(|e| anyhow::anyhow!("--to-datetime: {e}"))?;
    let moves = aepiot_stream::replay::reset_offsets(&config, &to, args.dry_run)?;
    let verb = if args.dry_run { "would move" } else { "moved" };
    println!(
        "group {:?}: offsets {verb} to the first records at or after {}",
        config.group_id,
        to.rfc3339()
    );
    for m in &moves {
        let from = m.from.map_or_else(|| "none".to_string(), |o| o.to_string());
        println!("  {}/{}: {from} -> {}", m.topic, m.partition, m.to);
    }
    println!("{}", aepiot_stream::replay::state_note(&config));
    Ok(())
}

/// `run --webhooks`: the pipeline and the webhook service side by side, sharing one metrics
/// registry (served by the pipeline). When either stops, the other is stopped too, and an error
/// of either is the exit status.
async fn run_with_webhooks(config: Config, hooks: RunHooks) -> anyhow::Result<()> {
    config.validate_for_webhooks()?;
    let metrics = aepiot_stream::metrics::Metrics::new();
    let signals = shutdown_on_signals();
    let (pipeline_stop, webhooks_stop) = (signals.child_token(), signals.child_token());
    let mut pipeline = tokio::spawn(processor::run(
        config.clone(),
        pipeline_stop.clone(),
        RunHooks {
            metrics: Some(metrics.clone()),
            ..hooks
        },
    ));
    let mut webhooks = tokio::spawn(webhook::run(
        config,
        webhooks_stop.clone(),
        WebhookHooks {
            metrics: Some(metrics),
            no_metrics_server: true,
        },
    ));
    let (p, w) = tokio::select! {
        p = &mut pipeline => { webhooks_stop.cancel(); (p, webhooks.await) }
        w = &mut webhooks => { pipeline_stop.cancel(); (pipeline.await, w) }
    };
    if let Ok(Err(e)) = &w {
        tracing::error!(error = %format!("{e:#}"), "webhook service stopped");
    }
    p??;
    w??;
    Ok(())
}

async fn run_passthrough(args: PassthroughArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    init_logging(config.log_format, "info,rdkafka=warn");
    aepiot_stream::passthrough::run(config, shutdown_on_signals()).await
}

async fn run_webhooks(args: WebhooksArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    init_logging(config.log_format, "info,rdkafka=warn");
    webhook::run(config, shutdown_on_signals(), WebhookHooks::default()).await
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    // The demo prints its own summary; only warnings and errors are logged.
    init_logging(LogFormat::Text, "warn");
    demo(DemoOptions {
        duration: Duration::from_secs(args.duration),
        rate: args.rate,
        devices: args.devices,
        profile: args.profile,
        metrics_addr: args.metrics_addr,
        samples: args.samples,
    })
    .await
}

fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    init_logging(LogFormat::Text, "warn");
    let opts = SimulateOptions {
        brokers: args.brokers,
        topic: args.topic,
        profile: args.profile,
        devices: args.devices,
        rate: args.rate,
        count: args.count,
        duration: args.duration.map(Duration::from_secs_f64),
        seed: args.seed,
        invalid_ratio: args.invalid_ratio,
        kafka: args.kafka,
        progress: true,
    };
    let report = simulate(&opts, &CancellationToken::new())?;
    println!("{}", serde_json::to_string(&report)?);
    anyhow::ensure!(
        report.failed == 0,
        "{} events were not acknowledged by the broker",
        report.failed
    );
    Ok(())
}

fn load_config(path: Option<&std::path::Path>, overrides: toml::Table) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars(), overrides)?)
}

fn config_check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(path.as_deref(), toml::Table::new())?;
    print!("{}", config.to_redacted_toml());
    eprintln!("config ok");
    Ok(())
}

fn process(args: ProcessArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    let shared = Shared::new(config.engine_settings());

    let input: Box<dyn io::Read + Send> = match args.input.as_str() {
        "-" => Box::new(io::stdin()),
        path => Box::new(
            File::open(path).map_err(|e| anyhow::anyhow!("cannot open input {path}: {e}"))?,
        ),
    };
    let mut dead: Box<dyn Write> = match &args.dead_letter {
        None => Box::new(io::stderr().lock()),
        Some(path) => Box::new(BufWriter::new(File::create(path).map_err(|e| {
            anyhow::anyhow!("cannot create dead-letter file {}: {e}", path.display())
        })?)),
    };
    let output: Box<dyn Write + Send> = match args.output.as_str() {
        "-" => Box::new(io::stdout()),
        path => Box::new(
            File::create(path).map_err(|e| anyhow::anyhow!("cannot create output {path}: {e}"))?,
        ),
    };
    // Input and output each move on a thread of their own: the kernel's copies of the events in
    // and of the (larger) URL records out need not hold up the engine's thread (see
    // BENCHMARKS.md, "`process` through the CLI: input and output on threads of their own").
    let summary = thread_io::write::writer(1 << 20, 4, output, |out| -> anyhow::Result<_> {
        thread_io::read::reader(1 << 20, 4, input, |raw| -> anyhow::Result<_> {
            let mut lines = BufReader::with_capacity(1 << 16, raw);
            Ok(process_lines(
                shared,
                &mut lines,
                out,
                &mut dead,
                wall_clock_ms,
            )?)
        })
    })?;
    drop(dead);
    eprintln!("{}", summary.report());
    Ok(())
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
