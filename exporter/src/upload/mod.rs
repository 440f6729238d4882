//! Ships the Parquet data to S3-compatible object storage, beside tracing and never in its way:
//! a task rolls the sink's files into few objects ([`spool`]) and creates them in the bucket
//! ([`store`]), retrying with backoff. What is not confirmed stays in the local spool and goes
//! at the next pass or the next start.

pub mod compact;
pub mod spool;
pub mod store;

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::config::ObjectStoreSection;
pub use crate::sinks::metrics::aggregates::UploadCounters;
use spool::Spool;
use store::{Bucket, StoreError};

/// Counters of the uploads, read by the summary and the self-metrics.
#[derive(Debug, Default)]
pub struct UploadStats {
    pub uploaded_objects: AtomicU64,
    pub uploaded_bytes: AtomicU64,
    /// Attempts that failed (each retried later).
    pub failures: AtomicU64,
    /// Objects dropped because the spool was full.
    pub dropped_objects: AtomicU64,
    pub dropped_bytes: AtomicU64,
    /// Waiting in the spool after the latest pass.
    pub waiting_objects: AtomicU64,
    pub waiting_bytes: AtomicU64,
    /// Rolls that failed (the disk full, read-only…): the sink's files stay where they are.
    pub roll_failures: AtomicU64,
    /// Sink files a failed roll left unrolled, after the latest pass.
    pub unrolled_files: AtomicU64,
    pub unrolled_bytes: AtomicU64,
    last_error: Mutex<Option<String>>,
    roll_error: Mutex<Option<String>>,
}

impl UploadStats {
    pub fn snapshot(&self) -> UploadCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UploadCounters {
            uploaded_objects: get(&self.uploaded_objects),
            uploaded_bytes: get(&self.uploaded_bytes),
            failures: get(&self.failures),
            dropped_objects: get(&self.dropped_objects),
            dropped_bytes: get(&self.dropped_bytes),
            waiting_objects: get(&self.waiting_objects),
            waiting_bytes: get(&self.waiting_bytes),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
            roll_failures: get(&self.roll_failures),
            unrolled_files: get(&self.unrolled_files),
            unrolled_bytes: get(&self.unrolled_bytes),
            roll_error: self.roll_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }

    /// A roll failed: counted; said in the log when it differs from the last one.
    fn roll_failed(&self, error: &std::io::Error) {
        self.roll_failures.fetch_add(1, Ordering::Relaxed);
        let text = format!("{}: {error}", crate::sinks::health::reason(error));
        if let Ok(mut last) = self.roll_error.lock() {
            if last.as_deref() != Some(&text) {
                tracing::warn!(
                    "upload: cannot roll the Parquet files ({text}); they stay where they are and the roll is retried"
                );
            }
            *last = Some(text);
        }
    }

    /// Records a failure; says it in the log when it differs from the last one (an outage is
    /// one line, not one per retry).
    fn failed(&self, error: &StoreError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let text = error.to_string();
        if let Ok(mut last) = self.last_error.lock() {
            if last.as_deref() != Some(&text) {
                tracing::warn!("upload: {text}; the data stays in the spool and is retried");
            }
            *last = Some(text);
        }
    }
}

/// Longest wait between attempts while the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The running upload task.
pub struct UploadTask {
    stats: Arc<UploadStats>,
    stop: watch::Sender<Option<Duration>>,
    handle: JoinHandle<()>,
    pub url: String,
    pub dir: PathBuf,
}

struct Shipper {
    bucket: Bucket,
    spool: Arc<Spool>,
    dir: PathBuf,
    stats: Arc<UploadStats>,
    retention: Duration,
    max_spool_bytes: u64,
}

/// An exclusive lock on the spool for one pass: agents sharing a data directory take turns.
struct SpoolLock {
    /// Held open: closing it releases the lock.
    _file: std::fs::File,
}

impl SpoolLock {
    /// `None` while another agent holds it; an error when the lock file cannot be made (a
    /// full or read-only disk).
    fn try_take(dir: &Path) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(".upload.lock");
        // Read-only when it exists: flock needs no write access, and a disk that turned
        // read-only still lets the pass run (and say what it could not roll).
        let file = match std::fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path),
            other => other,
        }
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        // SAFETY: flock on a descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        Ok(locked.then_some(Self { _file: file }))
    }
}

impl Shipper {
    /// Rolls (when `roll`), bounds and expires the spool, then uploads what waits, oldest first.
    /// Returns false when an upload failed (the rest waits for the next attempt).
    async fn pass(&self, roll: bool) -> bool {
        let _lock = match SpoolLock::try_take(&self.dir) {
            Ok(Some(lock)) => lock,
            // Another agent's pass.
            Ok(None) => return true,
            Err(e) => {
                self.stats.roll_failed(&e);
                if roll {
                    self.note_unrolled().await;
                }
                return false;
            }
        };
        let spool = Arc::clone(&self.spool);
        let (retention, max) = (self.retention, self.max_spool_bytes);
        let prepared = tokio::task::spawn_blocking(move || {
            spool.recover();
            let rolled = if roll {
                spool.roll()
            } else {
                Ok(Default::default())
            };
            let dropped = spool.bound(max);
            spool.expire(retention);
            (rolled, dropped, spool.waiting())
        })
        .await;
        let Ok((rolled, dropped, waiting)) = prepared else {
            return false;
        };
        // Whether every sink file was rolled (when a roll was due).
        let all_rolled = match rolled {
            Err(e) => {
                self.stats.roll_failed(&e);
                self.note_unrolled().await;
                false
            }
            Ok(_) => {
                if let Ok(mut e) = self.stats.roll_error.lock() {
                    *e = None;
                }
                true
            }
        };
        if roll && all_rolled {
            self.stats.unrolled_files.store(0, Ordering::Relaxed);
            self.stats.unrolled_bytes.store(0, Ordering::Relaxed);
        }
        self.stats
            .dropped_objects
            .fetch_add(dropped.0, Ordering::Relaxed);
        self.stats
            .dropped_bytes
            .fetch_add(dropped.1, Ordering::Relaxed);
        self.set_waiting(&waiting);
        let mut left = waiting.as_slice();
        while let Some((w, rest)) = left.split_first() {
            if let Err(e) = self.bucket.create(&w.key, &w.path).await {
                self.stats.failed(&e);
                return false;
            }
            if let Err(e) = self.spool.confirm(w, self.retention) {
                tracing::warn!("upload: {}: {e}", w.path.display());
            }
            self.stats.uploaded_objects.fetch_add(1, Ordering::Relaxed);
            self.stats
                .uploaded_bytes
                .fetch_add(w.bytes, Ordering::Relaxed);
            left = rest;
            self.set_waiting(left);
        }
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = None;
        }
        true
    }

    /// Counts the sink files a failed roll left where they are, for the summary.
    async fn note_unrolled(&self) {
        let spool = Arc::clone(&self.spool);
        let (files, bytes) = tokio::task::spawn_blocking(move || spool.unrolled())
            .await
            .unwrap_or_default();
        self.stats.unrolled_files.store(files, Ordering::Relaxed);
        self.stats.unrolled_bytes.store(bytes, Ordering::Relaxed);
    }

    fn set_waiting(&self, waiting: &[spool::Waiting]) {
        self.stats
            .waiting_objects
            .store(waiting.len() as u64, Ordering::Relaxed);
        self.stats
            .waiting_bytes
            .store(waiting.iter().map(|w| w.bytes).sum(), Ordering::Relaxed);
    }

    async fn run(self, roll_interval: Duration, mut stop: watch::Receiver<Option<Duration>>) {
        // The first pass ships what a crash or an outage left.
        let mut next_roll = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wake = retry_at.map_or(next_roll, |r| r.min(next_roll));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                changed = stop.changed() => {
                    let deadline = if changed.is_ok() { *stop.borrow() } else { None };
                    let deadline = deadline.unwrap_or(Duration::ZERO);
                    if tokio::time::timeout(deadline, self.pass(true)).await.is_err() {
                        // Cut short: count what is left, for the summary.
                        let spool = Arc::clone(&self.spool);
                        if let Ok(waiting) = tokio::task::spawn_blocking(move || spool.waiting()).await {
                            self.set_waiting(&waiting);
                        }
                    }
                    return;
                }
            }
            let roll = Instant::now() >= next_roll;
            if roll {
                next_roll = Instant::now() + roll_interval;
            }
            if self.pass(roll).await {
                retry_at = None;
                backoff = FIRST_BACKOFF;
            } else {
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl UploadTask {
    /// Starts uploading the Parquet files under `dir` as `section` says. Fails only on a
    /// configuration the store cannot use; an unreachable store is retried.
    pub fn start(section: &ObjectStoreSection, dir: &Path, host: &str) -> Result<Self, StoreError> {
        let bucket = Bucket::open(section)?;
        let url = bucket.url.clone();
        let stats = Arc::new(UploadStats::default());
        let (stop, stop_rx) = watch::channel(None);
        let shipper = Shipper {
            bucket,
            spool: Arc::new(Spool::new(dir, host)),
            dir: dir.to_path_buf(),
            stats: stats.clone(),
            retention: section.local_retention,
            max_spool_bytes: section.max_spool_bytes,
        };
        let handle = tokio::spawn(shipper.run(section.roll_interval, stop_rx));
        Ok(Self {
            stats,
            stop,
            handle,
            url,
            dir: dir.to_path_buf(),
        })
    }

    pub fn stats(&self) -> Arc<UploadStats> {
        self.stats.clone()
    }

    /// Rolls what is left and uploads for at most `deadline`; what is not confirmed by then
    /// waits in the spool for the next start.
    pub async fn finish(self, deadline: Duration) -> UploadCounters {
        let _ = self.stop.send(Some(deadline));
        let _ = self.handle.await;
        self.stats.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_uploaded_failed_dropped_and_waits() {
        let ok = UploadCounters {
            uploaded_objects: 3,
            uploaded_bytes: 3 << 20,
            ..Default::default()
        };
        assert_eq!(
            ok.describe("s3://b/p", Path::new("/d")),
            "uploaded 3 objects (3.00 MiB) to s3://b/p"
        );
        let bad = UploadCounters {
            failures: 2,
            dropped_objects: 1,
            dropped_bytes: 2048,
            waiting_objects: 1,
            waiting_bytes: 512,
            last_error: Some("s3://b/p: access denied".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.describe("s3://b/p", Path::new("/d")),
            "uploaded 0 objects (0 B) to s3://b/p, 1 dropped (2.00 KiB, spool full), 2 failed attempts, 1 waiting (512 B) in /d for the next start (s3://b/p: access denied)"
        );
        let unrolled = UploadCounters {
            roll_failures: 1,
            unrolled_files: 4,
            unrolled_bytes: 4096,
            roll_error: Some("disk full: /d/processes/outbox/.x.tmp: …".into()),
            ..Default::default()
        };
        assert_eq!(
            unrolled.describe("s3://b/p", Path::new("/d")),
            "uploaded 0 objects (0 B) to s3://b/p, 1 roll failed, 4 files (4.00 KiB) not rolled, kept in /d for the next start (disk full: /d/processes/outbox/.x.tmp: …)"
        );
    }
}
