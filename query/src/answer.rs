//! The commands that answer from the Parquet data — `query`, `report`, `compare`, `export` —
//! run by the binary `otel-pipetrace-query`, the only one that links DuckDB: the agent
//! (`otel-pipetrace`) hands these commands to it, and so maps no DuckDB at start-up (≈ 10 ms)
//! and keeps none of its pages resident (≈ 10 MiB).

use std::process::ExitCode;

use crate::{
    cli::{Command, DataArgs, QueryArgs, fail},
    config::Config,
};

/// Runs one of the answering commands.
pub fn answer(command: &Command, config: &Config) -> ExitCode {
    match command {
        Command::Query(args) => query(args, config),
        Command::Report(_) | Command::Compare(_) | Command::Export(_) => document(command, config),
        _ => fail(
            "otel-pipetrace-query answers query, report, compare and export; \
             run the other commands with otel-pipetrace",
        ),
    }
}

/// `otel-pipetrace query`: no privileges, no runtime; results on stdout.
fn query(args: &QueryArgs, config: &Config) -> ExitCode {
    use crate::{
        config::HistorySection,
        present::{table::TableOptions, terminal_width},
        query::{self, FileFilter, Format, History, Request},
    };
    let min_duration_s = match args
        .min_duration
        .as_deref()
        .map(humantime_serde::re::humantime::parse_duration)
    {
        None => None,
        Some(Ok(d)) => Some(d.as_secs_f64()),
        Some(Err(e)) => {
            return fail(format!(
                "--min-duration {:?}: {e} (a duration such as 100ms or 2s)",
                args.min_duration.as_deref().unwrap_or_default()
            ));
        }
    };
    let data = match data_source(&args.data, config) {
        Ok(data) => data,
        Err(e) => return fail(e),
    };
    let request = Request {
        name: args.name.clone(),
        sql: args.sql.clone(),
        data: data.location,
        run: args.run.clone(),
        format: Format::parse(&args.format).unwrap_or(Format::Table),
        limit: args.limit,
        min_duration_s,
        scope: data.scope,
        history: History {
            judge: HistorySection {
                baseline_runs: args.baseline_runs.unwrap_or(config.history.baseline_runs),
                lookback_runs: config
                    .history
                    .lookback_runs
                    .max(args.baseline_runs.unwrap_or(0) + 1),
                ..config.history.clone()
            },
            pipeline: args.pipeline.clone().unwrap_or_default(),
            step: args.step.clone().unwrap_or_default(),
        },
        files: FileFilter {
            step: args.step.clone().unwrap_or_default(),
            path: args.path.clone().unwrap_or_default(),
            under: args
                .under
                .as_deref()
                .map(|dir| {
                    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
                    crate::event::normalize(&absolute.to_string_lossy())
                })
                .unwrap_or_default(),
            writes: args.writes,
        },
    };
    let table = TableOptions {
        terminal_width: terminal_width(libc::STDOUT_FILENO),
        wide: args.wide,
        fold_shorter_than: min_duration_s,
    };
    if args.sql.is_some() && args.name != "sql" {
        return fail(format!(
            "query {}: unexpected argument {:?} (only `query sql` takes a statement)",
            args.name,
            args.sql.as_deref().unwrap_or_default()
        ));
    }
    let output = if args.print_sql {
        query::script(&request)
    } else {
        query::run(&request).and_then(|batches| query::render(&batches, request.format, table))
    };
    match output {
        Ok(text) => {
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `compare --fail-on-regression` found a step slower than the thresholds or a new failure.
const EXIT_REGRESSION: u8 = 4;

/// Writes `text` to `output` (a file readable by its owner and group: it holds command
/// lines) or to stdout.
fn emit(text: &str, output: Option<&std::path::Path>) -> Result<(), String> {
    use std::io::Write;
    match output {
        Some(path) => crate::files::create_private_file(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("--output {}: {e}", path.display())),
        None => {
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(())
        }
    }
}

/// What `--data`, `--host` and `--since` name.
fn data_source(args: &DataArgs, config: &Config) -> Result<crate::query::Data, String> {
    use crate::query::{Data, DataScope};
    if let Some(host) = &args.host
        && (host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "--host {host:?}: a host name (letters, digits, '.', '-' or '_'; `query hosts` lists them)"
        ));
    }
    let since_ns = match args.since.as_deref() {
        None => None,
        Some(text) => Some(since_ns(text).ok_or_else(|| {
            format!("--since {text:?}: a duration back from now (7d, 12h, 30m) or a UTC day (YYYY-MM-DD)")
        })?),
    };
    Ok(Data {
        location: args
            .data
            .clone()
            .unwrap_or_else(|| config.output.parquet_dir.clone()),
        scope: DataScope {
            host: args.host.clone(),
            since_ns,
            store: config.output.object_store.clone(),
        },
    })
}

/// `7d` → now minus 7 days; `2026-11-23` → that day's start (UTC); in ns since the epoch.
fn since_ns(text: &str) -> Option<i64> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
    }
    let back = humantime_serde::re::humantime::parse_duration(text).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(now.checked_sub(back)?.as_nanos()).ok()
}

/// `report`, `compare` and `export`: documents from the Parquet data, like `query`.
fn document(command: &Command, config: &Config) -> ExitCode {
    use crate::{
        present::{table::TableOptions, terminal_width},
        query::{self, Format},
        report::{self, Baseline, compare::Thresholds},
    };
    let result = match command {
        Command::Report(args) => {
            let run = args.source.run.as_deref();
            data_source(&args.source.data, config)
                .and_then(|data| match args.format.as_str() {
                    "html" => {
                        report::html_report(&data, run, &config.history).map_err(|e| e.to_string())
                    }
                    _ => report::markdown_report(&data, run, &config.history)
                        .map_err(|e| e.to_string()),
                })
                .and_then(|text| emit(&text, args.output.as_deref()))
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Export(args) => data_source(&args.source.data, config)
            .and_then(|data| {
                report::chrome_trace_export(&data, args.source.run.as_deref())
                    .map_err(|e| e.to_string())
            })
            .and_then(|text| emit(&text, args.output.as_deref()))
            .map(|()| ExitCode::SUCCESS),
        Command::Compare(args) => (|| {
            let several = args.baseline.is_none();
            let history = &config.history;
            let min = match &args.threshold_time {
                Some(text) => {
                    humantime_serde::re::humantime::parse_duration(text).map_err(|e| {
                        format!("--threshold-time {text:?}: {e} (a duration such as 100ms or 2s)")
                    })?
                }
                None if several => history.regression_min_time,
                None => std::time::Duration::from_millis(100),
            };
            let percent = args.threshold_percent.unwrap_or(if several {
                history.regression_min_percent
            } else {
                20.0
            });
            if !(percent.is_finite() && percent >= 0.0) {
                return Err(format!(
                    "--threshold-percent {percent}: a percentage of 0 or more, e.g. 20"
                ));
            }
            let baseline = match (&args.baseline, args.baseline_runs) {
                (Some(id), _) => Baseline::Run(id.clone()),
                (None, Some(n)) => Baseline::LastRuns(n),
                (None, None) => unreachable!("clap requires one"),
            };
            let thresholds = Thresholds {
                percent,
                min_s: min.as_secs_f64(),
                spread: several.then_some(history.regression_spread),
            };
            let comparison = report::compare_runs(
                &data_source(&args.source.data, config)?,
                args.source.run.as_deref(),
                &baseline,
                thresholds,
            )
            .map_err(|e| e.to_string())?;
            if let Some(other) = &comparison.other_command {
                eprintln!(
                    "otel-pipetrace: note: the baseline ran another command ({other}): steps match only where both ran them"
                );
            }
            let text = match args.format.as_str() {
                "markdown" => report::compare::markdown(&comparison),
                format => {
                    let batch = report::compare::batch(&comparison).map_err(|e| e.to_string())?;
                    let table = TableOptions {
                        terminal_width: terminal_width(libc::STDOUT_FILENO),
                        wide: args.wide,
                        fold_shorter_than: None,
                    };
                    let format = Format::parse(format).unwrap_or(Format::Table);
                    let mut text =
                        query::render(&[batch], format, table).map_err(|e| e.to_string())?;
                    // For people: the files that differ, as a second table (CSV and JSON keep
                    // one shape; `query files` has the files for machines).
                    if format == Format::Table
                        && let Some(files) =
                            report::compare::files_batch(&comparison).map_err(|e| e.to_string())?
                    {
                        text.push('\n');
                        text.push_str(
                            &query::render(&[files], format, table).map_err(|e| e.to_string())?,
                        );
                    }
                    text
                }
            };
            emit(&text, None)?;
            Ok(if args.fail_on_regression && comparison.regressed() {
                ExitCode::from(EXIT_REGRESSION)
            } else {
                ExitCode::SUCCESS
            })
        })(),
        _ => Ok(ExitCode::SUCCESS),
    };
    result.unwrap_or_else(fail)
}
