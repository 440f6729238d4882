//! Answers as documents: the Markdown and HTML reports of one run, the comparison of two, and
//! the run as a Chrome trace for Perfetto. Each reads a run loaded from Parquet (or recorded by
//! `run`) and writes text.

pub mod chrome_trace;
pub mod compare;
pub mod curve;
pub mod history_chart;
pub mod html;

use crate::{
    config::HistorySection,
    present::markdown,
    query::{
        Data, QueryError,
        history::step_history,
        load::{LoadedRun, load_run, runs_by_root},
    },
};

/// The run `run` names in `data`, with its steps judged against their history.
fn load_judged(
    data: &Data,
    run: Option<&str>,
    history: &HistorySection,
) -> Result<LoadedRun, QueryError> {
    let mut loaded = load_run(data, run, "--run")?;
    // Without a history (data from before the history queries, no processes/), the report
    // is still made, and says why it tells nothing of usual times.
    match step_history(data, &loaded.view, history) {
        Ok(h) => {
            loaded.view = std::mem::take(&mut loaded.view)
                .with_slower(h.slower)
                .with_flaky(h.flaky);
            loaded.step_history = h.series;
            loaded.judge = history.into();
        }
        Err(e) => eprintln!("otel-pipetrace: note: no comparison with earlier runs: {e}"),
    }
    Ok(loaded)
}

/// The Markdown report of run `run` (`None`: the latest) in `data`.
pub fn markdown_report(
    data: &Data,
    run: Option<&str>,
    history: &HistorySection,
) -> Result<String, QueryError> {
    Ok(markdown::report(&load_judged(data, run, history)?.view))
}

/// The HTML report of run `run` (`None`: the latest) in `data`.
pub fn html_report(
    data: &Data,
    run: Option<&str>,
    history: &HistorySection,
) -> Result<String, ReportError> {
    Ok(html::report(&load_judged(data, run, history)?)?)
}

/// Why a page could not be made: the run could not be read, or the page not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Html(#[from] html::HtmlError),
    #[error("writing the trace: {0}")]
    Trace(#[from] serde_json::Error),
}

/// The run as Trace Event JSON.
pub fn chrome_trace_export(data: &Data, run: Option<&str>) -> Result<String, ReportError> {
    let loaded = load_run(data, run, "--run")?;
    Ok(chrome_trace::chrome_trace(&loaded)?)
}

/// What a run is compared with.
#[derive(Debug, Clone)]
pub enum Baseline {
    Run(String),
    /// The median of the last N earlier runs of the same root command.
    LastRuns(u32),
}

pub fn compare_runs(
    data: &Data,
    run: Option<&str>,
    baseline: &Baseline,
    thresholds: compare::Thresholds,
) -> Result<compare::Comparison, QueryError> {
    let current = load_run(data, run, "--run")?.view;
    let baselines = match baseline {
        Baseline::Run(selector) => vec![load_run(data, Some(selector), "--baseline")?.view],
        Baseline::LastRuns(n) => {
            let runs = runs_by_root(data)?;
            let step = runs
                .iter()
                .find(|(id, _)| *id == current.run_id)
                .map(|(_, step)| step.clone())
                .unwrap_or_default();
            // Newest first: the runs after the current one in this list started before it.
            let earlier: Vec<&String> = runs
                .iter()
                .skip_while(|(id, _)| *id != current.run_id)
                .skip(1)
                .filter(|(_, s)| *s == step)
                .map(|(id, _)| id)
                .take(*n as usize)
                .collect();
            if earlier.is_empty() {
                return Err(QueryError::Input(format!(
                    "--baseline-runs {n}: no earlier run of `{step}` in {} (`otel-pipetrace query runs` lists the runs)",
                    data.location.display()
                )));
            }
            earlier
                .into_iter()
                .map(|id| load_run(data, Some(id), "--baseline-runs").map(|l| l.view))
                .collect::<Result<_, _>>()?
        }
    };
    if baselines.iter().any(|b| b.run_id == current.run_id) {
        return Err(QueryError::Input(format!(
            "--baseline: run {} is the run being compared; name another (e.g. latest~1)",
            current.run_id
        )));
    }
    let refs: Vec<&crate::analysis::run::RunView> = baselines.iter().collect();
    Ok(compare::compare(&current, &refs, thresholds))
}
