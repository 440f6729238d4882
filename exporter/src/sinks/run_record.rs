//! Keeps the run's ended processes in memory for what `run` shows when the command is done
//! (the summary on stderr, the job summary): no file to read back, whatever else is on.

use std::sync::{Arc, Mutex};

use super::{Report, Sink, SinkError};
use crate::analysis::run::Proc;

/// The processes recorded so far; shared with whoever reads them after the agent stopped.
pub type Recorded = Arc<Mutex<Vec<Proc>>>;

pub struct RunRecordSink {
    recorded: Recorded,
}

impl RunRecordSink {
    pub fn new(recorded: Recorded) -> Self {
        Self { recorded }
    }
}

impl Sink for RunRecordSink {
    fn name(&self) -> &'static str {
        "run record"
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        if let Report::Ended(p) = report {
            let proc = Proc::from(*p);
            self.recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(proc);
        }
        Ok(())
    }
}
