//! Outputs of the agent. Every sink gets every [`Report`] of the tracker in stream order and
//! keeps what it needs: a new sink is one `report` with a `match`, and a `flush`.

pub mod detached;
pub use pipetrace_core::health;
pub mod jsonl;
pub mod metrics;
pub mod otlp;
pub mod parquet;
pub mod run_record;

pub use crate::process::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    /// Something happened; kinds the sink does not use are ignored.
    fn report(&mut self, report: &Report) -> Result<(), SinkError>;
    /// After every burst of reports, and once a second when the stream is quiet: write what
    /// is due.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// The agent is about to stop: called on every sink before any is closed, so that the
    /// ones on threads of their own finish their last writes at the same time.
    fn closing(&mut self) {}
    /// The agent stops: write out everything.
    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
    /// What a file output kept and lost, shared with the summary and the metrics.
    fn health(&self) -> Option<std::sync::Arc<health::OutputHealth>> {
        None
    }
}

pub use pipetrace_core::files::{DIR_MODE, FILE_MODE, create_private_dir, create_private_file};
