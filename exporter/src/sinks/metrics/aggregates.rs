//! What the metrics sinks report, aggregated per executable: ended processes by status and
//! signal, CPU time (ended totals plus live processes' time so far), lifetimes, peak and live
//! memory, memory events and runs. Label cardinality is bounded: past `MAX_EXECUTABLES`
//! distinct names, new ones are counted under `other`; per-pid series exist only for live
//! processes and only with `metrics.per_process`. Shared by the Prometheus endpoint and the
//! OTLP metrics.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    capture::stats::Losses,
    event::{Activity, Memory, Sample},
    process::model::Process,
};

/// Distinct executable names with their own series; later ones share `other`.
pub const MAX_EXECUTABLES: usize = 500;

/// Upper bounds (seconds) of the duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// A duration histogram over [`DURATION_BUCKETS`]: counts per bucket (not cumulative), the
/// values above the last bound only in `count`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; DURATION_BUCKETS.len()],
    pub sum_s: f64,
    pub count: u64,
}

impl Histogram {
    fn record(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.sum_s += seconds;
        self.count += 1;
    }
}

/// Counts by one label value (a status, a signal name, a direction).
pub type Counts = BTreeMap<&'static str, u64>;

/// The per-executable counters a process's I/O, faults, switches and network use feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityCounts {
    DiskIo,
    PagingFaults,
    ContextSwitches,
    NetworkIo,
    NetworkConnections,
}

/// One measure of a process's [`Activity`].
type Measure = fn(&Activity) -> Option<u64>;

/// Each counter fed from [`Activity`]: which counts, the label value, the measure.
const ACTIVITY_METRICS: [(ActivityCounts, &str, Measure); 10] = [
    (ActivityCounts::DiskIo, "read", |a| a.read_bytes),
    (ActivityCounts::DiskIo, "write", |a| a.write_bytes),
    (ActivityCounts::PagingFaults, "major", |a| a.major_faults),
    (ActivityCounts::PagingFaults, "minor", |a| a.minor_faults),
    (ActivityCounts::ContextSwitches, "voluntary", |a| {
        a.voluntary_switches
    }),
    (ActivityCounts::ContextSwitches, "involuntary", |a| {
        a.involuntary_switches
    }),
    (ActivityCounts::NetworkIo, "transmit", |a| {
        a.network_sent_bytes
    }),
    (ActivityCounts::NetworkIo, "receive", |a| {
        a.network_received_bytes
    }),
    (ActivityCounts::NetworkConnections, "outbound", |a| {
        a.network_connections
    }),
    (ActivityCounts::NetworkConnections, "inbound", |a| {
        a.network_accepted
    }),
];

/// A process's [`ACTIVITY_METRICS`] values (0 where not measured).
fn activity_values(a: &Activity) -> [u64; ACTIVITY_METRICS.len()] {
    ACTIVITY_METRICS.map(|(_, _, get)| get(a).unwrap_or(0))
}

#[derive(Debug, Default, Clone)]
pub struct Executable {
    /// Ended processes by status (ok, failed, killed, exit_lost, still_running).
    pub by_status: Counts,
    /// Processes killed by a signal, by signal name.
    pub signals: Counts,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// Lifetimes of ended processes, and the longest.
    pub duration: Histogram,
    pub duration_max_s: f64,
    pub peak_rss_bytes: u64,
    /// Memory events by direction: RSS steps up (`alloc`) and down (`release`).
    pub memory_events: Counts,
    /// Ended runs (trace roots: the `run` command, a matched root, a process started by one
    /// from before the agent) by status, and their durations.
    pub runs: Counts,
    pub run_duration: Histogram,
    /// Ended processes' totals at exit, plus what live ones had used at the last sample
    /// when they moved to another label (exec): storage bytes by direction (read, write),
    /// page faults by type (major, minor), context switches by type (voluntary,
    /// involuntary), network bytes by direction (transmit, receive), TCP connections by
    /// direction (outbound: made, inbound: accepted). Only what the kernel measured is added.
    pub disk_io: Counts,
    pub paging_faults: Counts,
    pub context_switches: Counts,
    pub network_io: Counts,
    pub network_connections: Counts,
}

impl Executable {
    fn activity_counts(&mut self, of: ActivityCounts) -> &mut Counts {
        match of {
            ActivityCounts::DiskIo => &mut self.disk_io,
            ActivityCounts::PagingFaults => &mut self.paging_faults,
            ActivityCounts::ContextSwitches => &mut self.context_switches,
            ActivityCounts::NetworkIo => &mut self.network_io,
            ActivityCounts::NetworkConnections => &mut self.network_connections,
        }
    }
}

/// The uploader's counters at one moment (`upload::UploadStats`), for the summary and the
/// self-metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UploadCounters {
    pub uploaded_objects: u64,
    pub uploaded_bytes: u64,
    pub failures: u64,
    pub dropped_objects: u64,
    pub dropped_bytes: u64,
    pub waiting_objects: u64,
    pub waiting_bytes: u64,
    /// Why the latest attempt failed, while objects wait.
    pub last_error: Option<String>,
    /// Rolls that failed; the sink files the latest one left unrolled, and why.
    pub roll_failures: u64,
    pub unrolled_files: u64,
    pub unrolled_bytes: u64,
    pub roll_error: Option<String>,
}

impl UploadCounters {
    /// One clause for the end-of-run line.
    pub fn describe(&self, url: &str, dir: &std::path::Path) -> String {
        let mut text = format!(
            "uploaded {} object{} ({}) to {url}",
            self.uploaded_objects,
            if self.uploaded_objects == 1 { "" } else { "s" },
            crate::present::units::bytes(self.uploaded_bytes as i64),
        );
        if self.dropped_objects > 0 {
            text.push_str(&format!(
                ", {} dropped ({}, spool full)",
                self.dropped_objects,
                crate::present::units::bytes(self.dropped_bytes as i64)
            ));
        }
        if self.failures > 0 {
            text.push_str(&format!(
                ", {} failed attempt{}",
                self.failures,
                if self.failures == 1 { "" } else { "s" }
            ));
        }
        if self.waiting_objects > 0 {
            text.push_str(&format!(
                ", {} waiting ({}) in {} for the next start",
                self.waiting_objects,
                crate::present::units::bytes(self.waiting_bytes as i64),
                dir.display()
            ));
            if let Some(e) = &self.last_error {
                text.push_str(&format!(" ({e})"));
            }
        }
        if self.roll_failures > 0 {
            text.push_str(&format!(
                ", {} roll{} failed",
                self.roll_failures,
                if self.roll_failures == 1 { "" } else { "s" }
            ));
            if self.unrolled_files > 0 {
                text.push_str(&format!(
                    ", {} file{} ({}) not rolled, kept in {} for the next start",
                    self.unrolled_files,
                    if self.unrolled_files == 1 { "" } else { "s" },
                    crate::present::units::bytes(self.unrolled_bytes as i64),
                    dir.display()
                ));
            }
            if let Some(e) = &self.roll_error {
                text.push_str(&format!(" ({e})"));
            }
        }
        text
    }
}

/// The agent's own counters, refreshed by whoever owns them.
#[derive(Debug, Default, Clone)]
pub struct SelfCounters {
    pub events_read: u64,
    /// The longest an event waited between the kernel and the tracker, ns.
    pub route_lag_max_ns: u64,
    pub losses: Losses,
    /// With `[output.object_store]`.
    pub upload: Option<UploadCounters>,
    /// The file outputs (Parquet, JSONL): written, dropped, failed writes.
    pub outputs: Vec<crate::sinks::health::OutputSnapshot>,
}

/// A live process's latest sample.
#[derive(Debug, Clone)]
struct LiveProcess {
    /// Its series' executable label (bounded like the ended processes').
    executable: String,
    /// CPU time so far (s).
    cpu: (f64, f64),
    /// The part of `cpu` already added to the ended totals of an earlier label (the process
    /// exec'd another executable): counters never go down when time moves between labels.
    banked: (f64, f64),
    /// [`ACTIVITY_METRICS`] so far, and the part of them banked like `banked`.
    activity: [u64; ACTIVITY_METRICS.len()],
    activity_banked: [u64; ACTIVITY_METRICS.len()],
    rss_bytes: u64,
    /// CLOCK_MONOTONIC ns of the sample.
    at_ns: u64,
}

impl LiveProcess {
    /// CPU time counted under its current label.
    fn unbanked(&self) -> (f64, f64) {
        (self.cpu.0 - self.banked.0, self.cpu.1 - self.banked.1)
    }
}

/// CPU time (user, system; s) and [`ACTIVITY_METRICS`] of a process.
#[derive(Debug, Clone, Default)]
struct Used {
    cpu: (f64, f64),
    activity: [u64; ACTIVITY_METRICS.len()],
}

impl Used {
    /// What is left of this once `counted` is (never below zero for the counts).
    fn after(&self, counted: &Used) -> Used {
        let mut activity = self.activity;
        for (n, c) in activity.iter_mut().zip(counted.activity) {
            *n = n.saturating_sub(c);
        }
        Used {
            cpu: (self.cpu.0 - counted.cpu.0, self.cpu.1 - counted.cpu.1),
            activity,
        }
    }
}

/// One `process.cpu.time` series: an executable, or one live process with `pid`.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSeries<'a> {
    pub executable: &'a str,
    pub pid: Option<u32>,
    pub user_s: f64,
    pub system_s: f64,
}

/// One `process.memory.usage` series: resident bytes now, of an executable's live processes
/// or of one live process with `pid`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySeries<'a> {
    pub executable: &'a str,
    pub pid: Option<u32>,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct Aggregates {
    executables: BTreeMap<String, Executable>,
    /// Live processes by pid, from their latest sample.
    live: HashMap<u32, LiveProcess>,
    /// Series per live process (`metrics.per_process`) instead of per executable.
    pub per_process: bool,
    /// A live entry not sampled again for this long belongs to a process that left without
    /// an ending the sinks saw (hidden, or its exit lost): dropped.
    pub stale_after_ns: u64,
    last_prune_ns: u64,
    /// Processes that started while traced.
    pub started: u64,
    /// Findings by kind.
    pub findings: BTreeMap<&'static str, u64>,
    pub agent: SelfCounters,
}

pub type SharedAggregates = Arc<Mutex<Aggregates>>;

impl Aggregates {
    pub fn new(per_process: bool, sample_interval: Duration) -> Self {
        Self {
            per_process,
            stale_after_ns: (sample_interval * 3)
                .max(Duration::from_secs(10))
                .as_nanos() as u64,
            ..Self::default()
        }
    }

    pub fn executables(&self) -> impl Iterator<Item = (&String, &Executable)> {
        self.executables.iter()
    }

    /// One of the executables' counts, flattened: (executable, label value, count).
    pub fn counts(
        &self,
        of: fn(&Executable) -> &Counts,
    ) -> impl Iterator<Item = (&str, &'static str, u64)> {
        self.executables
            .iter()
            .flat_map(move |(name, e)| of(e).iter().map(move |(k, n)| (name.as_str(), *k, *n)))
    }

    /// The label `name` is counted under: itself, or `other` past [`MAX_EXECUTABLES`].
    fn label_for(&mut self, name: &str) -> String {
        let key = if self.executables.contains_key(name) || self.executables.len() < MAX_EXECUTABLES
        {
            name.to_owned()
        } else {
            "other".to_owned()
        };
        self.executables.entry(key.clone()).or_default();
        key
    }

    /// Adds CPU time and activity counts to an executable's totals.
    fn bank(&mut self, executable: &str, used: &Used) {
        if let Some(e) = self.executables.get_mut(executable) {
            e.cpu_user_s += used.cpu.0;
            e.cpu_system_s += used.cpu.1;
            for ((of, label, _), n) in ACTIVITY_METRICS.iter().zip(&used.activity) {
                if *n > 0 {
                    *e.activity_counts(*of).entry(label).or_default() += n;
                }
            }
        }
    }

    /// Takes a live process out, its CPU time and activity so far banked under the label it
    /// had unless that label is `keep`. Returns what is already counted elsewhere, and what
    /// it had used so far.
    fn take_live(&mut self, pid: u32, keep: &str) -> (Used, Used) {
        let Some(l) = self.live.remove(&pid) else {
            return (Used::default(), Used::default());
        };
        let so_far = Used {
            cpu: l.cpu,
            activity: l.activity,
        };
        let banked = Used {
            cpu: l.banked,
            activity: l.activity_banked,
        };
        if l.executable == keep {
            return (banked, so_far);
        }
        self.bank(&l.executable, &so_far.after(&banked));
        (so_far.clone(), so_far)
    }

    pub fn sample(&mut self, p: &Process, s: &Sample, at_ns: u64) {
        let executable = self.label_for(p.executable_name());
        let (banked, _) = self.take_live(p.key.tgid, &executable);
        self.live.insert(
            p.key.tgid,
            LiveProcess {
                executable,
                cpu: (s.cpu_user_ns as f64 / 1e9, s.cpu_system_ns as f64 / 1e9),
                banked: banked.cpu,
                activity: activity_values(&s.activity),
                activity_banked: banked.activity,
                rss_bytes: s.rss_bytes,
                at_ns,
            },
        );
        if at_ns.saturating_sub(self.last_prune_ns) > self.stale_after_ns {
            let oldest = at_ns.saturating_sub(self.stale_after_ns);
            let stale: Vec<u32> = self
                .live
                .iter()
                .filter(|(_, l)| l.at_ns < oldest)
                .map(|(pid, _)| *pid)
                .collect();
            for pid in stale {
                // Its time was used: it stays in the totals.
                self.take_live(pid, "");
            }
            self.last_prune_ns = at_ns;
        }
    }

    pub fn record(&mut self, p: &Process) {
        let key = self.label_for(p.executable_name());
        let (banked, so_far) = self.take_live(p.key.tgid, &key);
        if p.exit().is_none() {
            // No final totals (exit lost, still running): what it used so far stays counted.
            self.bank(&key, &so_far.after(&banked));
        }
        let e = self.executables.entry(key).or_default();
        *e.by_status.entry(p.status()).or_default() += 1;
        if let Some(exit) = p.exit() {
            e.cpu_user_s += exit.usage.cpu_user_ns as f64 / 1e9 - banked.cpu.0;
            e.cpu_system_s += exit.usage.cpu_system_ns as f64 / 1e9 - banked.cpu.1;
            e.peak_rss_bytes = e.peak_rss_bytes.max(exit.usage.peak_rss_bytes);
            // The totals at exit, less what a former label already counted.
            for ((of, label, get), counted) in ACTIVITY_METRICS.iter().zip(banked.activity) {
                if let Some(v) = get(&exit.activity) {
                    *e.activity_counts(*of).entry(label).or_default() += v.saturating_sub(counted);
                }
            }
        }
        let duration = p
            .end_ns
            .unwrap_or(p.key.start_ns)
            .saturating_sub(p.key.start_ns) as f64
            / 1e9;
        e.duration.record(duration);
        e.duration_max_s = e.duration_max_s.max(duration);
        if let Some(sig) = p.exit().and_then(|x| x.signal()) {
            *e.signals
                .entry(crate::event::signal_name(sig).unwrap_or("other"))
                .or_default() += 1;
        }
        if p.spanned && (p.root || p.parent_span.is_none()) {
            *e.runs.entry(p.status()).or_default() += 1;
            e.run_duration.record(duration);
        }
    }

    pub fn memory_changed(&mut self, p: &Process, m: &Memory) {
        let key = self.label_for(p.executable_name());
        let e = self.executables.entry(key).or_default();
        let direction = if m.grew() { "alloc" } else { "release" };
        *e.memory_events.entry(direction).or_default() += 1;
    }

    /// One of the activity counters per executable and label value: ended processes' totals
    /// plus what live processes used so far (the last sample), so a long-running process
    /// shows its I/O while it runs. Never goes down: a process's exit totals include its
    /// samples'.
    pub fn activity_counts(&self, of: ActivityCounts) -> Vec<(&str, &'static str, u64)> {
        let mut out: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
        for (name, e) in &self.executables {
            let counts = match of {
                ActivityCounts::DiskIo => &e.disk_io,
                ActivityCounts::PagingFaults => &e.paging_faults,
                ActivityCounts::ContextSwitches => &e.context_switches,
                ActivityCounts::NetworkIo => &e.network_io,
                ActivityCounts::NetworkConnections => &e.network_connections,
            };
            for (label, n) in counts {
                *out.entry((name.as_str(), label)).or_default() += n;
            }
        }
        for l in self.live.values() {
            for ((which, label, _), (n, counted)) in ACTIVITY_METRICS
                .iter()
                .zip(l.activity.iter().zip(l.activity_banked))
            {
                if *which == of && *n > counted {
                    *out.entry((l.executable.as_str(), label)).or_default() += n - counted;
                }
            }
        }
        out.into_iter()
            .map(|((name, label), n)| (name, label, n))
            .collect()
    }

    /// CPU time per executable: ended processes' totals plus live processes' time so far.
    /// With `per_process`, live processes have their own series instead; summed by
    /// executable, both give the same total.
    pub fn cpu_series(&self) -> Vec<CpuSeries<'_>> {
        let mut by_exe: BTreeMap<&str, (f64, f64)> = self
            .executables
            .iter()
            .map(|(name, e)| (name.as_str(), (e.cpu_user_s, e.cpu_system_s)))
            .collect();
        let mut out = Vec::new();
        for (pid, l) in &self.live {
            let (user_s, system_s) = l.unbanked();
            if self.per_process {
                out.push(CpuSeries {
                    executable: &l.executable,
                    pid: Some(*pid),
                    user_s,
                    system_s,
                });
            } else if let Some(t) = by_exe.get_mut(l.executable.as_str()) {
                t.0 += user_s;
                t.1 += system_s;
            }
        }
        out.sort_by_key(|s| s.pid);
        let mut series: Vec<CpuSeries<'_>> = by_exe
            .into_iter()
            .map(|(executable, (user_s, system_s))| CpuSeries {
                executable,
                pid: None,
                user_s,
                system_s,
            })
            .collect();
        series.extend(out);
        series
    }

    /// Resident memory now: per executable (0 without live processes), or per live process
    /// with `per_process`.
    pub fn memory_series(&self) -> Vec<MemorySeries<'_>> {
        if self.per_process {
            let mut out: Vec<MemorySeries<'_>> = self
                .live
                .iter()
                .map(|(pid, l)| MemorySeries {
                    executable: &l.executable,
                    pid: Some(*pid),
                    bytes: l.rss_bytes,
                })
                .collect();
            out.sort_by_key(|s| s.pid);
            return out;
        }
        let mut by_exe: BTreeMap<&str, u64> =
            self.executables.keys().map(|k| (k.as_str(), 0)).collect();
        for l in self.live.values() {
            if let Some(b) = by_exe.get_mut(l.executable.as_str()) {
                *b += l.rss_bytes;
            }
        }
        by_exe
            .into_iter()
            .map(|(executable, bytes)| MemorySeries {
                executable,
                pid: None,
                bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Body, Event, Exit},
        process::tracker::Tracker,
    };

    fn ev(tgid: u32, body: Body) -> Event {
        Event::sample(tgid, body)
    }

    #[test]
    fn live_io_and_network_count_while_running_and_never_go_down() {
        use crate::process::model::Ending;
        let mut a = Aggregates::new(false, Duration::from_secs(1));
        let mut t = Tracker::default();
        t.apply(ev(10, Body::Fork));
        let curl = t.process(10).unwrap().clone();
        let used = |sent: u64, written: u64| Activity {
            network_sent_bytes: Some(sent),
            write_bytes: Some(written),
            ..Default::default()
        };
        let sample = |activity| Sample {
            cpu_user_ns: 0,
            cpu_system_ns: 0,
            rss_bytes: 0,
            threads: 1,
            run_delay_ns: 0,
            activity,
        };
        let count = |a: &Aggregates, of, exe: &str, label: &str| {
            a.activity_counts(of)
                .iter()
                .filter(|(e, l, _)| *e == exe && *l == label)
                .map(|(_, _, n)| *n)
                .sum::<u64>()
        };
        let sent = |a: &Aggregates, exe| count(a, ActivityCounts::NetworkIo, exe, "transmit");
        // Live: what it sent so far.
        a.sample(&curl, &sample(used(100, 10)), 1);
        assert_eq!(sent(&a, "cc\"x"), 100);
        assert_eq!(count(&a, ActivityCounts::DiskIo, "cc\"x", "write"), 10);
        // It execs another program: the 100 stay with the first label.
        let mut next = curl.clone();
        next.comm = "tar".into();
        a.sample(&next, &sample(used(250, 10)), 2);
        assert_eq!((sent(&a, "cc\"x"), sent(&a, "tar")), (100, 150));
        // Its exit totals: the rest under the new label, nothing counted twice.
        let mut exit = Exit::from_status(0);
        exit.activity = used(400, 30);
        let mut ended = next.clone();
        ended.ending = Some(Ending::Exited(exit));
        ended.end_ns = Some(3);
        a.record(&ended);
        assert_eq!((sent(&a, "cc\"x"), sent(&a, "tar")), (100, 300));
        assert_eq!(
            count(&a, ActivityCounts::DiskIo, "cc\"x", "write")
                + count(&a, ActivityCounts::DiskIo, "tar", "write"),
            30
        );
    }

    #[test]
    fn live_samples_join_the_executable_totals_and_never_go_down() {
        use crate::process::model::Ending;
        let mut a = Aggregates::new(false, Duration::from_secs(1));
        let mut t = Tracker::default();
        t.apply(ev(10, Body::Fork));
        let cc = t.process(10).unwrap().clone();
        let sample = |user_s: u64, rss_bytes: u64| Sample {
            cpu_user_ns: user_s * 1_000_000_000,
            cpu_system_ns: 0,
            rss_bytes,
            threads: 1,
            run_delay_ns: 0,
            activity: Default::default(),
        };
        let cpu = |a: &Aggregates, exe: &str| {
            a.cpu_series()
                .iter()
                .filter(|s| s.executable == exe)
                .map(|s| s.user_s)
                .sum::<f64>()
        };
        let memory = |a: &Aggregates, exe: &str| {
            a.memory_series()
                .iter()
                .filter(|s| s.executable == exe)
                .map(|s| s.bytes)
                .sum::<u64>()
        };
        a.sample(&cc, &sample(1, 4096), 1);
        assert_eq!((cpu(&a, "cc\"x"), memory(&a, "cc\"x")), (1.0, 4096));
        // It execs `ld`: the time so far stays with cc, the rest goes to ld.
        let mut ld = cc.clone();
        ld.comm = "ld".into();
        a.sample(&ld, &sample(3, 8192), 2);
        assert_eq!((cpu(&a, "cc\"x"), cpu(&a, "ld")), (1.0, 2.0));
        assert_eq!((memory(&a, "cc\"x"), memory(&a, "ld")), (0, 8192));
        // Per process: the same totals, the live part under its pid.
        a.per_process = true;
        let live: Vec<_> = a
            .cpu_series()
            .into_iter()
            .filter(|s| s.pid == Some(10))
            .collect();
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].executable, live[0].user_s), ("ld", 2.0));
        assert_eq!(cpu(&a, "ld"), 2.0);
        assert!(a.memory_series().contains(&MemorySeries {
            executable: "ld",
            pid: Some(10),
            bytes: 8192
        }));
        a.per_process = false;
        // It exits with its final totals: ld gets the rest, nothing goes down.
        let mut exit = Exit::from_status(0);
        exit.usage.cpu_user_ns = 4_000_000_000;
        let mut ended = ld.clone();
        ended.ending = Some(Ending::Exited(exit));
        ended.end_ns = Some(3_000_000_000);
        a.record(&ended);
        assert_eq!((cpu(&a, "cc\"x"), cpu(&a, "ld")), (1.0, 3.0));
        assert_eq!(memory(&a, "ld"), 0);
        // A live process that stops being sampled (it left unseen) keeps its time.
        let mut other = cc.clone();
        other.key.tgid = 11;
        a.sample(&other, &sample(5, 1), 10);
        a.sample(&cc, &sample(1, 1), 10 + a.stale_after_ns * 3);
        assert!(a.live.len() == 1 && a.live.contains_key(&10));
        assert_eq!(cpu(&a, "cc\"x"), 1.0 + 5.0 + 1.0);
    }

    #[test]
    fn runs_signals_and_memory_events_by_executable() {
        let mut a = Aggregates::default();
        let mut t = Tracker::default();
        t.apply(ev(10, Body::Fork));
        let mut root = t.apply(ev(10, Body::Exit(Exit::from_status(9)))).unwrap();
        a.record(&root);
        root.key.tgid = 11;
        root.parent_span = Some(1);
        a.record(&root);
        t.apply(ev(12, Body::Fork));
        let p = t.process(12).unwrap().clone();
        for (rss_bytes, previous_bytes) in [(9 << 20, 0), (20 << 20, 9 << 20), (1 << 20, 20 << 20)]
        {
            a.memory_changed(
                &p,
                &Memory {
                    rss_bytes,
                    previous_bytes,
                },
            );
        }
        let e = &a.executables["cc\"x"];
        assert_eq!(
            e.runs.get("killed"),
            Some(&1),
            "only the trace root is a run"
        );
        assert_eq!(e.run_duration.count, 1);
        assert_eq!(e.signals.get("SIGKILL"), Some(&2));
        assert_eq!(
            (e.memory_events.get("alloc"), e.memory_events.get("release")),
            (Some(&2), Some(&1))
        );
        assert_eq!(e.duration_max_s, 0.5);
    }
}
