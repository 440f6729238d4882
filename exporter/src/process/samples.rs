//! Sampling rounds: the task iterator sends one record per live thread of a traced process,
//! then a round end. Here the threads of each process are summed over one round (one iterator
//! session); the tracker turns the sums into per-process samples.

use std::collections::HashMap;

use crate::{
    capture::decode::page_size,
    event::{Activity, ThreadSample, Usage},
};

/// One process's threads in a round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessRound {
    pub start_ns: u64,
    utime_ns: u64,
    stime_ns: u64,
    runtime_ns: u64,
    /// The group's exited threads: the same in every thread's record, taken once.
    dead: (u64, u64, u64),
    pub rss_bytes: u64,
    pub threads: u32,
    /// The live threads' time waiting for a CPU, summed.
    pub run_delay_ns: u64,
    /// The live threads' own I/O, faults and switches, summed; the exited threads' (the same
    /// in every thread's record, taken once); which I/O fields the kernel has.
    activity: exporter_common::Activity,
    dead_activity: exporter_common::Activity,
    /// The group's network use: the same in every thread.
    network: exporter_common::Network,
    present: u32,
}

impl ProcessRound {
    /// CPU time of the whole group so far, split like the kernel splits it (no peak).
    pub fn usage(&self) -> Usage {
        Usage::from_kernel(
            self.utime_ns + self.dead.0,
            self.stime_ns + self.dead.1,
            self.runtime_ns + self.dead.2,
            0,
        )
    }

    /// I/O, faults and switches of the whole group so far.
    pub fn activity(&self) -> Activity {
        Activity::from_kernel(
            &self.activity.plus(&self.dead_activity),
            &self.network,
            self.present,
        )
    }
}

/// The round being received.
#[derive(Debug, Default)]
pub struct Round {
    session: u64,
    processes: HashMap<u32, ProcessRound>,
}

impl Round {
    /// Adds one thread of process `(tgid, start_ns)`. A record of a new session starts a new
    /// round (the end of the previous one was lost).
    pub fn add(&mut self, tgid: u32, start_ns: u64, t: &ThreadSample) {
        if t.session != self.session {
            self.session = t.session;
            self.processes.clear();
        }
        let p = self.processes.entry(tgid).or_default();
        if p.start_ns != start_ns {
            // A reused pid within one round cannot happen; keep the newest process.
            *p = ProcessRound {
                start_ns,
                ..ProcessRound::default()
            };
        }
        p.utime_ns += t.utime_ns;
        p.stime_ns += t.stime_ns;
        p.runtime_ns += t.runtime_ns;
        p.dead = (
            p.dead.0.max(t.dead_utime_ns),
            p.dead.1.max(t.dead_stime_ns),
            p.dead.2.max(t.dead_runtime_ns),
        );
        // Threads share the mm; an exited leader has none and reports 0.
        p.rss_bytes = p.rss_bytes.max(t.rss_pages.saturating_mul(page_size()));
        p.threads += 1;
        p.run_delay_ns += t.run_delay_ns;
        p.activity = p.activity.plus(&t.activity);
        p.dead_activity = t.dead_activity;
        p.network = t.network;
        p.present = t.present;
    }

    /// Ends round `session`: its processes, by tgid (empty when the session's records were
    /// not the ones received).
    pub fn finish(&mut self, session: u64) -> Vec<(u32, ProcessRound)> {
        let processes = std::mem::take(&mut self.processes);
        if session != self.session {
            return Vec::new();
        }
        let mut out: Vec<_> = processes.into_iter().collect();
        out.sort_by_key(|(_, p)| p.start_ns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(session: u64, runtime_ns: u64, dead_runtime_ns: u64, rss_pages: u64) -> ThreadSample {
        ThreadSample {
            session,
            utime_ns: runtime_ns,
            stime_ns: 0,
            runtime_ns,
            dead_utime_ns: dead_runtime_ns,
            dead_stime_ns: 0,
            dead_runtime_ns,
            rss_pages,
            present: exporter_common::present::IO_CHARS,
            // I/O in step with CPU, to check it adds up the same way.
            activity: exporter_common::Activity {
                wchar: runtime_ns,
                ..Default::default()
            },
            dead_activity: exporter_common::Activity {
                wchar: dead_runtime_ns,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn threads_add_up_and_exited_threads_count_once() {
        let mut round = Round::default();
        round.add(10, 100, &thread(1, 300, 50, 0));
        round.add(10, 100, &thread(1, 200, 50, 1));
        round.add(11, 200, &thread(1, 7, 0, 2));
        let done = round.finish(1);
        assert_eq!(done.len(), 2);
        let (tgid, p) = done[0];
        assert_eq!((tgid, p.threads, p.rss_bytes), (10, 2, page_size()));
        assert_eq!(p.usage().cpu_ns(), 550);
        assert_eq!(p.activity().write_chars, Some(550));
        // Not in this kernel (no IO_BYTES bit): null, not zero.
        assert_eq!(p.activity().write_bytes, None);
        assert_eq!(done[1].1.usage().cpu_ns(), 7);
    }

    #[test]
    fn a_round_whose_end_was_lost_is_dropped() {
        let mut round = Round::default();
        round.add(10, 100, &thread(1, 300, 0, 0));
        // Session 1 never ended; session 2 starts over.
        round.add(10, 100, &thread(2, 400, 0, 0));
        assert!(round.finish(1).is_empty());
        round.add(10, 100, &thread(3, 500, 0, 0));
        let done = round.finish(3);
        assert_eq!(done[0].1.usage().cpu_ns(), 500);
        assert!(round.finish(3).is_empty(), "a round ends once");
    }
}
