//! Counters of what the agent saw and lost, shared between stages and reported at exit.

use std::sync::atomic::{AtomicU64, Ordering};

/// User-space counters (the kernel keeps its own in the `COUNTERS` map).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the ring buffer.
    pub records_read: AtomicU64,
    /// Records that failed to decode (a bug or a version skew: never expected).
    pub decode_errors: AtomicU64,
    /// Events dropped because the tracker queue was full.
    pub queue_dropped: AtomicU64,
    /// Sink write failures.
    pub sink_errors: AtomicU64,
    /// Sampling rounds run, and rounds that failed to run.
    pub sample_rounds: AtomicU64,
    pub sample_failures: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The kernel's counters, summed over CPUs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelCounters {
    pub ring_full: u64,
    pub track_full: u64,
    pub emitted: u64,
    pub hidden: u64,
}

/// Every loss, from the kernel to the sinks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Losses {
    /// Records the kernel could not write (ring buffer full).
    pub ring_full: u64,
    /// Processes the kernel could not track (map full): their subtree is missing.
    pub untracked: u64,
    /// Events dropped between reader and tracker.
    pub queue_full: u64,
    /// Records that did not decode.
    pub decode_errors: u64,
}

impl Losses {
    pub fn new(kernel: KernelCounters, stats: &Stats) -> Self {
        Self {
            ring_full: kernel.ring_full,
            untracked: kernel.track_full,
            queue_full: Stats::get(&stats.queue_dropped),
            decode_errors: Stats::get(&stats.decode_errors),
        }
    }
    pub fn total(&self) -> u64 {
        self.ring_full + self.untracked + self.queue_full + self.decode_errors
    }
}
