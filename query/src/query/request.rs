//! What is asked: the named queries, the request (which query, which data, which run, which
//! format), the rows in scope, and the statement that answers it.

use std::path::PathBuf;

use super::{QueryError, quote};

/// Named queries: `(name, SQL)`.
pub const QUERIES: &[(&str, &str)] = &[
    ("durations", include_str!("sql/durations.sql")),
    ("cpu", include_str!("sql/cpu.sql")),
    ("memory", include_str!("sql/memory.sql")),
    ("io", include_str!("sql/io.sql")),
    ("network", include_str!("sql/network.sql")),
    ("failures", include_str!("sql/failures.sql")),
    ("findings", include_str!("sql/findings.sql")),
    ("processes", include_str!("sql/processes.sql")),
    ("tree", include_str!("sql/tree.sql")),
    ("slowest", include_str!("sql/slowest.sql")),
    ("critical-path", include_str!("sql/critical-path.sql")),
    ("runs", include_str!("sql/runs.sql")),
    ("hosts", include_str!("sql/hosts.sql")),
    ("baseline", include_str!("sql/baseline.sql")),
    ("regressions", include_str!("sql/regressions.sql")),
    ("flaky", include_str!("sql/flaky.sql")),
    ("trend", include_str!("sql/trend.sql")),
    ("fix-first", include_str!("sql/fix-first.sql")),
    ("files", include_str!("sql/files.sql")),
    ("outputs", include_str!("sql/outputs.sql")),
];

/// The history queries' rows, `step_runs(lookback)`: defined when a statement reads them.
pub const STEP_RUNS: &str = "step_runs";
pub(super) const STEP_RUNS_SQL: &str = include_str!("sql/step-runs.sql");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(Self::Table),
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub sql: Option<String>,
    pub data: PathBuf,
    /// `None` = the latest run; `Some("all")` = every run.
    pub run: Option<String>,
    pub format: Format,
    pub limit: Option<u64>,
    /// `tree`: processes shorter than this many seconds are folded (table) or left out.
    pub min_duration_s: Option<f64>,
    pub scope: DataScope,
    /// How the history queries judge a step (`[history]`, `--baseline-runs`) and which
    /// pipelines and steps they show (`--pipeline`, `--step`).
    pub history: History,
    /// Which files `files` and `outputs` show.
    pub files: FileFilter,
}

/// `query files` and `query outputs`: which steps and paths (SQL variables, as [`History`]).
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    /// Only steps whose step key contains this (`--step`).
    pub step: String,
    /// Only paths containing this (`--path`).
    pub path: String,
    /// Only paths under this absolute directory (`--under`).
    pub under: String,
    /// Only changes: no reads or probes (`--writes`).
    pub writes: bool,
}

impl FileFilter {
    pub(super) fn variables(&self) -> String {
        [
            ("files_step", quote(&self.step)),
            ("files_path", quote(&self.path)),
            ("files_under", quote(self.under.trim_end_matches('/'))),
            ("files_writes", self.writes.to_string()),
        ]
        .iter()
        .map(|(name, value)| format!("SET VARIABLE {name} = {value};\n"))
        .collect()
    }
}

/// The history queries' parameters: SQL variables the script sets before its statement.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub judge: crate::config::HistorySection,
    /// Only pipelines whose root command contains this ("": every pipeline).
    pub pipeline: String,
    /// Only steps whose step key contains this ("": every step; `trend`: the pipelines).
    pub step: String,
}

impl History {
    /// `SET VARIABLE` statements for the SQL: printed by `--print-sql` with the rest.
    pub(super) fn variables(&self) -> String {
        let j = &self.judge;
        [
            ("baseline_runs", j.baseline_runs.to_string()),
            ("lookback_runs", j.lookback_runs.to_string()),
            ("regression_spread", format!("{:?}", j.regression_spread)),
            (
                "regression_min_percent",
                format!("{:?}", j.regression_min_percent),
            ),
            (
                "regression_min_s",
                format!("{:?}", j.regression_min_time.as_secs_f64()),
            ),
            ("flaky_flip_percent", format!("{:?}", j.flaky_flip_percent)),
            ("pipeline", quote(&self.pipeline)),
            ("step", quote(&self.step)),
        ]
        .iter()
        .map(|(name, value)| format!("SET VARIABLE {name} = {value};\n"))
        .collect()
    }
}

/// Where the data is (`--data`: a directory, a file or `s3://bucket/prefix`) and which of it.
#[derive(Debug, Clone)]
pub struct Data {
    pub location: PathBuf,
    pub scope: DataScope,
}

/// Which rows of the data a question is about, and how to reach a bucket.
#[derive(Debug, Clone, Default)]
pub struct DataScope {
    /// `--host`: only this host's rows (in a bucket, only its objects are read).
    pub host: Option<String>,
    /// `--since`: only rows from this moment on, in ns since the epoch (in a bucket, only the
    /// objects of those days are read).
    pub since_ns: Option<i64>,
    /// Endpoint, region and credentials for `s3://` data: `[output.object_store]`.
    pub store: Option<crate::config::ObjectStoreSection>,
}

impl DataScope {
    /// The rows' condition, or an empty string; `time` is the dataset's time column.
    pub(super) fn condition(&self, time: &str, hive: bool) -> String {
        let mut parts = Vec::new();
        if let Some(host) = &self.host {
            parts.push(format!("host = {}", quote(host)));
        }
        if let Some(ns) = self.since_ns {
            let at = chrono::DateTime::from_timestamp_nanos(ns);
            if hive {
                // A file is named (and dated) when written, after its rows: earlier days hold
                // nothing this recent.
                parts.push(format!("date >= DATE '{}'", at.format("%Y-%m-%d")));
            }
            parts.push(format!(
                "\"{time}\" >= TIMESTAMPTZ '{}'",
                at.format("%Y-%m-%d %H:%M:%S%.6f+00")
            ));
        }
        parts.join(" AND ")
    }
}

/// Rows `slowest` shows without `--limit`.
pub const SLOWEST_DEFAULT_LIMIT: u64 = 10;

/// The statement to run: a named query or the user's SQL, limited.
pub(super) fn statement(request: &Request) -> Result<String, QueryError> {
    let body = if request.name == "sql" {
        let sql = request.sql.as_deref().unwrap_or("").trim();
        if sql.is_empty() {
            return Err(QueryError::Input(
                "query sql needs a statement, e.g. otel-pipetrace query sql \"SELECT count(*) FROM processes\"".into(),
            ));
        }
        sql.trim_end_matches(';').trim().to_owned()
    } else {
        let Some((_, sql)) = QUERIES.iter().find(|(n, _)| *n == request.name) else {
            let names: Vec<&str> = QUERIES.iter().map(|(n, _)| *n).collect();
            return Err(QueryError::Input(format!(
                "unknown query {:?}; choose one of {}, or sql",
                request.name,
                names.join(", ")
            )));
        };
        sql.trim().trim_end_matches(';').to_owned()
    };
    let limit = match (request.limit, request.name.as_str()) {
        (None, "slowest") => Some(SLOWEST_DEFAULT_LIMIT),
        (limit, _) => limit,
    };
    Ok(match limit {
        Some(n) => format!("SELECT * FROM (\n{body}\n) LIMIT {n}"),
        None => body,
    })
}
