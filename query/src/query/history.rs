//! A run's steps against their history in the Parquet record, for the reports and `compare
//! --baseline-runs`: each step's earlier durations in the same pipeline (from `step_runs`),
//! judged with the rule of `query regressions`.

use std::collections::BTreeMap;

use super::{History, QueryError, Request, open, quote, sql_error, views};
use crate::{
    analysis::{
        history::{Judge, SlowerStep},
        run::RunView,
        steps::{per_step, pipeline},
    },
    config::HistorySection,
    query::Data,
};

/// Each step of `pipeline`'s runs, oldest first: `(step, run id, duration)`, up to and
/// including run `until`.
fn step_durations(
    data: &Data,
    history: &HistorySection,
    pipeline: &str,
) -> Result<Vec<(String, String, f64)>, QueryError> {
    let conn = open()?;
    let statement = format!(
        "SELECT step, run_id, duration_s FROM step_runs(getvariable('lookback_runs')) \
         WHERE pipeline = {} ORDER BY step, started, run_id",
        quote(pipeline)
    );
    let request = Request {
        name: "sql".into(),
        sql: Some(statement.clone()),
        data: data.location.clone(),
        run: Some("all".into()),
        format: super::Format::Json,
        limit: None,
        min_duration_s: None,
        scope: data.scope.clone(),
        history: History {
            judge: history.clone(),
            ..History::default()
        },
    };
    views(&conn, &request, &statement)?;
    let mut stmt = conn.prepare(&statement).map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    Ok(rows)
}

/// The steps of `run` slower than usual against the earlier runs of its pipeline in `data`.
pub fn slower_steps(
    data: &Data,
    run: &RunView,
    history: &HistorySection,
) -> Result<Vec<SlowerStep>, QueryError> {
    let Some(pipeline) = pipeline(run) else {
        return Ok(Vec::new());
    };
    let mut by_step: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for (step, run_id, d) in step_durations(data, history, pipeline)? {
        by_step.entry(step).or_default().push((run_id, d));
    }
    let judge = Judge::from(history);
    let mut slower = Vec::new();
    for (key, stats) in per_step(run) {
        let Some(runs) = by_step.get(&key) else {
            continue;
        };
        // Up to this run: a report of an older run is judged as it was then.
        let Some(at) = runs.iter().position(|(id, _)| *id == run.run_id) else {
            continue;
        };
        let runs = &runs[..=at];
        let durations: Vec<f64> = runs.iter().map(|r| r.1).collect();
        if let Some(s) = judge.newest(&durations) {
            slower.push(SlowerStep {
                step: key,
                duration_s: stats.duration_s,
                baseline: s.baseline,
                since_run: runs[s.since].0.clone(),
                runs_since: runs.len() - s.since,
            });
        }
    }
    Ok(slower)
}
