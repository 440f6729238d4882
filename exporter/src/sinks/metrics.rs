//! The aggregates (`aggregates.rs`) served to Prometheus in the text exposition format on
//! `GET /metrics`, with the agent's own counters (events read and lost, spans exported and
//! dropped).

use std::{fmt::Write as _, net::SocketAddr, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

use super::{
    Sink, SinkError,
    aggregates::{Aggregates, Counts, DURATION_BUCKETS, Executable, Histogram, SharedAggregates},
};
use crate::{
    decode::{Event, Memory, Sample},
    sinks::otlp::SpanStats,
    stats::Stats,
    tracker::Process,
};

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The series of one histogram; `labels` is the rendered label set without `le`.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (bound, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
        h.count, h.sum_s, h.count
    );
}

impl Aggregates {
    /// A counter family over one of the executables' counts.
    fn render_counts(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        key: &str,
        of: fn(&Executable) -> &Counts,
    ) {
        family(out, name, "counter", help);
        for (exe, value, n) in self.counts(of) {
            let _ = writeln!(
                out,
                "{name}{{process_executable_name=\"{}\",{key}=\"{value}\"}} {n}",
                label(exe)
            );
        }
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, spans: Option<&SpanStats>) -> String {
        let mut out = String::with_capacity(4096 + 512 * self.executables.len());
        self.render_counts(
            &mut out,
            "pipetrace_processes_total",
            "Processes that ended, by executable and final status.",
            "status",
            |e| &e.by_status,
        );
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
            let l = format!("process_executable_name=\"{}\"", label(exe));
            histogram(
                &mut out,
                "pipetrace_process_duration_seconds",
                &l,
                &e.duration,
            );
        }
        family(
            &mut out,
            "pipetrace_process_duration_max_seconds",
            "gauge",
            "Longest lifetime of an ended process, by executable.",
        );
        for (exe, e) in &self.executables {
            let _ = writeln!(
                out,
                "pipetrace_process_duration_max_seconds{{process_executable_name=\"{}\"}} {}",
                label(exe),
                e.duration_max_s
            );
        }
        self.render_counts(
            &mut out,
            "pipetrace_process_signals_total",
            "Processes killed by a signal, by executable and signal.",
            "signal",
            |e| &e.signals,
        );
        self.render_counts(
            &mut out,
            "pipetrace_memory_events_total",
            "Memory events (RSS moved by a step), by executable and direction.",
            "direction",
            |e| &e.memory_events,
        );
        self.render_counts(
            &mut out,
            "pipetrace_runs_total",
            "Ended runs (trace roots), by executable and final status.",
            "status",
            |e| &e.runs,
        );
        family(
            &mut out,
            "pipetrace_run_duration_seconds",
            "histogram",
            "Duration of ended runs (trace roots), by executable.",
        );
        for (exe, e) in self
            .executables
            .iter()
            .filter(|(_, e)| e.run_duration.count > 0)
        {
            let l = format!("process_executable_name=\"{}\"", label(exe));
            histogram(
                &mut out,
                "pipetrace_run_duration_seconds",
                &l,
                &e.run_duration,
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
        // Said once, with the port the kernel chose for `:0`, so scrapers can be pointed at it.
        if let Ok(bound) = std_listener.local_addr() {
            eprintln!("otel-pipetrace: Prometheus metrics on http://{bound}/metrics");
        }
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

    fn memory_changed(&mut self, process: &Process, memory: &Memory) {
        if let Ok(mut a) = self.aggregates.lock() {
            a.memory_changed(process, memory);
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
        decode::{Body, Exit},
        sinks::aggregates::MAX_EXECUTABLES,
        tracker::Tracker,
    };

    fn ev(tgid: u32, body: Body) -> Event {
        Event::sample(tgid, body)
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
        // Both are trace roots here (no parent span): two runs, one failed.
        assert!(text.contains(
            r#"pipetrace_runs_total{process_executable_name="cc\"x",status="failed"} 1"#
        ));
        assert!(text.contains(
            r#"pipetrace_run_duration_seconds_count{process_executable_name="cc\"x"} 2"#
        ));
        assert!(text.contains(
            r#"pipetrace_process_duration_max_seconds{process_executable_name="cc\"x"} 0.5"#
        ));
        // Every family is announced once, with HELP and TYPE.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
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
