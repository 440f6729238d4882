//! OTLP traces: one span per process, sent over gRPC or HTTP/protobuf.
//!
//! The sink never blocks the tracker: spans go into a bounded queue (`otlp.max_queue_spans`)
//! drained by an export task that sends batches. A full queue drops the span; a failed or timed
//! out request drops its batch; both are counted in [`SpanStats`] and reported at exit.

pub mod cicd;
pub mod spans;
pub mod transport;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::KeyValue;
use opentelemetry_sdk::{
    Resource,
    trace::{SpanData, SpanExporter},
};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use super::{Report, Sink, SinkError};
use crate::{
    capture::{clock::Clock, stats::Stats},
    config::{OtlpSection, Signal},
};
use spans::SpanFactory;
use transport::Transport;

/// What happened to the spans handed to the sink.
#[derive(Debug, Default)]
pub struct SpanStats {
    /// Spans accepted into the export queue.
    pub queued: AtomicU64,
    /// Spans the receiver acknowledged.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full (receiver too slow or down).
    pub dropped_queue_full: AtomicU64,
    /// Spans in requests that failed or timed out.
    pub failed: AtomicU64,
    /// Spans still queued when the shutdown deadline passed.
    pub dropped_at_shutdown: AtomicU64,
}

impl SpanStats {
    pub fn dropped(&self) -> u64 {
        Stats::get(&self.dropped_queue_full)
            + Stats::get(&self.failed)
            + Stats::get(&self.dropped_at_shutdown)
    }

    /// `spans: 12 exported, 0 dropped` or with the reasons for drops.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, counter) in [
            ("queue full", &self.dropped_queue_full),
            ("export failed", &self.failed),
            ("unsent at exit", &self.dropped_at_shutdown),
        ] {
            let n = Stats::get(counter);
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        let exported = Stats::get(&self.exported);
        if parts.is_empty() {
            format!("spans: {exported} exported, 0 dropped")
        } else {
            format!(
                "spans: {exported} exported, {} dropped ({})",
                self.dropped(),
                parts.join(", ")
            )
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max_batch: usize,
    pub delay: Duration,
    /// Deadline of one export call, retries included.
    pub timeout: Duration,
}

impl BatchSettings {
    pub fn from_config(c: &OtlpSection) -> Self {
        Self {
            max_batch: c.max_batch_spans,
            delay: c.batch_delay,
            // The exporter retries a failed request up to 3 times, each bounded by `timeout`.
            timeout: c.timeout * 4,
        }
    }
}

/// The background half of the sink: sends what the sink queued.
pub struct ExportTask {
    handle: JoinHandle<()>,
    stats: Arc<SpanStats>,
}

impl ExportTask {
    pub fn stats(&self) -> Arc<SpanStats> {
        self.stats.clone()
    }

    /// Waits for the queue to drain (after every sender is gone), at most `deadline`; what is
    /// left is counted as unsent.
    pub async fn finish(self, deadline: Duration) -> Arc<SpanStats> {
        let mut handle = self.handle;
        if tokio::time::timeout(deadline, &mut handle).await.is_err() {
            handle.abort();
            let s = &self.stats;
            let settled = Stats::get(&s.exported) + Stats::get(&s.failed);
            let unsent = Stats::get(&s.queued).saturating_sub(settled);
            Stats::add(&s.dropped_at_shutdown, unsent);
        }
        self.stats
    }
}

pub struct OtlpSink {
    tx: mpsc::Sender<SpanData>,
    factory: SpanFactory,
    stats: Arc<SpanStats>,
    /// The file outputs whose state the run span carries.
    outputs: Vec<Arc<crate::sinks::health::OutputHealth>>,
    /// The run's findings so far `(time, pid, finding)`: events of the run span.
    findings: Vec<(u64, u32, Arc<crate::event::Finding>)>,
}

/// Findings kept for the run span; more are on their processes' spans and in the dataset.
const MAX_RUN_FINDINGS: usize = 128;

impl OtlpSink {
    /// A sink over any exporter (the OTLP one, or the SDK's in-memory one in tests).
    pub fn with_exporter<E: SpanExporter + 'static>(
        exporter: E,
        clock: Clock,
        queue: usize,
        settings: BatchSettings,
    ) -> (Self, ExportTask) {
        let stats = Arc::new(SpanStats::default());
        let (tx, rx) = mpsc::channel(queue);
        let handle = tokio::spawn(export_loop(exporter, rx, settings, stats.clone()));
        (
            Self {
                tx,
                factory: SpanFactory::new(clock),
                findings: Vec::new(),
                stats: stats.clone(),
                outputs: Vec::new(),
            },
            ExportTask { handle, stats },
        )
    }

    /// The OTLP sink the configuration describes.
    pub fn from_config(
        config: &OtlpSection,
        resource: Resource,
        clock: Clock,
    ) -> Result<(Self, ExportTask), SinkError> {
        let mut exporter = Transport::from_config(config, Signal::Traces)?.span_exporter()?;
        exporter.set_resource(&resource);
        Ok(Self::with_exporter(
            exporter,
            clock,
            config.max_queue_spans,
            BatchSettings::from_config(config),
        ))
    }

    pub fn stats(&self) -> Arc<SpanStats> {
        self.stats.clone()
    }

    fn enqueue(&mut self, span: SpanData) {
        match self.tx.try_send(span) {
            Ok(()) => Stats::add(&self.stats.queued, 1),
            Err(_) => Stats::add(&self.stats.dropped_queue_full, 1),
        }
    }
}

/// `pipetrace.output.parquet.written` = 402, `.received`, `.dropped`, `.failed_writes` and
/// `.failure` (`disk full: /data/processes`) per file output, as the run ends.
fn output_attributes(
    outputs: &[Arc<crate::sinks::health::OutputHealth>],
) -> Vec<opentelemetry::KeyValue> {
    use opentelemetry::KeyValue;
    let mut attrs = Vec::new();
    for o in outputs.iter().map(|o| o.snapshot()) {
        let key = |name: &str| format!("pipetrace.output.{}.{name}", o.sink);
        attrs.push(KeyValue::new(key("received"), o.received as i64));
        attrs.push(KeyValue::new(key("written"), o.written as i64));
        attrs.push(KeyValue::new(key("dropped"), o.dropped as i64));
        attrs.push(KeyValue::new(
            key("failed_writes"),
            o.failures_total() as i64,
        ));
        if let Some(first) = o.first_failure {
            attrs.push(KeyValue::new(key("failure"), first));
        }
    }
    attrs
}

impl OtlpSink {
    /// The run span will say what these outputs wrote and lost.
    pub fn watch_outputs(&mut self, outputs: Vec<Arc<crate::sinks::health::OutputHealth>>) {
        self.outputs = outputs;
    }
}

impl Sink for OtlpSink {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        let span = match report {
            Report::Ended(process) => self.factory.process(process),
            Report::Event(ev) => {
                if let crate::event::Body::Finding(f) = &ev.body
                    && self.findings.len() < MAX_RUN_FINDINGS
                {
                    self.findings
                        .push((ev.common.ktime_ns, ev.common.tgid, f.clone()));
                }
                None
            }
            Report::RunEnded(run) => {
                let mut span = self.factory.run(run, &self.findings);
                span.attributes.extend(output_attributes(&self.outputs));
                Some(span)
            }
            _ => None,
        };
        if let Some(span) = span {
            self.enqueue(span);
        }
        Ok(())
    }
}

async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    settings: BatchSettings,
    stats: Arc<SpanStats>,
) {
    let warned = AtomicBool::new(false);
    let mut batch = Vec::with_capacity(settings.max_batch);
    let mut open = true;
    while open {
        match rx.recv().await {
            Some(span) => batch.push(span),
            None => break,
        }
        let deadline = Instant::now() + settings.delay;
        while batch.len() < settings.max_batch {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => { open = false; break; }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let spans = std::mem::replace(&mut batch, Vec::with_capacity(settings.max_batch));
        let n = spans.len() as u64;
        let result = tokio::time::timeout(settings.timeout, exporter.export(spans)).await;
        match result {
            Ok(Ok(())) => Stats::add(&stats.exported, n),
            Ok(Err(e)) => {
                Stats::add(&stats.failed, n);
                if !warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("OTLP export failed, spans are being dropped: {e}");
                }
            }
            Err(_) => {
                Stats::add(&stats.failed, n);
                if !warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "OTLP export timed out after {:?}, spans are being dropped",
                        settings.timeout
                    );
                }
            }
        }
    }
    // Dropping the exporter closes its connections; every batch was already answered.
}

/// The resource of every span: service, host, configured attributes and, in run mode, the
/// `cicd.*` attributes of the CI job around it.
pub fn resource(c: &OtlpSection, cicd: &[(&'static str, String)]) -> Resource {
    let mut attrs = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "rust"),
        KeyValue::new("os.type", "linux"),
    ];
    if let Some(host) = crate::config::machine_host_name() {
        attrs.push(KeyValue::new("host.name", host));
    }
    attrs.extend(cicd.iter().map(|(k, v)| KeyValue::new(*k, v.clone())));
    attrs.extend(
        c.resource_attributes
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    Resource::builder_empty()
        .with_attributes(attrs)
        .with_service_name(c.service_name.clone())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Body, Common, Event, Exec, Exit},
        process::{
            trace_context::SpanRef,
            tracker::{Tracker, TrackerOptions},
        },
    };
    use exporter_common::flags;
    use opentelemetry::{
        Value,
        trace::{SpanId, Status},
    };
    use opentelemetry_sdk::trace::InMemorySpanExporter;

    fn ev(tgid: u32, start: u64, parent: (u32, u64), body: Body, flags: u16) -> Event {
        Event {
            common: Common {
                flags,
                ktime_ns: start + 1_000_000,
                start_ns: start,
                parent_start_ns: parent.1,
                cgroup_id: 0,
                tgid,
                tid: tgid,
                ppid: parent.0,
                tree_ppid: parent.0,
                uid: 1000,
                comm: "c".into(),
            },
            body,
        }
    }

    fn exec(exe: &str, argv: &[&str]) -> Body {
        Body::Exec(Box::new(Exec {
            exe: Some(exe.into()),
            cwd: Some("/work".into()),
            filename: exe.into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            argv_truncated: false,
            argv_total_bytes: 10,
            hidden: false,
        }))
    }

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn settings() -> BatchSettings {
        BatchSettings {
            max_batch: 2,
            delay: Duration::from_millis(5),
            timeout: Duration::from_secs(5),
        }
    }

    /// Tracker → sink → SDK in-memory exporter: ids, nesting, attributes, status.
    #[tokio::test]
    async fn builds_nested_spans_with_semconv_attributes() {
        let memory = InMemorySpanExporter::default();
        let (mut sink, task) =
            OtlpSink::with_exporter(memory.clone(), Clock::new(), 16, settings());
        let run = SpanRef {
            trace_id: 0xabc,
            span_id: 0x99,
        };
        let mut tracker = Tracker::new(TrackerOptions {
            run_span: Some(run),
            ..Default::default()
        });
        let root_start = 1_000_000_000;
        let events = [
            ev(
                10,
                root_start,
                (1, 0),
                exec("/usr/bin/dash", &["sh", "build.sh"]),
                flags::ROOT,
            ),
            ev(11, root_start + 5, (10, root_start), Body::Fork, 0),
            ev(
                11,
                root_start + 5,
                (10, root_start),
                exec("/usr/bin/dash", &["sh", "-c", "x"]),
                0,
            ),
            ev(
                11,
                root_start + 5,
                (10, root_start),
                exec("/usr/bin/false", &["false"]),
                0,
            ),
            ev(
                11,
                root_start + 5,
                (10, root_start),
                Body::Exit(Exit::from_status(1 << 8)),
                0,
            ),
            ev(12, root_start + 9, (10, root_start), Body::Fork, 0),
            ev(
                12,
                root_start + 9,
                (10, root_start),
                Body::Exit(Exit::from_status(9)),
                0,
            ),
            ev(10, root_start, (1, 0), Body::Exit(Exit::from_status(0)), 0),
        ];
        for e in events {
            if let Some(p) = tracker.apply(e) {
                sink.report(&Report::Ended(&p)).unwrap();
            }
        }
        drop(sink);
        let stats = task.finish(Duration::from_secs(5)).await;
        assert_eq!(Stats::get(&stats.exported), 3);
        let spans = memory.get_finished_spans().unwrap();
        let by_pid = |pid: i64| {
            spans
                .iter()
                .find(|s| attr(s, "process.pid") == Some(&Value::I64(pid)))
                .unwrap()
        };
        let (root, failed, killed) = (by_pid(10), by_pid(11), by_pid(12));
        assert_eq!(root.name, "dash");
        assert_eq!(root.parent_span_id, SpanId::from(0x99u64));
        assert_eq!(
            root.span_context.trace_id(),
            opentelemetry::trace::TraceId::from(0xabcu128)
        );
        assert_eq!(failed.parent_span_id, root.span_context.span_id());
        assert_eq!(killed.parent_span_id, root.span_context.span_id());
        assert_eq!(failed.span_context.trace_id(), root.span_context.trace_id());
        assert_eq!(root.status, Status::Unset);
        assert_eq!(attr(root, "process.exit.code"), Some(&Value::I64(0)));
        assert_eq!(
            attr(root, "process.command_line"),
            Some(&Value::from("sh build.sh"))
        );
        assert_eq!(attr(root, "process.user.id"), Some(&Value::I64(1000)));
        assert_eq!(
            attr(root, "process.working_directory"),
            Some(&Value::from("/work"))
        );
        // The exec chain: named after the last image, the replaced one is an event.
        assert_eq!(failed.name, "false");
        assert_eq!(attr(failed, "process.exit.code"), Some(&Value::I64(1)));
        assert_eq!(attr(failed, "error.type"), Some(&Value::from("1")));
        assert!(matches!(failed.status, Status::Error { .. }));
        assert_eq!(failed.events.len(), 1);
        assert_eq!(failed.events[0].name, "process.exec");
        assert_eq!(
            attr(killed, "pipetrace.process.signal_name"),
            Some(&Value::from("SIGKILL"))
        );
        assert_eq!(attr(killed, "error.type"), Some(&Value::from("SIGKILL")));
        assert!(root.end_time >= root.start_time);
        assert_eq!(
            root.end_time.duration_since(root.start_time).unwrap(),
            Duration::from_millis(1)
        );
    }

    /// An exporter that always fails, like a receiver that is down.
    #[derive(Debug)]
    struct Refusing;
    impl SpanExporter for Refusing {
        async fn export(&self, _batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "connection refused".into(),
            ))
        }
    }

    #[tokio::test]
    async fn failures_and_a_full_queue_are_counted_not_blocking() {
        let (mut sink, task) = OtlpSink::with_exporter(Refusing, Clock::new(), 4, settings());
        let mut tracker = Tracker::default();
        for i in 0..100u32 {
            let start = u64::from(i) * 1_000 + 1;
            tracker.apply(ev(i + 2, start, (1, 0), Body::Fork, 0));
            let p = tracker
                .apply(ev(
                    i + 2,
                    start,
                    (1, 0),
                    Body::Exit(Exit::from_status(0)),
                    0,
                ))
                .unwrap();
            sink.report(&Report::Ended(&p)).unwrap();
        }
        drop(sink);
        let stats = task.finish(Duration::from_secs(5)).await;
        assert_eq!(Stats::get(&stats.exported), 0);
        assert_eq!(stats.dropped(), 100);
        assert!(Stats::get(&stats.dropped_queue_full) > 0);
        assert!(
            stats.describe().contains("100 dropped"),
            "{}",
            stats.describe()
        );
    }
}
