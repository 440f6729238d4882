//! The run against the machine it runs on. At each sampling round (at most once a second) the
//! host's CPU and memory (`/proc`) are set beside the run's own — its processes' CPU time, their
//! time runnable but waiting for a CPU (the scheduler's run delay, read by the task iterator)
//! and their memory — and, while someone outside the run is busy, what the processes outside it
//! use ([`super::neighbours`]). At the run's end, two verdicts about the run as a whole: noisy
//! neighbours, and a runner too small or too large for it.

use std::collections::HashMap;

use super::{
    host::{self, CpuTimes},
    neighbours::{self, Neighbours},
};
use crate::{
    config::DiagnosisSection,
    event::{Finding, FindingKind, Sample, Severity},
    present::units,
    process::model::{Process, ProcessKey},
};

/// An interval is this short at least: shorter rounds are added to the next.
const MIN_INTERVAL_NS: u64 = 1_000_000_000;
/// A share of the cores this busy counts as all of them (the agent and the kernel's own
/// threads always take a little).
const SATURATED: f64 = 0.9;
/// Busy cores are the run's doing when at least this share of their time is its own.
const OWN_WORK: f64 = 0.75;
/// Neighbours are looked at in every interval where those outside the run use at least
/// `neighbour_min_share_percent` of the machine (every interval a finding could be made of),
/// and every [`SCAN_EVERY`] intervals anyway (new processes, baselines).
const SCAN_EVERY: u64 = 10;
/// Points of the run's and the neighbours' CPU curve kept for the findings (the HTML report
/// draws it); when full, every other one is dropped.
const MAX_POINTS: usize = 120;
/// Neighbours named in a finding's summary (its evidence lists up to [`LISTED`]).
const NAMED: usize = 3;
const LISTED: usize = 10;

/// A process's counters at its last sample.
#[derive(Debug, Clone, Copy, Default)]
struct Last {
    cpu_ns: u64,
    wait_ns: u64,
    rss_bytes: u64,
    /// `cpu_ns` and `wait_ns` are from a sample (not only a memory step).
    sampled: bool,
}

/// What the run and the host did, summed over the intervals.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    observed_ns: u64,
    run_cpu_ns: u64,
    run_wait_ns: u64,
    /// Core-ns used outside the run (host busy minus the run's own).
    others_ns: f64,
    /// Every usable core busy: for how long, the run's CPU and all CPU then.
    saturated_ns: u64,
    saturated_run_cpu_ns: u64,
    saturated_busy_ns: f64,
    /// The run's steps waited for a CPU while those outside used a large share.
    contended_ns: u64,
    contended_wait_ns: u64,
    contended_others_ns: f64,
    /// Memory at `oom_risk_percent` of the limit.
    memory_tight_ns: u64,
    peak_run_cores: f64,
    peak_run_rss: u64,
}

pub struct Runner {
    options: DiagnosisSection,
    tick_ns: u64,
    /// Cores the run may use, and online, from the first interval.
    cores: Option<(f64, u32)>,
    memory_total: u64,
    last_host: Option<(u64, CpuTimes)>,
    procs: HashMap<ProcessKey, Last>,
    pending_cpu_ns: u64,
    pending_wait_ns: u64,
    rss_now: u64,
    /// The smallest memory cgroup limit of the run's processes seen.
    limit_bytes: Option<u64>,
    t: Totals,
    intervals: u64,
    neighbours: Option<Neighbours>,
    /// `(CLOCK_MONOTONIC ns at the interval's end, the run's cores, cores used outside it)`.
    curve: Vec<(u64, f64, f64)>,
    /// CLOCK_MONOTONIC ns where the first interval began.
    first_ns: u64,
}

impl Runner {
    pub fn new(options: DiagnosisSection) -> Self {
        let tick_ns = host::tick_ns();
        let neighbours = options.noisy_neighbour.then(|| Neighbours::new(tick_ns));
        Self {
            options,
            tick_ns,
            cores: None,
            memory_total: 0,
            last_host: None,
            procs: HashMap::new(),
            pending_cpu_ns: 0,
            pending_wait_ns: 0,
            rss_now: 0,
            limit_bytes: None,
            t: Totals::default(),
            intervals: 0,
            neighbours,
            curve: Vec::new(),
            first_ns: 0,
        }
    }

    fn on(&self) -> bool {
        self.options.noisy_neighbour || self.options.runner_size
    }

    /// A sample of one of the run's processes.
    pub fn sampled(&mut self, p: &Process, s: &Sample) {
        if !self.on() {
            return;
        }
        let cpu = s.usage().cpu_ns();
        let known = self.procs.get(&p.key).copied().unwrap_or_default();
        // A process from before the agent counts from its first sample (a memory step may
        // have come first); one started while traced from its start.
        let last = match known {
            Last { sampled: true, .. } => known,
            _ if p.seeded => Last {
                cpu_ns: cpu,
                wait_ns: s.run_delay_ns,
                ..known
            },
            _ => known,
        };
        self.pending_cpu_ns += cpu.saturating_sub(last.cpu_ns);
        // Falls when a thread exits (it takes its delay along): counted again from there.
        self.pending_wait_ns += s.run_delay_ns.saturating_sub(last.wait_ns);
        self.set(
            p.key,
            Last {
                cpu_ns: cpu.max(last.cpu_ns),
                wait_ns: s.run_delay_ns,
                rss_bytes: s.rss_bytes,
                sampled: true,
            },
        );
    }

    /// Resident memory of one of the run's processes moved by a step.
    pub fn memory(&mut self, p: &Process, rss_bytes: u64) {
        if !self.on() {
            return;
        }
        let last = self.procs.get(&p.key).copied().unwrap_or_default();
        self.set(p.key, Last { rss_bytes, ..last });
    }

    /// One of the run's processes ended: the CPU it used since its last sample.
    pub fn ended(&mut self, p: &Process) {
        if !self.on() {
            return;
        }
        let last = self.procs.remove(&p.key).unwrap_or_default();
        self.rss_now = self.rss_now.saturating_sub(last.rss_bytes);
        if let Some(exit) = p.exit()
            && !p.seeded
        {
            self.pending_cpu_ns += exit.usage.cpu_ns().saturating_sub(last.cpu_ns);
        }
    }

    fn set(&mut self, key: ProcessKey, now: Last) {
        let before = self.procs.insert(key, now).unwrap_or_default();
        self.rss_now = (self.rss_now + now.rss_bytes).saturating_sub(before.rss_bytes);
        self.t.peak_run_rss = self.t.peak_run_rss.max(self.rss_now);
    }

    /// The memory cgroup limit one of the run's processes runs under.
    pub fn note_limit(&mut self, bytes: u64) {
        self.limit_bytes = Some(self.limit_bytes.map_or(bytes, |l| l.min(bytes)));
    }

    /// After a sampling round at `at_ns`: closes an interval when a second has passed.
    pub fn tick(&mut self, at_ns: u64, traced: impl Fn(u32) -> bool) {
        if !self.on() {
            return;
        }
        if let Some((last_ns, _)) = self.last_host
            && at_ns.saturating_sub(last_ns) < MIN_INTERVAL_NS
        {
            return;
        }
        let Some(cpu) = host::cpu_times(self.tick_ns) else {
            return;
        };
        let memory = host::memory();
        let (cores, online) = *self
            .cores
            .get_or_insert_with(|| (host::usable_cores(cpu.online), cpu.online));
        let Some((last_ns, last_cpu)) = self.last_host.replace((at_ns, cpu)) else {
            // The first look: the baselines.
            if let Some(n) = &mut self.neighbours {
                n.scan(&traced, neighbours::uptime_ticks(self.tick_ns), false);
            }
            return;
        };
        let wall = at_ns - last_ns;
        if self.intervals == 0 {
            self.first_ns = last_ns;
        }
        let total = cpu.total_ns.saturating_sub(last_cpu.total_ns);
        let busy = cpu.busy_ns.saturating_sub(last_cpu.busy_ns);
        let online_f = f64::from(online);
        let busy_cores = if total > 0 {
            busy as f64 / total as f64 * online_f
        } else {
            0.0
        };
        let run_cpu = std::mem::take(&mut self.pending_cpu_ns);
        let run_wait = std::mem::take(&mut self.pending_wait_ns);
        let run_cores = run_cpu as f64 / wall as f64;
        let others_cores = (busy_cores - run_cores).max(0.0);
        // Under a CPU quota smaller than the machine the run's own use is what fills it.
        let in_scope = if cores < online_f - 0.5 {
            run_cores
        } else {
            busy_cores
        };
        let share = f64::from(self.options.neighbour_min_share_percent) / 100.0;
        // Waiting for a CPU in earnest (5 % of the interval) while outsiders took a share.
        let contended = run_wait >= wall / 20 && others_cores >= share * online_f;
        let t = &mut self.t;
        t.observed_ns += wall;
        t.run_cpu_ns += run_cpu;
        t.run_wait_ns += run_wait;
        t.others_ns += others_cores * wall as f64;
        t.peak_run_cores = t.peak_run_cores.max(run_cores);
        if in_scope >= SATURATED * cores {
            t.saturated_ns += wall;
            t.saturated_run_cpu_ns += run_cpu;
            t.saturated_busy_ns += in_scope * wall as f64;
        }
        if contended {
            t.contended_ns += wall;
            t.contended_wait_ns += run_wait;
            t.contended_others_ns += others_cores * wall as f64;
        }
        if let Some(m) = memory {
            self.memory_total = m.total;
            let tight = f64::from(self.options.oom_risk_percent) / 100.0;
            let host_tight = m.used() as f64 >= tight * m.total as f64;
            let limit_tight = self
                .limit_bytes
                .is_some_and(|l| self.rss_now as f64 >= tight * l as f64);
            if host_tight || limit_tight {
                t.memory_tight_ns += wall;
            }
        }
        self.intervals += 1;
        self.curve.push((at_ns, run_cores, others_cores));
        if self.curve.len() > MAX_POINTS {
            super::history::halve(&mut self.curve);
        }
        if let Some(n) = &mut self.neighbours
            && (others_cores >= share * online_f || self.intervals.is_multiple_of(SCAN_EVERY))
        {
            n.scan(&traced, neighbours::uptime_ticks(self.tick_ns), contended);
        }
    }

    /// The verdicts about the whole run, at its end.
    pub fn verdicts(&self) -> Vec<Finding> {
        let Some((cores, online)) = self.cores else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let noisy = self
            .options
            .noisy_neighbour
            .then(|| self.noisy_neighbour(online))
            .flatten();
        if self.options.runner_size
            && self.t.observed_ns >= self.options.runner_min_duration.as_nanos() as u64
        {
            match self.undersized(cores) {
                Some(f) => out.push(f),
                // A machine shared with busy neighbours is not one to make smaller.
                None if noisy.is_none() => out.extend(self.oversized(cores)),
                None => {}
            }
        }
        out.extend(noisy);
        out
    }

    fn memory_limit(&self) -> u64 {
        match self.limit_bytes {
            Some(l) if self.memory_total > 0 => l.min(self.memory_total),
            Some(l) => l,
            None => self.memory_total,
        }
    }

    fn noisy_neighbour(&self, online: u32) -> Option<Finding> {
        let t = &self.t;
        if t.contended_wait_ns < self.options.neighbour_min_wait.as_nanos() as u64
            || t.contended_ns == 0
        {
            return None;
        }
        let machine_ns = t.contended_ns as f64 * f64::from(online);
        let share = t.contended_others_ns / machine_ns * 100.0;
        let mut busy: Vec<&(neighbours::GroupKey, neighbours::GroupUsage)> = self
            .neighbours
            .iter()
            .flat_map(Neighbours::groups)
            .filter(|(_, u)| u.contended_cpu_ns > 0)
            .collect();
        busy.sort_by_key(|(_, u)| std::cmp::Reverse(u.contended_cpu_ns));
        let contended_s = t.contended_ns as f64 / 1e9;
        let named: Vec<String> = busy
            .iter()
            // A kernel thread's tick of work is not a neighbour worth naming.
            .filter(|(_, u)| u.contended_cpu_ns as f64 >= machine_ns / 100.0)
            .take(NAMED)
            .map(|(k, u)| {
                format!(
                    "{} in {} {:.1} cores ({:.0} %)",
                    k.executable,
                    k.cgroup,
                    u.contended_cpu_ns as f64 / t.contended_ns as f64,
                    u.contended_cpu_ns as f64 / machine_ns * 100.0
                )
            })
            .collect();
        let attributed: u64 = busy.iter().map(|(_, u)| u.contended_cpu_ns).sum();
        let listed: Vec<serde_json::Value> = busy
            .iter()
            .take(LISTED)
            .map(|(k, u)| {
                serde_json::json!({
                    "executable": k.executable,
                    "cgroup": k.cgroup,
                    "cpu_s": round3(u.cpu_ns as f64 / 1e9),
                    "contended_cpu_s": round3(u.contended_cpu_ns as f64 / 1e9),
                    "share_percent": round1(u.contended_cpu_ns as f64 / machine_ns * 100.0),
                    "peak_rss_bytes": u.peak_rss_bytes,
                    "read_bytes": u.read_bytes,
                    "write_bytes": u.write_bytes,
                    "processes": u.processes,
                })
            })
            .collect();
        let wait_s = t.contended_wait_ns as f64 / 1e9;
        let mut summary = format!(
            "steps waited {} for a CPU while processes outside the run used {:.0} % of the \
             machine ({} cores) for {}",
            units::duration(wait_s),
            share,
            online,
            units::duration(contended_s),
        );
        if !named.is_empty() {
            summary.push_str(&format!(": {}", named.join(", ")));
        }
        Some(Finding {
            kind: FindingKind::NoisyNeighbour,
            severity: Severity::Warning,
            summary,
            value: round1(share),
            unit: "%",
            evidence: vec![
                ("wait_s", round3(wait_s).into()),
                ("contended_s", round3(contended_s).into()),
                ("others_share_percent", round1(share).into()),
                ("cores", online.into()),
                ("run_cpu_s", round3(t.run_cpu_ns as f64 / 1e9).into()),
                (
                    "unattributed_cpu_s",
                    round3((t.contended_others_ns - attributed as f64).max(0.0) / 1e9).into(),
                ),
                ("neighbours", listed.into()),
                ("curve", self.curve_json()),
            ],
            involved: Vec::new(),
        })
    }

    fn undersized(&self, cores: f64) -> Option<Finding> {
        let t = &self.t;
        let observed = t.observed_ns as f64;
        let busy_share = t.saturated_ns as f64 / observed * 100.0;
        // Most of the busy cores' time the run's own: otherwise a neighbour filled them.
        let own = t.saturated_busy_ns > 0.0
            && t.saturated_run_cpu_ns as f64 >= OWN_WORK * t.saturated_busy_ns;
        let cpu_short = busy_share >= f64::from(self.options.undersized_cpu_percent) && own;
        let tight_share = t.memory_tight_ns as f64 / observed * 100.0;
        let memory_short = tight_share >= f64::from(self.options.undersized_memory_percent);
        if !cpu_short && !memory_short {
            return None;
        }
        let observed_s = observed / 1e9;
        // Threads runnable on average (running or waiting): the cores that would keep up.
        let demand = (t.run_cpu_ns + t.run_wait_ns) as f64 / observed;
        let suggested = demand.ceil().max(cores.ceil() + 1.0) as u64;
        let limit = self.memory_limit();
        let mut reasons = Vec::new();
        if cpu_short {
            reasons.push(format!(
                "every core of {} busy for {:.0} % of the run ({} of {}), {:.0} % of it the \
                 run's own work; its steps waited {} for a CPU: a runner with {} cores would keep up",
                fmt_cores(cores),
                busy_share,
                units::duration(t.saturated_ns as f64 / 1e9),
                units::duration(observed_s),
                (t.saturated_run_cpu_ns as f64 / t.saturated_busy_ns * 100.0).min(100.0),
                units::duration(t.run_wait_ns as f64 / 1e9),
                suggested,
            ));
        }
        if memory_short {
            reasons.push(format!(
                "memory at {} % of the limit ({}) for {:.0} % of the run: a runner with more \
                 memory would avoid swapping and OOM kills",
                self.options.oom_risk_percent,
                units::bytes(limit as i64),
                tight_share,
            ));
        }
        Some(Finding {
            kind: FindingKind::UndersizedRunner,
            severity: Severity::Warning,
            summary: reasons.join("; "),
            value: round1(if cpu_short { busy_share } else { tight_share }),
            unit: "%",
            evidence: vec![
                ("cores", round3(cores).into()),
                ("observed_s", round3(observed_s).into()),
                (
                    "all_cores_busy_s",
                    round3(t.saturated_ns as f64 / 1e9).into(),
                ),
                ("all_cores_busy_percent", round1(busy_share).into()),
                ("run_cpu_s", round3(t.run_cpu_ns as f64 / 1e9).into()),
                ("wait_s", round3(t.run_wait_ns as f64 / 1e9).into()),
                ("runnable_threads", round3(demand).into()),
                ("suggested_cores", suggested.into()),
                ("memory_limit_bytes", limit.into()),
                ("memory_tight_percent", round1(tight_share).into()),
                ("peak_rss_bytes", t.peak_run_rss.into()),
                ("curve", self.curve_json()),
            ],
            involved: Vec::new(),
        })
    }

    /// The curve as `[[seconds from the start, the run's cores, cores used outside it], …]`.
    fn curve_json(&self) -> serde_json::Value {
        let round2 = |v: f64| (v * 100.0).round() / 100.0;
        self.curve
            .iter()
            .map(|&(at, run, others)| {
                serde_json::json!([
                    round2(at.saturating_sub(self.first_ns) as f64 / 1e9),
                    round2(run),
                    round2(others)
                ])
            })
            .collect::<Vec<_>>()
            .into()
    }

    fn oversized(&self, cores: f64) -> Option<Finding> {
        let t = &self.t;
        let most = f64::from(self.options.oversized_max_percent) / 100.0;
        let limit = self.memory_limit();
        if cores < f64::from(self.options.oversized_min_cores)
            || t.peak_run_cores > most * cores
            || (limit > 0 && t.peak_run_rss as f64 > most * limit as f64)
        {
            return None;
        }
        let average = t.run_cpu_ns as f64 / t.observed_ns as f64;
        // Headroom of a quarter over the peak, in the sizes runners come in.
        let suggested_cores =
            ((t.peak_run_cores * 1.25).ceil().max(1.0) as u64).next_power_of_two();
        let gib = 1u64 << 30;
        let suggested_memory = ((t.peak_run_rss as f64 * 1.5 / gib as f64).ceil().max(1.0) as u64)
            .next_power_of_two()
            * gib;
        let mut summary = format!(
            "used at most {} of {} cores ({} on average) and {} of {} memory: a runner \
             with {} {} and {} would do",
            fmt_cores(t.peak_run_cores),
            fmt_cores(cores),
            fmt_cores(average),
            units::bytes(t.peak_run_rss as i64),
            units::bytes(limit as i64),
            suggested_cores,
            if suggested_cores == 1 {
                "core"
            } else {
                "cores"
            },
            units::bytes(suggested_memory as i64),
        );
        if t.peak_run_cores <= 1.2 && t.run_cpu_ns as f64 >= 0.5 * t.observed_ns as f64 {
            summary.push_str(&format!(
                "; its steps ran one at a time: running them in parallel (make -j{}) would use \
                 the cores",
                cores.floor() as u64
            ));
        }
        Some(Finding {
            kind: FindingKind::OversizedRunner,
            severity: Severity::Info,
            summary,
            value: round1(t.peak_run_cores / cores * 100.0),
            unit: "%",
            evidence: vec![
                ("cores", round3(cores).into()),
                ("observed_s", round3(t.observed_ns as f64 / 1e9).into()),
                ("peak_cores", round3(t.peak_run_cores).into()),
                ("average_cores", round3(average).into()),
                ("peak_rss_bytes", t.peak_run_rss.into()),
                ("memory_limit_bytes", limit.into()),
                ("suggested_cores", suggested_cores.into()),
                ("suggested_memory_bytes", suggested_memory.into()),
            ],
            involved: Vec::new(),
        })
    }
}

/// `2`, `1.5`, `0.3`.
fn fmt_cores(c: f64) -> String {
    if (c - c.round()).abs() < 0.05 {
        format!("{}", c.round() as i64)
    } else {
        format!("{c:.1}")
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(options: DiagnosisSection) -> Runner {
        let mut r = Runner::new(options);
        r.cores = Some((8.0, 8));
        r.memory_total = 32 << 30;
        r
    }

    fn minute() -> u64 {
        60_000_000_000
    }

    #[test]
    fn a_run_that_fills_every_core_is_undersized_and_one_that_uses_little_oversized() {
        let mut r = runner(DiagnosisSection::default());
        r.t = Totals {
            observed_ns: minute(),
            run_cpu_ns: 7 * minute(),
            run_wait_ns: 5 * minute(),
            saturated_ns: minute() * 9 / 10,
            saturated_run_cpu_ns: 7 * minute(),
            saturated_busy_ns: 7.5 * minute() as f64,
            peak_run_cores: 8.0,
            peak_run_rss: 1 << 30,
            ..Totals::default()
        };
        let f = r.verdicts();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::UndersizedRunner);
        assert!(
            f[0].summary.contains("every core of 8 busy for 90 %"),
            "{}",
            f[0].summary
        );
        // 12 runnable threads on average.
        assert!(
            f[0].summary.contains("a runner with 12 cores"),
            "{}",
            f[0].summary
        );

        // A neighbour filled the cores, not the run: not the runner's size.
        r.t.saturated_run_cpu_ns = minute();
        assert!(r.verdicts().is_empty());

        r.t = Totals {
            observed_ns: minute(),
            run_cpu_ns: minute() * 9 / 10,
            peak_run_cores: 1.0,
            peak_run_rss: 700 << 20,
            ..Totals::default()
        };
        let f = r.verdicts();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::OversizedRunner);
        assert_eq!(f[0].severity, Severity::Info);
        let s = &f[0].summary;
        assert!(s.contains("at most 1 of 8 cores"), "{s}");
        assert!(s.contains("a runner with 2 cores and 2.00 GiB"), "{s}");
        assert!(s.contains("make -j8"), "{s}");

        // Too short a run is not judged.
        r.t.observed_ns = minute() / 2;
        assert!(r.verdicts().is_empty());
    }

    #[test]
    fn memory_near_the_limit_is_undersized() {
        let mut r = runner(DiagnosisSection::default());
        r.note_limit(4 << 30);
        r.note_limit(8 << 30);
        r.t = Totals {
            observed_ns: minute(),
            memory_tight_ns: minute() / 5,
            peak_run_cores: 4.0,
            peak_run_rss: 3900 << 20,
            ..Totals::default()
        };
        let f = r.verdicts();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].summary
                .contains("memory at 90 % of the limit (4.00 GiB) for 20 %"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn waits_while_outsiders_are_busy_are_a_noisy_neighbour() {
        let mut r = runner(DiagnosisSection::default());
        r.t = Totals {
            observed_ns: minute(),
            contended_ns: minute() / 2,
            contended_wait_ns: 20_000_000_000,
            contended_others_ns: 4.0 * (minute() / 2) as f64,
            ..Totals::default()
        };
        let f = r.verdicts();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::NoisyNeighbour);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].value, 50.0);
        assert!(f[0].summary.contains("waited 20.0 s"), "{}", f[0].summary);
        // The idle run on a shared machine is not advised a smaller one...
        assert!(f.iter().all(|f| f.kind != FindingKind::OversizedRunner));
        // ...until its steps hardly waited: then only its own use counts.
        r.t.contended_wait_ns = 5_000_000_000;
        let kinds: Vec<FindingKind> = r.verdicts().iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [FindingKind::OversizedRunner],
            "below neighbour_min_wait"
        );
    }
}
