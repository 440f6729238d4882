//! `processes/`: one row per process lifetime, with the trace and span ids of its span.

use std::sync::LazyLock;

use super::{
    Dataset, FIRST, Kind, PROCESSES, SECOND, Value, activity, column, host, run_id, usage,
};
use crate::{
    analysis::step_key::step_key,
    event::{Activity, Exit},
    model::Process,
};

/// What the columns of a process's row share.
pub struct Derived {
    end_ns: u64,
    command_line: String,
    step_key: String,
    /// Measured by the kernel at exit; unknown for processes that did not exit.
    exit: Option<Exit>,
    activity: [Option<u64>; Activity::COUNT],
}

pub(super) fn derive(p: &Process) -> Derived {
    let command_line = p.command_line();
    let exit = p.exit();
    Derived {
        end_ns: p.end_ns.unwrap_or(p.key.start_ns).max(p.key.start_ns),
        step_key: step_key(&command_line),
        command_line,
        exit,
        activity: exit.map(|x| x.activity).unwrap_or_default().values(),
    }
}

static TABLE: LazyLock<Dataset<Process, Derived>> = LazyLock::new(|| {
    let mut columns = vec![
        run_id(),
        column("pid", Kind::UInt32, false, FIRST, |p: &Process, _, _| {
            p.key.tgid.into()
        }),
        // The parent in the tree (the traced process it was forked from) when known, else
        // the kernel's.
        column("ppid", Kind::UInt32, false, FIRST, |p: &Process, _, _| {
            p.parent.map_or(p.ppid, |k| k.tgid).into()
        }),
        column("start", Kind::Time, false, FIRST, |p: &Process, _, cx| {
            cx.time(p.key.start_ns)
        }),
        column(
            "end",
            Kind::Time,
            false,
            FIRST,
            |_: &Process, d: &Derived, cx| cx.time(d.end_ns),
        ),
        column(
            "duration_s",
            Kind::Float64,
            false,
            FIRST,
            |p: &Process, d: &Derived, _| ((d.end_ns - p.key.start_ns) as f64 / 1e9).into(),
        ),
        column(
            "executable",
            Kind::Text,
            true,
            FIRST,
            |p: &Process, _, _| p.exec.as_deref().and_then(|e| e.exe.as_deref()).into(),
        ),
        column(
            "executable_name",
            Kind::Text,
            false,
            FIRST,
            |p: &Process, _, _| p.executable_name().into(),
        ),
        column("argv", Kind::TextList, true, FIRST, |p: &Process, _, _| {
            p.exec
                .as_deref()
                .map_or(Value::Null, |e| Value::TextList(&e.argv))
        }),
        column(
            "command_line",
            Kind::Text,
            false,
            FIRST,
            |_: &Process, d: &Derived, _| d.command_line.as_str().into(),
        ),
        // The command with run-specific parts as placeholders: the same step in every run.
        column(
            "step_key",
            Kind::Text,
            true,
            SECOND,
            |_: &Process, d: &Derived, _| d.step_key.as_str().into(),
        ),
        column("cwd", Kind::Text, true, FIRST, |p: &Process, _, _| {
            p.exec.as_deref().and_then(|e| e.cwd.as_deref()).into()
        }),
        column("comm", Kind::Text, false, FIRST, |p: &Process, _, _| {
            p.comm.as_str().into()
        }),
        column("uid", Kind::UInt32, false, FIRST, |p: &Process, _, _| {
            p.uid.into()
        }),
        column(
            "exit_code",
            Kind::Int32,
            true,
            SECOND,
            |_: &Process, d: &Derived, _| d.exit.and_then(|x| x.code()).into(),
        ),
        column(
            "signal",
            Kind::Int32,
            true,
            SECOND,
            |_: &Process, d: &Derived, _| d.exit.and_then(|x| x.signal()).into(),
        ),
        column("status", Kind::Text, false, FIRST, |p: &Process, _, _| {
            p.status().into()
        }),
        column(
            "exec_count",
            Kind::UInt32,
            false,
            FIRST,
            |p: &Process, _, _| p.exec_count.into(),
        ),
        // When it executed its last image (null: it ran its parent's): children started
        // before it are its own helpers (a version-manager shim's), not steps.
        column(
            "exec_time",
            Kind::Time,
            true,
            SECOND,
            |p: &Process, _, cx| {
                p.exec_ns
                    .filter(|_| !p.exec_inherited)
                    .map_or(Value::Null, |ns| cx.time(ns))
            },
        ),
        column(
            "incomplete",
            Kind::Bool,
            true,
            SECOND,
            |p: &Process, _, _| p.incomplete.into(),
        ),
    ];
    columns.extend(usage(
        |d: &Derived| d.exit.map(|x| x.usage),
        |d: &Derived| d.exit.map(|x| x.usage.peak_rss_bytes),
    ));
    columns.extend(activity(|d: &Derived| &d.activity));
    columns.extend([
        column("trace_id", Kind::Text, false, FIRST, |p: &Process, _, _| {
            format!("{:032x}", p.span.trace_id).into()
        }),
        column("span_id", Kind::Text, false, FIRST, |p: &Process, _, _| {
            format!("{:016x}", p.span.span_id).into()
        }),
        column(
            "parent_span_id",
            Kind::Text,
            true,
            FIRST,
            |p: &Process, _, _| p.parent_span.map(|s| format!("{s:016x}")).into(),
        ),
        // Failed opens (a missing file looked for), listed in `files` or not; and file
        // operations not recorded (beyond capture.files_max). Null when no file was recorded.
        column(
            "file_probes",
            Kind::Int64,
            true,
            SECOND,
            |p: &Process, _, _| p.files.as_ref().map(|f| f.probes as i64).into(),
        ),
        column(
            "files_unrecorded",
            Kind::Int64,
            true,
            SECOND,
            |p: &Process, _, _| p.files.as_ref().map(|f| f.unrecorded as i64).into(),
        ),
        // The commit the run built: a step that passed and failed on one commit is flaky.
        column("revision", Kind::Text, true, SECOND, |_, _, cx| {
            cx.revision.as_deref().into()
        }),
        host(),
    ]);
    Dataset::new(PROCESSES, derive, columns)
});

/// The `processes` dataset.
pub fn processes() -> &'static Dataset<Process, Derived> {
    &TABLE
}
