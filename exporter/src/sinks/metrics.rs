//! Metrics per executable, served to Prometheus (text exposition format on `GET /metrics`).
//!
//! Every ended process adds to the aggregates of its executable name: processes by final
//! status, CPU time by mode, a duration histogram, the highest peak RSS. Label cardinality is
//! bounded: past `MAX_EXECUTABLES` distinct names, new ones are counted under `other`. The
//! agent's own counters (events read and lost, spans exported and dropped) come with them.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

use super::{Sink, SinkError, parquet::status};
use crate::{
    decode::Event,
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

#[derive(Debug, Default)]
pub struct Aggregates {
    executables: BTreeMap<String, Executable>,
    pub agent: SelfCounters,
}

pub type SharedAggregates = Arc<Mutex<Aggregates>>;

impl Aggregates {
    pub fn executables(&self) -> impl Iterator<Item = (&String, &Executable)> {
        self.executables.iter()
    }

    fn record(&mut self, p: &Process) {
        let name = p.executable_name();
        let key = if self.executables.contains_key(name) || self.executables.len() < MAX_EXECUTABLES
        {
            name.to_owned()
        } else {
            "other".to_owned()
        };
        let e = self.executables.entry(key).or_default();
        *e.by_status.entry(status(p)).or_default() += 1;
        if let Some(exit) = p.exit() {
            e.cpu_user_s += exit.usage.cpu_user_ns as f64 / 1e9;
            e.cpu_system_s += exit.usage.cpu_system_ns as f64 / 1e9;
            e.peak_rss_bytes = e.peak_rss_bytes.max(exit.usage.peak_rss_bytes);
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
            "process_cpu_time_seconds_total",
            "counter",
            "CPU time of ended processes (whole thread groups), by executable and mode.",
        );
        for (exe, e) in &self.executables {
            for (mode, v) in [("user", e.cpu_user_s), ("system", e.cpu_system_s)] {
                let _ = writeln!(
                    out,
                    "process_cpu_time_seconds_total{{process_executable_name=\"{}\",cpu_mode=\"{mode}\"}} {v}",
                    label(exe)
                );
            }
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
}
