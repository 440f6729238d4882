//! `otel-pipetrace query`: questions answered by embedded DuckDB over the Parquet datasets.
//!
//! The data is exposed as views `events` and `processes` (every run) and `run_events` /
//! `run_processes` (the selected run); each named query is a `.sql` file over them. Every
//! failure — missing or empty data, a file that is not Parquet or not ours, bad SQL — is one
//! [`QueryError`] line.

mod critical_path;
pub mod load;
pub mod s3;
mod tree;

use std::path::{Path, PathBuf};

use arrow::{array::RecordBatch, util::pretty::pretty_format_batches};
use duckdb::Connection;

use crate::{
    datasets::{self, CONNECTIONS, EVENTS, PROCESSES, Table},
    event::signal_name,
    present::table::{self, TableOptions},
};

/// Named queries: `(name, SQL)`.
pub const QUERIES: &[(&str, &str)] = &[
    ("durations", include_str!("sql/durations.sql")),
    ("cpu", include_str!("sql/cpu.sql")),
    ("memory", include_str!("sql/memory.sql")),
    ("io", include_str!("sql/io.sql")),
    ("network", include_str!("sql/network.sql")),
    ("failures", include_str!("sql/failures.sql")),
    ("processes", include_str!("sql/processes.sql")),
    ("tree", include_str!("sql/tree.sql")),
    ("slowest", include_str!("sql/slowest.sql")),
    ("critical-path", include_str!("sql/critical-path.sql")),
    ("runs", include_str!("sql/runs.sql")),
    ("hosts", include_str!("sql/hosts.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Input(String),
    #[error("query failed: {0}")]
    Sql(String),
}

fn sql_error(e: duckdb::Error) -> QueryError {
    QueryError::Sql(first_line(&e.to_string()))
}

/// The name of group `gid` from /etc/group, else the number.
fn group_name(gid: u32) -> String {
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id: u32 = fields.nth(1)?.parse().ok()?;
                (id == gid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

/// "permission denied" with what would give access: the agent writes its data 0750/0640 as
/// root, so reading it takes root or the data's group.
fn permission_denied(path: &Path) -> QueryError {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    // The nearest part of the path whose attributes can be read says who may read it.
    let owner = path
        .ancestors()
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p.to_path_buf(), m)))
        .map(|(p, m)| {
            format!(
                " ({} is mode {:04o}, group {})",
                p.display(),
                m.mode() & 0o7777,
                group_name(m.gid())
            )
        })
        .unwrap_or_default();
    QueryError::Input(format!(
        "{shown}: permission denied{owner}: reading the data needs root or membership of the data's group with group read access (e.g. chgrp -R GROUP {shown} and add yourself to GROUP)"
    ))
}

/// A readable Parquet file, or one line saying why not (before DuckDB sees it, whose message
/// would quote its own SQL).
fn check_parquet_file(path: &Path) -> Result<(), QueryError> {
    use std::io::{Read, Seek, SeekFrom};
    let shown = path.display();
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(permission_denied(path));
        }
        Err(e) => return Err(QueryError::Input(format!("{shown}: {e}"))),
    };
    let not_parquet = |why: &str| {
        QueryError::Input(format!(
            "{shown}: not a Parquet file ({why}); pass a directory written by otel-pipetrace or one of its .parquet files"
        ))
    };
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < 12 {
        return Err(not_parquet(&format!("{len} bytes")));
    }
    let read = file.read_exact(&mut head).is_ok()
        && file.seek(SeekFrom::End(-4)).is_ok()
        && file.read_exact(&mut tail).is_ok();
    if !read {
        return Err(not_parquet("unreadable"));
    }
    if &head != b"PAR1" {
        return Err(not_parquet(
            "it does not start with the Parquet magic bytes",
        ));
    }
    if &tail != b"PAR1" {
        return Err(not_parquet("truncated: no Parquet footer"));
    }
    Ok(())
}

/// DuckDB's first line, which says what is wrong (the lines after it quote our own SQL).
fn reason_only(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned()
}

fn first_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

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
    fn condition(&self, time: &str, hive: bool) -> String {
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

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Parquet files of one dataset directory and below it (rolled and uploaded files), sorted
/// (none when it does not exist).
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, QueryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(permission_denied(dir));
        }
        Err(e) => return Err(QueryError::Input(format!("{}: {e}", dir.display()))),
    };
    let mut files = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            files.extend(parquet_files(&path)?);
        } else if path.extension().is_some_and(|x| x == "parquet") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Where each dataset is read from: a glob, a file, or nothing.
#[derive(Debug, Default)]
struct Sources {
    events: Option<String>,
    processes: Option<String>,
    connections: Option<String>,
    /// Objects in a bucket, with `host=`/`date=` partitions.
    hive: bool,
}

fn column_names(conn: &Connection, source: &str) -> Result<Vec<String>, QueryError> {
    check_parquet_file(Path::new(source))?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT * FROM read_parquet({}, union_by_name = true) LIMIT 0",
            quote(source)
        ))
        .map_err(|e| QueryError::Input(format!("{source}: {}", reason_only(&e.to_string()))))?;
    let arrow = stmt
        .query_arrow([])
        .map_err(|e| QueryError::Input(format!("{source}: {}", reason_only(&e.to_string()))))?;
    let schema = arrow.get_schema();
    Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
}

/// Required columns the file lacks (columns added in later versions are not required).
fn missing_columns(have: &[String], table: &dyn Table) -> Vec<String> {
    table
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|name| !have.contains(name) && !table.is_later(name))
        .collect()
}

/// The datasets' objects in a bucket (one LIST each).
fn bucket_sources(conn: &Connection, url: &str, host: Option<&str>) -> Result<Sources, QueryError> {
    let mut sources = Sources {
        hive: true,
        ..Default::default()
    };
    for (dataset, slot) in [
        (EVENTS, &mut sources.events),
        (PROCESSES, &mut sources.processes),
        (CONNECTIONS, &mut sources.connections),
    ] {
        let glob = s3::dataset_glob(url, dataset, host);
        if s3::has_objects(conn, &glob)? {
            *slot = Some(glob);
        }
    }
    if sources.events.is_none() && sources.processes.is_none() {
        let whose = host.map_or(String::new(), |h| format!(" of host {h}"));
        return Err(QueryError::Input(format!(
            "{url}: no Parquet objects{whose} (expected {url}/processes/host=H/date=D/*.parquet, uploaded by agents with [output.object_store])"
        )));
    }
    Ok(sources)
}

fn find_sources(conn: &Connection, data: &Path) -> Result<Sources, QueryError> {
    let shown = data.display();
    match std::fs::metadata(data) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(permission_denied(data));
        }
        Err(_) => {
            return Err(QueryError::Input(format!(
                "{shown}: no such file or directory (run `otel-pipetrace run` first, or pass --data)"
            )));
        }
    }
    let mut sources = Sources::default();
    if data.is_file() {
        let file = data.to_string_lossy().into_owned();
        let have = column_names(conn, &file)?;
        if missing_columns(&have, datasets::processes()).is_empty() {
            sources.processes = Some(file);
        } else if missing_columns(&have, datasets::events()).is_empty() {
            sources.events = Some(file);
        } else {
            return Err(QueryError::Input(format!(
                "{shown}: not an otel-pipetrace events or processes file (its columns: {})",
                have.join(", ")
            )));
        }
        return Ok(sources);
    }
    for (dataset, slot, table) in [
        (
            EVENTS,
            &mut sources.events,
            datasets::events() as &dyn Table,
        ),
        (PROCESSES, &mut sources.processes, datasets::processes()),
        (
            CONNECTIONS,
            &mut sources.connections,
            datasets::connections(),
        ),
    ] {
        let dir = data.join(dataset);
        let files = parquet_files(&dir)?;
        if files.is_empty() {
            continue;
        }
        // Check each file: one bad file is named, not hidden in a glob error.
        for file in &files {
            let name = file.to_string_lossy().into_owned();
            let have = column_names(conn, &name)?;
            let missing = missing_columns(&have, table);
            if !missing.is_empty() {
                return Err(QueryError::Input(format!(
                    "{name}: not an otel-pipetrace {dataset} file (missing columns: {})",
                    missing.join(", ")
                )));
            }
        }
        *slot = Some(format!("{}/**/*.parquet", dir.to_string_lossy()));
    }
    if sources.events.is_none() && sources.processes.is_none() {
        return Err(QueryError::Input(format!(
            "{shown}: no Parquet data (expected {shown}/processes/*.parquet and {shown}/events/*.parquet, written by `otel-pipetrace run` or the daemon)"
        )));
    }
    Ok(sources)
}

/// The view over a dataset. Files written before a column existed lack it: an empty typed
/// row set joined by name adds every later column, NULL where a file has none, so the queries
/// run on old data too. `condition` keeps the rows in scope.
fn view(table: &dyn Table, source: Option<&str>, hive: bool, condition: &str) -> Option<String> {
    let name = table.name();
    let schema = table.schema();
    let later = null_columns(schema.fields().iter().filter(|f| table.is_later(f.name())));
    source.map(|s| {
        let read = format!(
            "SELECT * FROM read_parquet({}, union_by_name = true, hive_partitioning = {hive})",
            quote(s)
        );
        let rows = if later.is_empty() {
            read
        } else {
            format!("{read}\n    UNION ALL BY NAME SELECT {later} WHERE false")
        };
        if condition.is_empty() {
            format!("CREATE OR REPLACE VIEW {name} AS {rows};\n")
        } else {
            format!("CREATE OR REPLACE VIEW {name} AS SELECT * FROM (\n    {rows}\n) WHERE {condition};\n")
        }
    })
}

/// A view with `schema`'s columns and no rows.
fn empty_view(table: &dyn Table) -> String {
    let name = table.name();
    let columns = null_columns(table.schema().fields().iter());
    format!("CREATE OR REPLACE VIEW {name} AS SELECT {columns} WHERE false;\n")
}

/// `NULL::TYPE AS name, …` for these fields: typed columns without a value.
fn null_columns<'a>(fields: impl Iterator<Item = &'a arrow_schema::FieldRef>) -> String {
    fields
        .map(|f| format!("NULL::{} AS {}", sql_type(f.data_type()), f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sql_type(t: &arrow_schema::DataType) -> &'static str {
    match t {
        arrow_schema::DataType::Boolean => "BOOLEAN",
        arrow_schema::DataType::Int32 => "INTEGER",
        arrow_schema::DataType::Int64 => "BIGINT",
        arrow_schema::DataType::UInt32 => "UINTEGER",
        arrow_schema::DataType::Float64 => "DOUBLE",
        arrow_schema::DataType::Timestamp(..) => "TIMESTAMPTZ",
        _ => "VARCHAR",
    }
}

/// `signal_name(n)`: `SIGKILL` for 9, the number for a signal without a name. Generated from
/// the agent's own table so that SQL and the summaries name signals alike.
fn signal_name_macro() -> String {
    let cases: String = (1..=64)
        .filter_map(|n| signal_name(n).map(|name| format!(" WHEN {n} THEN '{name}'")))
        .collect();
    format!("CREATE OR REPLACE MACRO signal_name(n) AS CASE n{cases} ELSE n::VARCHAR END;\n")
}

fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Does `sql` read `table` (or its `run_` view).
fn mentions(sql: &str, table: &str) -> bool {
    sql.match_indices(table).any(|(at, _)| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let before = sql[..at].trim_end_matches("run_");
        let after = &sql[at + table.len()..];
        !before.ends_with(word) && !after.starts_with(word)
    })
}

/// The SQL that defines the views for `request` (after checking the data); `uses` is the SQL
/// that will run: views of datasets it does not read are not made (over a bucket, making a
/// view reads every object's footer).
fn views(conn: &Connection, request: &Request, uses: &str) -> Result<String, QueryError> {
    if let Some(id) = request.run.as_deref()
        && id != "all"
        && !valid_run_id(id)
        && latest_offset(id).is_none()
    {
        return Err(QueryError::Input(format!(
            "--run {id:?}: a run id or the start of one (letters, digits, '-' or '_'), latest, latest~N or all (see `otel-pipetrace query runs`)"
        )));
    }
    let location = request.data.to_string_lossy().into_owned();
    let scope = &request.scope;
    // Printed by --print-sql with the secret masked; run with it.
    let mut printed = String::new();
    let sources = if s3::is_s3(&location) {
        let (setup, shown) = s3::setup_sql(&location, scope.store.as_ref())?;
        conn.execute_batch(&setup).map_err(|e| {
            QueryError::Input(format!(
                "--data {location}: {}",
                reason_only(&e.to_string())
            ))
        })?;
        printed = shown;
        bucket_sources(conn, &location, scope.host.as_deref())?
    } else {
        find_sources(conn, &request.data)?
    };
    let hive = sources.hive;
    let mut sources = sources;
    // Runs are found in processes, or in events where there are none.
    if !mentions(uses, EVENTS) && sources.processes.is_some() {
        sources.events = None;
    }
    let connections = mentions(uses, CONNECTIONS);
    let mut sql = signal_name_macro();
    sql.extend(view(
        datasets::events(),
        sources.events.as_deref(),
        hive,
        &scope.condition("time", hive),
    ));
    sql.extend(view(
        datasets::processes(),
        sources.processes.as_deref(),
        hive,
        &scope.condition("end", hive),
    ));
    // Always there when asked for: a run without network use (or data from before it) has no
    // files.
    if connections {
        sql.push_str(
            &view(
                datasets::connections(),
                sources.connections.as_deref(),
                hive,
                &scope.condition("time", hive),
            )
            .unwrap_or_else(|| empty_view(datasets::connections())),
        );
    }
    conn.execute_batch(&sql).map_err(sql_error)?;

    let run = match request.run.as_deref() {
        Some("all") => None,
        Some(selector) => Some(resolve_run(conn, &sources, selector, &request.data)?),
        None => latest_run(conn, &sources, 0)?,
    };
    let filter = |table: &str| match &run {
        Some(id) => format!(
            "CREATE OR REPLACE VIEW run_{table} AS SELECT * FROM {table} WHERE run_id = {};\n",
            quote(id)
        ),
        None => format!("CREATE OR REPLACE VIEW run_{table} AS SELECT * FROM {table};\n"),
    };
    let mut filters = String::new();
    if sources.events.is_some() {
        filters.push_str(&filter("events"));
    }
    if sources.processes.is_some() {
        filters.push_str(&filter("processes"));
    }
    if connections {
        filters.push_str(&filter(CONNECTIONS));
    }
    conn.execute_batch(&filters).map_err(sql_error)?;
    Ok(printed + &sql + &filters)
}

/// `latest` → 0, `latest~N` → N.
fn latest_offset(selector: &str) -> Option<u64> {
    match selector.strip_prefix("latest") {
        Some("") => Some(0),
        Some(rest) => rest.strip_prefix('~')?.parse().ok(),
        None => None,
    }
}

/// The run `selector` names: `latest`, `latest~N`, an id, or the start of exactly one id.
fn resolve_run(
    conn: &Connection,
    sources: &Sources,
    selector: &str,
    data: &Path,
) -> Result<String, QueryError> {
    let no_such = |what: String| {
        QueryError::Input(format!(
            "--run {selector}: {what} in {} (`otel-pipetrace query runs` lists them)",
            data.display()
        ))
    };
    if let Some(n) = latest_offset(selector) {
        return latest_run(conn, sources, n)?
            .ok_or_else(|| no_such(format!("there are not {} runs", n + 1)));
    }
    let table = if sources.processes.is_some() {
        "processes"
    } else {
        "events"
    };
    let sql = format!(
        "SELECT DISTINCT run_id FROM {table} WHERE starts_with(run_id, {}) ORDER BY run_id LIMIT 6",
        quote(selector)
    );
    let mut stmt = conn.prepare(&sql).map_err(sql_error)?;
    let ids: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    match ids.as_slice() {
        [] => Err(no_such("no such run".into())),
        [id] => Ok(id.clone()),
        // An exact id that is also the start of a longer one.
        _ if ids.iter().any(|id| id == selector) => Ok(selector.to_owned()),
        _ => Err(QueryError::Input(format!(
            "--run {selector}: the start of several runs ({}{}): give more of the id",
            ids.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            if ids.len() > 5 { ", …" } else { "" }
        ))),
    }
}

/// The run whose first process started `back` runs before the latest (0: the latest).
fn latest_run(
    conn: &Connection,
    sources: &Sources,
    back: u64,
) -> Result<Option<String>, QueryError> {
    let (table, time) = match (&sources.processes, &sources.events) {
        (Some(_), _) => ("processes", "start"),
        (None, Some(_)) => ("events", "time"),
        (None, None) => return Ok(None),
    };
    let sql = format!(
        "SELECT run_id FROM {table} GROUP BY run_id ORDER BY min({time}) DESC, run_id LIMIT 1 OFFSET {back}"
    );
    let mut stmt = conn.prepare(&sql).map_err(sql_error)?;
    let mut rows = stmt.query([]).map_err(sql_error)?;
    match rows.next().map_err(sql_error)? {
        Some(row) => Ok(Some(row.get(0).map_err(sql_error)?)),
        None => Ok(None),
    }
}

/// The statement to run: a named query or the user's SQL, limited.
fn statement(request: &Request) -> Result<String, QueryError> {
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

fn open() -> Result<Connection, QueryError> {
    Connection::open_in_memory().map_err(|e| QueryError::Sql(first_line(&e.to_string())))
}

/// The whole script (views, then the query) that `--print-sql` shows and the DuckDB CLI runs.
pub fn script(request: &Request) -> Result<String, QueryError> {
    let statement = statement(request)?;
    let conn = open()?;
    let views = views(&conn, request, &statement)?;
    Ok(format!("{views}{statement};\n"))
}

/// Runs the query; returns its result as record batches.
pub fn run(request: &Request) -> Result<Vec<RecordBatch>, QueryError> {
    let conn = open()?;
    if request.name == "critical-path" {
        // Computed here from the rows its SQL loads; the limit applies to the segments.
        let load = statement(&Request {
            limit: None,
            ..request.clone()
        })?;
        views(&conn, request, &load)?;
        return critical_path::batches(&conn, &load, request.limit);
    }
    let statement = statement(request)?;
    views(&conn, request, &statement)?;
    let mut stmt = conn.prepare(&statement).map_err(sql_error)?;
    let arrow = stmt.query_arrow([]).map_err(sql_error)?;
    let schema = arrow.get_schema();
    let mut batches: Vec<RecordBatch> = arrow.collect();
    if batches.is_empty() {
        // No rows: the columns still show (a table's header, a CSV header line).
        batches.push(RecordBatch::new_empty(schema));
    }
    match (request.name.as_str(), request.min_duration_s) {
        ("tree", Some(min)) if request.format != Format::Table => {
            tree::without_shorter(&batches, min).map_err(|e| QueryError::Sql(e.to_string()))
        }
        _ => Ok(batches),
    }
}

/// Renders the batches; an empty result still shows its columns.
pub fn render(
    batches: &[RecordBatch],
    format: Format,
    options: TableOptions,
) -> Result<String, QueryError> {
    let render_error = |e: arrow::error::ArrowError| QueryError::Sql(first_line(&e.to_string()));
    match format {
        Format::Table if batches.iter().all(|b| b.num_rows() == 0) => {
            // Columns without rows: arrow's table shows the header.
            let table = pretty_format_batches(batches).map_err(render_error)?;
            Ok(format!("{table}\n(0 rows)\n"))
        }
        Format::Table => Ok(table::render(batches, options)),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    writer.write(b).map_err(render_error)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                // Explicit nulls: every row has every column, as tools expect.
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                writer.write_batches(&refs).map_err(render_error)?;
                writer.finish().map_err(render_error)?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn finds_the_datasets_a_statement_reads() {
        assert!(mentions("SELECT * FROM events", "events"));
        assert!(mentions("SELECT 1 FROM run_events e", "events"));
        assert!(mentions(
            "FROM processes JOIN connections c USING (pid)",
            "connections"
        ));
        assert!(!mentions(
            "SELECT network_connections FROM processes",
            "connections"
        ));
        assert!(!mentions("SELECT events_total FROM processes", "events"));
        assert!(!mentions("SELECT 1 FROM myevents", "events"));
    }
}
