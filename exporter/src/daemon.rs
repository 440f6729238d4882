//! Sidecar daemon: trace the configured scope until SIGINT or SIGTERM, then flush and exit.

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    agent::{Agent, AgentError, StartOptions, describe_losses},
    clock::monotonic_ns,
    config::Config,
    loader::KernelScope,
};

pub async fn daemon(config: &Config) -> Result<(), AgentError> {
    let scope = KernelScope::from_config(config);
    let seed_root_names = match &scope {
        KernelScope::RootNames(names) => names.clone(),
        _ => Vec::new(),
    };
    let agent = Agent::start(
        config,
        &scope,
        StartOptions {
            seed_root_names,
            ..Default::default()
        },
    )?;
    // Printed once tracing is live: supervisors and tests can wait for it.
    eprintln!(
        "otel-pipetrace: tracing {}; stop with SIGINT or SIGTERM",
        scope.describe()
    );

    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Reader)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Reader)?;
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    let mut finished = agent.stop().await;
    // Processes still alive get their spans now, marked still running: a restart of the
    // daemon must not lose the trees it was watching.
    let now = monotonic_ns();
    let running = finished.tracker.drain_running(now);
    for sink in finished.sinks.iter_mut() {
        for p in &running {
            if let Err(e) = sink.still_running(p, now) {
                tracing::warn!("sink {}: {e}", sink.name());
            }
        }
    }
    let totals = finished.tracker.totals();
    let losses = describe_losses(&finished.losses);
    let spans = finished.close(config.otlp.shutdown_timeout).await;
    eprintln!(
        "otel-pipetrace: stopped; {} processes, {} failed, {}{}",
        totals.processes,
        totals.failed,
        losses,
        spans
            .map(|s| format!(", {}", s.describe()))
            .unwrap_or_default()
    );
    Ok(())
}
