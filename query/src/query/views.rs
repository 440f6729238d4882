//! The views every query reads: `events`, `processes` and `connections` over the sources (older
//! files' missing columns filled with typed NULLs, the rows in scope), their `run_` views over
//! the selected run, and the `signal_name` macro. As SQL text: `--print-sql` shows it whole.

use duckdb::Connection;

use super::{
    QueryError, Request,
    error::sql_error,
    quote, reason_only,
    request::{STEP_RUNS, STEP_RUNS_SQL},
    runs::{latest_offset, latest_run, resolve_run, valid_run_id},
    s3,
    sources::{bucket_sources, find_sources},
};
use crate::{
    datasets::{self, CONNECTIONS, EVENTS, FILES, FINDINGS, Table},
    event::signal_name,
};

/// The SQL that defines the views for `request` (after checking the data); `uses` is the SQL
/// that will run: views of datasets it does not read are not made (over a bucket, making a
/// view reads every object's footer).
pub(super) fn views(
    conn: &Connection,
    request: &Request,
    uses: &str,
) -> Result<String, QueryError> {
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
    let history = mentions(uses, STEP_RUNS);
    if history && sources.processes.is_none() {
        return Err(QueryError::Input(format!(
            "query {}: the history queries read processes/ and {} has none",
            request.name,
            request.data.display()
        )));
    }
    let findings = mentions(uses, FINDINGS);
    let files = mentions(uses, FILES);
    // A footer read once per query, not once per scan of the dataset (the history queries
    // scan the processes more than once; over a bucket each read is a request).
    let mut sql = "SET parquet_metadata_cache = true;\n".to_owned() + &signal_name_macro();
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
    // Always there when asked for: a run without findings has no files.
    if findings {
        sql.push_str(
            &view(
                datasets::findings(),
                sources.findings.as_deref(),
                hive,
                &scope.condition("time", hive),
            )
            .unwrap_or_else(|| empty_view(datasets::findings())),
        );
    }
    // Always there when asked for: a run with file recording off has no files.
    if files {
        sql.push_str(&request.files.variables());
        sql.push_str(
            &view(
                datasets::files(),
                sources.files.as_deref(),
                hive,
                &scope.condition("time", hive),
            )
            .unwrap_or_else(|| empty_view(datasets::files())),
        );
    }
    if history {
        sql.push_str(&request.history.variables());
        sql.push_str(STEP_RUNS_SQL.trim_end());
        sql.push_str(";\n");
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
    if findings {
        filters.push_str(&filter(FINDINGS));
    }
    if files {
        filters.push_str(&filter(FILES));
    }
    conn.execute_batch(&filters).map_err(sql_error)?;
    Ok(printed + &sql + &filters)
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

/// Does `sql` read `table` (or its `run_` view).
fn mentions(sql: &str, table: &str) -> bool {
    sql.match_indices(table).any(|(at, _)| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let before = sql[..at].trim_end_matches("run_");
        let after = &sql[at + table.len()..];
        !before.ends_with(word) && !after.starts_with(word)
    })
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
