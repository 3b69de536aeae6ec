//! The `aepiot-stream` binary: parses flags, sets up logging and calls into the library.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use aepiot_stream::config::Config;
use aepiot_stream::core::Shared;
use aepiot_stream::process::process_lines;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aepiot-stream",
    version,
    about = "IoT events from Kafka in, aéPiot backlink URL records out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process JSON Lines events offline: one URL record per line out, dead letters apart.
    Process(ProcessArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values, secrets redacted.
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ProcessArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input file of JSON Lines, `-` for stdin.
    #[arg(long, default_value = "-")]
    input: String,
    /// Output file for URL records, `-` for stdout.
    #[arg(long, default_value = "-")]
    output: String,
    /// File for dead letters (invalid lines); stderr by default.
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// Also write `cached` and `rate_limited` records.
    #[arg(long)]
    emit_suppressed: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Process(args) => process(args),
        Command::Config(ConfigCommand::Check { config }) => config_check(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    let mut overrides = toml::Table::new();
    if args.emit_suppressed {
        overrides.insert("emit_suppressed".into(), true.into());
    }
    let config = load_config(args.config.as_deref(), overrides)?;
    let shared = Shared::new(config.engine_settings());

    let mut input: Box<dyn io::BufRead> = match args.input.as_str() {
        "-" => Box::new(io::stdin().lock()),
        path => Box::new(BufReader::with_capacity(
            1 << 16,
            File::open(path).map_err(|e| anyhow::anyhow!("cannot open input {path}: {e}"))?,
        )),
    };
    let mut output: Box<dyn Write> = match args.output.as_str() {
        "-" => Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
        path => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(path).map_err(|e| anyhow::anyhow!("cannot create output {path}: {e}"))?,
        )),
    };
    let mut dead: Box<dyn Write> = match &args.dead_letter {
        None => Box::new(io::stderr().lock()),
        Some(path) => Box::new(BufWriter::new(File::create(path).map_err(|e| {
            anyhow::anyhow!("cannot create dead-letter file {}: {e}", path.display())
        })?)),
    };
    let summary = process_lines(shared, &mut input, &mut output, &mut dead, wall_clock_ms)?;
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
