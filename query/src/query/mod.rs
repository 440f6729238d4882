//! `otel-pipetrace query`: questions answered by embedded DuckDB over the Parquet datasets.
//!
//! The data is exposed as views `events` and `processes` (every run) and `run_events` /
//! `run_processes` (the selected run); each named query is a `.sql` file over them. Every
//! failure — missing or empty data, a file that is not Parquet or not ours, bad SQL — is one
//! [`QueryError`] line.

mod critical_path;
mod error;
mod fix_first;
pub mod history;
pub mod load;
mod render;
mod request;
mod runs;
pub mod s3;
mod sources;
mod tree;
mod views;

use arrow::array::RecordBatch;
use duckdb::Connection;

pub use error::QueryError;
use error::{first_line, reason_only, sql_error};
pub use render::render;
use request::statement;
pub use request::{
    Data, DataScope, FileFilter, Format, History, QUERIES, Request, SLOWEST_DEFAULT_LIMIT,
};
use views::views;

/// A literal in SQL that is printed (`--print-sql`) and so cannot be a bound parameter.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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
        ("fix-first", _) => fix_first::with_critical_path(&conn, batches),
        _ => Ok(batches),
    }
}

#[cfg(test)]
mod tests;
