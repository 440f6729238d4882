//! `otel-pipetrace run -- CMD ARGS...`: trace one command's whole process tree and exit with
//! its status.

use std::{ffi::OsString, os::unix::process::ExitStatusExt, time::Duration};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    agent::{Agent, AgentError, Shutdown, StartOptions, describe_losses},
    analysis::{run::RunView, summary::Summary},
    capture::{
        clock::monotonic_ns,
        loader::{KernelScope, register_self, run_root_state},
    },
    config::{Config, LOSS_EXIT_STATUS, SOURCE_CHANGE_EXIT_STATUS},
    event::signal_name,
    present::{
        self, markdown,
        summary::{RunFacts, details},
    },
    process::{
        ids::IdGenerator,
        trace_context::{RemoteParent, RunSpan, SpanRef, traceparent},
    },
    sinks::run_record::Recorded,
    sinks::{Report, otlp::cicd},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("waiting for the command failed: {0}")]
    Wait(std::io::Error),
    #[error("installing signal handlers failed: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Source(#[from] crate::diagnosis::source_tree::SourceError),
}

impl RunError {
    /// Exit status for a command that could not start, as shells report it.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Spawn { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => 2,
            },
            _ => 2,
        }
    }
}

fn forward(pid: Option<u32>, sig: libc::c_int) {
    if let Some(pid) = pid {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

/// Traces `command` and returns its exit status (128 + signal when it was killed).
///
/// `full_summary`: after the totals line, the run's details (see [`present::summary`]).
pub async fn run(
    config: &Config,
    command: &[OsString],
    full_summary: bool,
) -> Result<i32, RunError> {
    // The run is the root span; a TRACEPARENT from the CI system makes it a child of that.
    let env = |name: &str| std::env::var(name).ok();
    let remote_parent =
        env("TRACEPARENT").and_then(|tp| RemoteParent::parse(&tp, env("TRACESTATE").as_deref()));
    let mut ids = IdGenerator::new();
    let run_span = SpanRef {
        trace_id: remote_parent
            .as_ref()
            .map_or_else(|| ids.trace_id(), |r| r.trace_id),
        span_id: ids.span_id(),
    };
    let run_id = format!("{:016x}", run_span.span_id);
    let cicd = cicd::attributes(env);
    let revision = crate::agent::revision::revision(&cicd, std::env::current_dir().ok().as_deref());
    let recorded = Recorded::default();
    let source = crate::diagnosis::source_tree::from_config(&config.source)?;
    // Before anything starts: a SIGINT or SIGTERM from then on is forwarded to the command
    // once it runs, instead of killing `run` with the default action. The command starts with
    // default dispositions (exec resets handled signals).
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let agent = Agent::start(
        config,
        &KernelScope::Tracked,
        StartOptions {
            run_span: Some(run_span),
            source,
            revision: revision.clone(),
            cicd: cicd.clone(),
            run_id: run_id.clone(),
            record: Some(recorded.clone()),
            ..Default::default()
        },
    )?;
    let program = command[0].to_string_lossy().into_owned();
    let start_ns = monotonic_ns();

    let tracked_fd = agent.capture.tracked_fd();
    let root = run_root_state();
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    cmd.env("PIPETRACE_RUN_ID", &run_id);
    if config.otlp.enabled() {
        // Instrumented tools in the pipeline continue the trace under the run.
        cmd.env("TRACEPARENT", traceparent(run_span));
    }
    if config.output.jsonl.as_deref() == Some("-") {
        // The JSON stream owns stdout: the command's own output goes to stderr, so the
        // stream stays parseable.
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            cmd.stdout(std::process::Stdio::from(fd));
        }
    }
    // SAFETY: the hook only makes async-signal-safe syscalls (getpid, bpf).
    unsafe {
        cmd.pre_exec(move || register_self(tracked_fd, &root));
    }
    let mut argv: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    agent.redactor.argv(&mut argv);
    // The run as it starts; completed when it ends.
    let started = RunSpan {
        span: run_span,
        remote_parent,
        run_id,
        command: argv,
        start_ns,
        end_ns: start_ns,
        exit_code: None,
        signal: None,
        processes: 0,
        failed: 0,
        absorbed: 0,
        still_running: 0,
        start_error: None,
        interrupted: false,
        ci_task: cicd::task_attributes(&cicd),
    };
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => {
            // The kernel reports nothing of a command whose exec failed; the run span says
            // why it never ran.
            let error = RunError::Spawn { program, source };
            agent
                .shutdown(|finished, now| {
                    let run = RunSpan {
                        end_ns: now,
                        exit_code: Some(error.exit_code()),
                        start_error: Some(error.to_string()),
                        ..started
                    };
                    finished.report(&Report::RunEnded(&run));
                })
                .await;
            return Err(error);
        }
    };
    let child_pid = child.id();

    let mut interrupted = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(RunError::Wait)?,
            // The terminal already sent SIGINT to the whole process group; forwarding covers
            // a SIGINT sent to the agent alone. Either way the agent outlives the command.
            _ = sigint.recv() => {
                interrupted = true;
                forward(child_pid, libc::SIGINT)
            }
            _ = sigterm.recv() => {
                interrupted = true;
                forward(child_pid, libc::SIGTERM)
            }
        }
    };
    let exit_code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let ended = std::time::Instant::now();
    tracing::debug!("end: the command exited");

    // Descendants (orphans included) may outlive the command: wait for them, up to the grace
    // period. The kernel's TRACKED map is the truth: an entry leaves it only after its exit
    // record was written to the ring.
    let waited_from = tokio::time::Instant::now();
    let deadline = waited_from + config.run.grace_period;
    let mut told = false;
    while !agent.capture.tracked_pids().is_empty() && tokio::time::Instant::now() < deadline {
        // Exits in flight take microseconds; anything still there after a moment is a
        // survivor worth naming, once.
        if !told && waited_from.elapsed() >= SURVIVOR_NOTICE_AFTER {
            told = true;
            eprintln!(
                "otel-pipetrace: {program} exited with {}; waiting up to {} for {}",
                describe_status(&status),
                humantime_serde::re::humantime::format_duration(config.run.grace_period),
                describe_survivors(&agent.capture.tracked_pids()),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let still_alive = agent.capture.tracked_pids();
    tracing::debug!(
        ms = ended.elapsed().as_millis(),
        "end: descendants gone or waited for"
    );
    // Live in the table but no longer in the kernel's: their exit records were lost. Those
    // still in it are still running; then the run itself ends.
    let Shutdown {
        ended: (lost, still_running, run),
        totals,
        losses,
        closed,
    } = agent
        .shutdown(|finished, now| {
            let lost = finished
                .tracker
                .end_gone(now, |k| !still_alive.contains(&k.tgid));
            let mut still_running: Vec<_> = finished
                .tracker
                .live()
                .filter(|p| still_alive.contains(&p.key.tgid))
                .collect();
            still_running.sort_by_key(|p| p.key.start_ns);
            let still_running: Vec<_> = still_running
                .into_iter()
                .map(|p| p.still_running_at(now))
                .collect();
            let totals = finished.tracker.totals();
            let run = RunSpan {
                end_ns: now,
                exit_code: status.code(),
                signal: status.signal(),
                processes: totals.processes,
                failed: totals.failed,
                absorbed: totals.absorbed,
                still_running: still_running.len() as u64,
                interrupted,
                ..started
            };
            for p in lost.iter().chain(&still_running) {
                finished.report(&Report::Ended(p));
            }
            // About the run as a whole: before it ends, so that its span and summary carry them.
            for finding in finished.diagnosis.finish(now) {
                finished.report(&Report::Event(&finding));
            }
            finished.report(&Report::RunEnded(&run));
            (lost, still_running, run)
        })
        .await;
    let events_lost = losses.total();
    let losses = describe_losses(&losses);
    tracing::debug!(ms = ended.elapsed().as_millis(), "end: outputs closed");

    let exits_lost = if lost.is_empty() {
        String::new()
    } else {
        format!("{} exits lost, ", lost.len())
    };
    // Shown when there are some: probes whose non-zero exit their shell ignored.
    let absorbed = match totals.absorbed {
        0 => String::new(),
        1 => "1 non-zero exit absorbed by its parent, ".to_owned(),
        n => format!("{n} non-zero exits absorbed by their parents, "),
    };
    let findings = describe_findings(&recorded.lock().unwrap_or_else(|e| e.into_inner()).findings);
    eprintln!(
        "otel-pipetrace: {} processes, {} failed, {absorbed}{} still running, {findings}{exits_lost}{}{}; {program} exited with {}",
        totals.processes,
        totals.failed,
        still_running.len(),
        losses,
        closed.describe(),
        describe_status(&status),
    );
    let incomplete = events_lost > 0 || !lost.is_empty() || closed.lost_anything();
    let source_changes = recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .findings
        .iter()
        .filter(|f| f.kind == pipetrace_core::event::FindingKind::SourceChanged.as_str())
        .count();
    let exit_code = if config.run.fail_on_loss && exit_code == 0 && incomplete {
        eprintln!(
            "otel-pipetrace: the record of this run is incomplete (run.fail_on_loss): exiting with status {LOSS_EXIT_STATUS}"
        );
        LOSS_EXIT_STATUS
    } else if config.source.fail_on_change && exit_code == 0 && source_changes > 0 {
        eprintln!(
            "otel-pipetrace: {source_changes} step{} changed files git tracks in the checkout (source.fail_on_change): exiting with status {SOURCE_CHANGE_EXIT_STATUS}",
            if source_changes == 1 { "" } else { "s" }
        );
        SOURCE_CHANGE_EXIT_STATUS
    } else {
        exit_code
    };
    for p in &still_running {
        eprintln!(
            "otel-pipetrace: still running after {:?}: pid {} {}",
            config.run.grace_period,
            p.key.tgid,
            p.command_line()
        );
    }
    let record = std::mem::take(&mut *recorded.lock().unwrap_or_else(|e| e.into_inner()));
    let mut view = RunView::new(run.run_id.clone(), record.procs)
        .with_findings(record.findings)
        .with_files(record.files.finish());
    if config.history.summary && config.output.parquet {
        let started = std::time::Instant::now();
        let judge = pipetrace_core::analysis::history::Judge::from(&config.history);
        match crate::run_history::record_and_judge(
            &config.output.parquet_dir,
            &view,
            revision.as_deref(),
            &judge,
        ) {
            Ok(judged) => view = view.with_slower(judged.slower).with_flaky(judged.flaky),
            Err(e) => eprintln!("otel-pipetrace: {e} (the summary says nothing of usual times)"),
        }
        tracing::debug!(
            us = started.elapsed().as_micros() as u64,
            "step history read and written"
        );
    }
    if config.run.job_summary
        && let Some(path) = std::env::var_os(GITHUB_STEP_SUMMARY).filter(|p| !p.is_empty())
    {
        append_job_summary(
            std::path::Path::new(&path),
            &markdown::with_output_warnings(markdown::report(&view), &closed.outputs),
        );
    }
    if full_summary {
        let summary = Summary::of(&view, SLOWEST_SHOWN);
        let facts = RunFacts {
            run_id: &run.run_id,
            wall_s: (run.end_ns - run.start_ns) as f64 / 1e9,
            // `report --run` only helps when the run's processes reached the Parquet data.
            parquet: config.output.parquet
                && closed
                    .outputs
                    .iter()
                    .any(|o| o.sink == "parquet" && o.written > 0),
        };
        let width = present::terminal_width(libc::STDERR_FILENO).unwrap_or(LOG_WIDTH);
        eprint!("{}", details(&view, &summary, &facts, width.into()));
    }
    log_own_cpu();
    Ok(exit_code)
}

/// The agent's own CPU time over the run (all its threads, not the command's), for the
/// benchmarks (`--log pipetrace=debug`).
fn log_own_cpu() {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tracing::debug!(
        user_us = us(usage.ru_utime),
        system_us = us(usage.ru_stime),
        max_rss_kib = usage.ru_maxrss,
        "agent CPU over the run"
    );
}

/// The file GitHub Actions shows as the job summary.
const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";

/// Appends (a job's steps share the file) the report; a failure is one line, not the run's.
fn append_job_summary(path: &std::path::Path, report: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{report}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "otel-pipetrace: cannot write the job summary to {GITHUB_STEP_SUMMARY}={}: {e}",
            path.display()
        );
    }
}

/// `2 findings (1 deadlock, 1 memory leak), `, or nothing without findings.
fn describe_findings(findings: &[pipetrace_core::analysis::findings::Noted]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for f in findings {
        match kinds.iter_mut().find(|(k, _)| *k == f.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((&f.kind, 1)),
        }
    }
    let parts: Vec<String> = kinds
        .iter()
        .map(|(k, n)| format!("{n} {}", present::summary::kind_words(k)))
        .collect();
    let plural = if findings.len() == 1 { "" } else { "s" };
    format!(
        "{} finding{plural} ({}), ",
        findings.len(),
        parts.join(", ")
    )
}

/// Steps named in the summary.
const SLOWEST_SHOWN: usize = 3;
/// Where summary lines are cut when stderr is not a terminal (a CI log).
const LOG_WIDTH: u16 = 160;

/// How long `run` waits quietly for the command's descendants before saying what it waits for.
const SURVIVOR_NOTICE_AFTER: Duration = Duration::from_millis(250);
/// Survivors named in that notice at most.
const SURVIVORS_NAMED: usize = 5;

/// "2 processes still running: 4242 sleep, 4243 python3".
fn describe_survivors(pids: &[u32]) -> String {
    let mut pids = pids.to_vec();
    pids.sort_unstable();
    let named: Vec<String> = pids
        .iter()
        .take(SURVIVORS_NAMED)
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{pid} {}", comm.trim())
        })
        .collect();
    let more = pids.len().saturating_sub(SURVIVORS_NAMED);
    format!(
        "{} process{} still running: {}{}",
        pids.len(),
        if pids.len() == 1 { "" } else { "es" },
        named.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn describe_status(status: &std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => match signal_name(sig) {
            Some(name) => format!("signal {sig} ({name})"),
            None => format!("signal {sig}"),
        },
        _ => "an unknown status".into(),
    }
}
