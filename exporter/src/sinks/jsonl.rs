//! One JSON object per event, one per line, to a file or stdout.
//!
//! Lines are gathered in memory and written once per burst. A file only ever ends with a
//! whole line: a write the disk refuses halfway keeps the whole lines it took and is cut back
//! to the last of them; the other lines wait for a retry (after 1 s, doubling to 30 s) within `output.unwritten_bytes`,
//! beyond which the oldest are dropped; all of it is counted in the sink's [`OutputHealth`].
//! On stdout, a reader that went away (EPIPE) ends the output: the rest is counted as dropped
//! and the run goes on.

use std::{
    fs::File,
    io::{Seek, SeekFrom, Write},
    sync::Arc,
};

use serde::Serialize;

use super::{
    Report, Sink, SinkError,
    health::{Backoff, OutputHealth},
};
use crate::{
    capture::clock::{Clock, rfc3339},
    event::{Body, Event, signal_name},
    process::model::{Ending, Process},
};
use exporter_common::flags;

/// Lines gathered before a write even within a burst.
const WRITE_AT: usize = 256 * 1024;

enum Output {
    /// `committed`: the length of the file's whole lines.
    File {
        file: File,
        committed: u64,
    },
    Stdout,
    /// Its reader went away: nothing more is written.
    Gone,
}

pub struct JsonlSink {
    out: Output,
    /// Whole lines not written yet, and how many.
    lines: Vec<u8>,
    waiting: u64,
    max_unwritten: usize,
    retry: Backoff,
    health: Arc<OutputHealth>,
    path: String,
    clock: Clock,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize)]
struct Line<'a> {
    kind: &'a str,
    time: String,
    time_unix_nano: u64,
    pid: u32,
    tid: u32,
    /// Real parent (tgid).
    ppid: u32,
    /// Nearest visible ancestor in the traced tree.
    tree_ppid: u32,
    start_time_unix_nano: u64,
    comm: &'a str,
    uid: u32,
    cgroup_id: u64,
    #[serde(skip_serializing_if = "is_false")]
    first_sight: bool,
    #[serde(skip_serializing_if = "is_false")]
    root: bool,
    #[serde(flatten)]
    body: BodyLine<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum BodyLine<'a> {
    Sample {
        cpu_user_ns: u64,
        cpu_system_ns: u64,
        rss_bytes: u64,
        threads: u32,
        #[serde(flatten)]
        activity: crate::event::Activity,
    },
    Memory {
        rss_bytes: u64,
        previous_bytes: u64,
    },
    Fork {},
    Finding {
        finding_kind: &'static str,
        severity: &'static str,
        summary: &'a str,
        value: f64,
        unit: &'static str,
        evidence: serde_json::Map<String, serde_json::Value>,
        involved: Vec<serde_json::Value>,
    },
    Connection {
        direction: &'static str,
        network_transport: &'static str,
        network_type: &'static str,
        peer_address: String,
        peer_port: u16,
        local_address: String,
        local_port: Option<u16>,
        outcome: &'static str,
    },
    Exec {
        exe: Option<&'a str>,
        cwd: Option<&'a str>,
        filename: &'a str,
        argv: &'a [String],
        argv_truncated: bool,
        argv_bytes: u32,
        #[serde(skip_serializing_if = "is_false")]
        hidden: bool,
        #[serde(skip_serializing_if = "is_false")]
        path_truncated: bool,
    },
    Exit {
        exit_code: Option<i32>,
        signal: Option<i32>,
        signal_name: Option<&'a str>,
        core_dumped: bool,
        /// Chosen by the OOM killer.
        oom_killed: bool,
        status: u32,
        duration_ns: u64,
        cpu_user_ns: u64,
        cpu_system_ns: u64,
        peak_rss_bytes: u64,
        #[serde(flatten)]
        activity: crate::event::Activity,
    },
}

#[derive(Serialize)]
struct StillRunning<'a> {
    kind: &'static str,
    time: String,
    time_unix_nano: u64,
    pid: u32,
    ppid: u32,
    tree_ppid: u32,
    start_time_unix_nano: u64,
    comm: &'a str,
    exe: Option<&'a str>,
    argv: &'a [String],
    running_ns: u64,
}

impl JsonlSink {
    /// `"-"` writes to stdout.
    pub fn create(path: &str, clock: Clock, max_unwritten: usize) -> Result<Self, SinkError> {
        let out = if path == "-" {
            Output::Stdout
        } else {
            let file =
                super::create_private_file(path.as_ref()).map_err(|source| SinkError::Io {
                    path: path.to_owned(),
                    source,
                })?;
            Output::File { file, committed: 0 }
        };
        let target = if path == "-" { "stdout" } else { path };
        Ok(Self {
            out,
            lines: Vec::with_capacity(WRITE_AT),
            waiting: 0,
            max_unwritten,
            retry: Backoff::default(),
            health: Arc::new(OutputHealth::new("jsonl", target, "lines")),
            path: target.to_owned(),
            clock,
        })
    }

    fn write_json(&mut self, value: &impl Serialize) -> Result<(), SinkError> {
        let start = self.lines.len();
        if let Err(e) = serde_json::to_writer(&mut self.lines, value) {
            // A value that cannot be encoded leaves no half line behind.
            self.lines.truncate(start);
            return Err(SinkError::Io {
                path: self.path.clone(),
                source: e.into(),
            });
        }
        self.lines.push(b'\n');
        self.waiting += 1;
        self.health.received(1);
        if self.lines.len() >= WRITE_AT {
            return self.write_lines(false);
        }
        Ok(())
    }

    /// Writes the waiting lines unless a retry is not due yet, then keeps what still waits
    /// within the budget.
    fn write_lines(&mut self, now_or_never: bool) -> Result<(), SinkError> {
        if matches!(self.out, Output::Gone) {
            self.drop_waiting();
            return Ok(());
        }
        let mut result = Ok(());
        if self.waiting > 0 && (now_or_never || self.retry.due()) {
            let outcome = match &mut self.out {
                Output::File { file, committed } => write_whole_lines(file, committed, &self.lines),
                Output::Stdout => std::io::stdout()
                    .lock()
                    .write_all(&self.lines)
                    .and_then(|()| std::io::stdout().lock().flush())
                    .map_err(|e| (0, e)),
                // Handled above.
                Output::Gone => return Ok(()),
            };
            match outcome {
                Ok(()) => {
                    self.health.written(self.waiting, self.waiting);
                    self.lines.clear();
                    self.waiting = 0;
                    self.retry.succeeded();
                }
                Err((kept, source)) => {
                    // The whole lines the disk took before it refused are written.
                    let done = self.lines[..kept].iter().filter(|&&b| b == b'\n').count() as u64;
                    self.lines.drain(..kept);
                    self.waiting -= done;
                    self.health.written(done, done);
                    self.health.failed(&source, &self.path);
                    if source.kind() == std::io::ErrorKind::BrokenPipe {
                        self.out = Output::Gone;
                        self.drop_waiting();
                    } else {
                        self.retry.failed();
                    }
                    result = Err(SinkError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        self.keep_within_budget();
        result
    }

    fn drop_waiting(&mut self) {
        self.health.dropped(self.waiting, self.waiting);
        self.lines.clear();
        self.waiting = 0;
    }

    /// Drops the oldest whole lines until the rest fit `max_unwritten`.
    fn keep_within_budget(&mut self) {
        if self.lines.len() <= self.max_unwritten {
            return;
        }
        let excess = self.lines.len() - self.max_unwritten;
        let cut = self.lines[excess - 1..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.lines.len(), |i| excess + i);
        let dropped = self.lines[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
        self.lines.drain(..cut);
        self.waiting -= dropped;
        self.health.dropped(dropped, dropped);
    }
}

/// Writes `lines` at the end of the file's whole lines. On failure, the file is cut back to
/// its last whole line and the error comes with how many bytes of `lines` (whole lines only)
/// it now holds.
fn write_whole_lines(
    file: &mut File,
    committed: &mut u64,
    lines: &[u8],
) -> Result<(), (usize, std::io::Error)> {
    let mut at = 0;
    let error = loop {
        if at == lines.len() {
            *committed += at as u64;
            return Ok(());
        }
        match file.write(&lines[at..]) {
            Ok(0) => break std::io::Error::from(std::io::ErrorKind::WriteZero),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break e,
        }
    };
    let kept = lines[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let end = *committed + kept as u64;
    match file
        .set_len(end)
        .and_then(|()| file.seek(SeekFrom::Start(end)))
    {
        Ok(_) => {
            *committed = end;
            Err((kept, error))
        }
        // The file could not be cut back: it is rewritten from the last known whole line.
        Err(_) => {
            let _ = file.seek(SeekFrom::Start(*committed));
            Err((0, error))
        }
    }
}

impl super::detached::FileOutput for JsonlSink {
    /// A line per event, and per process still running at the end.
    fn units(report: &Report) -> Option<(u64, u64)> {
        match report {
            Report::Event(_) => Some((1, 1)),
            Report::Ended(p) if p.ending == Some(Ending::StillRunning) => Some((1, 1)),
            _ => None,
        }
    }

    fn output_health(&self) -> Arc<OutputHealth> {
        self.health.clone()
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        match report {
            Report::Event(ev) => self.event(ev),
            Report::Ended(p) if p.ending == Some(Ending::StillRunning) => self.still_running(p),
            _ => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.write_lines(false)
    }

    /// A last try, due or not; what is still refused is dropped.
    fn close(&mut self) -> Result<(), SinkError> {
        let result = self.write_lines(true);
        if self.waiting > 0 {
            self.drop_waiting();
        }
        result
    }

    fn health(&self) -> Option<Arc<OutputHealth>> {
        Some(self.health.clone())
    }
}

impl JsonlSink {
    /// One line per record.
    fn event(&mut self, ev: &Event) -> Result<(), SinkError> {
        let c = &ev.common;
        let body = match &ev.body {
            // The kernel's per-thread records and file records (kept per process) never reach
            // the sinks.
            Body::Fork | Body::ThreadSample(_) | Body::SampleEnd(_) | Body::File(_) => {
                BodyLine::Fork {}
            }
            Body::Sample(x) => BodyLine::Sample {
                cpu_user_ns: x.cpu_user_ns,
                cpu_system_ns: x.cpu_system_ns,
                rss_bytes: x.rss_bytes,
                threads: x.threads,
                activity: x.activity,
            },
            Body::Memory(m) => BodyLine::Memory {
                rss_bytes: m.rss_bytes,
                previous_bytes: m.previous_bytes,
            },
            Body::Finding(f) => BodyLine::Finding {
                finding_kind: f.kind.as_str(),
                severity: f.severity.as_str(),
                summary: &f.summary,
                value: f.value,
                unit: f.unit,
                evidence: f.evidence_map(),
                involved: f.involved_list(),
            },
            Body::Connection(n) => BodyLine::Connection {
                direction: n.direction(),
                network_transport: n.transport(),
                network_type: n.network_type(),
                peer_address: n.peer.to_string(),
                peer_port: n.peer_port,
                local_address: n.local.to_string(),
                local_port: n.local_port,
                outcome: n.outcome(),
            },
            Body::Exec(e) => BodyLine::Exec {
                exe: e.exe.as_deref(),
                cwd: e.cwd.as_deref(),
                filename: &e.filename,
                argv: &e.argv,
                argv_truncated: e.argv_truncated,
                argv_bytes: e.argv_total_bytes,
                hidden: e.hidden,
                path_truncated: c.has(flags::PATH_TRUNCATED),
            },
            Body::Exit(x) => BodyLine::Exit {
                exit_code: x.code(),
                signal: x.signal(),
                signal_name: x.signal().and_then(signal_name),
                core_dumped: x.core_dumped(),
                oom_killed: x.oom_killed,
                status: x.status,
                duration_ns: c.ktime_ns.saturating_sub(c.start_ns),
                cpu_user_ns: x.usage.cpu_user_ns,
                cpu_system_ns: x.usage.cpu_system_ns,
                peak_rss_bytes: x.usage.peak_rss_bytes,
                activity: x.activity,
            },
        };
        let unix = self.clock.unix_ns(c.ktime_ns);
        let line = Line {
            kind: ev.kind_name(),
            time: rfc3339(unix),
            time_unix_nano: unix,
            pid: c.tgid,
            tid: c.tid,
            ppid: c.ppid,
            tree_ppid: c.tree_ppid,
            start_time_unix_nano: self.clock.unix_ns(c.start_ns),
            comm: &c.comm,
            uid: c.uid,
            cgroup_id: c.cgroup_id,
            first_sight: c.has(flags::FIRST_SIGHT),
            root: c.has(flags::ROOT),
            body,
        };
        self.write_json(&line)
    }

    /// One line per process still running when tracing stopped.
    fn still_running(&mut self, p: &Process) -> Result<(), SinkError> {
        let now_ns = p.end_ns.unwrap_or(p.key.start_ns);
        let unix = self.clock.unix_ns(now_ns);
        let line = StillRunning {
            kind: "still_running",
            time: rfc3339(unix),
            time_unix_nano: unix,
            pid: p.key.tgid,
            ppid: p.ppid,
            tree_ppid: p.parent.map_or(0, |k| k.tgid),
            start_time_unix_nano: self.clock.unix_ns(p.key.start_ns),
            comm: &p.comm,
            exe: p.exec.as_ref().and_then(|e| e.exe.as_deref()),
            argv: p.exec.as_ref().map_or(&[], |e| &e.argv),
            running_ns: now_ns.saturating_sub(p.key.start_ns),
        };
        self.write_json(&line)
    }
}
