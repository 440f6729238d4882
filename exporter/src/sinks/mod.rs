//! Outputs of the agent. Every sink gets every [`Report`] of the tracker in stream order and
//! keeps what it needs: a new sink is one `report` with a `match`, and a `flush`.

pub mod detached;
pub mod health;
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

/// Output files hold command lines: readable by their owner and group only.
pub const FILE_MODE: u32 = 0o640;
/// Directories the agent creates for its output.
pub const DIR_MODE: u32 = 0o750;

/// Creates (or truncates) an output file with [`FILE_MODE`].
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates a directory and its missing parents with [`DIR_MODE`] (existing ones are left as
/// they are).
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}
