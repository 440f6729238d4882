//! Metrics: the sink keeps per-executable aggregates up to date from the tracker's reports;
//! `families` describes every metric once; `prometheus` serves them on `/metrics` and `otlp`
//! pushes them to the OTLP receiver.

pub mod aggregates;
pub mod families;
pub mod otlp;
pub mod prometheus;

use opentelemetry::{KeyValue, metrics::Histogram};

use super::{Report, Sink, SinkError};
use crate::capture::clock::monotonic_ns;
use aggregates::{Aggregates, SharedAggregates};

pub struct MetricsSink {
    aggregates: SharedAggregates,
    /// Serves `/metrics` while the sink lives.
    _server: Option<prometheus::Server>,
    /// OTLP duration histogram (the other OTLP instruments observe the aggregates).
    duration: Option<Histogram<f64>>,
}

impl MetricsSink {
    pub fn new(
        aggregates: SharedAggregates,
        server: Option<prometheus::Server>,
        duration: Option<Histogram<f64>>,
    ) -> Self {
        Self {
            aggregates,
            _server: server,
            duration,
        }
    }
}

impl MetricsSink {
    /// Changes the aggregates under their lock (a poisoned lock drops the change).
    fn update(&self, change: impl FnOnce(&mut Aggregates)) {
        if let Ok(mut a) = self.aggregates.lock() {
            change(&mut a);
        }
    }
}

impl Sink for MetricsSink {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        match report {
            Report::Started(_) => self.update(|a| a.started += 1),
            Report::MemoryChanged(process, memory) => {
                self.update(|a| a.memory_changed(process, memory));
            }
            Report::Sampled(process, sample) => {
                self.update(|a| a.sample(process, sample, monotonic_ns()));
            }
            Report::Ended(process) => {
                self.update(|a| a.record(process));
                if let Some(h) = &self.duration {
                    let end_ns = process.end_ns.unwrap_or(process.key.start_ns);
                    let seconds = end_ns.saturating_sub(process.key.start_ns) as f64 / 1e9;
                    let exe = process.executable_name().to_owned();
                    h.record(seconds, &[KeyValue::new("process.executable.name", exe)]);
                }
            }
            Report::Event(ev) => {
                // Findings are counted; other records are not (no lock for them).
                if let crate::event::Body::Finding(f) = &ev.body {
                    self.update(|a| *a.findings.entry(f.kind.as_str()).or_default() += 1);
                }
            }
            Report::RunEnded(_) => {}
        }
        Ok(())
    }
}
