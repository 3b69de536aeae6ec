//! The `aepiot-stream` binary: parses flags, sets up logging and calls into the library, one
//! function per command. What a command does lives in the library, where tests call it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aepiot_stream::config::{Config, LogFormat};
use aepiot_stream::core::Shared;
use aepiot_stream::demo::{demo, DemoOptions};
use aepiot_stream::kafka::clock::now_ms;
use aepiot_stream::processor::{self, RunHooks};
use aepiot_stream::replay::StartFrom;
use aepiot_stream::signals::Signals;
use aepiot_stream::simulate::{simulate, SimulateOptions};
use aepiot_stream::webhook::{self, WebhookHooks};
use aepiot_stream::{combined, http, inspect, passthrough, process, replay};
use clap::Parser;
use tokio::net::TcpListener;
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
        Command::Process(args) => run_process(args),
        Command::Webhooks(args) => block_on(run_webhooks(args)),
        Command::Config(ConfigCommand::Check { config }) => config_check(config),
        Command::Inspect(InspectCommand::Device { device_id, group }) => {
            inspect_device(group, &device_id)
        }
        Command::ResetOffsets(args) => reset_offsets(args),
        Command::DeadLetters(command) => block_on(command.run()),
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
fn block_on<F: Future<Output = anyhow::Result<()>>>(job: F) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(job);
    rt.shutdown_timeout(Duration::from_secs(1));
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

fn load_config(path: Option<&std::path::Path>, overrides: toml::Table) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars(), overrides)?)
}

/// A long-running service: its metrics listener bound on `metrics_addr`, SIGTERM/SIGINT as its
/// shutdown (a second signal stops it at once, see [`Signals`]).
async fn service<S, F>(metrics_addr: &str, service: S) -> anyhow::Result<()>
where
    S: FnOnce(Option<TcpListener>, CancellationToken) -> F,
    F: Future<Output = anyhow::Result<()>>,
{
    let listener = http::bind(metrics_addr).await?;
    let signals = Signals::listen()?;
    signals.run(service(listener, signals.shutdown())).await
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    init_logging(config.log_format, "info,rdkafka=warn");
    let start_from = args
        .start_from
        .map(|t| StartFrom::parse(&t, now_ms()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--start-from: {e}"))?;
    let hooks = RunHooks {
        start_from,
        ..RunHooks::default()
    };
    // A configuration error before a bind error: it is the one to fix first.
    config.validate_for_run()?;
    if args.webhooks {
        config.validate_for_webhooks()?;
    }
    let addr = config.metrics_addr.clone();
    if args.webhooks {
        return service(&addr, |l, stop| combined::run(config, l, stop, hooks)).await;
    }
    service(&addr, |l, stop| processor::run(config, l, stop, hooks)).await
}

async fn run_webhooks(args: WebhooksArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    init_logging(config.log_format, "info,rdkafka=warn");
    // The service serves its own metrics (it binds `metrics_addr` itself).
    service("", |_, stop| {
        webhook::run(config, stop, WebhookHooks::default())
    })
    .await
}

async fn run_passthrough(args: PassthroughArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    init_logging(config.log_format, "info,rdkafka=warn");
    let addr = config.metrics_addr.clone();
    service(&addr, |l, stop| passthrough::run(config, l, stop)).await
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
        event_bytes: args.event_bytes,
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

fn run_process(args: ProcessArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), overrides(&args.set)?)?;
    let shared = Shared::new(config.engine_settings());
    let summary = process::process_files(
        shared,
        &args.input,
        &args.output,
        args.dead_letter.as_deref(),
    )?;
    eprintln!("{}", summary.report());
    Ok(())
}

fn config_check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(path.as_deref(), toml::Table::new())?;
    print!("{}", config.to_redacted_toml());
    eprintln!("config ok");
    Ok(())
}

fn group_config(g: GroupArgs) -> anyhow::Result<Config> {
    let config = load_config(g.config.as_deref(), overrides(&g.set)?)?;
    init_logging(config.log_format, "warn,rdkafka=error");
    Ok(config)
}

fn inspect_device(group: GroupArgs, device_id: &str) -> anyhow::Result<()> {
    let config = group_config(group)?;
    let state = inspect::known_device(&config, device_id)?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(())
}

fn reset_offsets(args: ResetOffsetsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.group.set.group_id.is_some(),
        "name the group whose offsets move: --group-id"
    );
    let config = group_config(args.group)?;
    let to = StartFrom::parse(&args.to_datetime, now_ms())
        .map_err(|e| anyhow::anyhow!("--to-datetime: {e}"))?;
    let moves = replay::reset_offsets(&config, &to, args.dry_run)?;
    println!(
        "{}",
        replay::describe_moves(&config, &to, args.dry_run, &moves)
    );
    Ok(())
}
