//! `query fix-first`: the SQL's cost per step (time spent, failures, failure cost), with each
//! step's time on its runs' critical paths added here — computed by
//! [`crate::analysis::critical_path`] over the same runs' process trees, as `critical-path`
//! does for one run — and the rank of each step by each of the three.

use std::{collections::HashMap, sync::Arc};

use arrow::{
    array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array},
    compute::concat_batches,
};
use duckdb::Connection;

use super::{QueryError, sql_error};
use crate::analysis::critical_path::{critical_path, nodes_by_span};

/// The processes of the runs the SQL looked at, grouped by run: what the paths are made of.
const LOAD: &str = "SELECT r.pipeline, p.run_id, p.span_id, p.parent_span_id, \
    epoch_ns(p.start), epoch_ns(p.\"end\"), coalesce(p.step_key, p.command_line) \
    FROM processes p \
    JOIN (SELECT DISTINCT pipeline, run_id FROM step_runs(getvariable('lookback_runs'))) r \
    USING (run_id) ORDER BY p.run_id";

struct Row {
    pipeline: String,
    run_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    start_ns: i64,
    end_ns: i64,
    step: String,
}

/// Seconds on the critical path per (pipeline, step), over every run loaded.
fn critical_seconds(conn: &Connection) -> Result<HashMap<(String, String), f64>, QueryError> {
    let mut stmt = conn.prepare(LOAD).map_err(sql_error)?;
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok(Row {
                pipeline: r.get(0)?,
                run_id: r.get(1)?,
                span_id: r.get(2)?,
                parent_span_id: r.get(3)?,
                start_ns: r.get(4)?,
                end_ns: r.get(5)?,
                step: r.get(6)?,
            })
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let mut out: HashMap<(String, String), f64> = HashMap::new();
    for run in rows.chunk_by(|a, b| a.run_id == b.run_id) {
        let nodes = nodes_by_span(run.iter().map(|r| {
            (
                r.span_id.as_str(),
                r.parent_span_id.as_deref(),
                r.start_ns,
                r.end_ns,
            )
        }));
        for s in critical_path(&nodes) {
            let r = &run[s.node];
            *out.entry((r.pipeline.clone(), r.step.clone())).or_default() +=
                (s.end_ns - s.start_ns) as f64 / 1e9;
        }
    }
    Ok(out)
}

/// 1 for the largest value, ties sharing a rank; no cost, no rank.
fn ranks(values: &[f64]) -> Vec<Option<u32>> {
    values
        .iter()
        .map(|v| (*v > 0.0).then(|| 1 + values.iter().filter(|w| *w > v).count() as u32))
        .collect()
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, QueryError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| QueryError::Sql(format!("fix-first: no text column {name}")))
}

fn floats<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Float64Array, QueryError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
        .ok_or_else(|| QueryError::Sql(format!("fix-first: no number column {name}")))
}

/// The SQL's rows (`batches`) with `critical_s` and the three ranks added.
pub fn with_critical_path(
    conn: &Connection,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let error = |e: arrow::error::ArrowError| QueryError::Sql(e.to_string());
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let batch = concat_batches(&first.schema(), &batches).map_err(error)?;
    let critical = critical_seconds(conn)?;
    let (pipelines, steps) = (strings(&batch, "pipeline")?, strings(&batch, "step")?);
    let critical_s: Vec<f64> = (0..batch.num_rows())
        .map(|i| {
            let key = (pipelines.value(i).to_owned(), steps.value(i).to_owned());
            (critical.get(&key).copied().unwrap_or(0.0) * 1e6).round() / 1e6
        })
        .collect();
    let column = |name: &str| -> Result<Vec<f64>, QueryError> {
        let a = floats(&batch, name)?;
        Ok((0..a.len()).map(|i| a.value(i)).collect())
    };
    let by_time = ranks(&column("total_s")?);
    let by_failure = ranks(&column("failure_cost_s")?);
    let by_critical = ranks(&critical_s);
    let mut fields: Vec<(String, ArrayRef)> = Vec::new();
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        fields.push((field.name().clone(), array.clone()));
        if field.name() == "mean_s" {
            fields.push((
                "critical_path_s".into(),
                Arc::new(Float64Array::from(critical_s.clone())),
            ));
        }
    }
    fields.extend([
        (
            "rank_time".to_owned(),
            Arc::new(UInt32Array::from(by_time)) as ArrayRef,
        ),
        (
            "rank_critical_path".to_owned(),
            Arc::new(UInt32Array::from(by_critical)),
        ),
        (
            "rank_failure_cost".to_owned(),
            Arc::new(UInt32Array::from(by_failure)),
        ),
    ]);
    Ok(vec![RecordBatch::try_from_iter(fields).map_err(error)?])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_largest_ranks_first_and_ties_share() {
        assert_eq!(
            super::ranks(&[3.0, 9.0, 3.0, 0.0]),
            [Some(2), Some(1), Some(2), None]
        );
    }
}
