//! A run's steps: its processes with the same step key, together — what `compare` sets side
//! by side and the history judges run against run (the SQL twin is `step_runs` in
//! query/src/query/sql/step-runs.sql).

use std::collections::BTreeMap;

use super::run::RunView;

/// One step in one run (or the median over several): its processes together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepStats {
    pub processes: u32,
    /// The processes' durations added up.
    pub duration_s: f64,
    pub cpu_s: Option<f64>,
    pub peak_rss_bytes: Option<i64>,
    /// Bytes read and written at the storage layer, and sent and received over the network,
    /// by the step's processes (None: not measured).
    pub storage_bytes: Option<i64>,
    pub network_bytes: Option<i64>,
    /// Processes of the step that failed (its own ending, absorbed by its parent or not: a
    /// step that starts to exit non-zero is news between runs even where the pipeline
    /// ignores it).
    pub failed: u32,
    /// A command of the step, as it ran.
    pub command: String,
}

/// The steps of `run` by step key.
pub fn per_step(run: &RunView) -> BTreeMap<String, StepStats> {
    let mut steps: BTreeMap<String, StepStats> = BTreeMap::new();
    for p in &run.procs {
        let s = steps.entry(p.step_key.clone()).or_default();
        s.processes += 1;
        s.duration_s += p.duration_ns() as f64 / 1e9;
        if let Some(c) = p.cpu_s() {
            *s.cpu_s.get_or_insert(0.0) += c;
        }
        if let Some(b) = p.peak_rss_bytes {
            s.peak_rss_bytes = Some(s.peak_rss_bytes.map_or(b, |m| m.max(b)));
        }
        if let Some(b) = p.traffic.storage() {
            *s.storage_bytes.get_or_insert(0) += b;
        }
        if let Some(b) = p.traffic.network() {
            *s.network_bytes.get_or_insert(0) += b;
        }
        if p.status.is_failure() {
            s.failed += 1;
        }
        if s.command.is_empty() {
            s.command = p.command.clone();
        }
    }
    steps
}

/// The run's pipeline: the step key of its first process (the command `run` ran).
pub fn pipeline(run: &RunView) -> Option<&str> {
    run.roots().first().map(|&i| run.procs[i].step_key.as_str())
}
