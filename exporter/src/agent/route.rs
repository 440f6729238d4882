//! The routing loop: records from the reader's queue go to the tracker, and everything the
//! tracker reports goes to every sink; sinks are flushed once per burst and once a second.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::sync::mpsc;

use crate::{
    capture::{clock::monotonic_ns, stats::Stats},
    diagnosis::Diagnosis,
    event::{Body, Event},
    process::{procfs, tracker::Tracker},
    sinks::{Report, Sink},
};

/// Hands one report to every sink; a sink's error is not fatal (a file output counts it in
/// its health, which the summary and the metrics say).
pub fn deliver(sinks: &mut [Box<dyn Sink>], report: &Report) {
    for sink in sinks.iter_mut() {
        if let Err(e) = sink.report(report) {
            tracing::debug!("sink {}: {e}", sink.name());
        }
    }
}

pub fn flush_all(sinks: &mut [Box<dyn Sink>]) {
    for sink in sinks.iter_mut() {
        if let Err(e) = sink.flush() {
            tracing::debug!("sink {}: {e}", sink.name());
        }
    }
}

/// Hands one event to the tracker and what it reports to the diagnosis and every sink; then
/// the findings that made (after a sampling round, the hangs) the same way, so that they reach
/// the process's span before it ends.
pub fn handle(
    ev: Event,
    tracker: &mut Tracker,
    diagnosis: &mut Diagnosis,
    sinks: &mut [Box<dyn Sink>],
) {
    let round_end = matches!(ev.body, Body::SampleEnd(_));
    tracker.handle(ev, |report| {
        diagnosis.observe(&report);
        deliver(sinks, &report)
    });
    if round_end {
        diagnosis.after_round(tracker);
    }
    for finding in diagnosis.take_findings() {
        tracker.handle(finding, |report| {
            diagnosis.observe(&report);
            deliver(sinks, &report)
        });
    }
}

/// What the routing loop hands back when the queue closes: the table, the diagnosis and the
/// sinks, for the last reports.
pub type Routed = (Tracker, Diagnosis, Vec<Box<dyn Sink>>);

/// Routes records until the reader closes the queue; every `sweep_every`, ends the
/// processes whose exit record was lost.
pub async fn route(
    mut rx: mpsc::Receiver<Event>,
    mut tracker: Tracker,
    mut diagnosis: Diagnosis,
    mut sinks: Vec<Box<dyn Sink>>,
    stats: Arc<Stats>,
    sweep_every: Option<Duration>,
) -> Routed {
    let mut sweep = tokio::time::interval(sweep_every.unwrap_or(Duration::from_secs(3600)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.tick().await;
    // Time-based flushes (Parquet) happen even when no event arrives.
    let mut quiet = tokio::time::interval(Duration::from_secs(1));
    quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            _ = quiet.tick() => {
                flush_all(&mut sinks);
                continue;
            }
            _ = sweep.tick(), if sweep_every.is_some() => {
                let now = monotonic_ns();
                for ended in tracker.sweep_lost(now, |k| procfs::is_alive(k.tgid, k.start_ns)) {
                    diagnosis.observe(&Report::Ended(&ended));
                    deliver(&mut sinks, &Report::Ended(&ended));
                }
                flush_all(&mut sinks);
                // Give freed memory back after a burst, so RSS follows what is in use.
                // SAFETY: malloc_trim has no preconditions.
                unsafe { libc::malloc_trim(0) };
                continue;
            }
        };
        for (tgid, start_ns) in stats.take_dropped_processes() {
            tracker.mark_incomplete(tgid, start_ns);
        }
        let mut next = Some(first);
        // Handle everything queued, then flush once: one write per burst, not per event.
        while let Some(ev) = next {
            let lag = monotonic_ns().saturating_sub(ev.common.ktime_ns);
            stats.route_lag_max_ns.fetch_max(lag, Ordering::Relaxed);
            handle(ev, &mut tracker, &mut diagnosis, &mut sinks);
            Stats::add(&stats.records_routed, 1);
            next = rx.try_recv().ok();
        }
        flush_all(&mut sinks);
    }
    (tracker, diagnosis, sinks)
}
