//! OTLP metrics: the per-executable aggregates (the same ones Prometheus scrapes, per live
//! process when configured) observed at every collection, the process duration histogram, and the agent's own counters, pushed to
//! the OTLP receiver every `otlp.metrics_interval`. Export results are counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    KeyValue,
    metrics::{Histogram, Meter, MeterProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        SdkMeterProvider, Temporality, data::ResourceMetrics, exporter::PushMetricExporter,
        periodic_reader_with_async_runtime::PeriodicReader,
    },
    runtime,
};

use super::{
    SinkError,
    aggregates::{Counts, DURATION_BUCKETS, Executable, SharedAggregates},
    otlp::SpanStats,
};
use crate::{
    config::OtlpSection,
    otlp_transport::{Signal, Transport},
    stats::Stats,
};

/// Results of metric exports.
#[derive(Debug, Default)]
pub struct MetricExportStats {
    pub exported: AtomicU64,
    pub failed: AtomicU64,
}

/// Counts what the OTLP exporter did.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    stats: Arc<MetricExportStats>,
}

impl<E: PushMetricExporter> PushMetricExporter for Counting<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        match &result {
            Ok(()) => Stats::add(&self.stats.exported, 1),
            Err(e) => {
                if self.stats.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("OTLP metrics export failed: {e}");
                }
            }
        }
        result
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// A counter over one of the executables' counts, labelled by executable and `key`.
fn counts_counter(
    meter: &Meter,
    aggregates: &SharedAggregates,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    key: &'static str,
    of: fn(&Executable) -> &Counts,
) {
    let a = aggregates.clone();
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |obs| {
            if let Ok(a) = a.lock() {
                for (exe, value, n) in a.counts(of) {
                    obs.observe(
                        n,
                        &[
                            KeyValue::new("process.executable.name", exe.to_owned()),
                            KeyValue::new(key, value),
                        ],
                    );
                }
            }
        })
        .build();
}

pub struct OtlpMetrics {
    provider: SdkMeterProvider,
    pub duration: Histogram<f64>,
    pub stats: Arc<MetricExportStats>,
}

impl OtlpMetrics {
    pub fn start(
        config: &OtlpSection,
        resource: Resource,
        aggregates: SharedAggregates,
        spans: Option<Arc<SpanStats>>,
    ) -> Result<Self, SinkError> {
        let exporter = Transport::from_config(config, Signal::Metrics)?.metric_exporter()?;
        let stats = Arc::new(MetricExportStats::default());
        let reader = PeriodicReader::builder(
            Counting {
                inner: exporter,
                stats: stats.clone(),
            },
            runtime::Tokio,
        )
        .with_interval(config.metrics_interval)
        .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        let meter = provider.meter("otel-pipetrace");
        let exe = |name: &str| KeyValue::new("process.executable.name", name.to_owned());

        let labels = move |name: &str, pid: Option<u32>| {
            let mut l = vec![exe(name)];
            if let Some(pid) = pid {
                l.push(KeyValue::new("process.pid", i64::from(pid)));
            }
            l
        };
        let a = aggregates.clone();
        meter
            .f64_observable_counter("process.cpu.time")
            .with_unit("s")
            .with_description(
                "CPU time: ended processes' totals and live processes' time so far, by executable (or live process) and mode",
            )
            .with_callback(move |obs| {
                if let Ok(a) = a.lock() {
                    for s in a.cpu_series() {
                        for (mode, v) in [("user", s.user_s), ("system", s.system_s)] {
                            let mut l = labels(s.executable, s.pid);
                            l.push(KeyValue::new("cpu.mode", mode));
                            obs.observe(v, &l);
                        }
                    }
                }
            })
            .build();
        let a = aggregates.clone();
        meter
            .i64_observable_gauge("process.memory.usage")
            .with_unit("By")
            .with_description(
                "Resident memory of live processes at the latest sample, by executable (or live process)",
            )
            .with_callback(move |obs| {
                if let Ok(a) = a.lock() {
                    for s in a.memory_series() {
                        obs.observe(s.bytes as i64, &labels(s.executable, s.pid));
                    }
                }
            })
            .build();
        counts_counter(
            &meter,
            &aggregates,
            "pipetrace.processes",
            "{process}",
            "Ended processes, by executable and final status",
            "status",
            |e| &e.by_status,
        );
        counts_counter(
            &meter,
            &aggregates,
            "pipetrace.process.signals",
            "{process}",
            "Processes killed by a signal, by executable and signal",
            "signal",
            |e| &e.signals,
        );
        counts_counter(
            &meter,
            &aggregates,
            "pipetrace.runs",
            "{run}",
            "Ended runs (trace roots), by executable and final status",
            "status",
            |e| &e.runs,
        );
        counts_counter(
            &meter,
            &aggregates,
            "pipetrace.memory.events",
            "{event}",
            "Memory events (RSS moved by a step), by executable and direction",
            "direction",
            |e| &e.memory_events,
        );
        let a = aggregates.clone();
        meter
            .f64_observable_gauge("pipetrace.process.duration.max")
            .with_unit("s")
            .with_description("Longest lifetime of an ended process, by executable")
            .with_callback(move |obs| {
                if let Ok(a) = a.lock() {
                    for (name, e) in a.executables() {
                        obs.observe(e.duration_max_s, &[exe(name)]);
                    }
                }
            })
            .build();
        let a = aggregates.clone();
        meter
            .u64_observable_counter("pipetrace.processes.started")
            .with_unit("{process}")
            .with_description("Processes that started while traced")
            .with_callback(move |obs| {
                if let Ok(a) = a.lock() {
                    obs.observe(a.started, &[]);
                }
            })
            .build();
        let a = aggregates.clone();
        meter
            .u64_observable_gauge("pipetrace.process.memory.peak")
            .with_unit("By")
            .with_description("Highest peak RSS of an ended process, by executable")
            .with_callback(move |obs| {
                if let Ok(a) = a.lock() {
                    for (name, e) in a.executables() {
                        obs.observe(e.peak_rss_bytes, &[exe(name)]);
                    }
                }
            })
            .build();
        let a = aggregates.clone();
        meter
            .u64_observable_counter("pipetrace.events")
            .with_unit("{event}")
            .with_description("Records read from the kernel, and events lost by reason")
            .with_callback(move |obs| {
                if let Ok(a) = a.lock() {
                    let agent = a.agent;
                    obs.observe(agent.events_read, &[KeyValue::new("result", "read")]);
                    let l = agent.losses;
                    for (reason, n) in [
                        ("ring_full", l.ring_full),
                        ("untracked", l.untracked),
                        ("queue_full", l.queue_full),
                        ("undecodable", l.decode_errors),
                    ] {
                        obs.observe(
                            n,
                            &[
                                KeyValue::new("result", "lost"),
                                KeyValue::new("reason", reason),
                            ],
                        );
                    }
                }
            })
            .build();
        if let Some(spans) = spans {
            meter
                .u64_observable_counter("pipetrace.spans")
                .with_unit("{span}")
                .with_description("Spans exported and dropped")
                .with_callback(move |obs| {
                    obs.observe(
                        Stats::get(&spans.exported),
                        &[KeyValue::new("result", "exported")],
                    );
                    obs.observe(spans.dropped(), &[KeyValue::new("result", "dropped")]);
                })
                .build();
        }
        let duration = meter
            .f64_histogram("pipetrace.process.duration")
            .with_unit("s")
            .with_description("Lifetime of ended processes, by executable")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build();
        Ok(Self {
            provider,
            duration,
            stats,
        })
    }

    /// Exports what is left and stops, within `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        let provider = self.provider;
        let stop = tokio::task::spawn_blocking(move || {
            let _ = provider.force_flush();
            let _ = provider.shutdown_with_timeout(deadline);
        });
        let _ = tokio::time::timeout(deadline + Duration::from_millis(500), stop).await;
    }
}
