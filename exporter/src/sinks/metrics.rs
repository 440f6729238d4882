//! Metrics per executable, served to Prometheus (text exposition format on `GET /metrics`).
//!
//! Every ended process adds to the aggregates of its executable name: processes by final
//! status, CPU time by mode, a duration histogram, the highest peak RSS. Label cardinality is
//! bounded: past `MAX_EXECUTABLES` distinct names, new ones are counted under `other`. The
//! agent's own counters (events read and lost, spans exported and dropped) come with them.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

use super::{Sink, SinkError, parquet::status};
use crate::{
    decode::{Event, Sample},
    sinks::otlp::SpanStats,
    stats::{Losses, Stats},
    tracker::Process,
};

/// Distinct executable names with their own series; later ones share `other`.
pub const MAX_EXECUTABLES: usize = 500;

/// Upper bounds (seconds) of the duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0,
];

#[derive(Debug, Default, Clone)]
pub struct Executable {
    /// Ended processes by status (ok, failed, killed, exit_lost, still_running).
    pub by_status: BTreeMap<&'static str, u64>,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    duration_buckets: [u64; DURATION_BUCKETS.len()],
    duration_sum_s: f64,
    duration_count: u64,
    pub peak_rss_bytes: u64,
}

/// The agent's own counters, refreshed by whoever owns them.
#[derive(Debug, Default, Clone, Copy)]
pub struct SelfCounters {
    pub events_read: u64,
    pub losses: Losses,
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

    /// Adds CPU time to an executable's totals.
    fn bank(&mut self, executable: &str, cpu: (f64, f64)) {
        if let Some(e) = self.executables.get_mut(executable) {
            e.cpu_user_s += cpu.0;
            e.cpu_system_s += cpu.1;
        }
    }

    /// Takes a live process out, its CPU time so far banked under the label it had unless
    /// that label is `keep`. Returns what is already counted elsewhere and its time so far.
    fn take_live(&mut self, pid: u32, keep: &str) -> ((f64, f64), (f64, f64)) {
        let Some(l) = self.live.remove(&pid) else {
            return ((0.0, 0.0), (0.0, 0.0));
        };
        if l.executable == keep {
            return (l.banked, l.cpu);
        }
        self.bank(&l.executable, l.unbanked());
        (l.cpu, l.cpu)
    }

    fn sample(&mut self, p: &Process, s: &Sample, at_ns: u64) {
        let executable = self.label_for(p.executable_name());
        let (banked, _) = self.take_live(p.key.tgid, &executable);
        self.live.insert(
            p.key.tgid,
            LiveProcess {
                executable,
                cpu: (s.cpu_user_ns as f64 / 1e9, s.cpu_system_ns as f64 / 1e9),
                banked,
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

    fn record(&mut self, p: &Process) {
        let key = self.label_for(p.executable_name());
        let (banked, so_far) = self.take_live(p.key.tgid, &key);
        let e = self.executables.entry(key).or_default();
        *e.by_status.entry(status(p)).or_default() += 1;
        if let Some(exit) = p.exit() {
            e.cpu_user_s += exit.usage.cpu_user_ns as f64 / 1e9 - banked.0;
            e.cpu_system_s += exit.usage.cpu_system_ns as f64 / 1e9 - banked.1;
            e.peak_rss_bytes = e.peak_rss_bytes.max(exit.usage.peak_rss_bytes);
        } else {
            // No final totals (exit lost, still running): its time so far stays counted.
            e.cpu_user_s += so_far.0 - banked.0;
            e.cpu_system_s += so_far.1 - banked.1;
        }
        let duration = p
            .end_ns
            .unwrap_or(p.key.start_ns)
            .saturating_sub(p.key.start_ns) as f64
            / 1e9;
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if duration <= *bound {
                e.duration_buckets[i] += 1;
            }
        }
        e.duration_sum_s += duration;
        e.duration_count += 1;
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

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, spans: Option<&SpanStats>) -> String {
        let mut out = String::with_capacity(4096 + 512 * self.executables.len());
        let label = |v: &str| {
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "pipetrace_processes_total",
            "counter",
            "Processes that ended, by executable and final status.",
        );
        for (exe, e) in &self.executables {
            for (status, n) in &e.by_status {
                let _ = writeln!(
                    out,
                    "pipetrace_processes_total{{process_executable_name=\"{}\",status=\"{status}\"}} {n}",
                    label(exe)
                );
            }
        }
        family(
            &mut out,
            "pipetrace_processes_started_total",
            "counter",
            "Processes that started while traced.",
        );
        let _ = writeln!(out, "pipetrace_processes_started_total {}", self.started);
        let labels = |exe: &str, pid: Option<u32>| match pid {
            Some(pid) => format!(
                "process_executable_name=\"{}\",process_pid=\"{pid}\"",
                label(exe)
            ),
            None => format!("process_executable_name=\"{}\"", label(exe)),
        };
        family(
            &mut out,
            "process_cpu_time_seconds_total",
            "counter",
            "CPU time (whole thread groups): ended processes' totals and live processes' time so far, by executable (or live process) and mode.",
        );
        for s in self.cpu_series() {
            let l = labels(s.executable, s.pid);
            for (mode, v) in [("user", s.user_s), ("system", s.system_s)] {
                let _ = writeln!(
                    out,
                    "process_cpu_time_seconds_total{{{l},cpu_mode=\"{mode}\"}} {v}"
                );
            }
        }
        family(
            &mut out,
            "process_memory_usage_bytes",
            "gauge",
            "Resident memory of live processes at the latest sample, by executable (or live process).",
        );
        for s in self.memory_series() {
            let _ = writeln!(
                out,
                "process_memory_usage_bytes{{{}}} {}",
                labels(s.executable, s.pid),
                s.bytes
            );
        }
        family(
            &mut out,
            "pipetrace_process_memory_peak_bytes",
            "gauge",
            "Highest peak RSS of any ended process of the executable.",
        );
        for (exe, e) in &self.executables {
            let _ = writeln!(
                out,
                "pipetrace_process_memory_peak_bytes{{process_executable_name=\"{}\"}} {}",
                label(exe),
                e.peak_rss_bytes
            );
        }
        family(
            &mut out,
            "pipetrace_process_duration_seconds",
            "histogram",
            "Lifetime of ended processes, by executable.",
        );
        for (exe, e) in &self.executables {
            let exe = label(exe);
            for (bound, n) in DURATION_BUCKETS.iter().zip(e.duration_buckets) {
                let _ = writeln!(
                    out,
                    "pipetrace_process_duration_seconds_bucket{{process_executable_name=\"{exe}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "pipetrace_process_duration_seconds_bucket{{process_executable_name=\"{exe}\",le=\"+Inf\"}} {}\n\
                 pipetrace_process_duration_seconds_sum{{process_executable_name=\"{exe}\"}} {}\n\
                 pipetrace_process_duration_seconds_count{{process_executable_name=\"{exe}\"}} {}",
                e.duration_count, e.duration_sum_s, e.duration_count
            );
        }
        family(
            &mut out,
            "pipetrace_events_read_total",
            "counter",
            "Records read from the kernel ring buffer.",
        );
        let _ = writeln!(
            out,
            "pipetrace_events_read_total {}",
            self.agent.events_read
        );
        family(
            &mut out,
            "pipetrace_events_lost_total",
            "counter",
            "Events lost, by where: kernel ring full, untracked (map full), queue full, undecodable.",
        );
        let l = self.agent.losses;
        for (reason, n) in [
            ("ring_full", l.ring_full),
            ("untracked", l.untracked),
            ("queue_full", l.queue_full),
            ("undecodable", l.decode_errors),
        ] {
            let _ = writeln!(
                out,
                "pipetrace_events_lost_total{{reason=\"{reason}\"}} {n}"
            );
        }
        if let Some(s) = spans {
            family(
                &mut out,
                "pipetrace_spans_exported_total",
                "counter",
                "Spans the OTLP receiver acknowledged.",
            );
            let _ = writeln!(
                out,
                "pipetrace_spans_exported_total {}",
                Stats::get(&s.exported)
            );
            family(
                &mut out,
                "pipetrace_spans_dropped_total",
                "counter",
                "Spans dropped: queue full, export failed, unsent at exit.",
            );
            let _ = writeln!(out, "pipetrace_spans_dropped_total {}", s.dropped());
        }
        out
    }
}

/// Aborts the HTTP server when the sink goes away.
struct ServerGuard(JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct MetricsSink {
    aggregates: SharedAggregates,
    _server: Option<ServerGuard>,
    /// OTLP duration histogram (the other OTLP instruments observe the aggregates).
    duration: Option<opentelemetry::metrics::Histogram<f64>>,
}

impl MetricsSink {
    /// Aggregates only (for OTLP metrics without a Prometheus endpoint).
    pub fn new(
        aggregates: SharedAggregates,
        duration: Option<opentelemetry::metrics::Histogram<f64>>,
    ) -> Self {
        Self {
            aggregates,
            _server: None,
            duration,
        }
    }

    /// Binds `listen` now (so a bad address fails at start-up) and serves in the background.
    pub fn serve(
        listen: SocketAddr,
        aggregates: SharedAggregates,
        spans: Option<Arc<SpanStats>>,
        duration: Option<opentelemetry::metrics::Histogram<f64>>,
    ) -> Result<Self, SinkError> {
        let std_listener = std::net::TcpListener::bind(listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| SinkError::Config(format!("metrics.prometheus_listen {listen}: {e}")))?;
        let listener = TcpListener::from_std(std_listener)
            .map_err(|e| SinkError::Config(format!("metrics.prometheus_listen {listen}: {e}")))?;
        let shared = aggregates.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                let spans = spans.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 2048];
                    let n = conn.read(&mut request).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&request[..n]);
                    let response = if head.starts_with("GET /metrics ")
                        || head.starts_with("GET / ")
                    {
                        let body = shared
                            .lock()
                            .map(|a| a.render(spans.as_deref()))
                            .unwrap_or_default();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned()
                    };
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Self {
            aggregates,
            _server: Some(ServerGuard(server)),
            duration,
        })
    }
}

impl Sink for MetricsSink {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn event(&mut self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }

    fn process_started(&mut self, _process: &Process) {
        if let Ok(mut a) = self.aggregates.lock() {
            a.started += 1;
        }
    }

    fn sampled(&mut self, process: &Process, sample: &Sample) {
        if let Ok(mut a) = self.aggregates.lock() {
            a.sample(process, sample, crate::clock::monotonic_ns());
        }
    }

    fn process_ended(&mut self, process: &Process) -> Result<(), SinkError> {
        if let Ok(mut a) = self.aggregates.lock() {
            a.record(process);
        }
        if let Some(h) = &self.duration {
            let seconds = process
                .end_ns
                .unwrap_or(process.key.start_ns)
                .saturating_sub(process.key.start_ns) as f64
                / 1e9;
            h.record(
                seconds,
                &[opentelemetry::KeyValue::new(
                    "process.executable.name",
                    process.executable_name().to_owned(),
                )],
            );
        }
        Ok(())
    }

    fn still_running(&mut self, process: &Process, now_ns: u64) -> Result<(), SinkError> {
        self.process_ended(&process.still_running_at(now_ns))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{Body, Common, Exit},
        tracker::Tracker,
    };

    fn ev(tgid: u32, body: Body) -> Event {
        Event {
            common: Common::sample(tgid, 1_000_000_000, 1_500_000_000, "cc\"x"),
            body,
        }
    }

    #[test]
    fn renders_bounded_labelled_series() {
        let mut a = Aggregates::default();
        let mut t = Tracker::default();
        for (pid, status) in [(10, 0), (11, 1 << 8)] {
            t.apply(ev(pid, Body::Fork));
            let mut exit = Exit::from_status(status);
            exit.usage.cpu_user_ns = 250_000_000;
            exit.usage.peak_rss_bytes = 1 << 20;
            a.record(&t.apply(ev(pid, Body::Exit(exit))).unwrap());
        }
        let text = a.render(None);
        assert!(
            text.contains(
                r#"pipetrace_processes_total{process_executable_name="cc\"x",status="ok"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"status="failed"} 1"#));
        assert!(text.contains(
            r#"process_cpu_time_seconds_total{process_executable_name="cc\"x",cpu_mode="user"} 0.5"#
        ));
        assert!(text.contains(r#"pipetrace_process_duration_seconds_bucket{process_executable_name="cc\"x",le="0.5"} 2"#));
        assert!(text.contains(r#"le="0.1"} 0"#));
        assert!(text.contains(
            r#"pipetrace_process_duration_seconds_count{process_executable_name="cc\"x"} 2"#
        ));
        t.apply(ev(100, Body::Fork));
        let base = t.live().find(|p| p.key.tgid == 100).unwrap().clone();
        for i in 0..(MAX_EXECUTABLES + 10) {
            let mut p = base.clone();
            p.comm = format!("exe{i}");
            a.record(&p);
        }
        assert!(a.executables.len() <= MAX_EXECUTABLES + 1);
        assert!(a.executables.contains_key("other"));
    }

    #[test]
    fn live_samples_join_the_executable_totals_and_never_go_down() {
        use crate::tracker::Ending;
        let mut a = Aggregates::new(false, Duration::from_secs(1));
        let mut t = Tracker::default();
        t.apply(ev(10, Body::Fork));
        let cc = t.process(10).unwrap().clone();
        let sample = |user_s: u64, rss_bytes: u64| Sample {
            cpu_user_ns: user_s * 1_000_000_000,
            cpu_system_ns: 0,
            rss_bytes,
            threads: 1,
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
        let text = a.render(None);
        assert!(
            text.contains(r#"process_memory_usage_bytes{process_executable_name="ld"} 8192"#),
            "{text}"
        );
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
        assert!(a.render(None).contains(
            r#"process_memory_usage_bytes{process_executable_name="ld",process_pid="10"} 8192"#
        ));
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
}
