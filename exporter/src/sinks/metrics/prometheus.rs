//! The metrics served to Prometheus on `GET /metrics`: the families of `families.rs` read from
//! the aggregates at each scrape and encoded by `prometheus-client` in the text format 0.0.4,
//! served by axum.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet, prometheus_text},
    metrics::MetricType,
    registry::Registry,
};
use tokio::task::JoinHandle;

use super::{
    aggregates::{DURATION_BUCKETS, SharedAggregates},
    families::{FAMILIES, Kind, LabelValue, Point, Sources, Value},
};
use crate::sinks::{SinkError, otlp::SpanStats};

/// Reads the aggregates at scrape time. A collector rather than registered instruments: the
/// per-process series must vanish when their process ends, and every series is already
/// counted in the aggregates that OTLP reads too.
#[derive(Debug)]
struct AggregatesCollector {
    aggregates: SharedAggregates,
    spans: Option<Arc<SpanStats>>,
}

/// Prometheus label names: the OTLP keys with `_` for `.`.
fn labels(point: &Point<'_>) -> Vec<(String, String)> {
    point
        .labels
        .iter()
        .map(|(key, value)| {
            let value = match value {
                LabelValue::Str(s) => (*s).to_owned(),
                LabelValue::Pid(pid) => pid.to_string(),
            };
            (key.replace('.', "_"), value)
        })
        .collect()
}

fn encode_value(
    encoder: &mut MetricEncoder<'_>,
    kind: Kind,
    value: &Value<'_>,
) -> Result<(), std::fmt::Error> {
    match (kind, value) {
        (Kind::Gauge, Value::Int(n)) => encoder.encode_gauge(n),
        (Kind::Gauge, Value::Float(v)) => encoder.encode_gauge(v),
        (_, Value::Int(n)) => encoder.encode_counter::<NoLabelSet, _, f64>(n, None),
        (_, Value::Float(v)) => encoder.encode_counter::<NoLabelSet, _, f64>(v, None),
        (_, Value::Histogram(h)) => {
            let buckets: Vec<(f64, u64)> =
                DURATION_BUCKETS.iter().copied().zip(h.buckets).collect();
            encoder.encode_histogram::<NoLabelSet>(h.sum_s, h.count, &buckets, None)
        }
    }
}

fn encode_point(
    encoder: &mut MetricEncoder<'_>,
    kind: Kind,
    point: &Point<'_>,
) -> Result<(), std::fmt::Error> {
    if point.labels.is_empty() {
        return encode_value(encoder, kind, &point.value);
    }
    let labels = labels(point);
    encode_value(&mut encoder.encode_family(&labels)?, kind, &point.value)
}

impl Collector for AggregatesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(aggregates) = self.aggregates.lock() else {
            return Ok(());
        };
        let sources = Sources {
            aggregates: &aggregates,
            spans: self.spans.as_deref(),
        };
        for family in FAMILIES {
            let Some(name) = family.prometheus else {
                continue;
            };
            if !family.exists(sources.spans.is_some(), aggregates.agent.upload.is_some()) {
                continue;
            }
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            // The encoder adds `_total` to counters.
            let name = name.strip_suffix("_total").unwrap_or(name);
            let mut metric = encoder.encode_descriptor(name, family.help, None, metric_type)?;
            for point in (family.points)(&sources) {
                encode_point(&mut metric, family.kind, &point)?;
            }
        }
        Ok(())
    }
}

/// The exposition: every family, in the text format 0.0.4 (what a scrape gets).
#[cfg(test)]
pub fn render(aggregates: SharedAggregates, spans: Option<Arc<SpanStats>>) -> String {
    encode(&registry(aggregates, spans))
}

fn registry(aggregates: SharedAggregates, spans: Option<Arc<SpanStats>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AggregatesCollector { aggregates, spans }));
    registry
}

fn encode(registry: &Registry) -> String {
    let mut body = String::new();
    // Writing to a String cannot fail; a collector error leaves what was written.
    let _ = prometheus_text::encode(&mut body, registry);
    body
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        encode(&registry),
    )
}

/// Aborts the HTTP server when its owner goes away.
pub struct Server(JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// Binds `listen` now (so a bad address fails at start-up) and serves in the background.
    pub fn start(
        listen: SocketAddr,
        aggregates: SharedAggregates,
        spans: Option<Arc<SpanStats>>,
    ) -> Result<Self, SinkError> {
        let bad = |e: std::io::Error| {
            SinkError::Config(format!("metrics.prometheus_listen {listen}: {e}"))
        };
        let std_listener = std::net::TcpListener::bind(listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(bad)?;
        // Said once, with the port the kernel chose for `:0`, so scrapers can be pointed at it.
        if let Ok(bound) = std_listener.local_addr() {
            eprintln!("otel-pipetrace: Prometheus metrics on http://{bound}/metrics");
        }
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bad)?;
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/", get(metrics))
            .with_state(Arc::new(registry(aggregates, spans)));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("metrics endpoint stopped: {e}");
            }
        });
        Ok(Self(server))
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::aggregates::{Aggregates, MAX_EXECUTABLES},
        *,
    };
    use crate::{
        event::{Body, Event, Exit},
        process::tracker::Tracker,
    };
    use std::sync::Mutex;

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
        let shared = SharedAggregates::new(Mutex::new(a));
        let text = render(shared.clone(), None);
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
        assert!(
            !text.contains("pipetrace_spans_"),
            "no span counters without OTLP export"
        );
        let mut a = shared.lock().unwrap();
        t.apply(ev(100, Body::Fork));
        let base = t.live().find(|p| p.key.tgid == 100).unwrap().clone();
        for i in 0..(MAX_EXECUTABLES + 10) {
            let mut p = base.clone();
            p.comm = format!("exe{i}");
            a.record(&p);
        }
        assert!(a.executables().count() <= MAX_EXECUTABLES + 1);
        assert!(a.executables().any(|(name, _)| name == "other"));
    }
}
