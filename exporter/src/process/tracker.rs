//! Process table built from the event stream: which processes are alive, their place in the
//! tree, the image they run, how each one ended, and the trace/span ids that link them.
//!
//! It owns its state (one task, no locks). Rules, each covered by a test below:
//! - identity is `(tgid, start time)`: a reused pid is a new process;
//! - a process's tree parent is fixed when it is first seen (the nearest visible ancestor):
//!   when the parent dies first and the kernel reparents the child to a subreaper, the span
//!   stays under the parent that started it;
//! - an exec replaces the image inside the same process: one span per process lifetime, named
//!   after the last image; the images it replaced become span events;
//! - an event for a process seen for the first time creates it (its fork was before tracing
//!   or in a lost record); an event for a process that already ended is late and ignored;
//! - processes already running when the agent started are seeded from `/proc`;
//! - ended processes are remembered (for late children and late events) for a retention
//!   period, then evicted, so memory stays bounded in a daemon that runs for weeks; live
//!   processes whose exit record was lost are found by [`Tracker::sweep_lost`].

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use super::{
    model::{Ending, MAX_PREVIOUS_EXECS, Process, ProcessKey},
    report::Report,
    trace_context::SpanRef,
};
use crate::{
    event::{Body, Common, Event, Exec, Sample},
    process::{
        ids::IdGenerator,
        procfs::{self, ProcEntry},
        redact::Redactor,
        samples::Round,
    },
};
use exporter_common::flags;

/// Running totals for the run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrackerTotals {
    /// Distinct visible processes seen.
    pub processes: u64,
    pub ended: u64,
    /// Failures that reached a root, an ancestor that was not traced or is still running:
    /// what made the run (or a tree) fail.
    pub failed: u64,
    /// Non-zero exits and fatal signals that a traced ancestor absorbed by exiting 0 (a
    /// probe's `readlink` failing, `cmd || true`): not failures of the run.
    pub absorbed: u64,
    /// Processes dropped from the tree because they ran a deny-listed executable.
    pub hidden: u64,
    /// A pid was reused before its previous process's exit arrived (exit lost).
    pub missing_exits: u64,
    /// Live processes found gone in `/proc` without an exit record.
    pub lost_exits: u64,
    /// Events for a process that had already ended.
    pub late_events: u64,
    /// Ended processes forgotten after the retention period or over the cap.
    pub evicted: u64,
    /// Process samples made from the kernel's sampling rounds.
    pub samples: u64,
}

#[derive(Debug, Clone)]
pub struct TrackerOptions {
    /// The run's span: scope roots become its children (run mode).
    pub run_span: Option<SpanRef>,
    /// A span outside (a CI job's): every process without a traced parent becomes its child
    /// (daemon mode), instead of starting a trace of its own.
    pub job_span: Option<SpanRef>,
    /// How long an ended process is remembered (ns).
    pub retain_ended_ns: u64,
    /// At most this many ended processes are remembered.
    pub max_ended: usize,
    /// Processes that started before this (CLOCK_MONOTONIC ns) and were not seeded have no
    /// span: only part of their life was seen.
    pub started_ns: u64,
    /// Masks secrets in the command lines of seeded processes (read from `/proc`).
    pub redact: Arc<Redactor>,
    /// How much of each process's files is kept.
    pub files: Arc<pipetrace_core::file_log::FilePolicy>,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            run_span: None,
            job_span: None,
            retain_ended_ns: 10_000_000_000,
            max_ended: 16_384,
            started_ns: 0,
            redact: Arc::default(),
            files: Arc::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct EndedRef {
    span: SpanRef,
    spanned: bool,
}

#[derive(Debug)]
pub struct Tracker {
    live: HashMap<u32, Process>,
    ended: HashMap<ProcessKey, EndedRef>,
    ended_order: VecDeque<(u64, ProcessKey)>,
    /// Live processes `/proc` did not show at the last sweep.
    suspects: HashSet<ProcessKey>,
    ids: IdGenerator,
    options: TrackerOptions,
    totals: TrackerTotals,
    tolerance_ns: u64,
    round: Round,
    /// Processes with an event lost on the queue that are not in the table yet (their
    /// earlier events are still queued): marked incomplete when they arrive.
    pending_incomplete: HashSet<ProcessKey>,
}

/// Findings kept per process (span events): a bound, not a limit a real process reaches.
const MAX_FINDINGS_PER_PROCESS: usize = 32;

/// Processes remembered in `pending_incomplete` at most.
const MAX_PENDING_INCOMPLETE: usize = 65_536;

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerOptions::default())
    }
}

impl Tracker {
    pub fn new(options: TrackerOptions) -> Self {
        Self {
            live: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            suspects: HashSet::new(),
            ids: IdGenerator::new(),
            options,
            totals: TrackerTotals::default(),
            tolerance_ns: crate::process::procfs::start_tolerance_ns(),
            round: Round::default(),
            pending_incomplete: HashSet::new(),
        }
    }

    /// The totals; failures still waiting on a live ancestor's ending count as failures.
    pub fn totals(&self) -> TrackerTotals {
        let mut totals = self.totals;
        totals.failed += self.live.values().map(|p| p.failed_below).sum::<u64>();
        totals
    }

    /// A process ended (`failed`: non-zero or by a fatal signal): its failure and those it
    /// carried pass up to its live tree parent, whose own ending decides them, or count as
    /// failures where no traced parent is left to decide; an exit 0 absorbs what it carried.
    fn settle_failures(&mut self, p: &Process, failed: bool) {
        if !failed {
            self.totals.absorbed += p.failed_below;
            return;
        }
        let carried = 1 + p.failed_below;
        let parent = p
            .parent
            .filter(|_| !p.root)
            .and_then(|k| self.live.get_mut(&k.tgid).filter(|q| q.key == k));
        match parent {
            Some(parent) => parent.failed_below += carried,
            None => self.totals.failed += carried,
        }
    }

    pub fn live(&self) -> impl Iterator<Item = &Process> {
        self.live.values()
    }

    /// Ended processes currently remembered.
    pub fn remembered(&self) -> usize {
        self.ended.len()
    }

    /// Does the live entry for `tgid` belong to the process that started at `start_ns`?
    /// A seeded entry's start is approximate: a close match is the same process.
    fn same(&self, p: &Process, start_ns: u64) -> bool {
        p.key.start_ns == start_ns
            || (p.seeded && p.key.start_ns.abs_diff(start_ns) <= self.tolerance_ns)
    }

    /// The live tree parent of a process being created.
    fn live_parent(&self, c: &Common) -> Option<&Process> {
        if c.tree_ppid == 0 {
            return None;
        }
        self.live
            .get(&c.tree_ppid)
            .filter(|p| c.parent_start_ns == 0 || self.same(p, c.parent_start_ns))
    }

    /// Span context of the process's tree parent, if that parent has a span.
    fn parent_link(&self, c: &Common) -> Option<SpanRef> {
        if c.tree_ppid == 0 {
            return None;
        }
        if let Some(p) = self.live_parent(c) {
            return p.spanned.then_some(p.span);
        }
        let key = ProcessKey {
            tgid: c.tree_ppid,
            start_ns: c.parent_start_ns,
        };
        self.ended
            .get(&key)
            .and_then(|e| e.spanned.then_some(e.span))
    }

    fn create(&mut self, c: &Common) -> Process {
        let key = ProcessKey {
            tgid: c.tgid,
            start_ns: c.start_ns,
        };
        let root = c.has(flags::ROOT);
        let spanned = c.start_ns >= self.options.started_ns;
        let (trace_id, parent_span) = match (root, self.parent_link(c)) {
            (false, Some(parent)) => (parent.trace_id, Some(parent.span_id)),
            _ => match (self.options.run_span, self.options.job_span) {
                (Some(run), _) if root => (run.trace_id, Some(run.span_id)),
                (_, Some(job)) => (job.trace_id, Some(job.span_id)),
                _ => (self.ids.trace_id(), None),
            },
        };
        self.totals.processes += 1;
        // A forked child runs its parent's image until it executes its own. (The tree parent
        // is the real parent unless hidden processes are skipped in between.)
        let inherited = self
            .live_parent(c)
            .filter(|p| p.key.tgid == c.ppid)
            .and_then(|p| p.exec.clone());
        Process {
            key,
            parent: (c.tree_ppid != 0).then_some(ProcessKey {
                tgid: c.tree_ppid,
                start_ns: c.parent_start_ns,
            }),
            ppid: c.ppid,
            comm: c.comm.clone(),
            uid: c.uid,
            cgroup_id: c.cgroup_id,
            exec_inherited: inherited.is_some(),
            exec: inherited,
            exec_ns: None,
            exec_count: 0,
            previous_execs: Vec::new(),
            root,
            seeded: false,
            spanned,
            span: SpanRef {
                trace_id,
                span_id: self.ids.span_id(),
            },
            parent_span,
            ending: None,
            end_ns: None,
            last_sample: None,
            connections: Vec::new(),
            files: None,
            findings: Vec::new(),
            incomplete: false,
            failed_below: 0,
        }
    }

    /// The live entry for this event's process, created when the event is its first.
    fn entry(&mut self, c: &Common) -> &mut Process {
        let stale = self
            .live
            .get(&c.tgid)
            .is_some_and(|p| !self.same(p, c.start_ns));
        if stale && let Some(old) = self.live.remove(&c.tgid) {
            self.totals.missing_exits += 1;
            // Its ending is unknown: what it carried stays a failure.
            self.totals.failed += old.failed_below;
            self.remember(&old, c.ktime_ns);
        }
        if !self.live.contains_key(&c.tgid) {
            let p = self.create(c);
            self.live.insert(c.tgid, p);
        }
        let p = self.live.get_mut(&c.tgid).expect("inserted above");
        if p.seeded {
            // The kernel's start time is exact: adopt it.
            p.key.start_ns = c.start_ns;
        }
        p
    }

    /// Seeds a process that was running before tracing started (parents before children).
    pub fn seed(&mut self, e: &ProcEntry) {
        if self.live.contains_key(&e.tgid) {
            return;
        }
        let (mut argv, exe, cwd) = crate::process::procfs::image(e.tgid);
        self.options.redact.argv(&mut argv);
        let common = Common {
            flags: if e.ppid == 0 { flags::ROOT } else { 0 },
            ktime_ns: e.start_ns,
            start_ns: e.start_ns,
            parent_start_ns: 0,
            cgroup_id: procfs::cgroup_id(e.tgid),
            tgid: e.tgid,
            tid: e.tgid,
            ppid: e.real_ppid,
            tree_ppid: e.ppid,
            uid: e.uid,
            comm: e.comm.clone(),
        };
        let mut p = self.create(&common);
        p.seeded = true;
        p.spanned = true;
        if !argv.is_empty() || exe.is_some() {
            p.exec = Some(Arc::new(Exec {
                exe,
                cwd,
                filename: argv.first().cloned().unwrap_or_default(),
                argv_total_bytes: argv.iter().map(|a| a.len() as u32 + 1).sum(),
                argv,
                argv_truncated: false,
                hidden: false,
            }));
        }
        self.live.insert(e.tgid, p);
    }

    fn remember(&mut self, p: &Process, now_ns: u64) {
        self.ended.insert(
            p.key,
            EndedRef {
                span: p.span,
                spanned: p.spanned,
            },
        );
        self.ended_order.push_back((now_ns, p.key));
        self.evict(now_ns);
    }

    /// Forgets ended processes past the retention period or over the cap.
    pub fn evict(&mut self, now_ns: u64) {
        while let Some(&(at, key)) = self.ended_order.front() {
            let expired = at.saturating_add(self.options.retain_ended_ns) <= now_ns;
            if !expired && self.ended_order.len() <= self.options.max_ended {
                break;
            }
            self.ended_order.pop_front();
            if self.ended.remove(&key).is_some() {
                self.totals.evicted += 1;
            }
        }
    }

    fn is_late(&self, c: &Common) -> bool {
        self.ended.contains_key(&ProcessKey {
            tgid: c.tgid,
            start_ns: c.start_ns,
        }) && self
            .live
            .get(&c.tgid)
            .is_none_or(|p| p.key.start_ns != c.start_ns)
    }

    /// An event of process `(tgid, start_ns)` was lost on the way (a full queue): what is
    /// known of it is partial.
    pub fn mark_incomplete(&mut self, tgid: u32, start_ns: u64) {
        if let Some(p) = self.live.get(&tgid)
            && self.same(p, start_ns)
        {
            self.live.get_mut(&tgid).expect("checked above").incomplete = true;
            return;
        }
        if self.pending_incomplete.len() >= MAX_PENDING_INCOMPLETE {
            self.pending_incomplete.clear();
        }
        self.pending_incomplete
            .insert(ProcessKey { tgid, start_ns });
    }

    /// Applies one event (taking its exec payload); returns the process it ended, if any.
    pub fn apply(&mut self, ev: Event) -> Option<Process> {
        let before = self.totals.processes;
        let (tgid, from_fork) = (ev.common.tgid, matches!(ev.body, Body::Fork));
        let start_ns = ev.common.start_ns;
        // A process's first record is its fork unless the kernel says it is a first sight
        // (older than the agent, a root): otherwise its fork record was lost.
        let fork_lost = !from_fork && !ev.common.has(flags::FIRST_SIGHT);
        // The kernel could not write an earlier record of this process (its exec, say).
        let records_lost = ev.common.has(flags::RECORDS_LOST);
        let mut ended = self.apply_body(ev);
        let created = self.totals.processes > before;
        let queued_loss = created
            && !self.pending_incomplete.is_empty()
            && self
                .pending_incomplete
                .remove(&ProcessKey { tgid, start_ns });
        if (fork_lost && created) || records_lost || queued_loss {
            let live_match = self.live.get(&tgid).is_some_and(|p| self.same(p, start_ns));
            if let Some(p) = ended.as_mut() {
                p.incomplete = true;
            } else if live_match && let Some(p) = self.live.get_mut(&tgid) {
                p.incomplete = true;
            }
        }
        ended
    }

    fn apply_body(&mut self, ev: Event) -> Option<Process> {
        let Event { common, body } = ev;
        if self.is_late(&common) {
            self.totals.late_events += 1;
            return None;
        }
        match body {
            Body::Fork | Body::Memory(_) => {
                self.entry(&common);
                None
            }
            Body::Connection(c) => {
                let p = self.entry(&common);
                // The kernel lists each peer once, up to its cap: this only bounds a flood.
                if p.connections.len() < 2 * crate::config::MAX_NETWORK_PEERS as usize {
                    p.connections.push((common.ktime_ns, c));
                }
                None
            }
            Body::File(access) => {
                let policy = self.options.files.clone();
                let p = self.entry(&common);
                p.files
                    .get_or_insert_with(Box::default)
                    .add(common.ktime_ns, *access, &policy);
                None
            }
            Body::ThreadSample(t) => {
                self.round.add(common.tgid, common.start_ns, &t);
                None
            }
            // A finding never creates a process: it goes on the spans of the live ones it
            // names (the subject and the others involved), bounded like connections.
            Body::Finding(f) => {
                let keys = std::iter::once((common.tgid, common.start_ns))
                    .chain(f.involved.iter().map(|i| (i.tgid, i.start_ns)));
                for (tgid, start_ns) in keys {
                    if let Some(p) = self.live.get_mut(&tgid)
                        && p.key.start_ns == start_ns
                        && p.findings.len() < MAX_FINDINGS_PER_PROCESS
                    {
                        p.findings.push((common.ktime_ns, f.clone()));
                    }
                }
                None
            }
            // Made by `end_round`, never received.
            Body::SampleEnd(_) | Body::Sample(_) => None,
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
                if let (Some(old), Some(at)) = (p.exec.take(), p.exec_ns)
                    && p.previous_execs.len() < MAX_PREVIOUS_EXECS
                {
                    p.previous_execs.push((at, old));
                }
                p.exec = Some(Arc::from(exec));
                p.exec_inherited = false;
                p.exec_ns = Some(common.ktime_ns);
                p.exec_count += 1;
                None
            }
            Body::Exit(mut exit) => {
                self.entry(&common);
                let mut p = self.live.remove(&common.tgid)?;
                if let Some(s) = &p.last_sample {
                    // The final totals continue the samples' counters.
                    exit.usage = exit.usage.after(&s.usage());
                }
                p.ppid = common.ppid;
                if let Some(files) = p.files.as_mut() {
                    files.unrecorded += exit.files_unsent;
                    crate::process::written::measure(files, &self.options.files);
                }
                p.ending = Some(Ending::Exited(exit));
                p.end_ns = Some(common.ktime_ns);
                self.totals.ended += 1;
                self.settle_failures(&p, exit.failed());
                self.remember(&p, common.ktime_ns);
                Some(p)
            }
        }
    }

    /// Closes sampling round `session` (ended at `ktime_ns`): each live process in it gets its
    /// sample, returned as events in start order. Samples never create a process.
    pub fn end_round(&mut self, session: u64, ktime_ns: u64) -> Vec<Event> {
        let mut out = Vec::new();
        for (tgid, round) in self.round.finish(session) {
            let Some(p) = self.live.get(&tgid) else {
                continue;
            };
            if !self.same(p, round.start_ns) {
                continue;
            }
            let p = self.live.get_mut(&tgid).expect("checked above");
            if p.seeded {
                // The kernel's start time is exact: one identity from the first record on.
                p.key.start_ns = round.start_ns;
            }
            let mut usage = round.usage();
            if let Some(last) = &p.last_sample {
                usage = usage.after(&last.usage());
            }
            let sample = Sample {
                cpu_user_ns: usage.cpu_user_ns,
                cpu_system_ns: usage.cpu_system_ns,
                rss_bytes: round.rss_bytes,
                threads: round.threads,
                run_delay_ns: round.run_delay_ns,
                activity: round.activity(),
            };
            p.last_sample = Some(sample);
            self.totals.samples += 1;
            out.push(Event {
                common: Common {
                    flags: 0,
                    ktime_ns,
                    start_ns: p.key.start_ns,
                    parent_start_ns: p.parent.map_or(0, |k| k.start_ns),
                    cgroup_id: p.cgroup_id,
                    tgid,
                    tid: tgid,
                    ppid: p.ppid,
                    tree_ppid: p.parent.map_or(0, |k| k.tgid),
                    uid: p.uid,
                    comm: p.comm.clone(),
                },
                body: Body::Sample(sample),
            });
        }
        out
    }

    /// Takes one record from the ring and says what happened, in order: the record itself
    /// (its command line redacted first), then the process it started, moved, sampled or
    /// ended. A round end reports the round's samples; per-thread records report nothing.
    pub fn handle(&mut self, mut ev: Event, mut report: impl FnMut(Report)) {
        if let Body::Exec(exec) = &mut ev.body {
            self.options.redact.argv(&mut exec.argv);
        }
        match ev.body {
            // Kept per process (its `files`), not reported one by one.
            Body::ThreadSample(_) | Body::File(_) => {
                self.apply(ev);
            }
            Body::SampleEnd(session) => {
                for sample in self.end_round(session, ev.common.ktime_ns) {
                    report(Report::Event(&sample));
                    if let (Body::Sample(s), Some(p)) =
                        (&sample.body, self.process(sample.common.tgid))
                    {
                        report(Report::Sampled(p, s));
                    }
                }
            }
            _ => {
                report(Report::Event(&ev));
                let (tgid, seen) = (ev.common.tgid, self.totals.processes);
                let memory = match ev.body {
                    Body::Memory(m) => Some(m),
                    _ => None,
                };
                let ended = self.apply(ev);
                if let (Some(m), Some(p)) = (memory, self.process(tgid)) {
                    report(Report::MemoryChanged(p, &m));
                }
                // New in the table, and not from before the agent: it started while traced.
                if self.totals.processes > seen
                    && let Some(p) = ended.as_ref().or(self.process(tgid))
                    && p.spanned
                    && !p.seeded
                {
                    report(Report::Started(p));
                }
                if let Some(ended) = &ended {
                    report(Report::Ended(ended));
                }
            }
        }
    }

    /// The live process `tgid`.
    pub fn process(&self, tgid: u32) -> Option<&Process> {
        self.live.get(&tgid)
    }

    /// Ends live processes that `is_alive` says are gone at two sweeps in a row (their exit
    /// record was lost), so a long-running daemon does not accumulate them. Two sweeps, because
    /// a process leaves `/proc` only after its exit record is in the ring, but that record may
    /// still be on its way to the tracker.
    pub fn sweep_lost(
        &mut self,
        now_ns: u64,
        is_alive: impl Fn(&ProcessKey) -> bool,
    ) -> Vec<Process> {
        let gone: HashSet<ProcessKey> = self
            .live
            .values()
            .filter(|p| !is_alive(&p.key))
            .map(|p| p.key)
            .collect();
        let confirmed: Vec<ProcessKey> = gone.intersection(&self.suspects).copied().collect();
        self.suspects = &gone - &self.suspects;
        let mut out = Vec::with_capacity(confirmed.len());
        for key in confirmed {
            if self.live.get(&key.tgid).is_some_and(|p| p.key == key)
                && let Some(p) = self.end_lost(key.tgid, now_ns)
            {
                out.push(p);
            }
        }
        self.evict(now_ns);
        out
    }

    /// Ends live process `tgid` as lost: its exit record never came.
    fn end_lost(&mut self, tgid: u32, now_ns: u64) -> Option<Process> {
        let mut p = self.live.remove(&tgid)?;
        p.ending = Some(Ending::Lost);
        p.end_ns = Some(now_ns);
        p.incomplete = true;
        self.totals.failed += p.failed_below;
        self.totals.lost_exits += 1;
        self.totals.ended += 1;
        self.remember(&p, now_ns);
        Some(p)
    }

    /// Ends, as lost, the live processes `gone` says are no longer running (the kernel wrote
    /// their exit records, which were lost on the way).
    pub fn end_gone(&mut self, now_ns: u64, gone: impl Fn(&ProcessKey) -> bool) -> Vec<Process> {
        let keys: Vec<ProcessKey> = self
            .live
            .values()
            .filter(|p| gone(&p.key))
            .map(|p| p.key)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.extend(self.end_lost(key.tgid, now_ns));
        }
        out.sort_by_key(|p| p.key.start_ns);
        out
    }

    /// Takes every live process out of the table, marked still running at `now_ns`.
    pub fn drain_running(&mut self, now_ns: u64) -> Vec<Process> {
        self.totals = self.totals();
        let mut out: Vec<Process> = self
            .live
            .drain()
            .map(|(_, p)| p.still_running_at(now_ns))
            .collect();
        out.sort_by_key(|p| p.key.start_ns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Exit;

    fn common(tgid: u32, start: u64, tree_ppid: u32, parent_start: u64, flags: u16) -> Common {
        Common {
            flags,
            ktime_ns: start + 10,
            start_ns: start,
            parent_start_ns: parent_start,
            cgroup_id: 0,
            tgid,
            tid: tgid,
            ppid: tree_ppid,
            tree_ppid,
            uid: 0,
            comm: "x".into(),
        }
    }

    fn ev(tgid: u32, start: u64, tree_ppid: u32, body: Body, flags: u16) -> Event {
        Event {
            common: common(tgid, start, tree_ppid, 1, flags),
            body,
        }
    }

    fn child_of(tgid: u32, start: u64, parent: ProcessKey, body: Body) -> Event {
        Event {
            common: common(tgid, start, parent.tgid, parent.start_ns, 0),
            body,
        }
    }

    fn exec_of(exe: &str, hidden: bool) -> Body {
        Body::Exec(Box::new(Exec {
            exe: Some(exe.into()),
            cwd: None,
            filename: exe.into(),
            argv: vec!["x".into(), "a b".into()],
            argv_truncated: false,
            argv_total_bytes: 6,
            hidden,
        }))
    }

    fn exec(hidden: bool) -> Body {
        exec_of("/bin/x", hidden)
    }

    fn exit(status: u32) -> Body {
        Body::Exit(Exit::from_status(status))
    }

    fn key(tgid: u32, start_ns: u64) -> ProcessKey {
        ProcessKey { tgid, start_ns }
    }

    /// A probe's non-zero exit that its shell ignores is absorbed; a failure that its
    /// ancestors pass on to the root is the run's failure, and so is every failure it carried.
    #[test]
    fn failures_a_parent_absorbs_are_counted_apart() {
        let mut t = Tracker::default();
        let root = key(10, 100);
        t.apply(ev(10, 100, 1, Body::Fork, flags::ROOT));
        // A shim (exits 0) whose probe failed, and whose probe's own child failed first.
        let shim = key(11, 110);
        t.apply(child_of(11, 110, root, Body::Fork));
        t.apply(child_of(12, 120, shim, Body::Fork));
        t.apply(child_of(13, 130, key(12, 120), Body::Fork));
        t.apply(child_of(13, 130, key(12, 120), exit(1 << 8)));
        t.apply(child_of(12, 120, shim, exit(1 << 8)));
        assert_eq!((t.totals().failed, t.totals().absorbed), (2, 0), "pending");
        t.apply(child_of(11, 110, root, exit(0)));
        assert_eq!((t.totals().failed, t.totals().absorbed), (0, 2));
        // A step that fails, and the root that fails with it.
        t.apply(child_of(14, 140, root, Body::Fork));
        t.apply(child_of(14, 140, root, exit(3 << 8)));
        t.apply(ev(10, 100, 1, exit(3 << 8), flags::ROOT));
        assert_eq!((t.totals().failed, t.totals().absorbed), (2, 2));
        // A failure whose parent is still running when tracing stops stays a failure.
        t.apply(ev(20, 200, 1, Body::Fork, flags::ROOT));
        t.apply(child_of(21, 210, key(20, 200), Body::Fork));
        t.apply(child_of(21, 210, key(20, 200), exit(9)));
        t.drain_running(300);
        assert_eq!((t.totals().failed, t.totals().absorbed), (3, 2));
    }

    #[test]
    fn fork_exec_exit_ends_a_process() {
        let mut t = Tracker::default();
        assert!(t.apply(ev(10, 100, 1, Body::Fork, 0)).is_none());
        assert!(t.apply(ev(10, 100, 1, exec(false), 0)).is_none());
        let done = t.apply(ev(10, 100, 1, exit(2 << 8), 0)).unwrap();
        assert_eq!(done.command_line(), "x 'a b'", "quoted as a shell reads it");
        assert_eq!(done.executable_name(), "x");
        assert_eq!(done.parent.unwrap().tgid, 1);
        assert_eq!(done.exit().unwrap().code(), Some(2));
        assert_eq!(t.totals().failed, 1);
        assert_eq!(t.live().count(), 0);
    }

    #[test]
    fn children_share_the_trace_and_point_at_their_parent_span() {
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, flags::ROOT));
        t.apply(child_of(11, 200, key(10, 100), Body::Fork));
        t.apply(child_of(12, 300, key(11, 200), Body::Fork));
        let grandchild = t.apply(child_of(12, 300, key(11, 200), exit(0))).unwrap();
        let child = t.apply(child_of(11, 200, key(10, 100), exit(0))).unwrap();
        let root = t.apply(ev(10, 100, 1, exit(0), flags::ROOT)).unwrap();
        assert_eq!(root.parent_span, None);
        assert_eq!(child.parent_span, Some(root.span.span_id));
        assert_eq!(grandchild.parent_span, Some(child.span.span_id));
        assert!(
            [child.span.trace_id, grandchild.span.trace_id]
                .iter()
                .all(|t| *t == root.span.trace_id)
        );
        let ids: HashSet<u64> = [root.span, child.span, grandchild.span]
            .iter()
            .map(|s| s.span_id)
            .collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn run_roots_hang_under_the_run_span() {
        let run = SpanRef {
            trace_id: 77,
            span_id: 5,
        };
        let mut t = Tracker::new(TrackerOptions {
            run_span: Some(run),
            ..Default::default()
        });
        t.apply(ev(
            10,
            100,
            1,
            exec(false),
            flags::ROOT | flags::FIRST_SIGHT,
        ));
        let root = t.apply(ev(10, 100, 1, exit(0), 0)).unwrap();
        assert_eq!(root.span.trace_id, 77);
        assert_eq!(root.parent_span, Some(5));
        assert!(root.root);
    }

    #[test]
    fn every_tree_of_a_daemon_in_a_job_hangs_under_the_job_span() {
        let job = SpanRef {
            trace_id: 88,
            span_id: 6,
        };
        let mut t = Tracker::new(TrackerOptions {
            job_span: Some(job),
            ..Default::default()
        });
        // Two trees (no ROOT flag: a cgroup scope has none), and a child of the first.
        t.apply(ev(10, 100, 1, exec(false), flags::FIRST_SIGHT));
        t.apply(ev(20, 200, 1, exec(false), flags::FIRST_SIGHT));
        t.apply(child_of(11, 300, key(10, 100), Body::Fork));
        let child = t.apply(child_of(11, 300, key(10, 100), exit(0))).unwrap();
        let first = t.apply(ev(10, 100, 1, exit(0), 0)).unwrap();
        let second = t.apply(ev(20, 200, 1, exit(0), 0)).unwrap();
        for tree in [&first, &second] {
            assert_eq!(tree.span.trace_id, 88);
            assert_eq!(tree.parent_span, Some(6));
        }
        assert_eq!(child.span.trace_id, 88);
        assert_eq!(child.parent_span, Some(first.span.span_id));
    }

    #[test]
    fn a_child_outliving_its_parent_keeps_its_parent_span() {
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, flags::ROOT));
        t.apply(child_of(11, 200, key(10, 100), Body::Fork));
        let parent = t.apply(ev(10, 100, 1, exit(0), 0)).unwrap();
        // Reparented to init: the kernel now reports ppid 1.
        let mut late = child_of(11, 200, key(10, 100), exit(0));
        late.common.ppid = 1;
        let orphan = t.apply(late).unwrap();
        assert_eq!(orphan.ppid, 1);
        assert_eq!(orphan.parent, Some(key(10, 100)));
        assert_eq!(orphan.parent_span, Some(parent.span.span_id));
        // A child first seen after its parent ended still finds the parent's span.
        let first_sight = child_of(12, 300, key(10, 100), exec(false));
        t.apply(first_sight);
        let third = t.apply(child_of(12, 300, key(10, 100), exit(0))).unwrap();
        assert_eq!(third.parent_span, Some(parent.span.span_id));
        assert_eq!(third.span.trace_id, parent.span.trace_id);
    }

    #[test]
    fn hidden_exec_drops_the_process() {
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        t.apply(ev(10, 100, 1, exec(true), flags::HIDDEN));
        assert_eq!(t.live().count(), 0);
        assert_eq!(t.totals().processes, 0);
        assert_eq!(t.totals().hidden, 1);
    }

    #[test]
    fn reused_pid_is_a_new_process() {
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        t.apply(ev(10, 500, 1, Body::Fork, 0));
        assert_eq!(t.totals().missing_exits, 1);
        assert_eq!(t.totals().processes, 2);
        assert_eq!(t.live().next().unwrap().key.start_ns, 500);
        // The old process's late exit does not end the new one.
        assert!(t.apply(ev(10, 100, 1, exit(0), 0)).is_none());
        assert_eq!(t.totals().late_events, 1);
        let new = t.apply(ev(10, 500, 1, exit(0), 0)).unwrap();
        assert_eq!(new.key.start_ns, 500);
    }

    #[test]
    fn out_of_order_events_neither_duplicate_nor_resurrect() {
        let mut t = Tracker::default();
        // Exec before fork: the exec creates the process; the fork then changes nothing.
        t.apply(ev(10, 100, 1, exec(false), flags::FIRST_SIGHT));
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        assert_eq!(t.totals().processes, 1);
        assert_eq!(t.live().next().unwrap().exec_count, 1);
        let done = t.apply(ev(10, 100, 1, exit(0), 0)).unwrap();
        assert!(done.exec.is_some());
        // An exec arriving after the exit is late: no zombie entry.
        assert!(t.apply(ev(10, 100, 1, exec(false), 0)).is_none());
        assert_eq!(t.live().count(), 0);
        assert_eq!(t.totals().late_events, 1);
        // An exit for a process never seen ends it at once.
        let lone = t.apply(ev(7, 50, 1, exit(9), flags::FIRST_SIGHT)).unwrap();
        assert_eq!(lone.exit().unwrap().signal(), Some(9));
        assert_eq!(t.totals().processes, 2);
    }

    #[test]
    fn exec_chain_is_one_process_named_after_the_last_image() {
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        t.apply(ev(10, 100, 1, exec_of("/usr/bin/dash", false), 0));
        t.apply(ev(10, 100, 1, exec_of("/usr/bin/env", false), 0));
        t.apply(ev(10, 100, 1, exec_of("/usr/bin/python3", false), 0));
        let p = t.apply(ev(10, 100, 1, exit(0), 0)).unwrap();
        assert_eq!(p.executable_name(), "python3");
        assert_eq!(p.exec_count, 3);
        let earlier: Vec<_> = p
            .previous_execs
            .iter()
            .map(|(_, e)| e.exe.clone().unwrap())
            .collect();
        assert_eq!(earlier, ["/usr/bin/dash", "/usr/bin/env"]);
        assert_eq!(t.totals().processes, 1);
    }

    #[test]
    fn a_forked_child_runs_its_parents_image_until_it_execs() {
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        t.apply(ev(10, 100, 1, exec_of("/usr/bin/dash", false), 0));
        t.apply(child_of(11, 200, key(10, 100), Body::Fork));
        t.apply(child_of(12, 300, key(10, 100), Body::Fork));
        t.apply(child_of(
            12,
            300,
            key(10, 100),
            exec_of("/usr/bin/cat", false),
        ));
        let subshell = t.apply(child_of(11, 200, key(10, 100), exit(0))).unwrap();
        assert_eq!(subshell.executable_name(), "dash");
        assert!(subshell.exec_inherited);
        assert_eq!(subshell.exec_count, 0);
        let cat = t.apply(child_of(12, 300, key(10, 100), exit(0))).unwrap();
        assert_eq!(cat.executable_name(), "cat");
        assert!(!cat.exec_inherited);
        assert!(
            cat.previous_execs.is_empty(),
            "the inherited image is not an exec of its own"
        );
    }

    #[test]
    fn processes_from_before_the_agent_have_no_span_and_their_children_start_traces() {
        let mut t = Tracker::new(TrackerOptions {
            started_ns: 1_000,
            ..Default::default()
        });
        t.apply(ev(10, 100, 1, Body::Fork, flags::FIRST_SIGHT));
        t.apply(child_of(11, 2_000, key(10, 100), Body::Fork));
        let child = t.apply(child_of(11, 2_000, key(10, 100), exit(0))).unwrap();
        assert!(child.spanned);
        assert_eq!(child.parent_span, None);
        let old = t.apply(ev(10, 100, 1, exit(0), 0)).unwrap();
        assert!(!old.spanned);
    }

    #[test]
    fn seeded_processes_match_the_kernels_exact_start_time() {
        let mut t = Tracker::new(TrackerOptions {
            started_ns: u64::MAX,
            ..Default::default()
        });
        let approx = 5_000_000_000;
        t.seed(&ProcEntry {
            tgid: 10,
            ppid: 0,
            real_ppid: 1,
            comm: "make".into(),
            start_ns: approx,
            uid: 0,
        });
        t.seed(&ProcEntry {
            tgid: 11,
            ppid: 10,
            real_ppid: 10,
            comm: "cc".into(),
            start_ns: approx + 20_000_000,
            uid: 0,
        });
        let exact = approx + 3_000_000;
        // A new child of the seeded root carries the root's exact start time.
        t.apply(child_of(12, 9_000_000_000, key(10, exact), Body::Fork));
        let child = t
            .apply(child_of(12, 9_000_000_000, key(10, exact), exit(0)))
            .unwrap();
        let seeded_child = t
            .apply(child_of(11, approx + 21_000_000, key(10, exact), exit(0)))
            .unwrap();
        let root = t.apply(ev(10, exact, 0, exit(0), flags::ROOT)).unwrap();
        assert!(root.seeded && root.spanned);
        assert_eq!(root.key.start_ns, exact);
        assert_eq!(child.parent_span, Some(root.span.span_id));
        assert_eq!(seeded_child.parent_span, Some(root.span.span_id));
        assert_eq!(t.totals().missing_exits, 0);
        assert_eq!(t.totals().processes, 3);
    }

    #[test]
    fn ended_processes_are_forgotten_after_retention_and_over_the_cap() {
        let mut t = Tracker::new(TrackerOptions {
            retain_ended_ns: 1_000,
            max_ended: 100,
            ..Default::default()
        });
        for i in 0..1_000u32 {
            let start = u64::from(i) * 10;
            t.apply(ev(i + 2, start, 1, Body::Fork, 0));
            t.apply(ev(i + 2, start, 1, exit(0), 0));
            assert!(t.remembered() <= 101);
        }
        assert_eq!(t.live().count(), 0);
        t.evict(1_000_000);
        assert_eq!(t.remembered(), 0);
        assert_eq!(t.totals().evicted, 1_000);
    }

    #[test]
    fn lost_exits_end_after_two_sweeps() {
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        t.apply(ev(11, 100, 1, Body::Fork, 0));
        let gone = |k: &ProcessKey| k.tgid != 10;
        assert!(t.sweep_lost(1_000, gone).is_empty());
        let ended = t.sweep_lost(2_000, gone);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].key.tgid, 10);
        assert_eq!(ended[0].ending, Some(Ending::Lost));
        assert_eq!(t.totals().lost_exits, 1);
        assert_eq!(t.live().count(), 1);
        // A process missing only once (its exit was on the way) is not ended.
        t.apply(ev(12, 100, 1, Body::Fork, 0));
        t.sweep_lost(3_000, |k: &ProcessKey| k.tgid != 12);
        assert!(t.sweep_lost(4_000, |_: &ProcessKey| true).is_empty());
        assert_eq!(t.live().count(), 2);
    }

    #[test]
    fn sampling_rounds_sum_threads_and_the_exit_continues_the_counters() {
        use crate::event::ThreadSample;
        let mut t = Tracker::default();
        t.apply(ev(10, 100, 1, Body::Fork, 0));
        let thread = |tgid: u32, utime_ns: u64, runtime_ns: u64| Event {
            common: common(tgid, 100, 1, 0, 0),
            body: Body::ThreadSample(ThreadSample {
                session: 5,
                utime_ns,
                stime_ns: 1,
                runtime_ns,
                dead_utime_ns: 0,
                dead_stime_ns: 0,
                dead_runtime_ns: 0,
                rss_pages: 1,
                ..Default::default()
            }),
        };
        assert!(t.apply(thread(10, 4, 400)).is_none());
        t.apply(thread(10, 0, 200));
        // A thread of a process the tracker does not know: no sample, no process.
        t.apply(thread(99, 1, 50));
        let out = t.end_round(5, 1_000);
        assert_eq!(out.len(), 1);
        let Body::Sample(sample) = out[0].body else {
            panic!("{out:?}")
        };
        assert_eq!(out[0].common.tgid, 10);
        assert_eq!(out[0].common.ktime_ns, 1_000);
        assert_eq!((sample.cpu_user_ns, sample.cpu_system_ns), (400, 200));
        assert_eq!(
            (sample.rss_bytes, sample.threads),
            (crate::capture::decode::page_size(), 2)
        );
        assert_eq!(t.process(10).unwrap().last_sample, Some(sample));
        assert!(t.process(99).is_none());
        assert!(t.end_round(5, 2_000).is_empty(), "a round ends once");
        // The exit's ratio leans to system time: user stays where the sample put it.
        let mut exit = Exit::from_status(0);
        exit.usage.cpu_user_ns = 300;
        exit.usage.cpu_system_ns = 500;
        let ended = t.apply(ev(10, 100, 1, Body::Exit(exit), 0)).unwrap();
        let usage = ended.exit().unwrap().usage;
        assert_eq!((usage.cpu_user_ns, usage.cpu_system_ns), (400, 400));
    }

    #[test]
    fn lost_records_mark_the_process_incomplete() {
        let mut t = Tracker::default();
        // First seen at exec, no first-sight flag: its fork record was lost.
        t.apply(ev(10, 100, 1, exec(false), 0));
        assert!(t.process(10).unwrap().incomplete);
        // A first sight (older than the agent) is not a loss; neither is a normal fork.
        t.apply(ev(11, 100, 1, exec(false), flags::FIRST_SIGHT));
        t.apply(ev(12, 100, 1, Body::Fork, 0));
        assert!(!t.process(11).unwrap().incomplete);
        assert!(!t.process(12).unwrap().incomplete);
        // An exit-only process (fork and exec lost) ends incomplete.
        let ended = t.apply(ev(13, 100, 1, exit(0), 0)).unwrap();
        assert!(ended.incomplete);
        // Gone from the kernel without an exit record: ended as lost.
        let gone = t.end_gone(5_000, |k| k.tgid == 12);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].ending, Some(Ending::Lost));
        assert!(gone[0].incomplete);
        assert_eq!(t.totals().lost_exits, 1);
        assert!(t.process(12).is_none() && t.process(11).is_some());
    }

    #[test]
    fn statuses() {
        let mut t = Tracker::default();
        t.apply(Event::sample(5, Body::Fork));
        let p = t
            .apply(Event::sample(5, Body::Exit(Exit::from_status(9))))
            .unwrap();
        assert_eq!(p.status(), "killed");
        let mut q = p.clone();
        q.ending = Some(Ending::Exited(Exit::from_status(2 << 8)));
        assert_eq!(q.status(), "failed");
        q.ending = Some(Ending::Lost);
        assert_eq!(q.status(), "exit_lost");
        q.ending = None;
        assert_eq!(q.status(), "still_running");
    }
}
