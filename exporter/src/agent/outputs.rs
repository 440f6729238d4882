//! The sinks the configuration asks for, with what runs behind them: the span export task, the
//! aggregates the metrics read, the OTLP metrics pipeline and the `/metrics` server.

use std::sync::Mutex;

use super::StartOptions;
use crate::{
    capture::clock::Clock,
    config::Config,
    sinks::{
        Sink, SinkError,
        detached::Detached,
        jsonl::JsonlSink,
        metrics::{
            MetricsSink,
            aggregates::{Aggregates, SharedAggregates},
            otlp::OtlpMetrics,
            prometheus,
        },
        otlp::{self, ExportTask, OtlpSink},
        parquet::{ParquetSettings, ParquetSink},
        run_record::RunRecordSink,
    },
    upload::UploadTask,
};

/// The sinks, the export task behind the OTLP sink, and the metrics the Prometheus endpoint
/// serves, when configured.
pub struct ConfiguredSinks {
    pub sinks: Vec<Box<dyn Sink>>,
    pub export: Option<ExportTask>,
    pub metrics: Option<SharedAggregates>,
    pub otlp_metrics: Option<OtlpMetrics>,
    /// Ships the Parquet files to object storage.
    pub upload: Option<UploadTask>,
}

/// The sinks the configuration asks for, and the export task behind the OTLP sink.
pub fn configured_sinks(
    config: &Config,
    clock: Clock,
    options: &StartOptions,
) -> Result<ConfiguredSinks, SinkError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let out = &config.output;
    if let Some(path) = &out.jsonl {
        let jsonl = JsonlSink::create(path, clock, out.unwritten_bytes)?;
        sinks.push(Box::new(Detached::spawn(jsonl, out.close_timeout)?));
    }
    if out.parquet {
        let settings = ParquetSettings {
            dir: out.parquet_dir.clone(),
            host: out.host(),
            revision: options.revision.clone(),
            flush_rows: out.flush_rows,
            flush_bytes: out.flush_bytes,
            flush_interval: out.flush_interval,
            unwritten_bytes: out.unwritten_bytes,
        };
        let parquet = ParquetSink::create(settings, clock, &options.run_id)?;
        sinks.push(Box::new(Detached::spawn(parquet, out.close_timeout)?));
    }
    let upload = match (&out.object_store, out.parquet) {
        (Some(store), true) => Some(
            UploadTask::start(store, &out.parquet_dir, &out.host())
                .map_err(|e| SinkError::Config(e.to_string()))?,
        ),
        _ => None,
    };
    if let Some(recorded) = &options.record {
        sinks.push(Box::new(RunRecordSink::new(recorded.clone(), clock)));
    }
    let cicd = &options.cicd;
    let mut export = None;
    let resource = config
        .otlp
        .enabled()
        .then(|| otlp::resource(&config.otlp, cicd));
    if let Some(resource) = &resource {
        let (mut sink, task) = OtlpSink::from_config(&config.otlp, resource.clone(), clock)?;
        sink.watch_outputs(sinks.iter().filter_map(|s| s.health()).collect());
        sinks.push(Box::new(sink));
        export = Some(task);
    }
    let mut metrics = None;
    let mut otlp_metrics = None;
    let listen = config.metrics.prometheus_listen.trim();
    let push = resource.filter(|_| config.otlp.metrics);
    if push.is_some() || !listen.is_empty() {
        let aggregates = SharedAggregates::new(Mutex::new(Aggregates::new(
            config.metrics.per_process,
            config.capture.sample_interval,
        )));
        let spans = export.as_ref().map(ExportTask::stats);
        let mut duration = None;
        if let Some(resource) = push {
            let m = OtlpMetrics::start(
                &config.otlp,
                resource,
                aggregates.clone(),
                spans.clone(),
                upload.is_some(),
            )?;
            duration = Some(m.duration.clone());
            otlp_metrics = Some(m);
        }
        let server = if listen.is_empty() {
            None
        } else {
            let addr = listen.parse().map_err(|e| {
                SinkError::Config(format!("metrics.prometheus_listen {listen}: {e}"))
            })?;
            Some(prometheus::Server::start(addr, aggregates.clone(), spans)?)
        };
        sinks.push(Box::new(MetricsSink::new(
            aggregates.clone(),
            server,
            duration,
        )));
        metrics = Some(aggregates);
    }
    Ok(ConfiguredSinks {
        sinks,
        export,
        metrics,
        otlp_metrics,
        upload,
    })
}
