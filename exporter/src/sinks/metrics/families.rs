//! Every metric the agent exports, described once: its OTLP name (semantic conventions), its
//! Prometheus name, help, kind, and how its points are read from the aggregates. The OTLP and
//! Prometheus exporters are two small adapters over this table.

use super::aggregates::{ActivityCounts, Aggregates, Counts, Executable, Histogram};
use crate::{capture::stats::Stats, sinks::otlp::SpanStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Prometheus only: OTLP records the same distribution with an SDK histogram as processes end.
    Histogram,
}

/// A label value; `Pid` is an integer attribute in OTLP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelValue<'a> {
    Str(&'a str),
    Pid(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Int(u64),
    Float(f64),
    Histogram(&'a Histogram),
}

/// One series: labels by their OTLP key (Prometheus replaces the dots), and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    pub labels: Vec<(&'static str, LabelValue<'a>)>,
    pub value: Value<'a>,
}

/// What a family reads at collection time.
pub struct Sources<'a> {
    pub aggregates: &'a Aggregates,
    /// Span counters, with OTLP trace export on.
    pub spans: Option<&'a SpanStats>,
}

pub struct Family {
    /// Name in OTLP; `None`: not exported over OTLP.
    pub otlp: Option<&'static str>,
    /// Name in the Prometheus exposition, as scraped (counters end in `_total`); `None`: not
    /// served to Prometheus.
    pub prometheus: Option<&'static str>,
    /// UCUM unit (OTLP). Values in seconds ([`SECONDS`]) are floats, all others integers.
    pub unit: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// What must be on for the family to exist.
    pub needs: Needs,
    pub points: for<'a> fn(&Sources<'a>) -> Vec<Point<'a>>,
}

pub const SECONDS: &str = "s";

/// A family that only exists with an export on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// OTLP trace export (span counters).
    Spans,
    /// `[output.object_store]` (upload counters).
    Upload,
}

impl Family {
    /// Is the family exported, given which exports are on.
    pub fn exists(&self, spans: bool, upload: bool) -> bool {
        match self.needs {
            Needs::Nothing => true,
            Needs::Spans => spans,
            Needs::Upload => upload,
        }
    }
}

fn upload_points<'a>(
    s: &Sources<'a>,
    pick: impl Fn(&super::aggregates::UploadCounters) -> Vec<Point<'a>>,
) -> Vec<Point<'a>> {
    s.aggregates
        .agent
        .upload
        .as_ref()
        .map(pick)
        .unwrap_or_default()
}

/// One point per file output and value `pick` returns for it: labels `sink` and `label`
/// (the failure's reason, the rows' result).
fn output_points<'a>(
    s: &Sources<'a>,
    label: &'static str,
    pick: impl Fn(&'a crate::sinks::health::OutputSnapshot) -> Vec<(&'static str, u64)>,
) -> Vec<Point<'a>> {
    s.aggregates
        .agent
        .outputs
        .iter()
        .flat_map(|o| {
            pick(o).into_iter().map(|(value, n)| Point {
                labels: vec![
                    ("sink", LabelValue::Str(o.sink)),
                    (label, LabelValue::Str(value)),
                ],
                value: Value::Int(n),
            })
        })
        .collect()
}

const EXE: &str = "process.executable.name";

fn exe(name: &str) -> (&'static str, LabelValue<'_>) {
    (EXE, LabelValue::Str(name))
}

/// One of the executables' counts: (executable, `key` = value) → count.
fn counts<'a>(
    a: &'a Aggregates,
    key: &'static str,
    of: fn(&Executable) -> &Counts,
) -> Vec<Point<'a>> {
    a.counts(of)
        .map(|(name, value, n)| Point {
            labels: vec![exe(name), (key, LabelValue::Str(value))],
            value: Value::Int(n),
        })
        .collect()
}

/// One of the activity counters (ended and live processes): (executable, `key` = value) →
/// count.
fn activity<'a>(a: &'a Aggregates, key: &'static str, of: ActivityCounts) -> Vec<Point<'a>> {
    a.activity_counts(of)
        .into_iter()
        .map(|(name, value, n)| Point {
            labels: vec![exe(name), (key, LabelValue::Str(value))],
            value: Value::Int(n),
        })
        .collect()
}

/// A value per executable.
fn per_executable<'a>(
    a: &'a Aggregates,
    value: impl Fn(&'a Executable) -> Value<'a>,
) -> Vec<Point<'a>> {
    a.executables()
        .map(|(name, e)| Point {
            labels: vec![exe(name)],
            value: value(e),
        })
        .collect()
}

fn unlabelled(value: Value<'_>) -> Vec<Point<'_>> {
    vec![Point {
        labels: Vec::new(),
        value,
    }]
}

/// The executable label, and the pid for a live process's own series.
fn series_labels(executable: &str, pid: Option<u32>) -> Vec<(&'static str, LabelValue<'_>)> {
    let mut labels = vec![exe(executable)];
    if let Some(pid) = pid {
        labels.push(("process.pid", LabelValue::Pid(pid)));
    }
    labels
}

fn cpu_time<'a>(s: &Sources<'a>) -> Vec<Point<'a>> {
    let mut out = Vec::new();
    for c in s.aggregates.cpu_series() {
        for (mode, v) in [("user", c.user_s), ("system", c.system_s)] {
            let mut labels = series_labels(c.executable, c.pid);
            labels.push(("cpu.mode", LabelValue::Str(mode)));
            out.push(Point {
                labels,
                value: Value::Float(v),
            });
        }
    }
    out
}

fn memory_usage<'a>(s: &Sources<'a>) -> Vec<Point<'a>> {
    s.aggregates
        .memory_series()
        .into_iter()
        .map(|m| Point {
            labels: series_labels(m.executable, m.pid),
            value: Value::Int(m.bytes),
        })
        .collect()
}

/// Events lost by where: kernel ring full, untracked (map full), queue full, undecodable.
fn losses(a: &Aggregates) -> [(&'static str, u64); 4] {
    let l = a.agent.losses;
    [
        ("ring_full", l.ring_full),
        ("untracked", l.untracked),
        ("queue_full", l.queue_full),
        ("undecodable", l.decode_errors),
    ]
}

fn exported(s: &Sources<'_>) -> u64 {
    s.spans.map_or(0, |s| Stats::get(&s.exported))
}

fn dropped(s: &Sources<'_>) -> u64 {
    s.spans.map_or(0, SpanStats::dropped)
}

/// In the order the Prometheus exposition lists them.
pub const FAMILIES: &[Family] = &[
    Family {
        otlp: Some("pipetrace.processes"),
        prometheus: Some("pipetrace_processes_total"),
        unit: "{process}",
        help: "Processes that ended, by executable and final status.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| counts(s.aggregates, "status", |e| &e.by_status),
    },
    Family {
        otlp: Some("pipetrace.findings"),
        prometheus: Some("pipetrace_findings_total"),
        unit: "{finding}",
        help: "Findings of the diagnosis (memory leaks, hangs, deadlocks, runaway steps, OOM risks, fork explosions, noisy neighbours, undersized and oversized runners), by kind: every kind is exported from the start, at 0 until one is found.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            crate::event::FindingKind::ALL
                .iter()
                .map(|kind| Point {
                    labels: vec![("pipetrace.finding.kind", LabelValue::Str(kind.as_str()))],
                    value: Value::Int(
                        s.aggregates
                            .findings
                            .get(kind.as_str())
                            .copied()
                            .unwrap_or(0),
                    ),
                })
                .collect()
        },
    },
    Family {
        otlp: Some("pipetrace.processes.started"),
        prometheus: Some("pipetrace_processes_started_total"),
        unit: "{process}",
        help: "Processes that started while traced.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| unlabelled(Value::Int(s.aggregates.started)),
    },
    Family {
        otlp: Some("process.cpu.time"),
        prometheus: Some("process_cpu_time_seconds_total"),
        unit: SECONDS,
        help: "CPU time (whole thread groups): ended processes' totals and live processes' time so far, by executable (or live process) and mode.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: cpu_time,
    },
    Family {
        otlp: Some("process.memory.usage"),
        prometheus: Some("process_memory_usage_bytes"),
        unit: "By",
        help: "Resident memory of live processes at the latest sample, by executable (or live process).",
        kind: Kind::Gauge,
        needs: Needs::Nothing,
        points: memory_usage,
    },
    Family {
        otlp: Some("pipetrace.process.memory.peak"),
        prometheus: Some("pipetrace_process_memory_peak_bytes"),
        unit: "By",
        help: "Highest peak RSS of any ended process of the executable.",
        kind: Kind::Gauge,
        needs: Needs::Nothing,
        points: |s| per_executable(s.aggregates, |e| Value::Int(e.peak_rss_bytes)),
    },
    Family {
        otlp: None,
        prometheus: Some("pipetrace_process_duration_seconds"),
        unit: SECONDS,
        help: "Lifetime of ended processes, by executable.",
        kind: Kind::Histogram,
        needs: Needs::Nothing,
        points: |s| per_executable(s.aggregates, |e| Value::Histogram(&e.duration)),
    },
    Family {
        otlp: Some("pipetrace.process.duration.max"),
        prometheus: Some("pipetrace_process_duration_max_seconds"),
        unit: SECONDS,
        help: "Longest lifetime of an ended process, by executable.",
        kind: Kind::Gauge,
        needs: Needs::Nothing,
        points: |s| per_executable(s.aggregates, |e| Value::Float(e.duration_max_s)),
    },
    Family {
        otlp: Some("pipetrace.process.signals"),
        prometheus: Some("pipetrace_process_signals_total"),
        unit: "{process}",
        help: "Processes killed by a signal, by executable and signal.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| counts(s.aggregates, "signal", |e| &e.signals),
    },
    Family {
        otlp: Some("pipetrace.memory.events"),
        prometheus: Some("pipetrace_memory_events_total"),
        unit: "{event}",
        help: "Memory events (RSS moved by a step), by executable and direction.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| counts(s.aggregates, "direction", |e| &e.memory_events),
    },
    Family {
        otlp: Some("process.disk.io"),
        prometheus: Some("process_disk_io_bytes_total"),
        unit: "By",
        help: "Bytes processes read from and wrote to the storage layer (ended: totals; live: so far), by executable and direction.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| activity(s.aggregates, "disk.io.direction", ActivityCounts::DiskIo),
    },
    Family {
        otlp: Some("process.network.io"),
        prometheus: Some("process_network_io_bytes_total"),
        unit: "By",
        help: "Bytes processes sent (transmit) and received over IPv4/IPv6 sockets (ended: totals; live: so far), by executable and direction.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            activity(
                s.aggregates,
                "network.io.direction",
                ActivityCounts::NetworkIo,
            )
        },
    },
    Family {
        otlp: Some("pipetrace.network.connections"),
        prometheus: Some("pipetrace_network_connections_total"),
        unit: "{connection}",
        help: "TCP connections of processes (ended: totals; live: so far), by executable and direction (outbound: made, attempts included; inbound: accepted).",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            activity(
                s.aggregates,
                "network.connection.direction",
                ActivityCounts::NetworkConnections,
            )
        },
    },
    Family {
        otlp: Some("process.paging.faults"),
        prometheus: Some("process_paging_faults_total"),
        unit: "{fault}",
        help: "Page faults of processes (ended: totals; live: so far), by executable and type (major: waited for I/O).",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            activity(
                s.aggregates,
                "process.paging.fault_type",
                ActivityCounts::PagingFaults,
            )
        },
    },
    Family {
        otlp: Some("process.context_switches"),
        prometheus: Some("process_context_switches_total"),
        unit: "{context_switch}",
        help: "Context switches of processes (ended: totals; live: so far), by executable and type.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            activity(
                s.aggregates,
                "process.context_switch_type",
                ActivityCounts::ContextSwitches,
            )
        },
    },
    Family {
        otlp: Some("pipetrace.runs"),
        prometheus: Some("pipetrace_runs_total"),
        unit: "{run}",
        help: "Ended runs (trace roots), by executable and final status.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| counts(s.aggregates, "status", |e| &e.runs),
    },
    Family {
        otlp: None,
        prometheus: Some("pipetrace_run_duration_seconds"),
        unit: SECONDS,
        help: "Duration of ended runs (trace roots), by executable.",
        kind: Kind::Histogram,
        needs: Needs::Nothing,
        points: |s| {
            per_executable(s.aggregates, |e| Value::Histogram(&e.run_duration))
                .into_iter()
                .filter(|p| matches!(p.value, Value::Histogram(h) if h.count > 0))
                .collect()
        },
    },
    Family {
        otlp: None,
        prometheus: Some("pipetrace_events_read_total"),
        unit: "{event}",
        help: "Records read from the kernel ring buffer.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| unlabelled(Value::Int(s.aggregates.agent.events_read)),
    },
    Family {
        otlp: None,
        prometheus: Some("pipetrace_events_lost_total"),
        unit: "{event}",
        help: "Events lost, by where: kernel ring full, untracked (map full), queue full, undecodable.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            losses(s.aggregates)
                .into_iter()
                .map(|(reason, n)| Point {
                    labels: vec![("reason", LabelValue::Str(reason))],
                    value: Value::Int(n),
                })
                .collect()
        },
    },
    // OTLP carries the two above as one metric with a `result` attribute.
    Family {
        otlp: Some("pipetrace.events"),
        prometheus: None,
        unit: "{event}",
        help: "Records read from the kernel, and events lost by reason.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            let mut out = unlabelled(Value::Int(s.aggregates.agent.events_read));
            out[0].labels.push(("result", LabelValue::Str("read")));
            out.extend(losses(s.aggregates).into_iter().map(|(reason, n)| Point {
                labels: vec![
                    ("result", LabelValue::Str("lost")),
                    ("reason", LabelValue::Str(reason)),
                ],
                value: Value::Int(n),
            }));
            out
        },
    },
    Family {
        otlp: Some("pipetrace.sink.errors"),
        prometheus: Some("pipetrace_sink_errors_total"),
        unit: "{write}",
        help: "Writes a file output (Parquet, JSONL) failed, by output and reason (disk full, read-only file system, …); their rows wait for a retry.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            output_points(s, "reason", |o| {
                o.failures.iter().map(|(reason, n)| (*reason, *n)).collect()
            })
        },
    },
    Family {
        otlp: Some("pipetrace.sink.rows"),
        prometheus: Some("pipetrace_sink_rows_total"),
        unit: "{row}",
        help: "Rows a file output (Parquet, JSONL) wrote, or dropped after its disk refused them beyond output.unwritten_bytes.",
        kind: Kind::Counter,
        needs: Needs::Nothing,
        points: |s| {
            output_points(s, "result", |o| {
                vec![("written", o.rows_written), ("dropped", o.rows_dropped)]
            })
        },
    },
    Family {
        otlp: Some("pipetrace.event.lag.max"),
        prometheus: Some("pipetrace_event_lag_max_seconds"),
        unit: "s",
        help: "The longest an event waited between the kernel and the process tracker since the agent started (the ring buffer's batching included): a tracker held up by its outputs shows here first.",
        kind: Kind::Gauge,
        needs: Needs::Nothing,
        points: |s| {
            unlabelled(Value::Float(
                s.aggregates.agent.route_lag_max_ns as f64 / 1e9,
            ))
        },
    },
    Family {
        otlp: Some("pipetrace.sink.queued"),
        prometheus: Some("pipetrace_sink_queued"),
        unit: "{report}",
        help: "Reports waiting in a file output's queue for its thread: a backlog that grows is a disk slower than the events (beyond 65,536 they are dropped).",
        kind: Kind::Gauge,
        needs: Needs::Nothing,
        points: |s| {
            s.aggregates
                .agent
                .outputs
                .iter()
                .map(|o| Point {
                    labels: vec![("sink", LabelValue::Str(o.sink))],
                    value: Value::Int(o.queued),
                })
                .collect()
        },
    },
    Family {
        otlp: Some("pipetrace.upload.bytes"),
        prometheus: Some("pipetrace_upload_bytes_total"),
        unit: "By",
        help: "Parquet bytes shipped to object storage (uploaded), or dropped from a full spool.",
        kind: Kind::Counter,
        needs: Needs::Upload,
        points: |s| {
            upload_points(s, |u| {
                [("uploaded", u.uploaded_bytes), ("dropped", u.dropped_bytes)]
                    .into_iter()
                    .map(|(result, n)| Point {
                        labels: vec![("result", LabelValue::Str(result))],
                        value: Value::Int(n),
                    })
                    .collect()
            })
        },
    },
    Family {
        otlp: Some("pipetrace.upload.failures"),
        prometheus: Some("pipetrace_upload_failures_total"),
        unit: "{attempt}",
        help: "Uploads that failed and wait for a retry.",
        kind: Kind::Counter,
        needs: Needs::Upload,
        points: |s| upload_points(s, |u| unlabelled(Value::Int(u.failures))),
    },
    Family {
        otlp: Some("pipetrace.upload.roll_failures"),
        prometheus: Some("pipetrace_upload_roll_failures_total"),
        unit: "{attempt}",
        help: "Rolls of the Parquet files into upload objects that failed (a full or read-only disk): the files stay where they are and the roll is retried.",
        kind: Kind::Counter,
        needs: Needs::Upload,
        points: |s| upload_points(s, |u| unlabelled(Value::Int(u.roll_failures))),
    },
    Family {
        otlp: Some("pipetrace.upload.waiting"),
        prometheus: Some("pipetrace_upload_waiting_bytes"),
        unit: "By",
        help: "Parquet bytes in the local spool waiting for upload.",
        kind: Kind::Gauge,
        needs: Needs::Upload,
        points: |s| upload_points(s, |u| unlabelled(Value::Int(u.waiting_bytes))),
    },
    Family {
        otlp: None,
        prometheus: Some("pipetrace_spans_exported_total"),
        unit: "{span}",
        help: "Spans the OTLP receiver acknowledged.",
        kind: Kind::Counter,
        needs: Needs::Spans,
        points: |s| unlabelled(Value::Int(exported(s))),
    },
    Family {
        otlp: None,
        prometheus: Some("pipetrace_spans_dropped_total"),
        unit: "{span}",
        help: "Spans dropped: queue full, export failed, unsent at exit.",
        kind: Kind::Counter,
        needs: Needs::Spans,
        points: |s| unlabelled(Value::Int(dropped(s))),
    },
    Family {
        otlp: Some("pipetrace.spans"),
        prometheus: None,
        unit: "{span}",
        help: "Spans exported and dropped.",
        kind: Kind::Counter,
        needs: Needs::Spans,
        points: |s| {
            [("exported", exported(s)), ("dropped", dropped(s))]
                .into_iter()
                .map(|(result, n)| Point {
                    labels: vec![("result", LabelValue::Str(result))],
                    value: Value::Int(n),
                })
                .collect()
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Body, Event, Exit, Memory, Sample},
        process::tracker::Tracker,
    };

    #[test]
    fn every_family_is_exported_and_its_values_fit_its_unit() {
        let mut a = Aggregates::default();
        let mut t = Tracker::default();
        t.apply(Event::sample(10, Body::Fork));
        let p = t.process(10).unwrap().clone();
        let sample = Sample {
            cpu_user_ns: 1,
            cpu_system_ns: 1,
            rss_bytes: 4096,
            threads: 1,
            run_delay_ns: 0,
            activity: Default::default(),
        };
        a.sample(&p, &sample, 1);
        let memory = Memory {
            rss_bytes: 8192,
            previous_bytes: 4096,
        };
        a.memory_changed(&p, &memory);
        let mut exit = Exit::from_status(9);
        exit.activity = crate::event::Activity {
            read_bytes: Some(4096),
            write_bytes: Some(8192),
            minor_faults: Some(30),
            major_faults: Some(1),
            voluntary_switches: Some(5),
            involuntary_switches: Some(2),
            network_sent_bytes: Some(100),
            network_received_bytes: Some(200),
            network_connections: Some(3),
            network_accepted: Some(1),
            ..Default::default()
        };
        a.record(&t.apply(Event::sample(10, Body::Exit(exit))).unwrap());
        a.agent.upload = Some(super::super::aggregates::UploadCounters {
            uploaded_objects: 2,
            uploaded_bytes: 4096,
            waiting_bytes: 1024,
            ..Default::default()
        });
        let parquet = crate::sinks::health::OutputHealth::new("parquet", "/d", "processes");
        parquet.received(3);
        parquet.written(2, 10);
        parquet.failed(&std::io::Error::from_raw_os_error(libc::ENOSPC), "/d");
        a.agent.outputs = vec![parquet.snapshot()];
        let spans = SpanStats::default();
        let sources = Sources {
            aggregates: &a,
            spans: Some(&spans),
        };
        for f in FAMILIES {
            assert!(f.otlp.is_some() || f.prometheus.is_some());
            let points = (f.points)(&sources);
            assert!(
                !points.is_empty(),
                "{:?} has no points",
                f.otlp.or(f.prometheus)
            );
            for point in points {
                let fits = match point.value {
                    Value::Float(_) => f.unit == SECONDS && f.kind != Kind::Histogram,
                    Value::Int(_) => f.unit != SECONDS && f.kind != Kind::Histogram,
                    Value::Histogram(_) => f.kind == Kind::Histogram && f.otlp.is_none(),
                };
                assert!(fits, "{:?}: {point:?}", f.otlp.or(f.prometheus));
            }
            if let Some(name) = f.prometheus {
                assert_eq!(f.kind == Kind::Counter, name.ends_with("_total"), "{name}");
            }
        }
    }
}
