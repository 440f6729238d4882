//! Which run a question is about: `latest`, `latest~N`, a run id or the start of exactly one.

use std::path::Path;

use duckdb::Connection;

use super::{QueryError, error::sql_error, sources::Sources};

pub(super) fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `latest` → 0, `latest~N` → N.
pub(super) fn latest_offset(selector: &str) -> Option<u64> {
    match selector.strip_prefix("latest") {
        Some("") => Some(0),
        Some(rest) => rest.strip_prefix('~')?.parse().ok(),
        None => None,
    }
}

/// The run `selector` names: `latest`, `latest~N`, an id, or the start of exactly one id.
pub(super) fn resolve_run(
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
    // Bound, not quoted: this statement is never printed.
    let sql = format!(
        "SELECT DISTINCT run_id FROM {table} WHERE starts_with(run_id, ?) ORDER BY run_id LIMIT 6"
    );
    let mut stmt = conn.prepare(&sql).map_err(sql_error)?;
    let ids: Vec<String> = stmt
        .query_map([selector], |row| row.get(0))
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
pub(super) fn latest_run(
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
        "SELECT run_id FROM {table} GROUP BY run_id ORDER BY min({time}) DESC, run_id LIMIT 1 OFFSET ?"
    );
    let mut stmt = conn.prepare(&sql).map_err(sql_error)?;
    let mut rows = stmt
        .query([i64::try_from(back).unwrap_or(i64::MAX)])
        .map_err(sql_error)?;
    match rows.next().map_err(sql_error)? {
        Some(row) => Ok(Some(row.get(0).map_err(sql_error)?)),
        None => Ok(None),
    }
}
