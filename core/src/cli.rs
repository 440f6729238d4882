//! Command-line interface.

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::config::{Config, FLAGS, Overrides};

/// Bad input and start-up failures exit with 2 after one line on stderr.
pub const EXIT_USAGE: u8 = 2;

pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("otel-pipetrace: error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// The command line, or the exit code after help, the version or a one-line error.
pub fn parse() -> Result<Cli, ExitCode> {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    match parsed {
        Ok((mut cli, matches)) => {
            cli.overrides = overrides(&matches);
            Ok(cli)
        }
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return Err(ExitCode::SUCCESS);
            }
            // clap's first paragraph names the problem; the usage block after it is noise here.
            let text = err.to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            Err(fail(format!(
                "{} (see --help)",
                first.join(" ").trim_start_matches("error: ")
            )))
        }
    }
}

/// Starts logging (`--log`) and loads the configuration.
pub fn configure(cli: &Cli) -> Result<Config, ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .map_err(|e| fail(format!("--log {:?}: {e}", cli.log)))?;
    // Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
    let colour = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    Config::load(cli.config.as_deref(), cli.overrides.clone()).map_err(fail)
}

/// The configuration flags given ([`FLAGS`]), `run`'s own after the global ones.
fn overrides(matches: &clap::ArgMatches) -> Overrides {
    use clap::parser::ValueSource;
    let levels = [Some(matches), matches.subcommand_matches("run")];
    let mut given = Vec::new();
    for m in levels.into_iter().flatten() {
        for flag in FLAGS {
            let id = flag.id();
            // A level without this flag (`--grace` before `run`) has no such argument.
            let Ok(raw) = m.try_get_raw(&id) else {
                continue;
            };
            if m.value_source(&id) != Some(ValueSource::CommandLine) {
                continue;
            }
            let values = raw
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            given.push((flag.flag, values));
        }
    }
    Overrides::from_flags(given)
}

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

    /// Log filter (tracing env-filter syntax), e.g. info or pipetrace=debug.
    #[arg(long, global = true, value_name = "FILTER", default_value = "warn")]
    pub log: String,

    /// Tracing options of the daemon (also accepted before `run`).
    #[command(flatten)]
    pub trace: TraceArgs,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// The configuration keys the flags set (from [`FLAGS`]), filled in by [`parse`].
    #[arg(skip)]
    pub overrides: Overrides,
}

/// What to capture and where to send it: the daemon's and `run`'s options, not `query`'s.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TraceArgs {
    /// Write one JSON object per event to PATH ("-" = stdout; `run` then sends the command's
    /// own stdout to stderr).
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<String>,

    /// Hide an executable (by name) while keeping its children in the tree; repeatable.
    #[arg(long, value_name = "NAME")]
    pub hide: Vec<String>,

    /// Bytes of argv captured per exec (1 to 32768).
    #[arg(long, value_name = "BYTES")]
    pub argv_max: Option<usize>,

    /// Kernel BTF file used to resolve struct offsets.
    #[arg(long, value_name = "PATH")]
    pub btf: Option<PathBuf>,

    /// Directory of the Parquet datasets written by `run` and the daemon (and read by `query`).
    #[arg(long, value_name = "DIR")]
    pub parquet: Option<PathBuf>,

    /// Serve Prometheus metrics on IP:PORT (GET /metrics).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,

    /// OTLP receiver for spans, e.g. http://localhost:4317 (export is off without one).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: grpc or http/protobuf.
    #[arg(long, value_name = "PROTOCOL", value_parser = ["grpc", "http/protobuf"])]
    pub otlp_protocol: Option<String>,

    /// Record the files each process reads, writes, creates, renames and deletes: on (the
    /// default) or off. Config: capture.files.
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    pub files: Option<String>,

    /// List failed opens (a missing file looked for) one by one; they are always counted.
    /// Config: capture.file_probes.
    #[arg(long)]
    pub files_probes: bool,

    /// A SHA-256 of every file a process wrote, at its end. Config: capture.file_hashes.
    #[arg(long)]
    pub file_hashes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace CMD and all its descendants; exit with CMD's status.
    Run {
        #[command(flatten)]
        trace: TraceArgs,
        /// How long to wait for CMD's remaining descendants after it exits (e.g. 5s, 500ms).
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        grace: Option<String>,
        /// Exit with status 75 when CMD succeeded but the record is incomplete: an event,
        /// exit, span, Parquet or JSONL row, or upload was lost (CMD's own failure status
        /// still wins). Config: run.fail_on_loss.
        #[arg(long)]
        fail_on_loss: bool,
        /// The checkout whose tracked files no step should change (default: the CI's
        /// workspace variable). Config: source.dir.
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        /// A path steps may change in the checkout, as a .gitignore pattern (build/);
        /// repeatable, replaces the default list. Config: source.allow.
        #[arg(long, value_name = "PATTERN")]
        source_allow: Vec<String>,
        /// Exit with status 65 when CMD succeeded but a step changed a tracked file of the
        /// checkout. Config: source.fail_on_change.
        #[arg(long)]
        fail_on_source_change: bool,
        /// What to print on stderr at the end: full (totals, wall and CPU time, peak memory,
        /// slowest steps, the failure chain) or line (the totals line alone).
        #[arg(long, value_name = "WHAT", default_value = "full", value_parser = ["full", "line"])]
        summary: String,
        /// The command and its arguments (after `--` when it starts with a dash).
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Answer questions from the Parquet datasets with DuckDB (durations, cpu, memory, ...).
    Query(QueryArgs),
    /// A report of one run: Markdown (a GitHub job summary or GitLab note, with a mermaid
    /// Gantt chart) or one self-contained HTML file.
    Report(ReportArgs),
    /// Compare a run with a baseline run (or the median of the last N runs of the same
    /// command): per step duration, CPU and peak memory, new and missing steps, new failures.
    Compare(CompareArgs),
    /// Export a run as a trace file: chrome-trace (Trace Event JSON for Perfetto,
    /// chrome://tracing and speedscope).
    Export(ExportArgs),
    /// Merge the many small Parquet files of a data directory (one per `run`) or of a bucket
    /// (one object per job) into one per host, day and schema, so that queries read few.
    Compact(CompactArgs),
    /// Print the effective configuration (defaults < OTEL_* environment < file < PIPETRACE_*
    /// environment < flags) as TOML; header values are masked.
    Config,
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (otel-pipetrace.1 and one per command) into DIR (for packages).
    #[command(hide = true)]
    Manpages {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

impl Command {
    /// `query`, `report`, `compare` and `export`: answered from the Parquet data by
    /// `otel-pipetrace-query` (the `answer` module).
    pub fn answers_from_data(&self) -> bool {
        matches!(
            self,
            Self::Query(_) | Self::Report(_) | Self::Compare(_) | Self::Export(_)
        )
    }
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// durations | cpu | memory | io | network | failures | findings | processes | tree |
    /// slowest | critical-path | runs | hosts | baseline | regressions | flaky | trend |
    /// fix-first | files | outputs | sql
    #[arg(value_name = "NAME")]
    pub name: String,
    /// With `sql`: the statement, over the views `events`, `processes`, `connections`,
    /// `findings` and `files` (every run) and `run_events`, `run_processes`,
    /// `run_connections`, `run_findings` and `run_files` (the selected run).
    #[arg(value_name = "SQL")]
    pub sql: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// The run to look at: an id from `query runs` or its first characters, `latest`,
    /// `latest~N` (N runs before the latest), or `all` [default: the latest run].
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Output format.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "csv", "json"])]
    pub format: String,
    /// At most N rows (`slowest`: 10 unless given).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Tables: every column and every value whole, instead of fitting them to the terminal
    /// (or, outside one, cutting text at 160 characters).
    #[arg(long)]
    pub wide: bool,
    /// `tree`: fold processes shorter than this (e.g. 100ms, 2s) into "(+N shorter)" rows;
    /// CSV and JSON leave them out.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub min_duration: Option<String>,
    /// Print the SQL (views and query) instead of running it: it runs as is in the DuckDB CLI.
    #[arg(long)]
    pub print_sql: bool,
    /// History queries: a step's baseline is its last N runs [default: history.baseline_runs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(5..=10000))]
    pub baseline_runs: Option<u32>,
    /// History queries: only pipelines whose root command contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub pipeline: Option<String>,
    /// History queries, `files` and `outputs`: only steps whose step key contains TEXT
    /// (`trend`: those steps instead of the pipelines).
    #[arg(long, value_name = "TEXT")]
    pub step: Option<String>,
    /// `files`, `outputs`: only paths that contain TEXT.
    #[arg(long, value_name = "TEXT")]
    pub path: Option<String>,
    /// `files`, `outputs`: only files under DIR (absolute, or relative to the current
    /// directory).
    #[arg(long, value_name = "DIR")]
    pub under: Option<PathBuf>,
    /// `files`: only what changed files (no reads, no probes).
    #[arg(long)]
    pub writes: bool,
}

/// Which data: where it is, and which host's and how recent.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Parquet data: the directory (with events/ and processes/), one Parquet file, or a bucket
    /// the agents upload to (s3://BUCKET/PREFIX; endpoint and credentials as in
    /// [output.object_store] and the AWS variables) [default: output.parquet_dir].
    #[arg(long, value_name = "DIR|FILE|S3-URL")]
    pub data: Option<PathBuf>,
    /// Only this host's rows (the `host` column; in a bucket only its objects are read).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only rows from this long ago on (e.g. 7d, 12h) or from this UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "DURATION|DATE")]
    pub since: Option<String>,
}

/// Where a run is read from, for `report`, `compare` and `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunSource {
    #[command(flatten)]
    pub data: DataArgs,
    /// The run: an id or its first characters, latest or latest~N [default: latest].
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub source: RunSource,
    /// markdown (a GitHub job summary, a GitLab note) or html (one self-contained page).
    #[arg(long, value_name = "FORMAT", default_value = "markdown", value_parser = ["markdown", "html"])]
    pub format: String,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub source: RunSource,
    /// The run to compare with: an id or its start, latest~N.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "baseline_runs",
        required_unless_present = "baseline_runs"
    )]
    pub baseline: Option<String>,
    /// Compare with the median of the last N earlier runs of the same command, each step
    /// judged by its spread over them as `query regressions` does.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub baseline_runs: Option<u32>,
    /// A step is slower when it took more than this many percent longer... [default: 20, or
    /// history.regression_min_percent with --baseline-runs]
    #[arg(long, value_name = "PERCENT")]
    pub threshold_percent: Option<f64>,
    /// ...and more than this much longer (e.g. 100ms, 2s) [default: 100ms, or
    /// history.regression_min_time with --baseline-runs]; with --baseline-runs, also by more
    /// than history.regression_spread times the step's spread over those runs.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub threshold_time: Option<String>,
    /// Exit with status 4 when a step got slower or failed where it did not.
    #[arg(long)]
    pub fail_on_regression: bool,
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "csv", "json", "markdown"])]
    pub format: String,
    /// Tables: show every value whole.
    #[arg(long)]
    pub wide: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The data directory or the bucket (s3://BUCKET/PREFIX; endpoint and credentials as in
    /// [output.object_store] and the AWS variables) [default: output.parquet_dir].
    #[arg(long, value_name = "DIR|S3-URL")]
    pub data: Option<PathBuf>,
    /// Leave files younger than this (a run may still be writing them).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1h",
        allow_hyphen_values = true
    )]
    pub min_age: String,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: RunSource,
    #[arg(long, value_name = "FORMAT", default_value = "chrome-trace", value_parser = ["chrome-trace"])]
    pub format: String,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Writes the completion script for `shell` to `out`, generated from the definition above.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "otel-pipetrace", out);
}

/// Writes `otel-pipetrace.1` and `otel-pipetrace-COMMAND.1` for each visible command into `dir`;
/// returns the files written.
pub fn manpages(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let command = <Cli as clap::CommandFactory>::command();
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut write = |name: String, page: clap::Command| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buffer = Vec::new();
        clap_mangen::Man::new(page.name(name.clone())).render(&mut buffer)?;
        std::fs::write(&path, buffer)?;
        written.push(path);
        Ok(())
    };
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        write(format!("otel-pipetrace-{}", sub.get_name()), sub.clone())?;
    }
    write("otel-pipetrace".into(), command)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;

    /// Options that set no configuration key: where the configuration is, logging, what `run`
    /// prints at the end and the command it runs.
    const NOT_CONFIGURATION: &[&str] = &["config", "log", "summary", "command", "help", "version"];

    #[test]
    fn every_tracing_flag_sets_its_key_through_the_one_table() {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").unwrap().clone();
        let mut defined = BTreeSet::new();
        for arg in cli.get_arguments().chain(run.get_arguments()) {
            let id = arg.get_id().as_str();
            if NOT_CONFIGURATION.contains(&id) {
                continue;
            }
            let flag = FLAGS
                .iter()
                .find(|f| f.id() == id)
                .unwrap_or_else(|| panic!("--{id} is not in config::FLAGS"));
            assert_eq!(Some(&flag.flag[2..]), arg.get_long(), "{id}");
            defined.insert(id.to_owned());
        }
        let table: BTreeSet<String> = FLAGS.iter().map(|f| f.id()).collect();
        assert_eq!(
            defined, table,
            "config::FLAGS names a flag no command defines"
        );
    }

    #[test]
    fn run_flags_follow_the_global_ones_and_repeats_add_up() {
        let matches = Cli::command()
            .try_get_matches_from([
                "otel-pipetrace",
                "--hide",
                "a",
                "--jsonl",
                "/x",
                "--argv-max",
                "100",
                "run",
                "--hide",
                "b",
                "--jsonl",
                "/y",
                "--grace",
                "1s",
                "--fail-on-loss",
                "--",
                "true",
            ])
            .unwrap();
        let c = Config::load_with_env(None, overrides(&matches), |_| None).unwrap();
        assert_eq!(c.scope.hide, ["a", "b"]);
        assert_eq!(c.output.jsonl.as_deref(), Some("/y"));
        assert_eq!(c.capture.argv_max_bytes, 100);
        assert_eq!(c.run.grace_period, std::time::Duration::from_secs(1));
        assert!(c.run.fail_on_loss);
        // Nothing given: the lower layers stand.
        let none = Cli::command()
            .try_get_matches_from(["otel-pipetrace", "run", "true"])
            .unwrap();
        let c = Config::load_with_env(None, overrides(&none), |_| None).unwrap();
        assert_eq!(c, Config::default());
    }
}
