//! Processes to OpenTelemetry spans (pure: no I/O but the cgroup name cache).
//!
//! One span per process lifetime, kind INTERNAL, named `process.executable.name` (the CLI span
//! convention), child of its tree parent's span. Exit code non-zero or a fatal signal: status
//! Error and `error.type`. An exec chain (`sh -c` that execs, `env`, `nice`, wrappers) stays one
//! span named after the last image; each image it replaced is a `process.exec` span event.

use std::{
    borrow::Cow,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use opentelemetry::{
    InstrumentationScope, KeyValue, StringValue, Value,
    trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::{
    capture::clock::{Clock, rfc3339},
    event::{Exec, signal_name},
    process::{
        cgroups::CgroupNames,
        model::{Ending, Process, command_line},
        trace_context::{RunSpan, SpanRef},
    },
};

/// `SIGKILL`, or `SIG42` for a signal without a name.
fn signal_label(sig: i32) -> String {
    signal_name(sig)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("SIG{sig}"))
}

/// CLOCK_REALTIME is slewed by NTP while CLOCK_MONOTONIC is not: a daemon that runs for weeks
/// re-measures the offset between them this often.
const CLOCK_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

pub struct SpanFactory {
    clock: Clock,
    clock_measured: std::time::Instant,
    scope: InstrumentationScope,
    cgroups: CgroupNames,
}

fn time(clock: &Clock, ktime_ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(clock.unix_ns(ktime_ns))
}

fn string_array(items: &[String]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|s| StringValue::from(s.clone()))
            .collect::<Vec<_>>()
            .into(),
    )
}

/// File events per span at most: the changes first (outputs, deletions), then reads.
pub const MAX_FILE_EVENTS: usize = 128;

/// `p`'s files as span events (`pipetrace.file`, at most [`MAX_FILE_EVENTS`]), with counts per
/// operation as span attributes; and how many were left off (recorded only in `files`).
fn file_events(p: &Process, clock: &Clock, attrs: &mut Vec<KeyValue>) -> (Vec<Event>, u32) {
    use crate::event::{FileOp, errno_name};
    let Some(log) = p.files.as_deref() else {
        return (Vec::new(), 0);
    };
    let mut entries: Vec<_> = log.entries().collect();
    let count = |ops: &[FileOp]| -> i64 {
        entries
            .iter()
            .filter(|e| ops.contains(&e.op))
            .map(|e| {
                if e.op == FileOp::ReadsUnder {
                    e.count
                } else {
                    1
                }
            })
            .sum::<u64>() as i64
    };
    attrs.push(KeyValue::new(
        "pipetrace.files.read",
        count(&[FileOp::Read, FileOp::ReadsUnder]),
    ));
    attrs.push(KeyValue::new(
        "pipetrace.files.written",
        count(&[FileOp::Write, FileOp::Create, FileOp::Truncate]),
    ));
    attrs.push(KeyValue::new(
        "pipetrace.files.deleted",
        count(&[FileOp::Delete, FileOp::Rmdir]),
    ));
    attrs.push(KeyValue::new(
        "pipetrace.files.renamed",
        count(&[FileOp::Rename]),
    ));
    attrs.push(KeyValue::new("pipetrace.files.probes", log.probes as i64));
    if log.unrecorded > 0 {
        attrs.push(KeyValue::new(
            "pipetrace.files.unrecorded",
            log.unrecorded as i64,
        ));
    }
    // Changes before reads; within each, in time order.
    entries.sort_by_key(|e| (!e.op.changes(), e.first_ns));
    let left = entries.len().saturating_sub(MAX_FILE_EVENTS);
    let events = entries
        .into_iter()
        .take(MAX_FILE_EVENTS)
        .map(|e| {
            let mut a = vec![
                KeyValue::new("pipetrace.file.operation", e.op.name()),
                KeyValue::new("file.path", e.path),
            ];
            if let Some(t) = e.target {
                a.push(KeyValue::new("pipetrace.file.target", t));
            }
            if let Some(b) = e.bytes {
                a.push(KeyValue::new("file.size", b as i64));
            }
            if e.count > 1 {
                a.push(KeyValue::new("pipetrace.file.count", e.count as i64));
            }
            if let Some(errno) = e.errno {
                a.push(KeyValue::new("error.type", errno_name(errno)));
            }
            if let Some(h) = e.sha256 {
                a.push(KeyValue::new("pipetrace.file.sha256", h));
            }
            Event::new("pipetrace.file", time(clock, e.first_ns), a, 0)
        })
        .collect();
    (events, u32::try_from(left).unwrap_or(u32::MAX))
}

/// A connection as a span event: the semantic-convention `network.*` attributes.
fn connection_attributes(c: &crate::event::Connection) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("network.peer.address", c.peer.to_string()),
        KeyValue::new("network.peer.port", i64::from(c.peer_port)),
        KeyValue::new("network.transport", c.transport()),
        KeyValue::new("network.type", c.network_type()),
        KeyValue::new("network.local.address", c.local.to_string()),
        KeyValue::new("pipetrace.network.direction", c.direction()),
        KeyValue::new("pipetrace.network.outcome", c.outcome()),
    ];
    if let Some(port) = c.local_port {
        a.push(KeyValue::new("network.local.port", i64::from(port)));
    }
    a
}

/// A finding as span event attributes: `pipetrace.finding.kind`, `.severity`, `.summary`,
/// `.value`, `.unit`, and each piece of evidence as `pipetrace.finding.<name>`.
pub fn finding_attributes(f: &crate::event::Finding) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("pipetrace.finding.kind", f.kind.as_str()),
        KeyValue::new("pipetrace.finding.severity", f.severity.as_str()),
        KeyValue::new("pipetrace.finding.summary", f.summary.clone()),
        KeyValue::new("pipetrace.finding.value", f.value),
        KeyValue::new("pipetrace.finding.unit", f.unit),
    ];
    for (name, value) in &f.evidence {
        let key = format!("pipetrace.finding.{name}");
        let value: Value = match value {
            serde_json::Value::Number(n) if n.is_i64() => n.as_i64().unwrap_or(0).into(),
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0).into(),
            serde_json::Value::String(text) => text.clone().into(),
            serde_json::Value::Bool(b) => (*b).into(),
            other => other.to_string().into(),
        };
        a.push(KeyValue::new(key, value));
    }
    a
}

fn image_attributes(exec: &Exec, out: &mut Vec<KeyValue>) {
    if let Some(exe) = &exec.exe {
        out.push(KeyValue::new("process.executable.path", exe.clone()));
    }
    if let Some(cwd) = &exec.cwd {
        out.push(KeyValue::new("process.working_directory", cwd.clone()));
    }
    if !exec.argv.is_empty() {
        out.push(KeyValue::new(
            "process.command_args",
            string_array(&exec.argv),
        ));
        out.push(KeyValue::new(
            "process.command_line",
            command_line(&exec.argv),
        ));
        out.push(KeyValue::new("process.args_count", exec.argv.len() as i64));
    }
    if exec.argv_truncated {
        out.push(KeyValue::new("pipetrace.process.argv_truncated", true));
        out.push(KeyValue::new(
            "pipetrace.process.argv_bytes",
            i64::from(exec.argv_total_bytes),
        ));
    }
}

impl SpanFactory {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            clock_measured: std::time::Instant::now(),
            scope: InstrumentationScope::builder("otel-pipetrace")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            cgroups: CgroupNames::new(),
        }
    }

    fn context(span: SpanRef, sampled: bool, state: TraceState) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(span.trace_id),
            SpanId::from(span.span_id),
            flags,
            false,
            state,
        )
    }

    /// The span of an ended (or still running) process; `None` for a process without a span.
    pub fn process(&mut self, p: &Process) -> Option<SpanData> {
        if !p.spanned {
            return None;
        }
        if self.clock_measured.elapsed() >= CLOCK_REFRESH {
            self.clock = Clock::new();
            self.clock_measured = std::time::Instant::now();
        }
        let start = time(&self.clock, p.key.start_ns);
        let end = time(&self.clock, p.end_ns.unwrap_or(p.key.start_ns));
        let mut attrs = vec![
            KeyValue::new("process.pid", i64::from(p.key.tgid)),
            KeyValue::new(
                "process.parent_pid",
                i64::from(p.parent.map_or(p.ppid, |k| k.tgid)),
            ),
            KeyValue::new("process.executable.name", p.executable_name().to_owned()),
            KeyValue::new("process.user.id", i64::from(p.uid)),
            KeyValue::new(
                "process.creation.time",
                rfc3339(self.clock.unix_ns(p.key.start_ns)),
            ),
        ];
        if let Some(exec) = &p.exec {
            image_attributes(exec, &mut attrs);
        } else {
            attrs.push(KeyValue::new("process.command_line", p.comm.clone()));
        }
        if let Some(cgroup) = self.cgroups.name(p.cgroup_id) {
            // The container it runs in, as its cgroup path names it (semantic conventions).
            let path = cgroup.strip_prefix("0::").unwrap_or(cgroup);
            if let Some(c) = crate::event::container_of(path) {
                attrs.push(KeyValue::new("container.id", c.id));
                attrs.push(KeyValue::new("container.runtime", c.runtime));
                if let Some(uid) = c.pod_uid {
                    attrs.push(KeyValue::new("k8s.pod.uid", uid));
                }
            }
            attrs.push(KeyValue::new("process.linux.cgroup", cgroup.to_owned()));
        }
        if p.exec_count > 1 {
            attrs.push(KeyValue::new(
                "pipetrace.process.exec_count",
                i64::from(p.exec_count),
            ));
        }
        if p.seeded {
            attrs.push(KeyValue::new("pipetrace.process.seeded", true));
        }
        if p.incomplete {
            // Records of it were lost (counted in the agent's losses): its data is partial.
            attrs.push(KeyValue::new("pipetrace.process.incomplete", true));
        }
        if p.ppid != p.parent.map_or(p.ppid, |k| k.tgid) {
            attrs.push(KeyValue::new(
                "pipetrace.process.reparented_to",
                i64::from(p.ppid),
            ));
        }
        let mut status = Status::Unset;
        match p.ending {
            Some(Ending::Exited(exit)) => {
                attrs.push(KeyValue::new(
                    "process.exit.time",
                    rfc3339(self.clock.unix_ns(p.end_ns.unwrap_or(0))),
                ));
                let usage = exit.usage;
                attrs.push(KeyValue::new(
                    "pipetrace.process.cpu.user",
                    usage.cpu_user_ns as f64 / 1e9,
                ));
                attrs.push(KeyValue::new(
                    "pipetrace.process.cpu.system",
                    usage.cpu_system_ns as f64 / 1e9,
                ));
                attrs.push(KeyValue::new(
                    "pipetrace.process.memory.peak",
                    usage.peak_rss_bytes as i64,
                ));
                // I/O, faults and switches: only what the kernel measured (no made-up zeros).
                for (field, value) in crate::event::Activity::FIELDS
                    .iter()
                    .zip(exit.activity.values())
                {
                    if let Some(v) = value {
                        attrs.push(KeyValue::new(
                            format!("pipetrace.process.{field}"),
                            v as i64,
                        ));
                    }
                }
                if let Some(code) = exit.code() {
                    attrs.push(KeyValue::new("process.exit.code", i64::from(code)));
                    if code != 0 {
                        attrs.push(KeyValue::new("error.type", code.to_string()));
                        status = Status::error(format!("exit code {code}"));
                    }
                }
                if let Some(sig) = exit.signal() {
                    let name = signal_label(sig);
                    attrs.push(KeyValue::new("pipetrace.process.signal", i64::from(sig)));
                    attrs.push(KeyValue::new("pipetrace.process.signal_name", name.clone()));
                    if exit.core_dumped() {
                        attrs.push(KeyValue::new("pipetrace.process.core_dumped", true));
                    }
                    if exit.oom_killed {
                        attrs.push(KeyValue::new("pipetrace.process.oom_killed", true));
                        attrs.push(KeyValue::new("error.type", "oom_killed"));
                        status = Status::error(format!("killed by the OOM killer ({name})"));
                    } else {
                        attrs.push(KeyValue::new("error.type", name.clone()));
                        status = Status::error(format!("killed by {name}"));
                    }
                }
            }
            Some(Ending::Lost) => attrs.push(KeyValue::new("pipetrace.process.exit_lost", true)),
            Some(Ending::StillRunning) | None => {
                attrs.push(KeyValue::new("pipetrace.process.still_running", true))
            }
        }
        let mut events: Vec<Event> = p
            .previous_execs
            .iter()
            .map(|(at, exec)| {
                let mut a = Vec::new();
                image_attributes(exec, &mut a);
                Event::new("process.exec", time(&self.clock, *at), a, 0)
            })
            .collect();
        events.extend(p.connections.iter().map(|(at, c)| {
            Event::new(
                "network.connection",
                time(&self.clock, *at),
                connection_attributes(c),
                0,
            )
        }));
        events.extend(p.findings.iter().map(|(at, f)| {
            Event::new(
                "pipetrace.finding",
                time(&self.clock, *at),
                finding_attributes(f),
                0,
            )
        }));
        let (file_events, files_left) = file_events(p, &self.clock, &mut attrs);
        events.extend(file_events);
        events.sort_by_key(|e| e.timestamp);
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        // Earlier images beyond the kept ones, and connections to peers beyond the listed ones.
        let unlisted = p
            .exit()
            .and_then(|x| x.activity.network_unlisted)
            .unwrap_or(0);
        span_events.dropped_count = p
            .exec_count
            .saturating_sub(1 + p.previous_execs.len() as u32)
            .saturating_add(u32::try_from(unlisted).unwrap_or(u32::MAX))
            .saturating_add(files_left);
        Some(SpanData {
            span_context: Self::context(p.span, true, TraceState::NONE),
            parent_span_id: p.parent_span.map_or(SpanId::INVALID, SpanId::from),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(p.executable_name().to_owned()),
            start_time: start,
            end_time: end.max(start),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        })
    }

    /// The run's root span, with the run's findings as its events (each naming its process).
    pub fn run(
        &self,
        run: &RunSpan,
        findings: &[(u64, u32, Arc<crate::event::Finding>)],
    ) -> SpanData {
        let program = run
            .command
            .first()
            .map(|c| c.rsplit('/').next().unwrap_or(c).to_owned())
            .unwrap_or_default();
        let mut attrs = vec![
            KeyValue::new("pipetrace.run.id", run.run_id.clone()),
            KeyValue::new("process.command_line", command_line(&run.command)),
            KeyValue::new("process.command_args", string_array(&run.command)),
            KeyValue::new("pipetrace.run.processes", run.processes as i64),
            KeyValue::new("pipetrace.run.failed", run.failed as i64),
            KeyValue::new("pipetrace.run.absorbed_failures", run.absorbed as i64),
            KeyValue::new("pipetrace.run.still_running", run.still_running as i64),
        ];
        let mut status = Status::Unset;
        if let Some(code) = run.exit_code {
            attrs.push(KeyValue::new("process.exit.code", i64::from(code)));
            if code != 0 {
                attrs.push(KeyValue::new("error.type", code.to_string()));
                status = Status::error(format!("{program} exited with code {code}"));
            }
        }
        if let Some(sig) = run.signal {
            let name = signal_label(sig);
            attrs.push(KeyValue::new("pipetrace.process.signal", i64::from(sig)));
            attrs.push(KeyValue::new("error.type", name.clone()));
            status = Status::error(format!("{program} killed by {name}"));
        }
        if let Some(why) = &run.start_error {
            attrs.retain(|kv| kv.key.as_str() != "error.type");
            attrs.push(KeyValue::new("error.type", "start_failed"));
            attrs.push(KeyValue::new("pipetrace.run.start_error", why.clone()));
            status = Status::error(why.clone());
        }
        if !run.ci_task.is_empty() {
            attrs.extend(
                run.ci_task
                    .iter()
                    .map(|(k, v)| KeyValue::new(*k, v.clone())),
            );
            attrs.push(KeyValue::new(
                "cicd.pipeline.task.run.result",
                run.ci_result(),
            ));
        }
        let (parent, sampled, state) = match &run.remote_parent {
            Some(r) => (
                SpanId::from(r.span_id),
                r.sampled,
                r.trace_state
                    .as_deref()
                    .and_then(|s| s.parse::<TraceState>().ok())
                    .unwrap_or(TraceState::NONE),
            ),
            None => (SpanId::INVALID, true, TraceState::NONE),
        };
        let start = time(&self.clock, run.start_ns);
        SpanData {
            span_context: Self::context(run.span, sampled, state),
            parent_span_id: parent,
            parent_span_is_remote: run.remote_parent.is_some(),
            span_kind: SpanKind::Internal,
            name: Cow::Owned(format!("run {program}")),
            start_time: start,
            end_time: time(&self.clock, run.end_ns).max(start),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: {
                let mut events = SpanEvents::default();
                events.events = findings
                    .iter()
                    .map(|(at, pid, f)| {
                        let mut a = finding_attributes(f);
                        if *pid != 0 {
                            a.push(KeyValue::new("process.pid", i64::from(*pid)));
                        }
                        Event::new("pipetrace.finding", time(&self.clock, *at), a, 0)
                    })
                    .collect();
                events
            },
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}
