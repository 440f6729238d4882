//! What the diagnosis remembers of one live process between samples: its memory curve (thinned
//! to a bounded number of points), where its CPU and I/O counters stood at the last sample, and
//! since when it has been stalled or busy without I/O.

use crate::event::Sample;

/// Memory points kept per process; when full, every other one is dropped (the first and the
/// last stay), so a week-long process costs the same as a minute-long one.
const MAX_POINTS: usize = 256;

/// The counters of one sample that the judgments compare with the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub at_ns: u64,
    pub cpu_ns: u64,
    /// Read, write, send and receive calls and connections so far (`None`: not measured here).
    pub io_calls: Option<u64>,
    /// Children started while traced so far.
    pub children: u64,
}

impl Counters {
    pub fn of(at_ns: u64, s: &Sample, children: u64) -> Self {
        let a = &s.activity;
        let io = [a.read_calls, a.write_calls]
            .into_iter()
            .chain([
                a.network_send_calls,
                a.network_receive_calls,
                a.network_connections,
                a.network_accepted,
            ])
            .flatten()
            .fold(None, |sum: Option<u64>, v| Some(sum.unwrap_or(0) + v));
        Self {
            at_ns,
            cpu_ns: s.usage().cpu_ns(),
            io_calls: io,
            children,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct History {
    /// `(CLOCK_MONOTONIC ns, resident bytes)`, oldest first.
    pub rss: Vec<(u64, u64)>,
    pub last: Option<Counters>,
    /// Children started so far (counted from the tracker's `Started` reports).
    pub children: u64,
    /// Since when the CPU time has not moved (set at the first sample without progress).
    pub stalled_since: Option<u64>,
    /// What `/proc` said it waits on while stalled, and when to look again: a process with no
    /// CPU progress is in the same wait, so it is looked at again only as its stall doubles.
    pub probe: Option<super::waits::Probe>,
    pub next_probe_ns: u64,
    /// Since when (and from what CPU time) it has kept a core busy with no I/O and no child.
    pub busy_since: Option<(u64, u64)>,
    /// The memory limit it runs under, once read (`Some(None)`: none).
    pub limit: Option<Option<super::memory_limit::Limit>>,
    /// Findings already made about it, by kind: each kind once per process.
    pub found: Vec<crate::event::FindingKind>,
}

impl History {
    pub fn add_rss(&mut self, at_ns: u64, bytes: u64) {
        if self.rss.last().is_some_and(|&(t, _)| t > at_ns) {
            return;
        }
        if self.rss.len() >= MAX_POINTS {
            halve(&mut self.rss);
        }
        self.rss.push((at_ns, bytes));
    }

    pub fn has_found(&self, kind: crate::event::FindingKind) -> bool {
        self.found.contains(&kind)
    }
}

/// Drops every other point of a curve, keeping the first and the last: a bounded curve that
/// still spans the whole life.
pub fn halve<T>(points: &mut Vec<T>) {
    let last = points.pop();
    let mut i = 0;
    points.retain(|_| {
        i += 1;
        i % 2 == 1
    });
    points.extend(last);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_is_thinned_but_keeps_its_ends() {
        let mut h = History::default();
        for i in 0..10_000u64 {
            h.add_rss(i, i * 10);
        }
        assert!(h.rss.len() <= MAX_POINTS);
        assert_eq!(h.rss[0], (0, 0));
        assert_eq!(*h.rss.last().unwrap(), (9_999, 99_990));
        assert!(h.rss.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
