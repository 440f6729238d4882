//! Counters of what the agent saw and lost, shared between stages and reported at exit.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

/// Processes remembered at most between two bursts of the tracker as having lost an event on
/// the queue; past that only the count grows.
const MAX_DROPPED_PROCESSES: usize = 65_536;

/// User-space counters (the kernel keeps its own in the `COUNTERS` map).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the ring buffer.
    pub records_read: AtomicU64,
    /// Events the tracker and the sinks are done with (what sampling rounds are paced to).
    pub records_routed: AtomicU64,
    /// The longest an event waited between the kernel and the tracker, ns: what a stalled
    /// tracker (or output in its path) shows first.
    pub route_lag_max_ns: AtomicU64,
    /// Records that failed to decode (a bug or a version skew: never expected).
    pub decode_errors: AtomicU64,
    /// Events dropped because the tracker queue was full.
    pub queue_dropped: AtomicU64,
    /// Sampling rounds run, and rounds that failed to run.
    pub sample_rounds: AtomicU64,
    pub sample_failures: AtomicU64,
    /// `(tgid, start_ns)` of processes whose event was dropped on the full queue: the tracker
    /// marks them incomplete.
    dropped_processes: Mutex<Vec<(u32, u64)>>,
    /// `dropped_processes` has entries: the tracker takes the lock only then.
    dropped_pending: AtomicBool,
}

impl Stats {
    /// An event of process `(tgid, start_ns)` was dropped on the full queue.
    pub fn dropped_event_of(&self, tgid: u32, start_ns: u64) {
        Self::add(&self.queue_dropped, 1);
        if let Ok(mut v) = self.dropped_processes.lock()
            && v.len() < MAX_DROPPED_PROCESSES
        {
            v.push((tgid, start_ns));
            self.dropped_pending.store(true, Ordering::Release);
        }
    }

    /// The processes of dropped events since the last call.
    pub fn take_dropped_processes(&self) -> Vec<(u32, u64)> {
        if !self.dropped_pending.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        self.dropped_processes
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

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
