//! What each file output kept and lost. A failed write is a loss like a dropped event: the
//! rows it held wait for a retry (within a memory budget), the ones given up are counted, and
//! the first failure is described once — for the summary line, the daemon's stop line and the
//! self-metrics, never as a log line per write.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Why a write failed, in the words a person looks for.
pub fn reason(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => "disk full",
        Some(libc::EDQUOT) => "quota exceeded",
        Some(libc::EROFS) => "read-only file system",
        Some(libc::EACCES | libc::EPERM) => "permission denied",
        Some(libc::ENOENT | libc::ENOTDIR) => "directory missing",
        Some(libc::EPIPE) => "reader gone",
        Some(libc::EIO) => "I/O error",
        // Errors that carry only their kind (wrapped by a library).
        _ => match e.kind() {
            std::io::ErrorKind::BrokenPipe => "reader gone",
            std::io::ErrorKind::StorageFull => "disk full",
            std::io::ErrorKind::QuotaExceeded => "quota exceeded",
            std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system",
            std::io::ErrorKind::PermissionDenied => "permission denied",
            std::io::ErrorKind::NotFound => "directory missing",
            _ => "write error",
        },
    }
}

/// The counters of one output, shared with whoever reports them.
#[derive(Debug)]
pub struct OutputHealth {
    /// `parquet`, `jsonl`.
    pub sink: &'static str,
    /// The directory, file or `stdout` it writes to.
    pub target: String,
    /// What its headline count counts (`processes`, `lines`).
    pub unit: &'static str,
    /// Headline rows handed to the output, written, and given up.
    received: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    /// Every row (all datasets) written and given up, for the metrics.
    rows_written: AtomicU64,
    rows_dropped: AtomicU64,
    /// Failed writes by reason.
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// `disk full: /data/pq/processes`: the first failure, said once.
    first_failure: Mutex<Option<String>>,
    /// Reports waiting in the queue to the output's thread.
    queued: AtomicU64,
    /// Headline rows dropped because that queue was full.
    overflowed: AtomicU64,
    /// How long the agent waited, when it stopped, before it gave up on the last writes.
    gave_up_after: Mutex<Option<Duration>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSnapshot {
    pub sink: &'static str,
    pub target: String,
    pub unit: &'static str,
    pub received: u64,
    pub written: u64,
    pub dropped: u64,
    pub rows_written: u64,
    pub rows_dropped: u64,
    pub failures: BTreeMap<&'static str, u64>,
    pub first_failure: Option<String>,
    pub queued: u64,
    pub overflowed: u64,
    pub gave_up_after: Option<Duration>,
}

impl OutputHealth {
    pub fn new(sink: &'static str, target: impl Into<String>, unit: &'static str) -> Self {
        Self {
            sink,
            target: target.into(),
            unit,
            received: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            rows_dropped: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            first_failure: Mutex::new(None),
            queued: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            gave_up_after: Mutex::new(None),
        }
    }

    pub fn set_queued(&self, reports: u64) {
        self.queued.store(reports, Ordering::Relaxed);
    }

    /// Headline rows (also counted as dropped) the full queue turned away.
    pub fn overflowed(&self, headline: u64) {
        self.overflowed.fetch_add(headline, Ordering::Relaxed);
    }

    /// The agent stopped before the output's last writes were done.
    pub fn gave_up(&self, after: Duration) {
        if let Ok(mut g) = self.gave_up_after.lock() {
            *g = Some(after);
        }
        tracing::warn!(
            "{} output: its last writes did not finish within output.close_timeout ({})",
            self.sink,
            humantime_serde::re::humantime::format_duration(after)
        );
    }

    pub fn received(&self, headline: u64) {
        self.received.fetch_add(headline, Ordering::Relaxed);
    }

    pub fn written(&self, headline: u64, rows: u64) {
        self.written.fetch_add(headline, Ordering::Relaxed);
        self.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn dropped(&self, headline: u64, rows: u64) {
        self.dropped.fetch_add(headline, Ordering::Relaxed);
        self.rows_dropped.fetch_add(rows, Ordering::Relaxed);
    }

    /// A write failed: counted by reason; the first one is kept to be said.
    pub fn failed(&self, e: &std::io::Error, path: &str) {
        let why = reason(e);
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(why).or_default() += 1;
        }
        if let Ok(mut first) = self.first_failure.lock()
            && first.is_none()
        {
            *first = Some(format!("{why}: {path}"));
            // Once per output, not per write.
            tracing::warn!("{} output failing ({why}: {path}): {e}", self.sink);
        }
    }

    pub fn snapshot(&self) -> OutputSnapshot {
        OutputSnapshot {
            sink: self.sink,
            target: self.target.clone(),
            unit: self.unit,
            received: self.received.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rows_written: self.rows_written.load(Ordering::Relaxed),
            rows_dropped: self.rows_dropped.load(Ordering::Relaxed),
            failures: self.failures.lock().map(|f| f.clone()).unwrap_or_default(),
            first_failure: self.first_failure.lock().ok().and_then(|f| f.clone()),
            queued: self.queued.load(Ordering::Relaxed),
            overflowed: self.overflowed.load(Ordering::Relaxed),
            gave_up_after: self.gave_up_after.lock().ok().and_then(|g| *g),
        }
    }
}

impl OutputSnapshot {
    pub fn failures_total(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Rows dropped, or not written (yet).
    pub fn lost(&self) -> bool {
        self.dropped > 0 || self.rows_dropped > 0 || self.written < self.received
    }

    /// Something to say: rows lost, or writes that failed (even if retried in the end).
    pub fn is_short(&self) -> bool {
        self.lost() || self.failures_total() > 0
    }

    /// `parquet: 0 of 402 processes written, 402 dropped, 3 writes failed (disk full:
    /// /tmp/tiny/pq/processes)`, or nothing when everything was written at the first try.
    pub fn describe(&self) -> Option<String> {
        if !self.is_short() {
            return None;
        }
        let mut text = format!(
            "{}: {} of {} {} written",
            self.sink, self.written, self.received, self.unit
        );
        if self.dropped > 0 {
            text.push_str(&format!(", {} dropped", self.dropped));
            if self.overflowed > 0 {
                text.push_str(&format!(" ({} when its queue was full)", self.overflowed));
            }
        } else if self.rows_dropped > 0 {
            // Rows of other datasets (Parquet's events) without their headline's.
            text.push_str(&format!(", {} rows dropped", self.rows_dropped));
        }
        let waiting = self.received.saturating_sub(self.written + self.dropped);
        match self.gave_up_after {
            Some(after) => text.push_str(&format!(
                ", {waiting} unwritten when the agent stopped waiting after {}",
                humantime_serde::re::humantime::format_duration(after)
            )),
            None if waiting > 0 => text.push_str(&format!(", {waiting} waiting")),
            None => {}
        }
        match self.failures_total() {
            0 => {}
            1 => text.push_str(", 1 write failed"),
            n => text.push_str(&format!(", {n} writes failed")),
        }
        if let Some(first) = &self.first_failure {
            text.push_str(&format!(" ({first})"));
        }
        Some(text)
    }
}

/// When to try a failed write again: after 1 s, doubling to 30 s; at once after a success.
#[derive(Debug, Default)]
pub struct Backoff {
    next: Option<Instant>,
    wait: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    pub fn due(&self) -> bool {
        self.next.is_none_or(|t| Instant::now() >= t)
    }

    pub fn failed(&mut self) {
        self.wait = if self.wait.is_zero() {
            Self::FIRST
        } else {
            (self.wait * 2).min(Self::MAX)
        };
        self.next = Some(Instant::now() + self.wait);
    }

    pub fn succeeded(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_said_once_with_the_path_and_counted_by_reason() {
        let h = OutputHealth::new("parquet", "/data", "processes");
        h.received(402);
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        h.failed(&full, "/data/processes");
        h.failed(&full, "/data/events");
        let s = h.snapshot();
        assert_eq!(s.failures.get("disk full"), Some(&2));
        assert_eq!(
            s.describe().unwrap(),
            "parquet: 0 of 402 processes written, 402 waiting, 2 writes failed (disk full: /data/processes)"
        );
        h.written(400, 1200);
        h.dropped(2, 6);
        let s = h.snapshot();
        assert_eq!((s.rows_written, s.rows_dropped), (1200, 6));
        // The failures stay said after the retries wrote the rest.
        assert_eq!(
            s.describe().unwrap(),
            "parquet: 400 of 402 processes written, 2 dropped, 2 writes failed (disk full: /data/processes)"
        );
        let ok = OutputHealth::new("jsonl", "-", "lines");
        ok.received(3);
        ok.written(3, 3);
        assert_eq!(ok.snapshot().describe(), None);
    }

    #[test]
    fn a_full_queue_and_a_stop_that_could_not_wait_are_said() {
        let h = OutputHealth::new("jsonl", "/x/events.fifo", "lines");
        h.received(3000);
        h.written(100, 100);
        h.dropped(2800, 2800);
        h.overflowed(300);
        h.gave_up(Duration::from_secs(2));
        let s = h.snapshot();
        assert!(s.lost());
        assert_eq!(
            s.describe().unwrap(),
            "jsonl: 100 of 3000 lines written, 2800 dropped (300 when its queue was full), 100 unwritten when the agent stopped waiting after 2s"
        );
        // Rows of another dataset lost without a headline row are said too.
        let p = OutputHealth::new("parquet", "/d", "processes");
        p.received(5);
        p.written(5, 5);
        p.dropped(0, 40);
        assert_eq!(
            p.snapshot().describe().unwrap(),
            "parquet: 5 of 5 processes written, 40 rows dropped"
        );
    }

    #[test]
    fn errors_that_carry_only_their_kind_keep_their_reason() {
        let wrapped = std::io::Error::new(std::io::ErrorKind::StorageFull, "/d/.x.tmp: …");
        assert_eq!(reason(&wrapped), "disk full");
        let ro = std::io::Error::new(std::io::ErrorKind::ReadOnlyFilesystem, "…");
        assert_eq!(reason(&ro), "read-only file system");
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let mut b = Backoff::default();
        assert!(b.due());
        b.failed();
        assert!(!b.due());
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.wait, Backoff::MAX);
        b.succeeded();
        assert!(b.due());
    }
}
