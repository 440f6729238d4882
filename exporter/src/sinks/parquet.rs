//! Parquet on local disk: the offline record that `otel-pipetrace query` reads with DuckDB.
//!
//! Three datasets under the data directory: `events/` (one row per event, stream order),
//! `processes/` (one row per process lifetime, with the trace and span ids of its span) and
//! `connections/` (one row per listed TCP connection, with its peer). Rows
//! are buffered in Arrow builders and written when `output.flush_rows` rows or about
//! `output.flush_bytes` of them are waiting, or
//! `output.flush_interval` has passed. Every flush writes one complete Parquet file next to its
//! final name and renames it into place: a reader never sees a partial file, and an agent
//! killed with SIGKILL loses at most the rows of one flush interval.
//!
//! A file is encoded in memory first, then written: when the disk refuses it (full, read-only,
//! the directory gone), the encoded file waits and is tried again with backoff, within
//! `output.unwritten_bytes`; beyond that the oldest are dropped, and all of it is counted in
//! the sink's [`OutputHealth`]. Unfinished files an earlier agent left (`.NAME.PID.tmp`) are
//! removed at start and counted.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
        TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
    },
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::{
    arrow::ArrowWriter,
    basic::Compression,
    file::properties::{WriterProperties, WriterVersion},
};

use super::{
    Report, Sink, SinkError,
    health::{Backoff, OutputHealth},
};
use crate::{
    analysis::step_key::step_key,
    capture::{
        clock::Clock,
        decode::{Activity, Body, Common, Connection, Event, Memory, Sample},
    },
    process::model::Process,
};

pub const EVENTS: &str = "events";
pub const PROCESSES: &str = "processes";
/// One row per listed TCP connection (a process's first to each peer).
pub const CONNECTIONS: &str = "connections";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn argv_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

pub fn events_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("time", timestamp(), false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("pid", DataType::UInt32, false),
        Field::new("tid", DataType::UInt32, false),
        Field::new("ppid", DataType::UInt32, false),
        Field::new("tree_ppid", DataType::UInt32, false),
        Field::new("start_time", timestamp(), false),
        Field::new("comm", DataType::Utf8, false),
        Field::new("executable", DataType::Utf8, true),
        Field::new("argv", argv_type(), true),
        Field::new("value", DataType::Int64, true),
        Field::new("uid", DataType::UInt32, false),
        Field::new("cgroup_id", DataType::UInt64, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("exit_code", DataType::Int32, true),
        Field::new("signal", DataType::Int32, true),
        Field::new("cpu_user_s", DataType::Float64, true),
        Field::new("cpu_system_s", DataType::Float64, true),
        Field::new("peak_rss_bytes", DataType::Int64, true),
    ];
    // I/O, faults, switches and network use: the totals of an exit, the counts so far of a
    // sample (null on other rows, where not measured, and in older files).
    fields.extend(activity_fields());
    fields.push(host_field());
    Arc::new(Schema::new(fields))
}

/// `host` repeated for `rows` rows.
fn host_column(host: &str, rows: usize) -> ArrayRef {
    Arc::new(arrow_array::StringArray::from_iter_values(
        std::iter::repeat_n(host, rows),
    ))
}

/// The host the rows come from (`output.host`): the last column of every dataset.
fn host_field() -> Field {
    Field::new("host", DataType::Utf8, true)
}

fn activity_fields() -> impl Iterator<Item = Field> {
    Activity::FIELDS
        .iter()
        .map(|name| Field::new(*name, DataType::Int64, true))
}

/// Columns added after the first release of a dataset: older files lack them and read as
/// NULL there (`union_by_name`), so they are not required of every file.
const LATER_BASE_COLUMNS: [&str; 9] = [
    "exec_time",
    "host",
    "incomplete",
    "exit_code",
    "signal",
    "cpu_user_s",
    "cpu_system_s",
    "peak_rss_bytes",
    "step_key",
];

/// Is `name` a column added after the first release (see [`LATER_BASE_COLUMNS`]): the I/O,
/// fault and switch columns too.
pub fn is_later_column(name: &str) -> bool {
    LATER_BASE_COLUMNS.contains(&name) || Activity::FIELDS.contains(&name)
}

pub fn connections_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("time", timestamp(), false),
        Field::new("pid", DataType::UInt32, false),
        // With pid, the process (its `processes` row has the same `start`).
        Field::new("start_time", timestamp(), false),
        Field::new("comm", DataType::Utf8, false),
        // outbound (connect) or inbound (accepted).
        Field::new("direction", DataType::Utf8, false),
        Field::new("transport", DataType::Utf8, false),
        Field::new("network_type", DataType::Utf8, false),
        Field::new("peer_address", DataType::Utf8, false),
        Field::new("peer_port", DataType::Int32, false),
        Field::new("local_address", DataType::Utf8, false),
        Field::new("local_port", DataType::Int32, true),
        // established, or failed (refused, unreachable, timed out).
        Field::new("outcome", DataType::Utf8, false),
        host_field(),
    ]))
}

pub fn processes_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("pid", DataType::UInt32, false),
        Field::new("ppid", DataType::UInt32, false),
        Field::new("start", timestamp(), false),
        Field::new("end", timestamp(), false),
        Field::new("duration_s", DataType::Float64, false),
        Field::new("executable", DataType::Utf8, true),
        Field::new("executable_name", DataType::Utf8, false),
        Field::new("argv", argv_type(), true),
        Field::new("command_line", DataType::Utf8, false),
        // The command with run-specific parts as placeholders: the same step in every run.
        Field::new("step_key", DataType::Utf8, true),
        Field::new("cwd", DataType::Utf8, true),
        Field::new("comm", DataType::Utf8, false),
        Field::new("uid", DataType::UInt32, false),
        Field::new("exit_code", DataType::Int32, true),
        Field::new("signal", DataType::Int32, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("exec_count", DataType::UInt32, false),
        // When it executed its last image (null: it ran its parent's): children started
        // before it are its own helpers (a version-manager shim's), not steps.
        Field::new("exec_time", timestamp(), true),
        Field::new("incomplete", DataType::Boolean, true),
        Field::new("cpu_user_s", DataType::Float64, true),
        Field::new("cpu_system_s", DataType::Float64, true),
        Field::new("peak_rss_bytes", DataType::Int64, true),
    ];
    // I/O, page faults, context switches and network use (null where not measured).
    fields.extend(activity_fields());
    fields.extend([
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        host_field(),
    ]);
    Arc::new(Schema::new(fields))
}

#[derive(Default)]
struct EventColumns {
    time: TimestampNanosecondBuilder,
    kind: StringBuilder,
    pid: UInt32Builder,
    tid: UInt32Builder,
    ppid: UInt32Builder,
    tree_ppid: UInt32Builder,
    start_time: TimestampNanosecondBuilder,
    comm: StringBuilder,
    executable: StringBuilder,
    argv: ListBuilder<StringBuilder>,
    value: Int64Builder,
    uid: UInt32Builder,
    cgroup_id: UInt64Builder,
    run_id: StringBuilder,
    exit_code: Int32Builder,
    signal: Int32Builder,
    cpu_user_s: Float64Builder,
    cpu_system_s: Float64Builder,
    peak_rss_bytes: Int64Builder,
    /// One per [`Activity::FIELDS`] name, in that order.
    activity: [Int64Builder; Activity::COUNT],
    rows: usize,
    /// Estimated memory of the buffered rows.
    bytes: usize,
}

/// A row's fixed-width columns, offsets and validity, about: the estimate adds the texts.
const EVENT_ROW_BYTES: usize = 120 + 8 * Activity::COUNT;
const PROCESS_ROW_BYTES: usize = 200 + 8 * Activity::COUNT;
const CONNECTION_ROW_BYTES: usize = 160;

impl EventColumns {
    fn push(&mut self, ev: &Event, clock: &Clock, run_id: &str) {
        let c = &ev.common;
        self.time.append_value(clock.unix_ns(c.ktime_ns) as i64);
        self.kind.append_value(ev.kind_name());
        self.pid.append_value(c.tgid);
        self.tid.append_value(c.tid);
        self.ppid.append_value(c.ppid);
        self.tree_ppid.append_value(c.tree_ppid);
        self.start_time
            .append_value(clock.unix_ns(c.start_ns) as i64);
        self.comm.append_value(&c.comm);
        self.bytes += EVENT_ROW_BYTES + c.comm.len() + run_id.len();
        match &ev.body {
            Body::Exec(e) => {
                self.executable.append_option(e.exe.as_deref());
                self.bytes += e.exe.as_deref().map_or(0, str::len);
                for a in &e.argv {
                    self.argv.values().append_value(a);
                    self.bytes += a.len() + 4;
                }
                self.argv.append(true);
                self.value.append_null();
            }
            Body::Exit(_) => {
                self.executable.append_null();
                self.argv.append(false);
                // The numeric value of an exit is the process's lifetime (ns), as in the seed.
                self.value
                    .append_value(c.ktime_ns.saturating_sub(c.start_ns) as i64);
            }
            Body::Fork | Body::ThreadSample(_) | Body::SampleEnd(_) | Body::Connection(_) => {
                self.executable.append_null();
                self.argv.append(false);
                self.value.append_null();
            }
            // The resident memory now, bytes.
            Body::Memory(Memory { rss_bytes, .. }) | Body::Sample(Sample { rss_bytes, .. }) => {
                self.executable.append_null();
                self.argv.append(false);
                self.value.append_value(*rss_bytes as i64);
            }
        }
        self.uid.append_value(c.uid);
        self.cgroup_id.append_value(c.cgroup_id);
        self.run_id.append_value(run_id);
        let exit = match &ev.body {
            Body::Exit(x) => Some(x),
            _ => None,
        };
        self.exit_code.append_option(exit.and_then(|x| x.code()));
        self.signal.append_option(exit.and_then(|x| x.signal()));
        // CPU time: the final totals of an exit, the time so far of a sample.
        let cpu = match &ev.body {
            Body::Exit(x) => Some(x.usage),
            Body::Sample(x) => Some(x.usage()),
            _ => None,
        };
        self.cpu_user_s
            .append_option(cpu.map(|u| u.cpu_user_ns as f64 / 1e9));
        self.cpu_system_s
            .append_option(cpu.map(|u| u.cpu_system_ns as f64 / 1e9));
        self.peak_rss_bytes
            .append_option(exit.map(|x| x.usage.peak_rss_bytes as i64));
        let activity = match &ev.body {
            Body::Exit(x) => x.activity.values(),
            Body::Sample(x) => x.activity.values(),
            _ => [None; Activity::COUNT],
        };
        for (column, value) in self.activity.iter_mut().zip(activity) {
            column.append_option(value.map(|v| v as i64));
        }
        self.rows += 1;
    }

    fn finish(
        &mut self,
        schema: &SchemaRef,
        host: &str,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.kind.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.ppid.finish()),
            Arc::new(self.tree_ppid.finish()),
            Arc::new(self.start_time.finish().with_timezone("UTC")),
            Arc::new(self.comm.finish()),
            Arc::new(self.executable.finish()),
            Arc::new(self.argv.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.cgroup_id.finish()),
            Arc::new(self.run_id.finish()),
            Arc::new(self.exit_code.finish()),
            Arc::new(self.signal.finish()),
            Arc::new(self.cpu_user_s.finish()),
            Arc::new(self.cpu_system_s.finish()),
            Arc::new(self.peak_rss_bytes.finish()),
        ];
        columns.extend(
            self.activity
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        columns.push(host_column(host, self.rows));
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

#[derive(Default)]
struct ConnectionColumns {
    run_id: StringBuilder,
    time: TimestampNanosecondBuilder,
    pid: UInt32Builder,
    start_time: TimestampNanosecondBuilder,
    comm: StringBuilder,
    direction: StringBuilder,
    transport: StringBuilder,
    network_type: StringBuilder,
    peer_address: StringBuilder,
    peer_port: Int32Builder,
    local_address: StringBuilder,
    local_port: Int32Builder,
    outcome: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl ConnectionColumns {
    fn push(&mut self, c: &Common, n: &Connection, clock: &Clock, run_id: &str) {
        self.run_id.append_value(run_id);
        self.time.append_value(clock.unix_ns(c.ktime_ns) as i64);
        self.pid.append_value(c.tgid);
        self.start_time
            .append_value(clock.unix_ns(c.start_ns) as i64);
        self.comm.append_value(&c.comm);
        self.direction.append_value(n.direction());
        self.transport.append_value(n.transport());
        self.network_type.append_value(n.network_type());
        self.peer_address.append_value(n.peer.to_string());
        self.peer_port.append_value(i32::from(n.peer_port));
        self.local_address.append_value(n.local.to_string());
        self.local_port.append_option(n.local_port.map(i32::from));
        self.outcome.append_value(n.outcome());
        self.rows += 1;
        self.bytes += CONNECTION_ROW_BYTES + c.comm.len() + run_id.len();
    }

    fn finish(
        &mut self,
        schema: &SchemaRef,
        host: &str,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.run_id.finish()),
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.pid.finish()),
            Arc::new(self.start_time.finish().with_timezone("UTC")),
            Arc::new(self.comm.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.transport.finish()),
            Arc::new(self.network_type.finish()),
            Arc::new(self.peer_address.finish()),
            Arc::new(self.peer_port.finish()),
            Arc::new(self.local_address.finish()),
            Arc::new(self.local_port.finish()),
            Arc::new(self.outcome.finish()),
            host_column(host, self.rows),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

#[derive(Default)]
struct ProcessColumns {
    run_id: StringBuilder,
    pid: UInt32Builder,
    ppid: UInt32Builder,
    start: TimestampNanosecondBuilder,
    end: TimestampNanosecondBuilder,
    duration_s: Float64Builder,
    executable: StringBuilder,
    executable_name: StringBuilder,
    argv: ListBuilder<StringBuilder>,
    command_line: StringBuilder,
    step_key: StringBuilder,
    cwd: StringBuilder,
    comm: StringBuilder,
    uid: UInt32Builder,
    exit_code: Int32Builder,
    signal: Int32Builder,
    status: StringBuilder,
    exec_count: UInt32Builder,
    exec_time: TimestampNanosecondBuilder,
    incomplete: BooleanBuilder,
    cpu_user_s: Float64Builder,
    cpu_system_s: Float64Builder,
    peak_rss_bytes: Int64Builder,
    /// One per [`Activity::FIELDS`] name, in that order.
    activity: [Int64Builder; Activity::COUNT],
    trace_id: StringBuilder,
    span_id: StringBuilder,
    parent_span_id: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl ProcessColumns {
    fn push(&mut self, p: &Process, clock: &Clock, run_id: &str) {
        let end_ns = p.end_ns.unwrap_or(p.key.start_ns).max(p.key.start_ns);
        self.run_id.append_value(run_id);
        self.pid.append_value(p.key.tgid);
        self.ppid.append_value(p.parent.map_or(p.ppid, |k| k.tgid));
        self.start
            .append_value(clock.unix_ns(p.key.start_ns) as i64);
        self.end.append_value(clock.unix_ns(end_ns) as i64);
        self.duration_s
            .append_value((end_ns - p.key.start_ns) as f64 / 1e9);
        let exec = p.exec.as_deref();
        self.executable
            .append_option(exec.and_then(|e| e.exe.as_deref()));
        self.executable_name.append_value(p.executable_name());
        match exec {
            Some(e) => {
                for a in &e.argv {
                    self.argv.values().append_value(a);
                }
                self.argv.append(true);
            }
            None => self.argv.append(false),
        }
        let command_line = p.command_line();
        let key = step_key(&command_line);
        // The argv list, the command line and its step key hold the arguments about 3 times.
        self.bytes += PROCESS_ROW_BYTES
            + run_id.len()
            + command_line.len() * 2
            + key.len()
            + exec.map_or(0, |e| {
                e.exe.as_deref().map_or(0, str::len) + e.cwd.as_deref().map_or(0, str::len)
            })
            + p.comm.len();
        self.step_key.append_value(key);
        self.command_line.append_value(command_line);
        self.cwd.append_option(exec.and_then(|e| e.cwd.as_deref()));
        self.comm.append_value(&p.comm);
        self.uid.append_value(p.uid);
        let exit = p.exit();
        self.exit_code.append_option(exit.and_then(|x| x.code()));
        self.signal.append_option(exit.and_then(|x| x.signal()));
        self.status.append_value(p.status());
        self.exec_count.append_value(p.exec_count);
        self.exec_time.append_option(
            p.exec_ns
                .filter(|_| !p.exec_inherited)
                .map(|ns| clock.unix_ns(ns) as i64),
        );
        self.incomplete.append_value(p.incomplete);
        // Measured by the kernel at exit; unknown for processes that did not exit.
        let usage = exit.map(|x| x.usage);
        self.cpu_user_s
            .append_option(usage.map(|u| u.cpu_user_ns as f64 / 1e9));
        self.cpu_system_s
            .append_option(usage.map(|u| u.cpu_system_ns as f64 / 1e9));
        self.peak_rss_bytes
            .append_option(usage.map(|u| u.peak_rss_bytes as i64));
        let activity = exit.map(|x| x.activity).unwrap_or_default().values();
        for (column, value) in self.activity.iter_mut().zip(activity) {
            column.append_option(value.map(|v| v as i64));
        }
        self.trace_id
            .append_value(format!("{:032x}", p.span.trace_id));
        self.span_id
            .append_value(format!("{:016x}", p.span.span_id));
        self.parent_span_id
            .append_option(p.parent_span.map(|s| format!("{s:016x}")));
        self.rows += 1;
    }

    fn finish(
        &mut self,
        schema: &SchemaRef,
        host: &str,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.run_id.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.ppid.finish()),
            Arc::new(self.start.finish().with_timezone("UTC")),
            Arc::new(self.end.finish().with_timezone("UTC")),
            Arc::new(self.duration_s.finish()),
            Arc::new(self.executable.finish()),
            Arc::new(self.executable_name.finish()),
            Arc::new(self.argv.finish()),
            Arc::new(self.command_line.finish()),
            Arc::new(self.step_key.finish()),
            Arc::new(self.cwd.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.exit_code.finish()),
            Arc::new(self.signal.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.exec_count.finish()),
            Arc::new(self.exec_time.finish().with_timezone("UTC")),
            Arc::new(self.incomplete.finish()),
            Arc::new(self.cpu_user_s.finish()),
            Arc::new(self.cpu_system_s.finish()),
            Arc::new(self.peak_rss_bytes.finish()),
        ];
        columns.extend(
            self.activity
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        columns.extend([
            Arc::new(self.trace_id.finish()) as ArrayRef,
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            host_column(host, self.rows),
        ]);
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

#[derive(Debug, Clone)]
pub struct ParquetSettings {
    pub dir: PathBuf,
    /// The `host` column's value.
    pub host: String,
    pub flush_rows: usize,
    /// Estimated bytes of buffered rows (all datasets) that trigger a write.
    pub flush_bytes: usize,
    pub flush_interval: Duration,
    /// Encoded files kept in memory while the disk refuses them.
    pub unwritten_bytes: usize,
}

/// What the sink wrote, for the summary and the tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct ParquetTotals {
    pub files: u64,
    pub event_rows: u64,
    pub process_rows: u64,
    pub connection_rows: u64,
}

pub struct ParquetSink {
    settings: ParquetSettings,
    clock: Clock,
    run_id: String,
    events: EventColumns,
    processes: ProcessColumns,
    connections: ConnectionColumns,
    events_schema: SchemaRef,
    processes_schema: SchemaRef,
    connections_schema: SchemaRef,
    props: WriterProperties,
    /// When the oldest unwritten row arrived.
    pending_since: Option<Instant>,
    seq: u64,
    totals: ParquetTotals,
    /// Encoded files the disk refused so far, oldest first.
    unwritten: VecDeque<EncodedFile>,
    unwritten_bytes: usize,
    retry: Backoff,
    health: Arc<OutputHealth>,
}

/// One complete Parquet file, encoded and waiting to be written.
struct EncodedFile {
    dataset: &'static str,
    name: String,
    bytes: Vec<u8>,
    rows: u64,
}

impl EncodedFile {
    /// Rows of the `processes` dataset: the sink's headline count.
    fn processes(&self) -> u64 {
        if self.dataset == PROCESSES {
            self.rows
        } else {
            0
        }
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> SinkError {
    SinkError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// `.NAME.PID.tmp` files whose writer is gone: an agent killed mid-write left them. Removed,
/// and their number returned.
fn remove_unfinished(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        // A writer that still runs (another agent on the same directory) keeps its file.
        let writer = stem
            .rsplit_once('.')
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        let alive = writer.is_some_and(|pid| {
            pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

impl ParquetSink {
    pub fn create(
        settings: ParquetSettings,
        clock: Clock,
        run_id: &str,
    ) -> Result<Self, SinkError> {
        let health = Arc::new(OutputHealth::new(
            "parquet",
            settings.dir.display().to_string(),
            "processes",
        ));
        let mut stale = 0;
        for dataset in [EVENTS, PROCESSES, CONNECTIONS] {
            let dir = settings.dir.join(dataset);
            super::create_private_dir(&dir).map_err(|source| SinkError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            stale += remove_unfinished(&dir);
        }
        if stale > 0 {
            tracing::warn!(
                "removed {stale} unfinished Parquet file{} an earlier agent left in {}",
                if stale == 1 { "" } else { "s" },
                settings.dir.display()
            );
        }
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(settings.flush_rows.max(1)))
            .build();
        Ok(Self {
            settings,
            clock,
            run_id: run_id.to_owned(),
            events: EventColumns::default(),
            processes: ProcessColumns::default(),
            connections: ConnectionColumns::default(),
            events_schema: events_schema(),
            processes_schema: processes_schema(),
            connections_schema: connections_schema(),
            props,
            pending_since: None,
            seq: 0,
            totals: ParquetTotals::default(),
            unwritten: VecDeque::new(),
            unwritten_bytes: 0,
            retry: Backoff::default(),
            health,
        })
    }

    pub fn totals(&self) -> ParquetTotals {
        self.totals
    }

    fn mark_pending(&mut self) {
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// `<unix ns>-<run id>-<seq>.parquet`: names sort in time order and never collide
    /// between agents writing to the same directory.
    fn file_name(&mut self) -> String {
        self.seq += 1;
        let now = self.clock.unix_ns(crate::capture::clock::monotonic_ns());
        format!("{now:020}-{}-{:06}.parquet", self.run_id, self.seq)
    }

    /// One complete file of `batch`, in memory.
    fn encode(&mut self, dataset: &'static str, batch: RecordBatch) -> Result<(), SinkError> {
        let rows = batch.num_rows() as u64;
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(self.props.clone()))
            .map_err(|e| io_error(&self.settings.dir, e))?;
        writer
            .write(&batch)
            .map_err(|e| io_error(&self.settings.dir, e))?;
        let bytes = writer
            .into_inner()
            .map_err(|e| io_error(&self.settings.dir, e))?;
        let name = self.file_name();
        self.unwritten_bytes += bytes.len();
        self.unwritten.push_back(EncodedFile {
            dataset,
            name,
            bytes,
            rows,
        });
        Ok(())
    }

    /// Writes `file` next to its final name, then renames it into place.
    fn write_file(&self, file: &EncodedFile) -> Result<(), (std::io::Error, PathBuf)> {
        use std::io::Write;
        let dir = self.settings.dir.join(file.dataset);
        let tmp = dir.join(format!(".{}.{}.tmp", file.name, std::process::id()));
        let done = dir.join(&file.name);
        let create = || match super::create_private_file(&tmp) {
            // The directory was removed under the agent: made again, as at start.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                super::create_private_dir(&dir)?;
                super::create_private_file(&tmp)
            }
            other => other,
        };
        // Failures name the dataset's directory: the temporary name means nothing to a reader.
        let written = create()
            .and_then(|mut f| f.write_all(&file.bytes))
            .map_err(|e| (e, dir.clone()));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        std::fs::rename(&tmp, &done).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            (e, dir)
        })
    }

    /// Writes the waiting files in order, unless a retry is not due yet; stops at the first
    /// the disk refuses. Then keeps what waits within the budget, dropping the oldest.
    fn write_unwritten(&mut self, now_or_never: bool) -> Result<(), SinkError> {
        let mut result = Ok(());
        if now_or_never || self.retry.due() {
            while let Some(file) = self.unwritten.front() {
                match self.write_file(file) {
                    Ok(()) => {
                        let file = self.unwritten.pop_front().expect("front exists");
                        self.unwritten_bytes -= file.bytes.len();
                        self.health.written(file.processes(), file.rows);
                        self.totals.files += 1;
                        match file.dataset {
                            EVENTS => self.totals.event_rows += file.rows,
                            PROCESSES => self.totals.process_rows += file.rows,
                            _ => self.totals.connection_rows += file.rows,
                        }
                        self.retry.succeeded();
                    }
                    Err((source, path)) => {
                        self.health.failed(&source, &path.display().to_string());
                        self.retry.failed();
                        result = Err(SinkError::Io {
                            path: path.display().to_string(),
                            source,
                        });
                        break;
                    }
                }
            }
        }
        while self.unwritten_bytes > self.settings.unwritten_bytes {
            let Some(file) = self.unwritten.pop_front() else {
                break;
            };
            self.unwritten_bytes -= file.bytes.len();
            self.health.dropped(file.processes(), file.rows);
        }
        result
    }

    /// Encodes every buffered row into files and writes them (and any that waited).
    pub fn write_all(&mut self) -> Result<(), SinkError> {
        self.write_buffered(false)
    }

    fn write_buffered(&mut self, now_or_never: bool) -> Result<(), SinkError> {
        self.pending_since = None;
        if self.events.rows > 0 {
            let batch = self
                .events
                .finish(&self.events_schema, &self.settings.host)
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(EVENTS, batch)?;
        }
        if self.processes.rows > 0 {
            let batch = self
                .processes
                .finish(&self.processes_schema, &self.settings.host)
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(PROCESSES, batch)?;
        }
        if self.connections.rows > 0 {
            let batch = self
                .connections
                .finish(&self.connections_schema, &self.settings.host)
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(CONNECTIONS, batch)?;
        }
        self.write_unwritten(now_or_never)
    }

    fn buffered_bytes(&self) -> usize {
        self.events.bytes + self.processes.bytes + self.connections.bytes
    }

    fn due(&self) -> bool {
        (!self.unwritten.is_empty() && self.retry.due())
            || self.events.rows >= self.settings.flush_rows
            || self.processes.rows >= self.settings.flush_rows
            || self.buffered_bytes() >= self.settings.flush_bytes
            || self
                .pending_since
                .is_some_and(|t| t.elapsed() >= self.settings.flush_interval)
    }
}

impl super::detached::FileOutput for ParquetSink {
    /// A `processes` row per ended process; an `events` row per event, and a `connections`
    /// row too for a connection.
    fn units(report: &Report) -> Option<(u64, u64)> {
        match report {
            Report::Event(e) if matches!(e.body, Body::Connection(_)) => Some((0, 2)),
            Report::Event(_) => Some((0, 1)),
            Report::Ended(_) => Some((1, 1)),
            Report::RunEnded(_) => Some((0, 0)),
            _ => None,
        }
    }

    fn output_health(&self) -> Arc<OutputHealth> {
        self.health.clone()
    }
}

impl Sink for ParquetSink {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn report(&mut self, report: &Report) -> Result<(), SinkError> {
        match report {
            Report::Event(event) => {
                if let Body::Connection(c) = &event.body {
                    self.connections
                        .push(&event.common, c, &self.clock, &self.run_id);
                }
                self.events.push(event, &self.clock, &self.run_id);
                self.mark_pending();
                if self.events.rows >= self.settings.flush_rows
                    || self.buffered_bytes() >= self.settings.flush_bytes
                {
                    return self.write_all();
                }
            }
            Report::Ended(process) => {
                self.health.received(1);
                self.processes.push(process, &self.clock, &self.run_id);
                self.mark_pending();
                if self.buffered_bytes() >= self.settings.flush_bytes {
                    return self.write_all();
                }
            }
            // A run's rows are on disk when it ends.
            Report::RunEnded(_) => return self.write_all(),
            Report::Started(_) | Report::MemoryChanged(..) | Report::Sampled(..) => {}
        }
        Ok(())
    }

    /// Called after every burst of events and once a second: writes when a flush is due.
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.due() { self.write_all() } else { Ok(()) }
    }

    /// A last try for everything, due or not; what the disk still refuses is dropped.
    fn close(&mut self) -> Result<(), SinkError> {
        let result = self.write_buffered(true);
        while let Some(file) = self.unwritten.pop_front() {
            self.health.dropped(file.processes(), file.rows);
        }
        self.unwritten_bytes = 0;
        result
    }

    fn health(&self) -> Option<Arc<OutputHealth>> {
        Some(self.health.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        capture::decode::{Common, Exit},
        process::tracker::{Tracker, TrackerOptions},
    };
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn ev(tgid: u32, body: Body) -> Event {
        Event {
            common: Common::sample(tgid, 1_000, 2_000, "x"),
            body,
        }
    }

    fn rows(dir: &Path) -> (usize, usize) {
        let mut files = 0;
        let mut rows = 0;
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                name.ends_with(".parquet") && !name.starts_with('.'),
                "{name}"
            );
            let reader = ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(entry.path()).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap();
            rows += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
            files += 1;
        }
        (files, rows)
    }

    #[test]
    fn flushes_by_size_into_complete_files_and_closes_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ParquetSettings {
            dir: dir.path().to_path_buf(),
            host: "h".into(),
            flush_rows: 4,
            flush_bytes: usize::MAX,
            flush_interval: Duration::from_secs(3600),
            unwritten_bytes: 64 << 20,
        };
        let mut sink = ParquetSink::create(settings, Clock::new(), "r1").unwrap();
        let mut tracker = Tracker::new(TrackerOptions::default());
        for pid in 10..13 {
            for body in [Body::Fork, Body::Exit(Exit::from_status(0))] {
                let e = ev(pid, body);
                sink.report(&Report::Event(&e)).unwrap();
                if let Some(p) = tracker.apply(e) {
                    sink.report(&Report::Ended(&p)).unwrap();
                }
            }
            sink.flush().unwrap();
        }
        // 6 events: one file of 4 written by size, the rest only at close.
        assert_eq!(rows(&dir.path().join(EVENTS)), (1, 4));
        sink.close().unwrap();
        assert_eq!(rows(&dir.path().join(EVENTS)).1, 6);
        assert_eq!(rows(&dir.path().join(PROCESSES)).1, 3);
        assert_eq!(sink.totals().event_rows, 6);
        assert_eq!(sink.totals().process_rows, 3);
    }

    #[test]
    fn unfinished_files_of_gone_writers_are_removed_and_a_live_writers_kept() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        for name in [
            "a.parquet".to_owned(),
            ".b.parquet.4194304999.tmp".to_owned(), // no such pid
            format!(".c.parquet.{me}.tmp"),         // this agent's, from before a restart
            ".d.parquet.1.tmp".to_owned(),          // pid 1 is alive: another writer's
            ".e.parquet.tmp".to_owned(),            // an older agent's name
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_unfinished(dir.path()), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".d.parquet.1.tmp", "a.parquet"]);
    }

    #[test]
    fn flushes_by_bytes_when_rows_are_large() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ParquetSettings {
            dir: dir.path().to_path_buf(),
            host: "h".into(),
            flush_rows: 1_000_000,
            flush_bytes: 64 * 1024,
            flush_interval: Duration::from_secs(3600),
            unwritten_bytes: 64 << 20,
        };
        let mut sink = ParquetSink::create(settings, Clock::new(), "r1").unwrap();
        // Execs with 4 KiB of arguments each: about 15 fit in 64 KiB.
        let long = "x".repeat(4096);
        for pid in 10..30 {
            let exec = Body::Exec(Box::new(crate::capture::decode::Exec {
                exe: None,
                cwd: None,
                filename: "/usr/bin/cc".into(),
                argv: vec!["cc".into(), long.clone()],
                argv_truncated: false,
                argv_total_bytes: 4099,
                hidden: false,
            }));
            sink.report(&Report::Event(&ev(pid, exec))).unwrap();
        }
        let (files, written) = rows(&dir.path().join(EVENTS));
        assert_eq!(files, 1, "one file written by size in bytes");
        assert!((10..20).contains(&written), "{written} rows written");
        sink.close().unwrap();
        assert_eq!(rows(&dir.path().join(EVENTS)).1, 20);
    }
}
