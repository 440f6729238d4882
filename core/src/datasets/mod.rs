//! The datasets of the offline record, each defined once as a table of columns: the Parquet
//! sink builds its schema and rows from it, and the query side reads the same table to know
//! which columns a file must have and which older files may lack.
//!
//! `events/` has a row per event (stream order), `processes/` a row per process lifetime (with
//! the trace and span ids of its span), `connections/` a row per listed TCP connection, `files/` a row per file a process read, wrote, created, renamed or
//! deleted, `findings/` a row per verdict the diagnosis reached. A
//! column added later gets the next `since` version; readers take it as NULL in older files.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};

use crate::event::Event;

pub mod column;
pub mod connections;
pub mod ddl;
pub mod events;
pub mod files;
pub mod findings;
pub mod processes;

pub use column::RowContext;
use column::{Builder, Column, Fill, Kind, Value};
pub use connections::connections;
pub use events::events;
pub use files::files;
pub use findings::findings;
pub use processes::processes;

pub const EVENTS: &str = "events";
pub const PROCESSES: &str = "processes";
/// One row per listed TCP connection (a process's first to each peer).
pub const CONNECTIONS: &str = "connections";
/// One row per file operation of a process (each operation on a path once).
pub const FILES: &str = "files";
/// One row per finding (a leak, a hang, a deadlock …).
pub const FINDINGS: &str = "findings";

/// The version of the first files of every dataset.
const FIRST: u32 = 1;
/// Columns added after the first files (exit status, CPU, memory, I/O, host, step key …).
const SECOND: u32 = 2;

/// A dataset as the query side sees it: its name, its schema, which columns older files lack.
pub trait Table: Sync {
    fn name(&self) -> &'static str;
    fn schema(&self) -> SchemaRef;
    /// Added after the first files: not required of a file, NULL where it lacks it.
    fn is_later(&self, column: &str) -> bool;
}

/// A dataset of rows `R`; `D` is what is derived from a row once for all its columns.
pub struct Dataset<R: 'static, D: 'static> {
    name: &'static str,
    derive: fn(&R) -> D,
    columns: Vec<Column<R, D>>,
    schema: SchemaRef,
}

impl<R, D> Dataset<R, D> {
    fn new(name: &'static str, derive: fn(&R) -> D, columns: Vec<Column<R, D>>) -> Self {
        let schema = Arc::new(Schema::new(
            columns.iter().map(Column::field).collect::<Vec<_>>(),
        ));
        Self {
            name,
            derive,
            columns,
            schema,
        }
    }

    pub fn columns(&self) -> &[Column<R, D>] {
        &self.columns
    }

    /// An empty buffer of rows.
    pub fn rows(&'static self) -> Rows<R, D> {
        Rows {
            builders: self.columns.iter().map(|c| Builder::new(c.kind)).collect(),
            dataset: self,
            rows: 0,
            bytes: 0,
        }
    }
}

impl<R, D> Table for Dataset<R, D> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_later(&self, column: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.name == column && c.since > FIRST)
    }
}

/// Rows buffered in Arrow builders until a file is written.
pub struct Rows<R: 'static, D: 'static> {
    dataset: &'static Dataset<R, D>,
    builders: Vec<Builder>,
    rows: usize,
    bytes: usize,
}

impl<R, D> Rows<R, D> {
    pub fn push(&mut self, row: &R, context: &RowContext) {
        let derived = (self.dataset.derive)(row);
        for (column, builder) in self.dataset.columns.iter().zip(&mut self.builders) {
            self.bytes += builder.append((column.fill)(row, &derived, context));
        }
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The buffered rows' memory, about.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The buffered rows as one batch; the buffer is empty after.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns = self.builders.iter_mut().map(Builder::finish).collect();
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(self.dataset.schema.clone(), columns)
    }
}

/// A column in a table: `fill` gives its cell of a row.
fn column<R, D>(
    name: &'static str,
    kind: Kind,
    nullable: bool,
    since: u32,
    fill: impl for<'r> Fn(&'r R, &'r D, &'r RowContext) -> Value<'r> + Send + Sync + 'static,
) -> Column<R, D> {
    let fill: Fill<R, D> = Box::new(fill);
    Column {
        name,
        kind,
        nullable,
        since,
        fill,
    }
}

/// The run the rows belong to: in every dataset.
fn run_id<R: 'static, D: 'static>() -> Column<R, D> {
    column("run_id", Kind::Text, false, FIRST, |_, _, cx| {
        cx.run_id.as_str().into()
    })
}

// The columns of an event's header that the datasets of events share: when it happened, and
// the process it belongs to (`pid` with `start_time`; its `processes` row has the same `start`).

fn event_time<D: 'static>() -> Column<Event, D> {
    column("time", Kind::Time, false, FIRST, |e: &Event, _, cx| {
        cx.time(e.common.ktime_ns)
    })
}

fn event_pid<D: 'static>() -> Column<Event, D> {
    column("pid", Kind::UInt32, false, FIRST, |e: &Event, _, _| {
        e.common.tgid.into()
    })
}

fn event_start_time<D: 'static>() -> Column<Event, D> {
    column(
        "start_time",
        Kind::Time,
        false,
        FIRST,
        |e: &Event, _, cx| cx.time(e.common.start_ns),
    )
}

fn event_comm<D: 'static>() -> Column<Event, D> {
    column("comm", Kind::Text, false, FIRST, |e: &Event, _, _| {
        e.common.comm.as_str().into()
    })
}

/// The host the rows come from (`output.host`): the last column of every dataset.
fn host<R, D>() -> Column<R, D> {
    column("host", Kind::Text, true, SECOND, |_, _, cx| {
        cx.host.as_str().into()
    })
}

/// CPU time (user, system) and peak memory, from the values derived for the row (null where
/// the row has none).
fn usage<R: 'static, D: 'static>(
    cpu: fn(&D) -> Option<crate::event::Usage>,
    peak_rss_bytes: fn(&D) -> Option<u64>,
) -> Vec<Column<R, D>> {
    let seconds = |ns: u64| ns as f64 / 1e9;
    vec![
        column(
            "cpu_user_s",
            Kind::Float64,
            true,
            SECOND,
            move |_, d: &D, _| cpu(d).map(|u| seconds(u.cpu_user_ns)).into(),
        ),
        column(
            "cpu_system_s",
            Kind::Float64,
            true,
            SECOND,
            move |_, d: &D, _| cpu(d).map(|u| seconds(u.cpu_system_ns)).into(),
        ),
        column(
            "peak_rss_bytes",
            Kind::Int64,
            true,
            SECOND,
            move |_, d: &D, _| peak_rss_bytes(d).map(|b| b as i64).into(),
        ),
    ]
}

/// I/O, faults, switches and network use, one column each (null where not measured, and in
/// older files), from the values derived for the row.
fn activity<R: 'static, D: 'static>(values: fn(&D) -> &[Option<u64>]) -> Vec<Column<R, D>> {
    use crate::event::Activity;
    Activity::FIELDS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            column(name, Kind::Int64, true, SECOND, move |_, d: &D, _| {
                values(d)[i].map(|v| v as i64).into()
            })
        })
        .collect()
}

#[cfg(any(test, feature = "examples"))]
pub mod examples;
#[cfg(test)]
mod tests;
