//! Outputs of the agent. Each sink gets every event in stream order and every process when it
//! ends; one file per sink.

pub mod aggregates;
pub mod jsonl;
pub mod metrics;
pub mod otlp;
pub mod otlp_metrics;
pub mod parquet;

use crate::{
    decode::{Event, Memory, Sample},
    spans::RunSpan,
    tracker::Process,
};

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
    fn event(&mut self, event: &Event) -> Result<(), SinkError>;
    fn process_ended(&mut self, _process: &Process) -> Result<(), SinkError> {
        Ok(())
    }
    /// A process started while traced (its first event went through `event` just before).
    fn process_started(&mut self, _process: &Process) {}
    /// A process's resident memory moved by a step (its memory event went through `event`).
    fn memory_changed(&mut self, _process: &Process, _memory: &Memory) {}
    /// A live process was sampled (its sample event went through `event` just before).
    fn sampled(&mut self, _process: &Process, _sample: &Sample) {}
    /// A process of the run that outlived the grace period.
    fn still_running(&mut self, _process: &Process, _now_ns: u64) -> Result<(), SinkError> {
        Ok(())
    }
    /// The run (run mode) is over: its summary, once, after every process.
    fn run_ended(&mut self, _run: &RunSpan) -> Result<(), SinkError> {
        Ok(())
    }
    /// Called after every burst of events, and once a second when the stream is quiet.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// The agent stops: write out everything.
    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
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

/// Signal names for the common signals (Linux numbering).
pub fn signal_name(sig: i32) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|n| !n.is_empty())
}
