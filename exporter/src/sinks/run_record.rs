//! Keeps the run's ended processes and its findings in memory for what `run` shows when the
//! command is done (the summary on stderr, the job summary): no file to read back, whatever
//! else is on.

use std::sync::{Arc, Mutex};

use super::{Report, Sink, SinkError};
use crate::{
    analysis::{findings::Noted, run::Proc},
    capture::clock::Clock,
    event::Body,
};

/// What `run` shows at its end.
#[derive(Debug, Default)]
pub struct RunRecord {
    pub procs: Vec<Proc>,
    pub findings: Vec<Noted>,
    /// The processes' files added up (the summary's outputs and readers).
    pub files: crate::analysis::files::FilesTally,
}

/// The record so far; shared with whoever reads it after the agent stopped.
pub type Recorded = Arc<Mutex<RunRecord>>;

pub struct RunRecordSink {
    recorded: Recorded,
    clock: Clock,
}

impl RunRecordSink {
    pub fn new(recorded: Recorded, clock: Clock) -> Self {
        Self { recorded, clock }
    }

    /// Wall time at the microsecond, as DuckDB reads the Parquet timestamps: the job summary
    /// made from memory and `report` made from the files then show the same numbers.
    fn wall_us(&self, monotonic_ns: i64) -> i64 {
        (self.clock.unix_ns(monotonic_ns.max(0) as u64) / 1000 * 1000) as i64
    }

    fn record(&self) -> std::sync::MutexGuard<'_, RunRecord> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for RunRecordSink {
    fn name(&self) -> &'static str {
        "run record"
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        match report {
            Report::Ended(p) => {
                let mut proc = Proc::from(*p);
                if let Some(log) = p.files.as_deref() {
                    let step = proc.step_key.clone();
                    let facts = log.entries().map(|e| crate::analysis::files::FileFact {
                        step: step.clone(),
                        operation: e.op.name().to_owned(),
                        path: e.path,
                        target: e.target,
                        bytes: e.bytes,
                        count: e.count,
                        time_ns: e.first_ns as i64,
                    });
                    let mut record = self.record();
                    for fact in facts {
                        record.files.add(fact);
                    }
                }
                proc.start_ns = self.wall_us(proc.start_ns);
                proc.end_ns = self.wall_us(proc.end_ns);
                proc.exec_ns = proc.exec_ns.map(|ns| self.wall_us(ns));
                self.record().procs.push(proc);
            }
            Report::Event(ev) => {
                if let Body::Finding(f) = &ev.body {
                    let c = &ev.common;
                    let noted = Noted {
                        time_ns: self.wall_us(c.ktime_ns as i64),
                        pid: (c.tgid != 0).then_some(c.tgid),
                        start_ns: (c.tgid != 0).then(|| self.wall_us(c.start_ns as i64)),
                        comm: c.comm.clone(),
                        kind: f.kind.as_str().to_owned(),
                        severity: f.severity,
                        summary: f.summary.clone(),
                        value: Some(f.value),
                        unit: f.unit.to_owned(),
                        evidence: f.evidence_json(),
                    };
                    self.record().findings.push(noted);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
