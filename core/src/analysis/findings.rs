//! A run's findings as the summaries read them, whether recorded in memory by `run` or loaded
//! from the `findings` dataset: most severe first, then in the order they were found.

use crate::event::Severity;

#[derive(Debug, Clone, PartialEq)]
pub struct Noted {
    /// When it was found (wall clock ns, the clock of [`super::run::Proc::start_ns`]).
    pub time_ns: i64,
    /// The process it is about; `None` for the run or the host.
    pub pid: Option<u32>,
    /// Its start (the clock of `time_ns`): with the pid, its row in [`super::run::RunView`].
    pub start_ns: Option<i64>,
    pub comm: String,
    pub kind: String,
    pub severity: Severity,
    pub summary: String,
    pub value: Option<f64>,
    pub unit: String,
    /// JSON object of the raw measurements.
    pub evidence: String,
}

/// Most severe first; equal severity in the order found.
pub fn sort(findings: &mut [Noted]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.time_ns.cmp(&b.time_ns))
            .then(a.pid.cmp(&b.pid))
    });
}
