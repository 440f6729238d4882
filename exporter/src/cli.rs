//! Command-line interface.

use std::{ffi::OsString, path::PathBuf};

use clap::{Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(
    name = "otel-pipetrace",
    version,
    about = "Trace every process of a build, CI or data pipeline with eBPF",
    long_about = "Trace every process of a build, CI or data pipeline with eBPF.\n\n\
                  Without a subcommand it runs as a daemon over the configured scope until \
                  SIGINT or SIGTERM."
)]
pub struct Cli {
    /// TOML configuration file (see config/pipetrace.toml).
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Write one JSON object per event to PATH ("-" = stdout).
    #[arg(long, global = true, value_name = "PATH")]
    pub jsonl: Option<String>,

    /// Hide an executable (by name) while keeping its children in the tree; repeatable.
    #[arg(long, global = true, value_name = "NAME")]
    pub hide: Vec<String>,

    /// Bytes of argv captured per exec.
    #[arg(long, global = true, value_name = "BYTES")]
    pub argv_max: Option<usize>,

    /// Kernel BTF file used to resolve struct offsets.
    #[arg(long, global = true, value_name = "PATH")]
    pub btf: Option<PathBuf>,

    /// Directory of the Parquet datasets written by `run` and the daemon (and read by `query`).
    #[arg(long, global = true, value_name = "DIR")]
    pub parquet: Option<PathBuf>,

    /// Serve Prometheus metrics on IP:PORT (GET /metrics).
    #[arg(long, global = true, value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,

    /// OTLP receiver for spans, e.g. http://localhost:4317 (export is off without one).
    #[arg(long, global = true, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: grpc or http/protobuf.
    #[arg(long, global = true, value_name = "PROTOCOL", value_parser = ["grpc", "http/protobuf"])]
    pub otlp_protocol: Option<String>,

    /// Log filter (tracing env-filter syntax), e.g. info or pipetrace=debug.
    #[arg(long, global = true, value_name = "FILTER", default_value = "warn")]
    pub log: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace CMD and all its descendants; exit with CMD's status.
    Run {
        /// How long to wait for CMD's remaining descendants after it exits (e.g. 5s, 500ms).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
    /// Answer questions from the Parquet datasets with DuckDB (durations, cpu, memory, ...).
    Query(QueryArgs),
    /// Print the effective configuration (defaults < OTEL_* environment < file < PIPETRACE_*
    /// environment < flags) as TOML; header values are masked.
    Config,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// durations | cpu | memory | failures | processes | tree | slowest | critical-path | runs |
    /// sql
    #[arg(value_name = "NAME")]
    pub name: String,
    /// With `sql`: the statement, over the views `events` and `processes`.
    #[arg(value_name = "SQL")]
    pub sql: Option<String>,
    /// Parquet data: the directory (with events/ and processes/) or one Parquet file
    /// [default: output.parquet_dir].
    #[arg(long, value_name = "DIR|FILE")]
    pub data: Option<PathBuf>,
    /// The run to look at: an id from `query runs`, or `all` [default: the latest run].
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Output format.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "csv", "json"])]
    pub format: String,
    /// At most N rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Print the SQL (views and query) instead of running it: it runs as is in the DuckDB CLI.
    #[arg(long)]
    pub print_sql: bool,
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        let grace = match &self.command {
            Some(Command::Run { grace, .. }) => grace.clone(),
            _ => None,
        };
        Overrides {
            jsonl: self.jsonl.clone(),
            grace_period: grace,
            argv_max_bytes: self.argv_max,
            hide: self.hide.clone(),
            btf_path: self.btf.clone(),
            parquet_dir: self.parquet.clone(),
            metrics_listen: self.metrics_listen.clone(),
            otlp_endpoint: self.otlp_endpoint.clone(),
            otlp_protocol: self.otlp_protocol.clone(),
        }
    }
}
