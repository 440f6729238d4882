//! OTLP metrics: the families of `families.rs` (the same aggregates Prometheus scrapes) as
//! observable instruments of the OpenTelemetry SDK, the process duration as an SDK histogram,
//! pushed to the OTLP receiver every `otlp.metrics_interval`. Export results are counted.

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
    aggregates::{DURATION_BUCKETS, SharedAggregates},
    families::{FAMILIES, Family, Kind, LabelValue, SECONDS, Sources, Value},
};
use crate::{
    capture::stats::Stats,
    config::{OtlpSection, Signal},
    sinks::{
        SinkError,
        otlp::{SpanStats, transport::Transport},
    },
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

/// The family's points as OTLP attributes and values.
fn observations(
    family: &'static Family,
    aggregates: &SharedAggregates,
    spans: Option<&SpanStats>,
) -> Vec<(Vec<KeyValue>, Number)> {
    let Ok(a) = aggregates.lock() else {
        return Vec::new();
    };
    let sources = Sources {
        aggregates: &a,
        spans,
    };
    (family.points)(&sources)
        .into_iter()
        .filter_map(|point| {
            let value = match point.value {
                Value::Int(n) => Number::Int(n),
                Value::Float(v) => Number::Float(v),
                // Histograms are recorded as processes end, not observed.
                Value::Histogram(_) => return None,
            };
            let attributes = point
                .labels
                .iter()
                .map(|(key, value)| match value {
                    LabelValue::Str(s) => KeyValue::new(*key, (*s).to_owned()),
                    LabelValue::Pid(pid) => KeyValue::new(*key, i64::from(*pid)),
                })
                .collect();
            Some((attributes, value))
        })
        .collect()
}

/// An observed value, owned (the aggregates' lock is released before observing).
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(u64),
    Float(f64),
}

/// An observable instrument for `family`, read from the aggregates at every collection.
fn observe(
    meter: &Meter,
    family: &'static Family,
    aggregates: &SharedAggregates,
    spans: Option<Arc<SpanStats>>,
) {
    let Some(name) = family.otlp else {
        return;
    };
    let (a, s) = (aggregates.clone(), spans.clone());
    let points = move || observations(family, &a, s.as_deref());
    // One builder per number type and kind: the SDK's instruments are typed.
    macro_rules! instrument {
        ($builder:ident, $variant:ident) => {
            meter
                .$builder(name)
                .with_unit(family.unit)
                .with_description(family.help)
                .with_callback(move |obs| {
                    for (attributes, value) in points() {
                        if let Number::$variant(v) = value {
                            obs.observe(v, &attributes);
                        }
                    }
                })
                .build()
        };
    }
    match (family.kind, family.unit == SECONDS) {
        (Kind::Counter, false) => {
            instrument!(u64_observable_counter, Int);
        }
        (Kind::Counter, true) => {
            instrument!(f64_observable_counter, Float);
        }
        (Kind::Gauge, false) => {
            instrument!(u64_observable_gauge, Int);
        }
        (Kind::Gauge, true) => {
            instrument!(f64_observable_gauge, Float);
        }
        (Kind::Histogram, _) => {}
    }
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
        upload: bool,
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
        for family in FAMILIES {
            if family.exists(spans.is_some(), upload) {
                observe(&meter, family, &aggregates, spans.clone());
            }
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
