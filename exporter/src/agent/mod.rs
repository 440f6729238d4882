//! Wires the stages together: checks → loader → reader → tracker → sinks, and takes them down
//! in order so that nothing read from the kernel is left unprocessed.

mod outputs;
pub mod revision;
pub mod route;

pub use outputs::{ConfiguredSinks, configured_sinks};

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use exporter_common::{TrackState, track};

use crate::{
    capture::{
        btf::{Btf, BtfError},
        clock::{Clock, monotonic_ns},
        loader::{Capture, KernelScope, KernelSupport, LoadError, LoaderStart},
        preflight::{self, PreflightError},
        reader::Reader,
        sampler::SamplerHandle,
        stats::{KernelCounters, Losses, Stats},
    },
    config::Config,
    diagnosis::Diagnosis,
    process::{
        procfs::{self, ProcEntry},
        redact::Redactor,
        trace_context::SpanRef,
        tracker::{Tracker, TrackerOptions, TrackerTotals},
    },
    sinks::{
        Report, Sink, SinkError,
        health::{OutputHealth, OutputSnapshot},
        metrics::{
            aggregates::{SelfCounters, SharedAggregates},
            otlp::OtlpMetrics,
        },
        otlp::{ExportTask, SpanStats},
    },
    upload::{UploadCounters, UploadTask},
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("ring buffer reader: {0}")]
    Reader(std::io::Error),
    #[error(transparent)]
    Redact(#[from] crate::config::PatternError),
    #[error(transparent)]
    Source(#[from] crate::diagnosis::source_tree::SourceError),
}

pub struct Agent {
    pub capture: Capture,
    /// The configuration's redaction, compiled once: what the tracker and `run` mask with.
    pub redactor: Arc<Redactor>,
    pub stats: Arc<Stats>,
    pub clock: Clock,
    stop: watch::Sender<bool>,
    sampler: Option<SamplerHandle>,
    reader: JoinHandle<()>,
    consumer: JoinHandle<route::Routed>,
    export: Option<ExportTask>,
    metrics: Option<SharedAggregates>,
    otlp_metrics: Option<OtlpMetrics>,
    upload: Option<UploadTask>,
    /// What each file output wrote and lost.
    outputs: Vec<Arc<OutputHealth>>,
    deadlines: CloseDeadlines,
    pub started_ns: u64,
}

/// How long closing may wait: for queued spans and metrics to be sent, then for the last
/// uploads (`otlp.shutdown_timeout`, `output.object_store.finish_timeout`).
#[derive(Debug, Clone, Copy)]
struct CloseDeadlines {
    exports: Duration,
    uploads: Duration,
}

/// What the agent's last moments gave: what the caller's last reports returned, the tracker's
/// totals after them, every loss, and what the outputs did.
pub struct Shutdown<T> {
    pub ended: T,
    pub totals: TrackerTotals,
    pub losses: Losses,
    pub closed: Closed,
}

/// How the agent is driven.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Run mode: the run's span, parent of the command's span.
    pub run_span: Option<SpanRef>,
    /// Daemon inside a CI job: the job's span (from `TRACEPARENT`), parent of every tree.
    pub job_span: Option<SpanRef>,
    /// `cicd.*` resource attributes of the CI job around the agent (run mode, or a daemon in a job).
    pub cicd: Vec<(&'static str, String)>,
    /// Identifies this run (or daemon session) in the Parquet rows.
    pub run_id: String,
    /// The commit being built (`vcs.ref.head.revision`), for the Parquet rows.
    pub revision: Option<String>,
    /// Daemon, descendants mode: also trace the subtrees of matching processes that are
    /// already running.
    pub seed_root_names: Vec<String>,
    /// Run mode: keep the ended processes here for the end-of-run summary.
    pub record: Option<crate::sinks::run_record::Recorded>,
    /// The checkout whose tracked files no step should change (`[source]`).
    pub source: Option<crate::diagnosis::source_tree::SourceTree>,
}

/// What is left after the agent stopped, for the caller's last reports.
pub struct Finished {
    pub tracker: Tracker,
    pub diagnosis: Diagnosis,
    pub sinks: Vec<Box<dyn Sink>>,
    pub kernel: KernelCounters,
    pub losses: Losses,
    export: Option<ExportTask>,
    otlp_metrics: Option<OtlpMetrics>,
    upload: Option<UploadTask>,
    outputs: Vec<Arc<OutputHealth>>,
    metrics: Option<SharedAggregates>,
}

/// What the exports did, for the last line of a run or a daemon.
#[derive(Default)]
pub struct Closed {
    /// With OTLP export on.
    pub spans: Option<Arc<SpanStats>>,
    /// With `[output.object_store]`: the counters, the bucket's URL and the spool.
    pub upload: Option<(UploadCounters, String, std::path::PathBuf)>,
    /// The file outputs after their last write.
    pub outputs: Vec<OutputSnapshot>,
}

impl Closed {
    /// A span, a row or an upload that never got where it was going.
    pub fn lost_anything(&self) -> bool {
        self.spans.as_ref().is_some_and(|s| s.dropped() > 0)
            || self
                .upload
                .as_ref()
                .is_some_and(|(u, _, _)| u.dropped_objects > 0)
            || self.outputs.iter().any(OutputSnapshot::lost)
    }

    /// `, 12 spans exported, uploaded 3 objects (1.20 MiB) to s3://…`, and any file output
    /// that did not write everything (`, parquet: 0 of 402 processes written, …`), or nothing.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for short in self.outputs.iter().filter_map(OutputSnapshot::describe) {
            text.push_str(&format!(", {short}"));
        }
        if let Some(s) = &self.spans {
            text.push_str(&format!(", {}", s.describe()));
        }
        if let Some((counters, url, dir)) = &self.upload {
            text.push_str(&format!(", {}", counters.describe(url, dir)));
        }
        text
    }
}

impl Finished {
    /// Hands a report made after the agent stopped (processes still running, the run's end) to
    /// every sink.
    pub fn report(&mut self, report: &Report) {
        for sink in self.sinks.iter_mut() {
            // Counted (and said once) by the output's health where it has one.
            if let Err(e) = sink.report(report) {
                tracing::debug!("sink {}: {e}", sink.name());
            }
        }
    }

    /// Flushes and closes every sink; waits up to the deadlines for queued spans and metrics to
    /// be sent and for the last uploads.
    async fn close(mut self, deadlines: CloseDeadlines) -> Closed {
        let deadline = deadlines.exports;
        for sink in self.sinks.iter_mut() {
            sink.closing();
        }
        for sink in self.sinks.iter_mut() {
            if let Err(e) = sink.close() {
                tracing::debug!("sink {}: {e}", sink.name());
            }
        }
        let outputs: Vec<OutputSnapshot> = self.outputs.iter().map(|o| o.snapshot()).collect();
        // The final metrics say what the last writes did.
        if let Some(metrics) = &self.metrics
            && let Ok(mut m) = metrics.lock()
        {
            m.agent.outputs = outputs.clone();
        }
        // Dropping the sinks closes the span queue: the export task drains it and ends.
        drop(self.sinks);
        let spans = match self.export {
            Some(task) => Some(task.finish(deadline).await),
            None => None,
        };
        // Last, so that the final metrics count every process.
        if let Some(metrics) = self.otlp_metrics {
            metrics.shutdown(deadline).await;
        }
        // After the sinks closed: their last files are rolled and shipped too.
        let upload = match self.upload {
            Some(task) => {
                let (url, dir) = (task.url.clone(), task.dir.clone());
                Some((task.finish(deadlines.uploads).await, url, dir))
            }
            None => None,
        };
        Closed {
            spans,
            upload,
            outputs,
        }
    }
}

/// Registers running processes whose name is a root name, and their descendants, in the
/// kernel's tracked set; returns them, parents first.
fn seed_existing(capture: &Capture, root_names: &[String]) -> Vec<ProcEntry> {
    if root_names.is_empty() {
        return Vec::new();
    }
    let existing = procfs::existing_subtrees(root_names);
    for p in &existing {
        let state = TrackState {
            tree_ppid: p.ppid,
            flags: if p.ppid == 0 { track::ROOT } else { 0 },
            parent_start_ns: 0,
        };
        if let Err(e) = crate::capture::loader::register_pid(capture.tracked_fd(), p.tgid, &state) {
            tracing::warn!("cannot track running process {}: {e}", p.tgid);
        }
    }
    tracing::info!(
        count = existing.len(),
        "tracking already running root subtrees"
    );
    existing
}

impl Agent {
    /// Loads and attaches the programs; tracing is live when this returns.
    pub fn start(
        config: &Config,
        scope: &KernelScope,
        options: StartOptions,
    ) -> Result<Self, AgentError> {
        let begun = std::time::Instant::now();
        // Blocks of 256 KiB and more are mapped and unmapped on their own. By default glibc
        // raises this threshold to the largest block freed so far, so that after the BTF
        // parses of start-up (vectors of tens of MiB) such blocks came from the heaps and
        // their pages stayed resident, ≈ 10 MiB of the idle agent.
        // SAFETY: mallopt has no preconditions; a refusal leaves the default.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) };
        // Fixing that threshold also fixes the trim threshold at 128 KiB: the heap's top was
        // then given back and grown again around every burst (a sixth of the agent's CPU in
        // `sysmalloc`; 33 → 28 µs per process with this). Up to 4 MiB free at the top stays
        // until the sweep's `malloc_trim`.
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20) };
        let loader = LoaderStart::begin();
        preflight::check_all(&config.capture.btf_path)?;
        tracing::debug!(ms = begun.elapsed().as_millis(), "start-up: checks");
        let btf = Btf::from_file(&config.capture.btf_path)?;
        tracing::debug!(ms = begun.elapsed().as_millis(), "start-up: BTF parsed");
        preflight::check_tracepoints(&btf)?;
        let offsets = btf.kernel_offsets()?;
        tracing::debug!(
            ms = begun.elapsed().as_millis(),
            "start-up: checks and BTF offsets"
        );
        if offsets.task_ioac == exporter_common::ABSENT
            || offsets.ioac_read_bytes == exporter_common::ABSENT
        {
            // Said once: the values are then null, never zero.
            tracing::warn!(
                "this kernel has no task I/O accounting (CONFIG_TASK_IO_ACCOUNTING): bytes read and written at the storage layer will be null"
            );
        }
        let clock = Clock::new();
        let ConfiguredSinks {
            sinks,
            export,
            metrics,
            otlp_metrics,
            upload,
        } = configured_sinks(config, clock, &options)?;
        let outputs: Vec<Arc<OutputHealth>> = sinks.iter().filter_map(|s| s.health()).collect();
        let started_ns = monotonic_ns();
        tracing::debug!(ms = begun.elapsed().as_millis(), "start-up: sinks");
        let mut capture = Capture::load(
            config,
            offsets,
            scope,
            KernelSupport {
                tracepoint: &|tp| btf.has_tracepoint(tp),
                bpf_loop: config.capture.bpf_loop && btf.has_bpf_loop(),
                task_iterator: btf.task_iterator(),
            },
            loader,
        )?;
        tracing::debug!(
            ms = begun.elapsed().as_millis(),
            "start-up: programs loaded and attached"
        );
        let t = &config.tracker;
        // Checked with the configuration already; an error here is still an error, never a
        // redactor without the user's patterns.
        let redact = Arc::new(Redactor::from_config(&config.redact)?);
        let mut tracker = Tracker::new(TrackerOptions {
            run_span: options.run_span,
            job_span: options.job_span,
            retain_ended_ns: t.retain_ended.as_nanos() as u64,
            max_ended: t.max_ended,
            started_ns,
            redact: redact.clone(),
            files: Arc::new(pipetrace_core::file_log::FilePolicy::from_config(
                &config.capture,
            )),
        });
        // After attaching, so that nothing started in between is missed; before the consumer
        // starts, so that the tracker knows them before their events.
        for seed in seed_existing(&capture, &options.seed_root_names) {
            tracker.seed(&seed);
        }
        let sweep = (!t.sweep_interval.is_zero()).then_some(t.sweep_interval);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(config.capture.queue_capacity);
        let ring = capture
            .take_ring()
            .ok_or_else(|| AgentError::Reader(std::io::Error::other("ring buffer taken")))?;
        let reader = Reader::new(ring, tx, stats.clone()).map_err(AgentError::Reader)?;
        let (stop, stop_rx) = watch::channel(false);
        let reader = tokio::spawn(reader.run(stop_rx));
        let diagnosis = Diagnosis::new(config.diagnosis.clone()).with_source(options.source);
        let consumer = tokio::spawn(route::route(
            rx,
            tracker,
            diagnosis,
            sinks,
            stats.clone(),
            sweep,
        ));
        // The BTF parses of start-up (ours, aya's) freed tens of MiB in the heaps of the
        // threads that made them: give it back now rather than at the first sweep.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        let sampler = match capture.sampler_loader() {
            Some(load) => Some(
                SamplerHandle::spawn(load, config.capture.sample_interval, stats.clone())
                    .map_err(AgentError::Reader)?,
            ),
            None => None,
        };
        Ok(Self {
            capture,
            redactor: redact,
            stats,
            clock,
            stop,
            sampler,
            reader,
            consumer,
            export,
            metrics,
            otlp_metrics,
            upload,
            outputs,
            deadlines: CloseDeadlines {
                exports: config.otlp.shutdown_timeout,
                uploads: config.output.upload_deadline(),
            },
            started_ns,
        })
    }

    /// Copies the agent's own counters into the served metrics.
    pub fn refresh_self_metrics(&self) {
        publish_self_metrics(
            self.metrics.as_ref(),
            &self.stats,
            self.losses(),
            self.upload.as_ref(),
            &self.outputs,
        );
    }

    /// What each file output wrote and lost so far.
    pub fn outputs(&self) -> Vec<OutputSnapshot> {
        self.outputs.iter().map(|o| o.snapshot()).collect()
    }

    /// Every loss so far, kernel and user space.
    pub fn losses(&self) -> Losses {
        Losses::new(self.capture.kernel_counters(), &self.stats)
    }

    /// Span counters while running (`None` without OTLP export).
    pub fn span_stats(&self) -> Option<Arc<SpanStats>> {
        self.export.as_ref().map(ExportTask::stats)
    }

    /// The one way down, for every mode: stops capture and lets the tracker and sinks finish
    /// every event read; hands the caller what is left to end what is still open (processes
    /// still running, the run itself) with reports to every sink, given the time; then closes
    /// every output within the configured deadlines.
    pub async fn shutdown<T>(
        self,
        last_reports: impl FnOnce(&mut Finished, u64) -> T,
    ) -> Shutdown<T> {
        let begun = std::time::Instant::now();
        let deadlines = self.deadlines;
        let mut finished = self.stop().await;
        tracing::debug!(
            ms = begun.elapsed().as_millis(),
            "shutdown: capture stopped, sinks flushed"
        );
        let ended = last_reports(&mut finished, monotonic_ns());
        let totals = finished.tracker.totals();
        let losses = finished.losses;
        let closed = finished.close(deadlines).await;
        tracing::debug!(ms = begun.elapsed().as_millis(), "shutdown: outputs closed");
        Shutdown {
            ended,
            totals,
            losses,
            closed,
        }
    }

    /// Drains the ring, lets the tracker and sinks finish every event, and reports losses.
    async fn stop(mut self) -> Finished {
        // No round may start after the last read of the ring.
        if let Some(sampler) = self.sampler.take() {
            let _ = tokio::task::spawn_blocking(move || sampler.stop()).await;
        }
        let _ = self.stop.send(true);
        let _ = self.reader.await;
        let (tracker, diagnosis, mut sinks) = self.consumer.await.unwrap_or_else(|_| {
            let diagnosis = Diagnosis::new(crate::config::DiagnosisSection::default());
            (Tracker::default(), diagnosis, Vec::new())
        });
        route::flush_all(&mut sinks);
        let kernel = self.capture.kernel_counters();
        let losses = Losses::new(kernel, &self.stats);
        // Everything was read: the final metrics export carries the final counts.
        publish_self_metrics(
            self.metrics.as_ref(),
            &self.stats,
            losses,
            self.upload.as_ref(),
            &self.outputs,
        );
        Finished {
            tracker,
            diagnosis,
            sinks,
            kernel,
            losses,
            export: self.export,
            otlp_metrics: self.otlp_metrics,
            upload: self.upload,
            outputs: self.outputs,
            metrics: self.metrics,
        }
    }
}

/// Copies the agent's own counters into the metrics the sinks serve.
fn publish_self_metrics(
    metrics: Option<&SharedAggregates>,
    stats: &Stats,
    losses: Losses,
    upload: Option<&UploadTask>,
    outputs: &[Arc<OutputHealth>],
) {
    if let Some(metrics) = metrics
        && let Ok(mut m) = metrics.lock()
    {
        m.agent = SelfCounters {
            events_read: Stats::get(&stats.records_read),
            route_lag_max_ns: Stats::get(&stats.route_lag_max_ns),
            losses,
            upload: upload.map(|u| u.stats().snapshot()),
            outputs: outputs.iter().map(|o| o.snapshot()).collect(),
        };
    }
}

/// `12 events lost (ring full 10, queue full 2)`, or `0 events lost`.
pub fn describe_losses(losses: &Losses) -> String {
    let mut parts = Vec::new();
    for (name, n) in [
        ("ring full", losses.ring_full),
        ("untracked processes", losses.untracked),
        ("queue full", losses.queue_full),
        ("undecodable", losses.decode_errors),
    ] {
        if n > 0 {
            parts.push(format!("{name} {n}"));
        }
    }
    if parts.is_empty() {
        "0 events lost".to_owned()
    } else {
        format!("{} events lost ({})", losses.total(), parts.join(", "))
    }
}
