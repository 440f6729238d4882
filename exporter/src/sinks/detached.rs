//! A file output on a thread of its own behind a bounded queue: encoding, compressing and
//! writing — and a disk that is slow or stuck — never hold up the routing task, the tracker
//! and ring buffer behind it, or the other outputs. What the queue cannot take is dropped and
//! counted in the output's health; so is what is still queued when the agent stops and the
//! disk has not taken it within `output.close_timeout`.

use std::{
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    time::Duration,
};

use super::{Report, Sink, SinkError, health::OutputHealth};
use crate::{
    event::Event,
    process::{model::Process, trace_context::RunSpan},
};

/// Reports a file output's queue holds: a 10,000-process storm (fork, exec and exit records,
/// and the ended processes) fits while the disk is busy with an earlier write.
pub const QUEUE_REPORTS: usize = 65_536;

/// How often the output's thread flushes when no report comes (Parquet's time-based files).
const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// A file output the agent runs on its own thread.
pub trait FileOutput: Sink + 'static {
    /// What `report` adds to the output's headline count (processes, lines) and to its rows;
    /// `None` for a kind it does not use, which is not sent to its thread.
    fn units(report: &Report) -> Option<(u64, u64)>
    where
        Self: Sized;

    fn output_health(&self) -> Arc<OutputHealth>;
}

/// The reports file outputs use, owned to cross to their thread.
// Boxed: the queue's slots would be the size of the largest variant.
enum Owned {
    Event(Box<Event>),
    Ended(Box<Process>),
    RunEnded(Box<RunSpan>),
}

impl Owned {
    fn of(report: &Report) -> Option<Self> {
        match report {
            Report::Event(e) => Some(Self::Event(Box::new((*e).clone()))),
            Report::Ended(p) => Some(Self::Ended(Box::new((*p).clone()))),
            Report::RunEnded(r) => Some(Self::RunEnded(Box::new((*r).clone()))),
            Report::Started(_) | Report::MemoryChanged(..) | Report::Sampled(..) => None,
        }
    }

    fn report(&self) -> Report<'_> {
        match self {
            Self::Event(e) => Report::Event(e),
            Self::Ended(p) => Report::Ended(p),
            Self::RunEnded(r) => Report::RunEnded(r),
        }
    }
}

/// What is queued for the thread, in the output's units; one account, so that a report is
/// counted either by the thread (taken) or, once the agent gave up waiting, as dropped — never
/// both. Its report count is the output's `queued` gauge.
struct Backlog {
    queued: Mutex<Queued>,
    health: Arc<OutputHealth>,
}

#[derive(Default)]
struct Queued {
    reports: u64,
    headline: u64,
    rows: u64,
    abandoned: bool,
}

impl Queued {
    fn count(&mut self, headline: u64, rows: u64, on: bool) {
        if on {
            self.reports += 1;
            self.headline += headline;
            self.rows += rows;
        } else {
            self.reports -= 1;
            self.headline -= headline;
            self.rows -= rows;
        }
    }
}

impl Backlog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A report goes on the queue (`true`) or comes off it unsent (`false`).
    fn put(&self, headline: u64, rows: u64, on: bool) {
        let mut q = self.lock();
        q.count(headline, rows, on);
        self.health.set_queued(q.reports);
    }

    /// The thread takes a report; `false` once the agent gave up on the queue (in the same
    /// lock, so the report is not also counted by `abandon`).
    fn take(&self, headline: u64, rows: u64) -> bool {
        let mut q = self.lock();
        if q.abandoned {
            return false;
        }
        q.count(headline, rows, false);
        self.health.set_queued(q.reports);
        true
    }

    /// Gives up on what is still queued: counted as received and dropped.
    fn abandon(&self) {
        let (headline, rows) = {
            let mut q = self.lock();
            q.abandoned = true;
            q.reports = 0;
            self.health.set_queued(0);
            (q.headline, q.rows)
        };
        drop_report(&self.health, headline, rows);
    }
}

/// Counts a report the thread will never see as received and dropped.
fn drop_report(health: &OutputHealth, headline: u64, rows: u64) {
    health.received(headline);
    health.dropped(headline, rows);
}

pub struct Detached {
    name: &'static str,
    units: fn(&Report) -> Option<(u64, u64)>,
    queue: Option<SyncSender<(Owned, u64, u64)>>,
    backlog: Arc<Backlog>,
    /// Says when the thread has closed the output.
    closed: Receiver<()>,
    close_timeout: Duration,
}

impl Detached {
    /// Starts `output`'s thread.
    pub fn spawn<S: FileOutput>(output: S, close_timeout: Duration) -> Result<Self, SinkError> {
        let name = output.name();
        let backlog = Arc::new(Backlog {
            queued: Mutex::new(Queued::default()),
            health: output.output_health(),
        });
        let (queue, reports) = mpsc::sync_channel(QUEUE_REPORTS);
        let (closed_tx, closed) = mpsc::sync_channel(1);
        let thread_backlog = backlog.clone();
        std::thread::Builder::new()
            .name(format!("{name} output"))
            .spawn(move || {
                run(Box::new(output), &reports, &thread_backlog);
                let _ = closed_tx.send(());
            })
            .map_err(|source| SinkError::Io {
                path: format!("{name} output thread"),
                source,
            })?;
        Ok(Self {
            name,
            units: S::units,
            queue: Some(queue),
            backlog,
            closed,
            close_timeout,
        })
    }
}

/// The output's thread: hands it every queued report, flushes after each burst and once a
/// second when none comes, and closes it when the agent lets go of the queue.
fn run(mut output: Box<dyn Sink>, reports: &Receiver<(Owned, u64, u64)>, backlog: &Backlog) {
    loop {
        match reports.recv_timeout(IDLE_FLUSH) {
            Ok(first) => {
                let mut next = Some(first);
                while let Some((report, headline, rows)) = next {
                    if !backlog.take(headline, rows) {
                        return;
                    }
                    // Failures are counted in the output's health.
                    let _ = output.report(&report.report());
                    next = reports.try_recv().ok();
                }
                let _ = output.flush();
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = output.flush();
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = output.close();
}

impl Sink for Detached {
    fn name(&self) -> &'static str {
        self.name
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        let Some((headline, rows)) = (self.units)(report) else {
            return Ok(());
        };
        let Some(owned) = Owned::of(report) else {
            return Ok(());
        };
        let health = &self.backlog.health;
        let Some(queue) = &self.queue else {
            drop_report(health, headline, rows);
            return Ok(());
        };
        // Counted before the send: the thread may take it at once.
        self.backlog.put(headline, rows, true);
        if let Err(e) = queue.try_send((owned, headline, rows)) {
            self.backlog.put(headline, rows, false);
            drop_report(health, headline, rows);
            health.overflowed(headline);
            if let TrySendError::Disconnected(_) = e {
                // The thread is gone (it panicked): nothing more reaches the output.
                self.queue = None;
            }
        }
        Ok(())
    }

    /// The thread flushes on its own, after each burst.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn closing(&mut self) {
        self.queue = None;
    }

    /// Waits for the thread's last writes, up to `close_timeout`; what is still queued then
    /// is dropped, and what the output holds unwritten stays counted as not written.
    fn close(&mut self) -> Result<(), SinkError> {
        self.queue = None;
        match self.closed.recv_timeout(self.close_timeout) {
            Ok(()) => {}
            // The thread panicked: what it had not taken is lost.
            Err(RecvTimeoutError::Disconnected) => self.backlog.abandon(),
            Err(RecvTimeoutError::Timeout) => {
                self.backlog.abandon();
                self.backlog.health.gave_up(self.close_timeout);
            }
        }
        Ok(())
    }

    fn health(&self) -> Option<Arc<OutputHealth>> {
        Some(self.backlog.health.clone())
    }
}
