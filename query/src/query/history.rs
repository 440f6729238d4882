//! A run's steps against their history in the Parquet record, for the reports and `compare
//! --baseline-runs`: each step's earlier durations in the same pipeline (from `step_runs`),
//! judged with the rule of `query regressions`.

use std::collections::BTreeMap;

use super::{History, QueryError, Request, open, quote, sql_error, views};
use crate::{
    analysis::{
        history::{FlakyStep, Judge, SlowerStep, StepRun, judge_run},
        run::RunView,
        steps::{per_step, pipeline},
    },
    config::HistorySection,
    query::Data,
};

/// Each step of `pipeline`'s runs, oldest first: `(step, run)`.
fn step_runs(
    data: &Data,
    history: &HistorySection,
    pipeline: &str,
) -> Result<Vec<(String, StepRun)>, QueryError> {
    let conn = open()?;
    let statement = format!(
        "SELECT step, run_id, duration_s, failed > 0, revision \
         FROM step_runs(getvariable('lookback_runs')) \
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
        files: Default::default(),
    };
    views(&conn, &request, &statement)?;
    let mut stmt = conn.prepare(&statement).map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                StepRun {
                    run_id: r.get(1)?,
                    duration_s: r.get(2)?,
                    failed: r.get(3)?,
                    revision: r.get(4)?,
                },
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    Ok(rows)
}

/// A run's steps against the earlier runs of its pipeline in `data`.
pub struct StepHistory {
    pub slower: Vec<SlowerStep>,
    pub flaky: Vec<FlakyStep>,
    /// Each step's durations up to this run, oldest first: `(run id, seconds)`.
    pub series: BTreeMap<String, Vec<(String, f64)>>,
}

/// The steps of `run` against the earlier runs of its pipeline in `data` (a report of an
/// older run is judged as it was then: the runs after it are left out).
pub fn step_history(
    data: &Data,
    run: &RunView,
    history: &HistorySection,
) -> Result<StepHistory, QueryError> {
    let Some(pipeline) = pipeline(run) else {
        return Ok(StepHistory {
            slower: Vec::new(),
            flaky: Vec::new(),
            series: BTreeMap::new(),
        });
    };
    let mut histories: BTreeMap<String, Vec<StepRun>> = BTreeMap::new();
    for (step, r) in step_runs(data, history, pipeline)? {
        histories.entry(step).or_default().push(r);
    }
    histories.retain(
        |_, runs| match runs.iter().position(|r| r.run_id == run.run_id) {
            Some(at) => {
                runs.truncate(at + 1);
                true
            }
            None => false,
        },
    );
    let (slower, flaky) = judge_run(&per_step(run), &histories, &Judge::from(history));
    let series = histories
        .into_iter()
        .map(|(k, runs)| {
            (
                k,
                runs.into_iter().map(|r| (r.run_id, r.duration_s)).collect(),
            )
        })
        .collect();
    Ok(StepHistory {
        slower,
        flaky,
        series,
    })
}
