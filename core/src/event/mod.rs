//! What the agent knows about a process, as the kernel reported it: one [`Event`] per fork,
//! exec, exit, memory step, connection or sample. `capture` decodes ring-buffer records into
//! these; every later stage (the tracker, the sinks, the datasets, the answers) reads them.

mod activity;
mod connection;
mod container;
mod exit;
mod file;
mod finding;
mod sample;

pub use activity::Activity;
pub use connection::Connection;
pub use container::{Container, container_of};
pub use exit::{Exit, Usage, signal_name};
pub use file::{FileAccess, FileOp, errno_name, normalize, open_flags_text};
pub use finding::{Finding, FindingKind, Involved, Severity};
pub use sample::{Memory, Sample, ThreadSample};

/// Fields every event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub flags: u16,
    /// CLOCK_MONOTONIC ns of the event.
    pub ktime_ns: u64,
    /// Process start, CLOCK_MONOTONIC ns: `(tgid, start_ns)` identifies a process.
    pub start_ns: u64,
    pub parent_start_ns: u64,
    pub cgroup_id: u64,
    pub tgid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub tree_ppid: u32,
    pub uid: u32,
    pub comm: String,
}

impl Common {
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// A process `tgid` (child of pid 1) that started at `start_ns`, at time `ktime_ns`.
    #[cfg(any(test, feature = "examples"))]
    pub fn sample(tgid: u32, start_ns: u64, ktime_ns: u64, comm: &str) -> Self {
        Self {
            flags: 0,
            ktime_ns,
            start_ns,
            parent_start_ns: 0,
            cgroup_id: 0,
            tgid,
            tid: tgid,
            ppid: 1,
            tree_ppid: 1,
            uid: 0,
            comm: comm.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Executable file of the new image (symlinks resolved; the interpreter for a script).
    pub exe: Option<String>,
    pub cwd: Option<String>,
    /// Path as passed to execve.
    pub filename: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// Full argv size in bytes, even when truncated.
    pub argv_total_bytes: u32,
    /// The process now runs a deny-listed executable: drop it from the tree.
    pub hidden: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Fork,
    Exec(Box<Exec>),
    Exit(Exit),
    Memory(Memory),
    Connection(Connection),
    /// A file operation (kept per process by the tracker, not reported one by one).
    File(Box<FileAccess>),
    /// From the kernel: one thread's share of a sample.
    ThreadSample(ThreadSample),
    /// From the kernel: the sampling round (session) is complete.
    SampleEnd(u64),
    /// From the tracker: a process's sample, its threads summed.
    Sample(Sample),
    /// From the diagnosis: a verdict about this process (pid 0: about the run or the host).
    Finding(std::sync::Arc<Finding>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub common: Common,
    pub body: Body,
}

impl Event {
    /// An event of process `tgid` (see [`Common::sample`]), for tests.
    #[cfg(any(test, feature = "examples"))]
    pub fn sample(tgid: u32, body: Body) -> Self {
        Self {
            common: Common::sample(tgid, 1_000_000_000, 1_500_000_000, "cc\"x"),
            body,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.body {
            Body::Fork => "fork",
            Body::Exec(_) => "exec",
            Body::Exit(_) => "exit",
            Body::Memory(m) if m.grew() => "memory_alloc",
            Body::Memory(_) => "memory_release",
            Body::Connection(_) => "connection",
            Body::File(_) => "file",
            Body::ThreadSample(_) => "thread_sample",
            Body::SampleEnd(_) => "sample_end",
            Body::Sample(_) => "sample",
            Body::Finding(_) => "finding",
        }
    }
}
