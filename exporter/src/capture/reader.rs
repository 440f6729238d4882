//! Reads the ring buffer as it becomes readable and hands decoded events to the tracker.
//!
//! Never blocks on the tracker: when its queue is full the event is dropped and counted, so the
//! kernel side never backs up behind a slow sink.

use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};

use crate::{
    capture::{decode::decode, stats::Stats},
    event::Event,
};

/// Longest a record waits in the ring when no wakeup came.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

pub struct Reader {
    ring: AsyncFd<RingBuf<MapData>>,
    tx: mpsc::Sender<Event>,
    stats: Arc<Stats>,
}

impl Reader {
    pub fn new(
        ring: RingBuf<MapData>,
        tx: mpsc::Sender<Event>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        // SAFETY: the RingBuf owns its map fd and keeps it open and unchanged for its lifetime,
        // which is the AsyncFd's lifetime.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Self { ring, tx, stats })
    }

    /// Reads until `stop` turns true, then drains what is left and returns (dropping the
    /// sender, which tells the tracker the stream has ended).
    ///
    /// The kernel wakes the reader only when a good amount of data waits; the timer drains
    /// whatever arrived in between, which bounds the latency of a quiet stream.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !drain(self.ring.get_mut(), &self.tx, &self.stats) {
                        return;
                    }
                }
                ready = self.ring.readable_mut() => {
                    match ready {
                        Ok(mut guard) => {
                            let open = drain(guard.get_inner_mut(), &self.tx, &self.stats);
                            guard.clear_ready();
                            if !open {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::error!("ring buffer poll failed: {e}");
                            return;
                        }
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        drain(self.ring.get_mut(), &self.tx, &self.stats);
                        return;
                    }
                }
            }
        }
    }
}

/// Consumes every record in the ring; false once the tracker is gone.
fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Event>, stats: &Stats) -> bool {
    while let Some(item) = ring.next() {
        Stats::add(&stats.records_read, 1);
        let event = match decode(&item) {
            Ok(event) => event,
            Err(e) => {
                Stats::add(&stats.decode_errors, 1);
                tracing::debug!("undecodable record: {e}");
                continue;
            }
        };
        drop(item);
        match tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                stats.dropped_event_of(ev.common.tgid, ev.common.start_ns)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        }
    }
    true
}
