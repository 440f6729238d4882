use super::{Activity, Usage};

/// The process's resident memory moved by more than the configured step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_bytes: u64,
    pub previous_bytes: u64,
}

impl Memory {
    /// An allocation (RSS grew) rather than a release.
    pub fn grew(&self) -> bool {
        self.rss_bytes >= self.previous_bytes
    }
}

/// One live thread of a traced process in a sampling round (summed by the tracker), as the
/// kernel sent it.
pub use exporter_common::SampleTail as ThreadSample;

/// A live process at a sampling round: its CPU time so far and its resident memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub rss_bytes: u64,
    /// Live threads.
    pub threads: u32,
    /// Time its live threads spent runnable but waiting for a CPU so far, ns (threads that
    /// exited take theirs with them): what a busy machine costs the process.
    pub run_delay_ns: u64,
    /// The group's I/O, faults, switches and network use so far (threads that exited
    /// included).
    pub activity: Activity,
}

impl Sample {
    /// The CPU part as a [`Usage`] (no peak).
    pub fn usage(&self) -> Usage {
        Usage {
            cpu_user_ns: self.cpu_user_ns,
            cpu_system_ns: self.cpu_system_ns,
            peak_rss_bytes: 0,
        }
    }
}
