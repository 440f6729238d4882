//! Process table built from the event stream: which processes are alive, their tree parent,
//! their latest image, and how each one ended. It owns its state; events arrive over a channel.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::{
    decode::{Body, Common, Event, Exec, Exit},
    sinks::Sink,
    stats::Stats,
};
use exporter_common::flags;

/// A pid is reused; a pid with its start time is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub tgid: u32,
    pub start_ns: u64,
}

#[derive(Debug, Clone)]
pub struct Process {
    pub key: ProcessKey,
    /// Nearest visible ancestor (hidden processes skipped); `None` for a root.
    pub parent: Option<ProcessKey>,
    /// tgid of the real parent at the latest event.
    pub ppid: u32,
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
    /// The image it runs now (last exec), if it executed anything since it was seen.
    pub exec: Option<Box<Exec>>,
    pub exec_count: u32,
    /// A scope root (the `run` command or a matched root).
    pub root: bool,
    pub exit: Option<Exit>,
    /// CLOCK_MONOTONIC ns of the exit.
    pub end_ns: Option<u64>,
}

impl Process {
    fn from_common(c: &Common) -> Self {
        Self {
            key: ProcessKey {
                tgid: c.tgid,
                start_ns: c.start_ns,
            },
            parent: (c.tree_ppid != 0).then_some(ProcessKey {
                tgid: c.tree_ppid,
                start_ns: c.parent_start_ns,
            }),
            ppid: c.ppid,
            comm: c.comm.clone(),
            uid: c.uid,
            cgroup_id: c.cgroup_id,
            exec: None,
            exec_count: 0,
            root: c.has(flags::ROOT),
            exit: None,
            end_ns: None,
        }
    }

    /// argv of the current image, or the comm when it never executed while traced.
    pub fn command_line(&self) -> String {
        match &self.exec {
            Some(exec) if !exec.argv.is_empty() => exec.argv.join(" "),
            _ => self.comm.clone(),
        }
    }
}

/// Running totals for the run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrackerTotals {
    /// Distinct visible processes seen.
    pub processes: u64,
    pub ended: u64,
    pub failed: u64,
    /// Processes dropped from the tree because they ran a deny-listed executable.
    pub hidden: u64,
    /// A pid was reused before its previous process's exit arrived (exit lost).
    pub missing_exits: u64,
}

#[derive(Debug, Default)]
pub struct Tracker {
    live: HashMap<u32, Process>,
    totals: TrackerTotals,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn totals(&self) -> TrackerTotals {
        self.totals
    }

    pub fn live(&self) -> impl Iterator<Item = &Process> {
        self.live.values()
    }

    /// The live entry for this event's process, created when the event is its first.
    fn entry(&mut self, c: &Common) -> &mut Process {
        let key = ProcessKey {
            tgid: c.tgid,
            start_ns: c.start_ns,
        };
        let stale = self.live.get(&key.tgid).is_some_and(|p| p.key != key);
        if stale {
            self.live.remove(&key.tgid);
            self.totals.missing_exits += 1;
        }
        let totals = &mut self.totals;
        self.live.entry(key.tgid).or_insert_with(|| {
            totals.processes += 1;
            Process::from_common(c)
        })
    }

    /// Applies one event (taking its exec payload); returns the process it ended, if any.
    pub fn apply(&mut self, ev: Event) -> Option<Process> {
        let Event { common, body } = ev;
        match body {
            Body::Fork => {
                self.entry(&common);
                None
            }
            Body::Exec(exec) if exec.hidden => {
                if self.live.remove(&common.tgid).is_some() {
                    self.totals.processes -= 1;
                }
                self.totals.hidden += 1;
                None
            }
            Body::Exec(exec) => {
                let p = self.entry(&common);
                p.ppid = common.ppid;
                p.uid = common.uid;
                p.root |= common.has(flags::ROOT);
                p.comm = common.comm;
                p.exec = Some(exec);
                p.exec_count += 1;
                None
            }
            Body::Exit(exit) => {
                self.entry(&common);
                let mut p = self.live.remove(&common.tgid)?;
                p.ppid = common.ppid;
                p.exit = Some(exit);
                p.end_ns = Some(common.ktime_ns);
                self.totals.ended += 1;
                if exit.failed() {
                    self.totals.failed += 1;
                }
                Some(p)
            }
        }
    }
}

/// Feeds events to the tracker and the sinks until the reader closes the channel.
pub async fn consume(
    mut rx: mpsc::Receiver<Event>,
    mut tracker: Tracker,
    mut sinks: Vec<Box<dyn Sink>>,
    stats: std::sync::Arc<Stats>,
) -> (Tracker, Vec<Box<dyn Sink>>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Handle everything queued, then flush once: one write per burst, not per event.
        while let Some(ev) = next {
            for sink in sinks.iter_mut() {
                if let Err(e) = sink.event(&ev) {
                    Stats::add(&stats.sink_errors, 1);
                    tracing::debug!("sink {}: {e}", sink.name());
                }
            }
            if let Some(ended) = tracker.apply(ev) {
                for sink in sinks.iter_mut() {
                    if let Err(e) = sink.process_ended(&ended) {
                        Stats::add(&stats.sink_errors, 1);
                        tracing::debug!("sink {}: {e}", sink.name());
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        for sink in sinks.iter_mut() {
            if let Err(e) = sink.flush() {
                Stats::add(&stats.sink_errors, 1);
                tracing::debug!("sink {}: {e}", sink.name());
            }
        }
    }
    (tracker, sinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(tgid: u32, start: u64, tree_ppid: u32, body: Body, flags: u16) -> Event {
        Event {
            common: Common {
                flags,
                ktime_ns: start + 10,
                start_ns: start,
                parent_start_ns: 1,
                cgroup_id: 0,
                tgid,
                tid: tgid,
                ppid: tree_ppid,
                tree_ppid,
                uid: 0,
                comm: "x".into(),
            },
            body,
        }
    }

    fn exec(hidden: bool) -> Body {
        Body::Exec(Box::new(Exec {
            exe: Some("/bin/x".into()),
            cwd: None,
            filename: "/bin/x".into(),
            argv: vec!["x".into(), "a b".into()],
            argv_truncated: false,
            argv_total_bytes: 6,
            hidden,
        }))
    }

    #[test]
    fn fork_exec_exit_ends_a_process() {
        let mut t = Tracker::new();
        assert!(t.apply(ev(10, 100, 1, Body::Fork, 0)).is_none());
        assert!(t.apply(ev(10, 100, 1, exec(false), 0)).is_none());
        let done = t
            .apply(ev(10, 100, 1, Body::Exit(Exit { status: 2 << 8 }), 0))
            .unwrap();
        assert_eq!(done.command_line(), "x a b");
        assert_eq!(done.parent.unwrap().tgid, 1);
        assert_eq!(t.totals().failed, 1);
        assert_eq!(t.live().count(), 0);
    }

    #[test]
    fn hidden_exec_drops_the_process() {
        let mut t = Tracker::new();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        t.apply(ev(10, 100, 1, exec(true), flags::HIDDEN));
        assert_eq!(t.live().count(), 0);
        assert_eq!(t.totals().processes, 0);
        assert_eq!(t.totals().hidden, 1);
    }

    #[test]
    fn reused_pid_is_a_new_process() {
        let mut t = Tracker::new();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        t.apply(ev(10, 500, 1, Body::Fork, 0));
        assert_eq!(t.totals().missing_exits, 1);
        assert_eq!(t.totals().processes, 2);
        assert_eq!(t.live().next().unwrap().key.start_ns, 500);
    }

    #[test]
    fn first_sight_exit_is_counted() {
        let mut t = Tracker::new();
        let done = t
            .apply(ev(
                7,
                50,
                1,
                Body::Exit(Exit { status: 9 }),
                flags::FIRST_SIGHT,
            ))
            .unwrap();
        assert_eq!(done.exit.unwrap().signal(), Some(9));
        assert_eq!(t.totals().processes, 1);
    }
}
