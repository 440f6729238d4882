//! Parquet on local disk: the offline record that `otel-pipetrace query` reads with DuckDB.
//!
//! Three datasets under the data directory, each defined by its table of columns in
//! [`crate::datasets`]: `events/`, `processes/`, `connections/` and `findings/`. Rows are buffered in Arrow
//! builders and written when `output.flush_rows` rows or about `output.flush_bytes` of them
//! are waiting, or `output.flush_interval` has passed. Every flush writes one complete Parquet
//! file next to its final name and renames it into place: a reader never sees a partial file,
//! and an agent killed with SIGKILL loses at most the rows of one flush interval.
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

use arrow_array::RecordBatch;
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
    capture::clock::Clock,
    datasets::{
        self, CONNECTIONS, EVENTS, FILES, FINDINGS, PROCESSES, RowContext, Rows, connections,
        events, files::FileRow, findings, processes,
    },
    event::{Body, Event},
    process::model::Process,
};

#[derive(Debug, Clone)]
pub struct ParquetSettings {
    pub dir: PathBuf,
    /// The `host` column's value.
    pub host: String,
    /// The `revision` column's value.
    pub revision: Option<String>,
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
    pub finding_rows: u64,
    pub file_rows: u64,
}

pub struct ParquetSink {
    settings: ParquetSettings,
    /// The run id, host and clock every row (and every file name) shares.
    context: RowContext,
    events: Rows<Event, datasets::events::Derived>,
    processes: Rows<Process, datasets::processes::Derived>,
    connections: Rows<Event, datasets::connections::Derived>,
    findings: Rows<Event, datasets::findings::Derived>,
    files: Rows<FileRow, ()>,
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
        for dataset in [EVENTS, PROCESSES, CONNECTIONS, FINDINGS, FILES] {
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
            context: RowContext {
                clock,
                run_id: run_id.to_owned(),
                host: settings.host.clone(),
                revision: settings.revision.clone(),
            },
            settings,
            events: events().rows(),
            processes: processes().rows(),
            connections: connections().rows(),
            findings: findings().rows(),
            files: datasets::files().rows(),
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
        let now = self
            .context
            .clock
            .unix_ns(crate::capture::clock::monotonic_ns());
        format!("{now:020}-{}-{:06}.parquet", self.context.run_id, self.seq)
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
                            FINDINGS => self.totals.finding_rows += file.rows,
                            FILES => self.totals.file_rows += file.rows,
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
        if !self.events.is_empty() {
            let batch = self
                .events
                .finish()
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(EVENTS, batch)?;
        }
        if !self.processes.is_empty() {
            let batch = self
                .processes
                .finish()
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(PROCESSES, batch)?;
        }
        if !self.connections.is_empty() {
            let batch = self
                .connections
                .finish()
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(CONNECTIONS, batch)?;
        }
        if !self.findings.is_empty() {
            let batch = self
                .findings
                .finish()
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(FINDINGS, batch)?;
        }
        if !self.files.is_empty() {
            let batch = self
                .files
                .finish()
                .map_err(|e| io_error(&self.settings.dir, e))?;
            self.encode(FILES, batch)?;
        }
        self.write_unwritten(now_or_never)
    }

    fn buffered_bytes(&self) -> usize {
        self.events.bytes()
            + self.processes.bytes()
            + self.connections.bytes()
            + self.findings.bytes()
            + self.files.bytes()
    }

    fn due(&self) -> bool {
        (!self.unwritten.is_empty() && self.retry.due())
            || self.events.len() >= self.settings.flush_rows
            || self.processes.len() >= self.settings.flush_rows
            || self.buffered_bytes() >= self.settings.flush_bytes
            || self
                .pending_since
                .is_some_and(|t| t.elapsed() >= self.settings.flush_interval)
    }
}

impl super::detached::FileOutput for ParquetSink {
    /// A `processes` row per ended process; an `events` row per event, and a `connections`
    /// or `findings` row too for a connection or a finding.
    fn units(report: &Report) -> Option<(u64, u64)> {
        match report {
            Report::Event(e) if matches!(e.body, Body::Connection(_) | Body::Finding(_)) => {
                Some((0, 2))
            }
            Report::Event(_) => Some((0, 1)),
            // Its row and its files' rows.
            Report::Ended(p) => Some((1, 1 + p.files.as_ref().map_or(0, |f| f.kept() as u64))),
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
                match &event.body {
                    Body::Connection(_) => self.connections.push(event, &self.context),
                    Body::Finding(_) => self.findings.push(event, &self.context),
                    _ => {}
                }
                self.events.push(event, &self.context);
                self.mark_pending();
                if self.events.len() >= self.settings.flush_rows
                    || self.buffered_bytes() >= self.settings.flush_bytes
                {
                    return self.write_all();
                }
            }
            Report::Ended(process) => {
                self.health.received(1);
                self.processes.push(process, &self.context);
                for row in FileRow::of(process) {
                    self.files.push(&row, &self.context);
                }
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
        event::{Common, Exit},
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
            revision: None,
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
            revision: None,
            flush_rows: 1_000_000,
            flush_bytes: 64 * 1024,
            flush_interval: Duration::from_secs(3600),
            unwritten_bytes: 64 << 20,
        };
        let mut sink = ParquetSink::create(settings, Clock::new(), "r1").unwrap();
        // Execs with 4 KiB of arguments each: about 15 fit in 64 KiB.
        let long = "x".repeat(4096);
        for pid in 10..30 {
            let exec = Body::Exec(Box::new(crate::event::Exec {
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

#[cfg(test)]
mod by_name {
    //! Every column of every dataset, written by the sink and read back by name by DuckDB
    //! (its own Parquet reader), against the field it comes from: two columns of one type
    //! filled into each other's places, or a column left out, fail here.

    use super::*;
    use crate::datasets::{Table, examples as rows};

    /// `column → value as text` of the row of `table` where `filter` holds.
    fn read_back(dir: &Path, table: &dyn Table, filter: &str) -> Vec<(String, String)> {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let files = format!("{}/{}/*.parquet", dir.display(), table.name());
        table
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let name = f.name();
                let expr = match f.data_type() {
                    arrow_schema::DataType::Timestamp(..) => format!("epoch_ns(\"{name}\")"),
                    arrow_schema::DataType::List(_) => format!("array_to_string(\"{name}\", ' ')"),
                    _ => format!("\"{name}\""),
                };
                let sql = format!(
                    "SELECT coalesce(CAST({expr} AS VARCHAR), 'NULL') FROM read_parquet('{files}') WHERE {filter}"
                );
                let value: String = conn
                    .query_row(&sql, [], |row| row.get(0))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                (name.clone(), value)
            })
            .collect()
    }

    fn assert_columns(table: &dyn Table, got: Vec<(String, String)>, expected: &[(&str, String)]) {
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let expected_names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            got_names,
            expected_names,
            "{}: the columns, in order",
            table.name()
        );
        for ((name, value), (_, want)) in got.iter().zip(expected) {
            assert_eq!(value, want, "{}.{name}", table.name());
        }
    }

    /// The activity columns: 101 … 118 in order.
    fn activity() -> Vec<(&'static str, String)> {
        crate::event::Activity::FIELDS
            .iter()
            .zip(101..)
            .map(|(name, v)| (*name, v.to_string()))
            .collect()
    }

    #[test]
    fn every_column_reads_back_by_name_with_the_value_of_its_own_field() {
        let dir = tempfile::tempdir().unwrap();
        let cx = rows::context();
        let settings = ParquetSettings {
            dir: dir.path().to_path_buf(),
            host: cx.host.clone(),
            revision: cx.revision.clone(),
            flush_rows: 1000,
            flush_bytes: usize::MAX,
            flush_interval: Duration::from_secs(3600),
            unwritten_bytes: 64 << 20,
        };
        let mut sink = ParquetSink::create(settings, cx.clock, &cx.run_id).unwrap();
        for e in rows::every_event() {
            sink.report(&Report::Event(&e)).unwrap();
        }
        let p = rows::distinct_process();
        sink.report(&Report::Ended(&p)).unwrap();
        sink.close().unwrap();
        // DuckDB reads a UTC timestamp as TIMESTAMPTZ, in microseconds.
        let t = |ns: u64| (cx.clock.unix_ns(ns) / 1000 * 1000).to_string();
        let s = |v: &str| v.to_owned();
        let null = || s("NULL");
        // every_event(): fork, exec, memory, sample, connection, sample end, exit, 1 µs apart.
        let (exec_ns, connection_ns, exit_ns, start_ns) =
            (6_000_001_000, 6_000_004_000, 6_000_006_000, 5_000_000_000);

        let mut exit = vec![
            ("time", t(exit_ns)),
            ("kind", s("exit")),
            ("pid", s("1001")),
            ("tid", s("1002")),
            ("ppid", s("1003")),
            ("tree_ppid", s("1004")),
            ("start_time", t(start_ns)),
            ("comm", s("distinct")),
            ("executable", null()),
            ("argv", null()),
            ("value", (exit_ns - start_ns).to_string()),
            ("uid", s("1005")),
            ("cgroup_id", s("1006")),
            ("run_id", s("run-distinct")),
            ("exit_code", s("7")),
            ("signal", null()),
            ("cpu_user_s", s("2.5")),
            ("cpu_system_s", s("1.25")),
            ("peak_rss_bytes", s("3000000")),
        ];
        exit.extend(activity());
        exit.push(("host", s("host-distinct")));
        let events = crate::datasets::events();
        assert_columns(
            events,
            read_back(dir.path(), events, "kind = 'exit'"),
            &exit,
        );
        let exec = read_back(dir.path(), events, "kind = 'exec'");
        let exec: Vec<_> = exec
            .into_iter()
            .filter(|(n, _)| ["executable", "argv", "time"].contains(&n.as_str()))
            .collect();
        assert_eq!(
            exec,
            [
                (s("time"), t(exec_ns)),
                (s("executable"), s("/usr/bin/distinct")),
                (s("argv"), s("distinct --flag value")),
            ]
        );

        let connections = crate::datasets::connections();
        assert_columns(
            connections,
            read_back(dir.path(), connections, "true"),
            &[
                ("run_id", s("run-distinct")),
                ("time", t(connection_ns)),
                ("pid", s("1001")),
                ("start_time", t(start_ns)),
                ("comm", s("distinct")),
                ("direction", s("outbound")),
                ("transport", s("tcp")),
                ("network_type", s("ipv4")),
                ("peer_address", s("192.0.2.7")),
                ("peer_port", s("4431")),
                ("local_address", s("127.0.0.1")),
                ("local_port", s("5551")),
                ("outcome", s("failed")),
                ("host", s("host-distinct")),
            ],
        );

        let mut process = vec![
            ("run_id", s("run-distinct")),
            ("pid", s("1001")),
            // The parent in the tree (the fork's parent), not the kernel's parent now.
            ("ppid", s("1004")),
            ("start", t(start_ns)),
            ("end", t(exit_ns)),
            ("duration_s", s("1.000006")),
            ("executable", s("/usr/bin/distinct")),
            ("executable_name", s("distinct")),
            ("argv", s("distinct --flag value")),
            ("command_line", s("distinct --flag value")),
            ("step_key", s("distinct --flag value")),
            ("cwd", s("/work/dir")),
            ("comm", s("distinct")),
            ("uid", s("1005")),
            ("exit_code", s("7")),
            ("signal", null()),
            ("status", s("failed")),
            ("exec_count", s("1")),
            ("exec_time", t(exec_ns)),
            ("incomplete", s("false")),
            ("cpu_user_s", s("2.5")),
            ("cpu_system_s", s("1.25")),
            ("peak_rss_bytes", s("3000000")),
        ];
        process.extend(activity());
        process.extend([
            ("trace_id", format!("{:032x}", p.span.trace_id)),
            ("span_id", format!("{:016x}", p.span.span_id)),
            ("parent_span_id", s("0fedcba987654321")),
            ("file_probes", s("12")),
            ("files_unrecorded", s("13")),
            ("revision", s("rev-distinct")),
            ("host", s("host-distinct")),
        ]);
        let processes = crate::datasets::processes();
        assert_columns(
            processes,
            read_back(dir.path(), processes, "true"),
            &process,
        );

        let files = crate::datasets::files();
        assert_columns(
            files,
            read_back(dir.path(), files, "true"),
            &[
                ("run_id", s("run-distinct")),
                ("time", t(6_000_005_000)),
                ("pid", s("1001")),
                ("start_time", t(start_ns)),
                ("comm", s("distinct")),
                ("operation", s("rename")),
                ("path", s("/work/dir/out.tmp")),
                ("target", s("/work/dir/out.bin")),
                ("flags", null()),
                ("count", s("1")),
                ("bytes", s("4321")),
                ("outcome", s("ok")),
                ("sha256", s("sha-distinct")),
                ("host", s("host-distinct")),
            ],
        );
    }
}
