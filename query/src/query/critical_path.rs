//! `query critical-path`: the run's processes read with SQL, the path computed by
//! [`crate::analysis::critical_path`], one row per segment.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use duckdb::Connection;

use super::{QueryError, sql_error};
use crate::analysis::critical_path::{critical_path, nodes_by_span};

struct Row {
    span_id: String,
    parent_span_id: Option<String>,
    start_ns: i64,
    end_ns: i64,
    pid: u32,
    binary: String,
    status: String,
    command: String,
    duration_s: f64,
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Runs `load` (the rows of `sql/critical-path.sql`) and returns the path's segments, in time
/// order per root, at most `limit`.
pub fn batches(
    conn: &Connection,
    load: &str,
    limit: Option<u64>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let mut stmt = conn.prepare(load).map_err(sql_error)?;
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok(Row {
                span_id: r.get(0)?,
                parent_span_id: r.get(1)?,
                start_ns: r.get(2)?,
                end_ns: r.get(3)?,
                pid: r.get(4)?,
                binary: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                status: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                command: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                duration_s: r.get::<_, Option<f64>>(8)?.unwrap_or_default(),
            })
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let nodes = nodes_by_span(rows.iter().map(|r| {
        (
            r.span_id.as_str(),
            r.parent_span_id.as_deref(),
            r.start_ns,
            r.end_ns,
        )
    }));
    // Each segment's root: its share is of that root's wall time.
    let root_of = |mut i: usize| {
        while let Some(p) = nodes[i].parent {
            i = p;
        }
        i
    };
    let mut segments = critical_path(&nodes);
    segments.truncate(limit.map_or(usize::MAX, |n| n as usize));
    let mut step = Vec::new();
    let mut pid = Vec::new();
    let mut binary = Vec::new();
    let mut start = Vec::new();
    let mut duration = Vec::new();
    let mut share = Vec::new();
    let mut process_duration = Vec::new();
    let mut status = Vec::new();
    let mut command = Vec::new();
    for (n, s) in segments.iter().enumerate() {
        let r = &rows[s.node];
        let root = nodes[root_of(s.node)];
        let wall = (root.end_ns - root.start_ns).max(1) as f64;
        step.push(n as u32 + 1);
        pid.push(r.pid);
        binary.push(r.binary.clone());
        start.push(round6((s.start_ns - root.start_ns) as f64 / 1e9));
        duration.push(round6((s.end_ns - s.start_ns) as f64 / 1e9));
        share.push(((s.end_ns - s.start_ns) as f64 / wall * 1000.0).round() / 10.0);
        process_duration.push(round6(r.duration_s));
        status.push(r.status.clone());
        command.push(r.command.clone());
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("step", Arc::new(UInt32Array::from(step))),
        ("pid", Arc::new(UInt32Array::from(pid))),
        ("binary", Arc::new(StringArray::from(binary))),
        ("start_s", Arc::new(Float64Array::from(start))),
        ("duration_s", Arc::new(Float64Array::from(duration))),
        ("share_percent", Arc::new(Float64Array::from(share))),
        (
            "process_duration_s",
            Arc::new(Float64Array::from(process_duration)),
        ),
        ("status", Arc::new(StringArray::from(status))),
        ("command", Arc::new(StringArray::from(command))),
    ];
    let batch = RecordBatch::try_from_iter(columns).map_err(|e| QueryError::Sql(e.to_string()))?;
    Ok(vec![batch])
}
