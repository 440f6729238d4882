//! Keeps the run's ended processes in memory for what `run` shows when the command is done
//! (the summary on stderr, the job summary): no file to read back, whatever else is on.

use std::sync::{Arc, Mutex};

use super::{Report, Sink, SinkError};
use crate::{analysis::run::Proc, capture::clock::Clock};

/// The processes recorded so far; shared with whoever reads them after the agent stopped.
pub type Recorded = Arc<Mutex<Vec<Proc>>>;

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
}

impl Sink for RunRecordSink {
    fn name(&self) -> &'static str {
        "run record"
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        if let Report::Ended(p) = report {
            let mut proc = Proc::from(*p);
            proc.start_ns = self.wall_us(proc.start_ns);
            proc.end_ns = self.wall_us(proc.end_ns);
            proc.exec_ns = proc.exec_ns.map(|ns| self.wall_us(ns));
            self.recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(proc);
        }
        Ok(())
    }
}
