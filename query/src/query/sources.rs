//! Where the data is: the Parquet files of each dataset under a directory (each checked to be
//! Parquet and ours), a single file, or a bucket's objects.

use std::path::{Path, PathBuf};

use duckdb::Connection;

use super::{QueryError, error::permission_denied, reason_only, s3};
use crate::datasets::{self, CONNECTIONS, EVENTS, FILES, FINDINGS, PROCESSES, Table};

/// Where each dataset is read from: a glob, a file, or nothing.
#[derive(Debug, Default)]
pub(super) struct Sources {
    pub events: Option<String>,
    pub processes: Option<String>,
    pub connections: Option<String>,
    pub findings: Option<String>,
    pub files: Option<String>,
    /// Objects in a bucket, with `host=`/`date=` partitions.
    pub hive: bool,
}

pub(super) fn find_sources(conn: &Connection, data: &Path) -> Result<Sources, QueryError> {
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
        (FINDINGS, &mut sources.findings, datasets::findings()),
        (FILES, &mut sources.files, datasets::files()),
    ] {
        let dir = data.join(dataset);
        let files = parquet_files(&dir)?;
        if files.is_empty() {
            continue;
        }
        let glob = format!("{}/**/*.parquet", dir.to_string_lossy());
        // Every file's columns in one pass over the footers; a file it cannot read (not
        // Parquet, truncated) is then found and named by checking each alone.
        let columns = columns_by_file(conn, &glob).unwrap_or_default();
        for file in &files {
            let name = file.to_string_lossy().into_owned();
            let have = match columns.get(&name) {
                Some(have) => have.clone(),
                None => column_names(conn, &name)?,
            };
            let missing = missing_columns(&have, table);
            if !missing.is_empty() {
                return Err(QueryError::Input(format!(
                    "{name}: not an otel-pipetrace {dataset} file (missing columns: {})",
                    missing.join(", ")
                )));
            }
        }
        *slot = Some(glob);
    }
    if sources.events.is_none() && sources.processes.is_none() {
        return Err(QueryError::Input(format!(
            "{shown}: no Parquet data (expected {shown}/processes/*.parquet and {shown}/events/*.parquet, written by `otel-pipetrace run` or the daemon)"
        )));
    }
    Ok(sources)
}

/// The datasets' objects in a bucket (one LIST each).
pub(super) fn bucket_sources(
    conn: &Connection,
    url: &str,
    host: Option<&str>,
) -> Result<Sources, QueryError> {
    let mut sources = Sources {
        hive: true,
        ..Default::default()
    };
    for (dataset, slot) in [
        (EVENTS, &mut sources.events),
        (PROCESSES, &mut sources.processes),
        (CONNECTIONS, &mut sources.connections),
        (FINDINGS, &mut sources.findings),
        (FILES, &mut sources.files),
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

/// The column names of every file `glob` matches, by file; an error when one cannot be read.
fn columns_by_file(
    conn: &Connection,
    glob: &str,
) -> Result<std::collections::HashMap<String, Vec<String>>, duckdb::Error> {
    let mut stmt =
        conn.prepare("SELECT file_name, list(name) FROM parquet_schema(?) GROUP BY ALL")?;
    let rows = stmt.query_map([glob], |r| {
        let names: duckdb::types::Value = r.get(1)?;
        let names = match names {
            duckdb::types::Value::List(items) => items
                .into_iter()
                .filter_map(|v| match v {
                    duckdb::types::Value::Text(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok((r.get::<_, String>(0)?, names))
    })?;
    rows.collect()
}

fn column_names(conn: &Connection, source: &str) -> Result<Vec<String>, QueryError> {
    check_parquet_file(Path::new(source))?;
    let mut stmt = conn
        .prepare("SELECT * FROM read_parquet(?, union_by_name = true) LIMIT 0")
        .map_err(|e| QueryError::Input(format!("{source}: {}", reason_only(&e.to_string()))))?;
    let arrow = stmt
        .query_arrow([source])
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
