//! Wires the stages together: checks → loader → reader → tracker → sinks, and takes them down
//! in order so that nothing read from the kernel is left unprocessed.

use std::sync::Arc;

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    btf::{Btf, BtfError},
    clock::Clock,
    config::Config,
    loader::{Capture, KernelScope, LoadError},
    preflight::{self, PreflightError},
    reader::Reader,
    sinks::{Sink, SinkError, jsonl::JsonlSink},
    stats::{KernelCounters, Losses, Stats},
    tracker::{self, Tracker},
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
}

pub struct Agent {
    pub capture: Capture,
    pub stats: Arc<Stats>,
    pub clock: Clock,
    stop: watch::Sender<bool>,
    reader: JoinHandle<()>,
    consumer: JoinHandle<(Tracker, Vec<Box<dyn Sink>>)>,
}

/// What is left after the agent stopped.
pub struct Finished {
    pub tracker: Tracker,
    pub sinks: Vec<Box<dyn Sink>>,
    pub kernel: KernelCounters,
    pub losses: Losses,
}

/// The sinks the configuration asks for.
pub fn configured_sinks(config: &Config, clock: Clock) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(path) = &config.output.jsonl {
        sinks.push(Box::new(JsonlSink::create(path, clock)?));
    }
    Ok(sinks)
}

impl Agent {
    /// Loads and attaches the programs; tracing is live when this returns.
    pub fn start(config: &Config, scope: &KernelScope) -> Result<Self, AgentError> {
        preflight::check_all(&config.capture.btf_path)?;
        let offsets = Btf::from_file(&config.capture.btf_path)?.kernel_offsets()?;
        let clock = Clock::new();
        let sinks = configured_sinks(config, clock)?;
        let mut capture = Capture::load(config, offsets, scope)?;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(config.capture.queue_capacity);
        let ring = capture
            .take_ring()
            .ok_or_else(|| AgentError::Reader(std::io::Error::other("ring buffer taken")))?;
        let reader = Reader::new(ring, tx, stats.clone()).map_err(AgentError::Reader)?;
        let (stop, stop_rx) = watch::channel(false);
        let reader = tokio::spawn(reader.run(stop_rx));
        let consumer = tokio::spawn(tracker::consume(rx, Tracker::new(), sinks, stats.clone()));
        Ok(Self {
            capture,
            stats,
            clock,
            stop,
            reader,
            consumer,
        })
    }

    /// Drains the ring, lets the tracker and sinks finish every event, and reports losses.
    pub async fn stop(self) -> Finished {
        let _ = self.stop.send(true);
        let _ = self.reader.await;
        let (tracker, mut sinks) = self
            .consumer
            .await
            .unwrap_or_else(|_| (Tracker::new(), Vec::new()));
        for sink in sinks.iter_mut() {
            if let Err(e) = sink.flush() {
                Stats::add(&self.stats.sink_errors, 1);
                tracing::warn!("sink {}: {e}", sink.name());
            }
        }
        let kernel = self.capture.kernel_counters();
        let losses = Losses::new(kernel, &self.stats);
        Finished {
            tracker,
            sinks,
            kernel,
            losses,
        }
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
