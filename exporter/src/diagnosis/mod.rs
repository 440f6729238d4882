//! Verdicts, not only numbers: follows what the tracker reports (samples, memory steps, starts,
//! ends) and says when a process leaks memory, runs away, hangs or deadlocks, as `finding`
//! events that go back through the tracker (onto the process's span) and to every sink.
//!
//! Each judgment is a module of its own: [`leak`], [`runaway`], [`oom_risk`] (with
//! [`memory_limit`]), [`recursion`] (fork explosions), [`hang`] (with [`waits`], what `/proc`
//! says a stalled process waits on), and, about the run as a whole at its end, [`runner`]
//! (noisy neighbours, with [`neighbours`] and [`host`]; the runner's size). The only kernel work
//! is one more field the task iterator reads per thread (the scheduler's run delay); `/proc` is
//! read for processes stalled for `diagnosis.hang_after`, and for the host and the processes
//! outside the run once per sampling round (at most once a second).

pub mod git_index;
pub mod hang;
pub mod history;
pub mod host;
pub mod leak;
pub mod memory_limit;
pub mod neighbours;
pub mod oom_risk;
pub mod recursion;
pub mod runaway;
pub mod runner;
pub mod source_tree;
pub mod waits;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use history::{Counters, History};

use crate::{
    config::DiagnosisSection,
    event::{Body, Common, Event, Finding, FindingKind, Involved, Severity},
    present::units,
    process::{
        model::{Process, ProcessKey},
        report::Report,
        tracker::Tracker,
    },
};

/// How often stalled processes are looked at in `/proc`, at most.
fn probe_every_ns(options: &DiagnosisSection) -> u64 {
    (options.hang_after / 4)
        .clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(15),
        )
        .as_nanos() as u64
}

pub struct Diagnosis {
    options: DiagnosisSection,
    histories: HashMap<ProcessKey, History>,
    /// CLOCK_MONOTONIC ns of the latest event reported (a sample's or a memory step's time).
    latest_ns: u64,
    last_probe_ns: u64,
    /// Deadlocks already reported, by their members.
    deadlocks: HashSet<Vec<ProcessKey>>,
    /// Findings made while following the reports, not yet handed out.
    pending: Vec<Event>,
    recursion: recursion::Recursion,
    runner: runner::Runner,
    /// The checkout whose tracked files no step should change (`[source]`).
    source: Option<source_tree::SourceTree>,
    /// Source-tree findings so far (for `run --fail-on-source-change`).
    pub source_changes: u64,
}

/// A finding event about process `p`, at `at_ns`.
fn finding_event(p: &Process, at_ns: u64, finding: Finding) -> Event {
    Event {
        common: Common {
            flags: 0,
            ktime_ns: at_ns,
            start_ns: p.key.start_ns,
            parent_start_ns: p.parent.map_or(0, |k| k.start_ns),
            cgroup_id: p.cgroup_id,
            tgid: p.key.tgid,
            tid: p.key.tgid,
            ppid: p.ppid,
            tree_ppid: p.parent.map_or(0, |k| k.tgid),
            uid: p.uid,
            comm: p.comm.clone(),
        },
        body: Body::Finding(Arc::new(finding)),
    }
}

/// `make (4242)`.
fn named(p: &Process) -> String {
    format!("{} ({})", p.executable_name(), p.key.tgid)
}

impl Diagnosis {
    pub fn new(options: DiagnosisSection) -> Self {
        Self {
            runner: runner::Runner::new(options.clone()),
            options,
            histories: HashMap::new(),
            latest_ns: 0,
            last_probe_ns: 0,
            deadlocks: HashSet::new(),
            pending: Vec::new(),
            recursion: recursion::Recursion::default(),
            source: None,
            source_changes: 0,
        }
    }

    /// Watches `tree`: a process that changes a tracked file in it is a finding.
    pub fn with_source(mut self, tree: Option<source_tree::SourceTree>) -> Self {
        self.source = tree;
        self
    }

    /// Processes whose history is kept (live ones that were sampled or started children).
    pub fn followed(&self) -> usize {
        self.histories.len()
    }

    /// The findings about the run as a whole (noisy neighbours, the runner's size), at its end
    /// (`at_ns`): events about no process (pid 0), for the sinks before the run ends.
    pub fn finish(&mut self, at_ns: u64) -> Vec<Event> {
        self.runner
            .verdicts()
            .into_iter()
            .map(|finding| Event {
                common: Common {
                    flags: 0,
                    ktime_ns: at_ns,
                    start_ns: 0,
                    parent_start_ns: 0,
                    cgroup_id: 0,
                    tgid: 0,
                    tid: 0,
                    ppid: 0,
                    tree_ppid: 0,
                    uid: 0,
                    comm: String::new(),
                },
                body: Body::Finding(Arc::new(finding)),
            })
            .collect()
    }

    /// Findings made since the last call, to hand to the tracker and the sinks.
    pub fn take_findings(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }

    /// Follows one report of the tracker.
    pub fn observe(&mut self, report: &Report) {
        match report {
            Report::Event(ev) => self.latest_ns = self.latest_ns.max(ev.common.ktime_ns),
            Report::Started(p) => {
                if let Some(parent) = p.parent {
                    self.histories.entry(parent).or_default().children += 1;
                }
                if self.options.fork_explosion
                    && let Some(f) = self.recursion.started(p, self.options.fork_depth)
                {
                    self.pending.push(finding_event(p, self.latest_ns, f));
                }
            }
            Report::MemoryChanged(p, m) => {
                self.runner.memory(p, m.rss_bytes);
                if self.options.memory_leak {
                    let at = self.latest_ns;
                    self.histories
                        .entry(p.key)
                        .or_default()
                        .add_rss(at, m.rss_bytes);
                    self.judge_leak(p);
                }
                self.judge_oom_risk(p, m.rss_bytes);
            }
            Report::Sampled(p, s) => {
                self.runner.sampled(p, s);
                self.sampled(p, s);
            }
            Report::Ended(p) => {
                self.runner.ended(p);
                self.histories.remove(&p.key);
                if let Some(tree) = self.source.as_mut() {
                    let changes = tree.changes(p);
                    if !changes.is_empty() {
                        let f = tree.finding(p, &changes);
                        self.source_changes += 1;
                        let at = p.end_ns.unwrap_or(self.latest_ns);
                        self.pending.push(finding_event(p, at, f));
                    }
                }
            }
            _ => {}
        }
    }

    fn judge_leak(&mut self, p: &Process) {
        let Some(h) = self.histories.get_mut(&p.key) else {
            return;
        };
        if h.has_found(FindingKind::MemoryLeak) {
            return;
        }
        if let Some(f) = leak::judge(&h.rss, &self.options) {
            h.found.push(FindingKind::MemoryLeak);
            self.pending.push(finding_event(p, self.latest_ns, f));
        }
    }

    fn judge_oom_risk(&mut self, p: &Process, rss_bytes: u64) {
        if !self.options.oom_risk || rss_bytes < oom_risk::MIN_BYTES {
            return;
        }
        let h = self.histories.entry(p.key).or_default();
        if h.has_found(FindingKind::OomRisk) {
            return;
        }
        let limit = h.limit.get_or_insert_with(|| {
            let limit = memory_limit::of(p.key.tgid);
            if let Some(l) = &limit {
                self.runner.note_limit(l.bytes);
            }
            limit
        });
        if let Some(f) = limit
            .as_ref()
            .and_then(|l| oom_risk::judge(rss_bytes, l, &self.options))
        {
            h.found.push(FindingKind::OomRisk);
            self.pending.push(finding_event(p, self.latest_ns, f));
        }
    }

    fn sampled(&mut self, p: &Process, s: &crate::event::Sample) {
        let at = self.latest_ns;
        let options = &self.options;
        let h = self.histories.entry(p.key).or_default();
        let now = Counters::of(at, s, h.children);
        if options.memory_leak {
            h.add_rss(at, s.rss_bytes);
        }
        if let Some(last) = h.last {
            let dt = at.saturating_sub(last.at_ns);
            // Timers and polls cost microseconds: below 0.5 % of a core (and 1 ms), no progress.
            let moved = now.cpu_ns.saturating_sub(last.cpu_ns) > (dt / 200).max(1_000_000);
            if moved {
                h.stalled_since = None;
                h.probe = None;
                h.next_probe_ns = 0;
            } else {
                h.stalled_since.get_or_insert(last.at_ns);
            }
        }
        let runaway = if options.runaway {
            runaway::judge(h, &now, options)
        } else {
            None
        };
        h.last = Some(now);
        if let Some(f) = runaway {
            h.found.push(FindingKind::Runaway);
            self.pending.push(finding_event(p, at, f));
        }
        if self.options.memory_leak {
            self.judge_leak(p);
        }
        self.judge_oom_risk(p, s.rss_bytes);
    }

    /// After a sampling round: looks at the processes stalled for `hang_after` (at most once
    /// per probe interval) and reports the hangs and deadlocks among them.
    pub fn after_round(&mut self, tracker: &Tracker) {
        self.runner
            .tick(self.latest_ns, |pid| tracker.process(pid).is_some());
        let options = &self.options;
        if !(options.hang || options.deadlock) {
            return;
        }
        let now = self.latest_ns;
        let after = options.hang_after.as_nanos() as u64;
        if now.saturating_sub(self.last_probe_ns) < probe_every_ns(options) {
            return;
        }
        // Processes from before the agent (a host's daemons) are not judged: only what was
        // started while traced.
        let candidates: Vec<(ProcessKey, u64)> = self
            .histories
            .iter()
            .filter_map(|(k, h)| {
                let since = h.stalled_since?;
                (now.saturating_sub(since) >= after).then_some((*k, since))
            })
            .filter(|(k, _)| {
                tracker
                    .process(k.tgid)
                    .is_some_and(|p| p.key == *k && p.spanned && !p.seeded)
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        self.last_probe_ns = now;
        let mut world = hang::World::default();
        let since: HashMap<u32, u64> = candidates.iter().map(|(k, s)| (k.tgid, *s)).collect();
        // Looked at when it becomes a candidate, then each time its stall doubles; in between
        // the last look stands (no CPU progress: the same wait).
        let mut looked = HashSet::new();
        for (k, since) in &candidates {
            let Some(h) = self.histories.get_mut(k) else {
                continue;
            };
            if h.probe.is_none() || now >= h.next_probe_ns {
                h.probe = waits::probe(k.tgid);
                h.next_probe_ns = now + now.saturating_sub(*since).max(after);
                looked.insert(k.tgid);
            }
            if let Some(probe) = &h.probe {
                world.stalled.insert(k.tgid, probe.clone());
            }
        }
        for p in tracker.live() {
            world.traced.insert(p.key.tgid);
            world.children.entry(p.ppid).or_default().push(p.key.tgid);
        }
        let pipe_inodes: HashSet<u64> = world
            .stalled
            .values()
            .filter_map(|p| match p.wait {
                waits::Wait::Pipe { inode, .. } => Some(inode),
                _ => None,
            })
            .collect();
        // Who holds a pipe's other end changes as processes come and go: read again whenever a
        // pipe's waiter was looked at.
        let pipe_looked = world
            .stalled
            .iter()
            .any(|(t, p)| looked.contains(t) && matches!(p.wait, waits::Wait::Pipe { .. }));
        if !pipe_inodes.is_empty() && pipe_looked {
            for p in tracker.live() {
                for (inode, (reads, writes)) in waits::pipes(p.key.tgid) {
                    if pipe_inodes.contains(&inode) {
                        world
                            .pipes
                            .entry(inode)
                            .or_default()
                            .push((p.key.tgid, reads, writes));
                    }
                }
            }
        }
        if world
            .stalled
            .values()
            .any(|p| matches!(p.wait, waits::Wait::Lock { .. }))
        {
            world.locks = waits::locks();
        }
        if looked.is_empty() {
            // Nothing new: every verdict the cached looks allow was made already.
            return;
        }
        for verdict in world.decide() {
            match verdict {
                hang::Verdict::Hang { tgid, waiters } if self.options.hang => {
                    self.hang(tracker, &world, tgid, &waiters, now - since[&tgid]);
                }
                hang::Verdict::Deadlock { cycle } if self.options.deadlock => {
                    let stalled = cycle.iter().map(|t| now - since[t]).min().unwrap_or(0);
                    self.deadlock(tracker, &world, &cycle, stalled);
                }
                hang::Verdict::Deadlock { cycle } if self.options.hang => {
                    // Deadlocks off: each member whose wait is concrete is a hang.
                    for &t in &cycle {
                        self.hang(tracker, &world, t, &[], now - since[&t]);
                    }
                }
                _ => {}
            }
        }
    }

    /// What `tgid` waits on, in words, with the traced processes behind it.
    fn waits_on(tracker: &Tracker, world: &hang::World, tgid: u32) -> String {
        let Some(probe) = world.stalled.get(&tgid) else {
            return String::new();
        };
        let names: Vec<String> = world
            .targets(tgid)
            .iter()
            .filter_map(|t| tracker.process(*t).map(named))
            .collect();
        let role = match &probe.wait {
            waits::Wait::Lock { .. } => "held by",
            waits::Wait::Pipe { writing: true, .. } => "read by",
            waits::Wait::Pipe { writing: false, .. } => "written by",
            _ => "",
        };
        match (names.is_empty(), role.is_empty()) {
            (false, false) => format!("{} {role} {}", probe.wait.describe(), names.join(", ")),
            (false, true) => format!("{}: {}", probe.wait.describe(), names.join(", ")),
            (true, false) => format!("{} {role} no traced process", probe.wait.describe()),
            (true, true) => probe.wait.describe(),
        }
    }

    fn hang(
        &mut self,
        tracker: &Tracker,
        world: &hang::World,
        tgid: u32,
        waiters: &[u32],
        stalled_ns: u64,
    ) {
        let (Some(p), Some(probe)) = (tracker.process(tgid), world.stalled.get(&tgid)) else {
            return;
        };
        let h = self.histories.entry(p.key).or_default();
        if h.has_found(FindingKind::Hang) || h.has_found(FindingKind::Deadlock) {
            return;
        }
        h.found.push(FindingKind::Hang);
        let stalled_s = stalled_ns as f64 / 1e9;
        let waits_on = Self::waits_on(tracker, world, tgid);
        let waiter_names: Vec<String> = waiters
            .iter()
            .filter_map(|t| tracker.process(*t).map(named))
            .collect();
        let mut summary = format!(
            "no CPU progress for {}, blocked on {waits_on} (state {}{}{})",
            units::duration(stalled_s),
            probe.state,
            if probe.syscall.is_empty() {
                String::new()
            } else {
                format!(", in {}", probe.syscall)
            },
            if probe.wchan.is_empty() {
                String::new()
            } else {
                format!(", wchan {}", probe.wchan)
            },
        );
        if !waiter_names.is_empty() {
            summary.push_str(&format!("; waited on by {}", waiter_names.join(", ")));
        }
        let finding = Finding {
            kind: FindingKind::Hang,
            severity: Severity::Warning,
            summary,
            value: (stalled_s * 10.0).round() / 10.0,
            unit: "s",
            evidence: vec![
                ("stalled_s", ((stalled_s * 1000.0).round() / 1000.0).into()),
                ("wait", probe.wait.class().into()),
                ("waits_on", waits_on.into()),
                ("state", probe.state.to_string().into()),
                ("wchan", probe.wchan.clone().into()),
                ("syscall", probe.syscall.clone().into()),
                ("waiters", waiters.to_vec().into()),
            ],
            involved: waiters
                .iter()
                .filter_map(|t| tracker.process(*t))
                .map(|w| Involved {
                    tgid: w.key.tgid,
                    start_ns: w.key.start_ns,
                    comm: w.comm.clone(),
                    waits_on: Self::waits_on(tracker, world, w.key.tgid),
                })
                .collect(),
        };
        self.pending.push(finding_event(p, self.latest_ns, finding));
    }

    fn deadlock(&mut self, tracker: &Tracker, world: &hang::World, cycle: &[u32], stalled_ns: u64) {
        let members: Vec<&Process> = cycle.iter().filter_map(|t| tracker.process(*t)).collect();
        let (Some(first), true) = (members.first(), members.len() == cycle.len()) else {
            return;
        };
        let mut keys: Vec<ProcessKey> = members.iter().map(|p| p.key).collect();
        keys.sort_by_key(|k| (k.tgid, k.start_ns));
        if !self.deadlocks.insert(keys) {
            return;
        }
        for p in &members {
            self.histories
                .entry(p.key)
                .or_default()
                .found
                .push(FindingKind::Deadlock);
        }
        let stalled_s = stalled_ns as f64 / 1e9;
        let steps: Vec<String> = members
            .iter()
            .map(|p| {
                format!(
                    "{} waits on {}",
                    named(p),
                    Self::waits_on(tracker, world, p.key.tgid)
                )
            })
            .collect();
        let kinds: Vec<&str> = cycle
            .iter()
            .filter_map(|t| world.stalled.get(t))
            .map(|p| p.wait.class())
            .filter(|c| *c != "children")
            .collect();
        let finding = Finding {
            kind: FindingKind::Deadlock,
            severity: Severity::Critical,
            // The waits that close the cycle (locks, pipes); waits on children link them.
            summary: format!(
                "{} processes wait on each other, none moved for {}: {}",
                members.len(),
                units::duration(stalled_s),
                members
                    .iter()
                    .zip(&steps)
                    .filter(|(p, _)| {
                        !matches!(
                            world.stalled.get(&p.key.tgid).map(|w| &w.wait),
                            Some(waits::Wait::Children | waits::Wait::EventLoop(_))
                        )
                    })
                    .map(|(_, step)| step.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            value: (stalled_s * 10.0).round() / 10.0,
            unit: "s",
            evidence: vec![
                ("stalled_s", ((stalled_s * 1000.0).round() / 1000.0).into()),
                ("cycle", cycle.to_vec().into()),
                ("waits", kinds.into()),
                ("steps", steps.clone().into()),
            ],
            involved: members[1..]
                .iter()
                .map(|p| Involved {
                    tgid: p.key.tgid,
                    start_ns: p.key.start_ns,
                    comm: p.comm.clone(),
                    waits_on: Self::waits_on(tracker, world, p.key.tgid),
                })
                .collect(),
        };
        self.pending
            .push(finding_event(first, self.latest_ns, finding));
    }
}
