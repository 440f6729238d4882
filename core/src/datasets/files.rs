//! `files/`: one row per file a process read, wrote, created, renamed, deleted or linked (each
//! operation on a path once per process, with how many times), reads beyond the per-process
//! cap summarised per directory (`reads_under`), failed opens (`probe`) when listed.

use std::sync::LazyLock;

use super::{Dataset, FILES, FIRST, Kind, column, host, run_id};
use crate::{
    event::{FileOp, errno_name, open_flags_text},
    file_log::FileEntry,
    model::Process,
};

/// One entry of a process's file log, with the process it belongs to.
pub struct FileRow {
    pub tgid: u32,
    pub start_ns: u64,
    pub comm: String,
    pub entry: FileEntry,
}

impl FileRow {
    /// The rows of `p`'s files.
    pub fn of(p: &Process) -> impl Iterator<Item = FileRow> + '_ {
        p.files.iter().flat_map(move |log| {
            log.entries().map(move |entry| FileRow {
                tgid: p.key.tgid,
                start_ns: p.key.start_ns,
                comm: p.comm.clone(),
                entry,
            })
        })
    }
}

pub(super) fn derive(_: &FileRow) {}

static TABLE: LazyLock<Dataset<FileRow, ()>> = LazyLock::new(|| {
    let columns = vec![
        run_id(),
        // The first time the process did it.
        column("time", Kind::Time, false, FIRST, |r: &FileRow, _, cx| {
            cx.time(r.entry.first_ns)
        }),
        column("pid", Kind::UInt32, false, FIRST, |r: &FileRow, _, _| {
            r.tgid.into()
        }),
        // With `pid`, the process's `processes` row (its `start`).
        column(
            "start_time",
            Kind::Time,
            false,
            FIRST,
            |r: &FileRow, _, cx| cx.time(r.start_ns),
        ),
        column("comm", Kind::Text, false, FIRST, |r: &FileRow, _, _| {
            r.comm.as_str().into()
        }),
        // read, write, create, delete, rename, mkdir, rmdir, truncate, link, symlink, probe,
        // reads_under.
        column(
            "operation",
            Kind::Text,
            false,
            FIRST,
            |r: &FileRow, _, _| r.entry.op.name().into(),
        ),
        // Absolute, as the process saw it; a directory for reads_under.
        column("path", Kind::Text, false, FIRST, |r: &FileRow, _, _| {
            r.entry.path.as_str().into()
        }),
        // A rename's or link's new name; a symlink's target as written.
        column("target", Kind::Text, true, FIRST, |r: &FileRow, _, _| {
            r.entry.target.as_deref().into()
        }),
        // The open flags (O_WRONLY|O_CREAT|O_TRUNC) of an open.
        column("flags", Kind::Text, true, FIRST, |r: &FileRow, _, _| {
            matches!(
                r.entry.op,
                FileOp::Read | FileOp::Write | FileOp::Create | FileOp::Probe
            )
            .then(|| open_flags_text(r.entry.flags))
            .into()
        }),
        // Times the process did it (files for reads_under).
        column("count", Kind::Int64, false, FIRST, |r: &FileRow, _, _| {
            (r.entry.count as i64).into()
        }),
        // A read file's size at the open; a written one's when the process ended (null when it
        // was gone or replaced by then); the sum for reads_under.
        column("bytes", Kind::Int64, true, FIRST, |r: &FileRow, _, _| {
            r.entry.bytes.map(|b| b as i64).into()
        }),
        // ok, or the errno of a failed open (ENOENT).
        column("outcome", Kind::Text, false, FIRST, |r: &FileRow, _, _| {
            r.entry
                .errno
                .map_or_else(|| "ok".to_owned(), errno_name)
                .into()
        }),
        // SHA-256 of a written file at the process's end (capture.file_hashes).
        column("sha256", Kind::Text, true, FIRST, |r: &FileRow, _, _| {
            r.entry.sha256.as_deref().into()
        }),
        host(),
    ];
    Dataset::new(FILES, derive, columns)
});

/// The `files` dataset.
pub fn files() -> &'static Dataset<FileRow, ()> {
    &TABLE
}
