//! Sidecar daemon: trace the configured scope until SIGINT or SIGTERM, then flush and exit.

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    agent::{Agent, AgentError, Shutdown, StartOptions, describe_losses},
    capture::loader::KernelScope,
    config::Config,
    process::trace_context::{RemoteParent, SpanRef},
    sinks::{Report, otlp::cicd},
};

/// A daemon runs for weeks: losses are reported as they happen, not only at exit.
const LOSS_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Loss totals at the last report.
#[derive(Default)]
struct Reported {
    events: u64,
    spans: u64,
    /// Per file output: failed writes and dropped rows at the last report.
    outputs: std::collections::BTreeMap<&'static str, (u64, u64)>,
}

impl Reported {
    fn report_new_losses(&mut self, agent: &Agent) {
        let losses = agent.losses();
        if losses.total() > self.events {
            tracing::warn!(
                "{} more events lost in the last {:?} ({} in total: {})",
                losses.total() - self.events,
                LOSS_REPORT_EVERY,
                losses.total(),
                describe_losses(&losses)
            );
            self.events = losses.total();
        }
        if let Some(spans) = agent.span_stats()
            && spans.dropped() > self.spans
        {
            tracing::warn!(
                "{} more spans dropped in the last {:?} ({})",
                spans.dropped() - self.spans,
                LOSS_REPORT_EVERY,
                spans.describe()
            );
            self.spans = spans.dropped();
        }
        for o in agent.outputs() {
            let now = (o.failures_total(), o.dropped);
            let before = self.outputs.insert(o.sink, now).unwrap_or_default();
            if now != before
                && let Some(state) = o.describe()
            {
                tracing::warn!(
                    "{} more failed writes and {} more {} dropped in the last {:?} ({state})",
                    now.0 - before.0,
                    now.1 - before.1,
                    o.unit,
                    LOSS_REPORT_EVERY
                );
            }
        }
    }
}

pub async fn daemon(config: &Config) -> Result<(), AgentError> {
    let scope = KernelScope::from_config(config);
    let seed_root_names = match &scope {
        KernelScope::RootNames(names) => names.clone(),
        _ => Vec::new(),
    };
    // Before anything starts: a SIGINT or SIGTERM from then on stops the daemon cleanly (one
    // sent just after the line below used to find the default action and lose the data).
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Reader)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Reader)?;
    let env = |name: &str| std::env::var(name).ok();
    // Started inside a CI job (the GitHub Action, the GitLab template): the job's trace
    // context, when it has one, is the parent of every tree traced, and its `cicd.*`
    // attributes describe the resource, as in run mode.
    let job_span = env("TRACEPARENT")
        .and_then(|tp| RemoteParent::parse(&tp, env("TRACESTATE").as_deref()))
        .map(|parent| SpanRef {
            trace_id: parent.trace_id,
            span_id: parent.span_id,
        });
    let agent = Agent::start(
        config,
        &scope,
        StartOptions {
            job_span,
            // A daemon's working directory says nothing of what it traces: only the CI's.
            revision: crate::agent::revision::revision(&cicd::attributes(env), None),
            cicd: cicd::attributes(env),
            seed_root_names,
            source: crate::diagnosis::source_tree::from_config(&config.source)?,
            // One id per daemon session; each tracked tree is a trace within it.
            run_id: format!("{:016x}", crate::process::ids::IdGenerator::new().span_id()),
            ..Default::default()
        },
    )?;
    // Printed once tracing is live: supervisors and tests can wait for it.
    eprintln!(
        "otel-pipetrace: tracing {}; stop with SIGINT or SIGTERM",
        scope.describe()
    );

    let mut report = tokio::time::interval(LOSS_REPORT_EVERY);
    report.tick().await;
    let mut reported = Reported::default();
    let mut refresh = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = report.tick() => reported.report_new_losses(&agent),
            _ = refresh.tick() => agent.refresh_self_metrics(),
        }
    }
    // Processes still alive get their spans now, marked still running: a restart of the
    // daemon must not lose the trees it was watching.
    let Shutdown {
        totals,
        losses,
        closed,
        ..
    } = agent
        .shutdown(|finished, now| {
            for p in &finished.tracker.drain_running(now) {
                finished.report(&Report::Ended(p));
            }
            // About the session as a whole (a CI job's, when the daemon runs for one).
            for finding in finished.diagnosis.finish(now) {
                finished.report(&Report::Event(&finding));
            }
        })
        .await;
    let losses = describe_losses(&losses);
    eprintln!(
        "otel-pipetrace: stopped; {} processes, {} failed, {} absorbed non-zero exits, {}{}",
        totals.processes,
        totals.failed,
        totals.absorbed,
        losses,
        closed.describe()
    );
    Ok(())
}
