//! `events/`: one row per event, in stream order.

use std::sync::LazyLock;

use super::{
    Dataset, EVENTS, FIRST, Kind, SECOND, Value, activity, column, event_comm, event_pid,
    event_start_time, event_time, host, run_id, usage,
};
use crate::event::{Activity, Body, Event, Exit, Memory, Sample, Usage};

/// What the columns of an event's row share.
pub struct Derived {
    exit: Option<Exit>,
    /// CPU time: the final totals of an exit, the time so far of a sample.
    usage: Option<Usage>,
    /// The totals of an exit, the counts so far of a sample.
    activity: [Option<u64>; Activity::COUNT],
}

pub(super) fn derive(ev: &Event) -> Derived {
    let (exit, usage, activity) = match &ev.body {
        Body::Exit(x) => (Some(*x), Some(x.usage), x.activity.values()),
        Body::Sample(s) => (None, Some(s.usage()), s.activity.values()),
        _ => (None, None, [None; Activity::COUNT]),
    };
    Derived {
        exit,
        usage,
        activity,
    }
}

static TABLE: LazyLock<Dataset<Event, Derived>> = LazyLock::new(|| {
    let mut columns = vec![
        event_time(),
        column("kind", Kind::Text, false, FIRST, |e: &Event, _, _| {
            e.kind_name().into()
        }),
        event_pid(),
        column("tid", Kind::UInt32, false, FIRST, |e: &Event, _, _| {
            e.common.tid.into()
        }),
        column("ppid", Kind::UInt32, false, FIRST, |e: &Event, _, _| {
            e.common.ppid.into()
        }),
        column(
            "tree_ppid",
            Kind::UInt32,
            false,
            FIRST,
            |e: &Event, _, _| e.common.tree_ppid.into(),
        ),
        event_start_time(),
        event_comm(),
        column(
            "executable",
            Kind::Text,
            true,
            FIRST,
            |e: &Event, _, _| match &e.body {
                Body::Exec(x) => x.exe.as_deref().into(),
                _ => Value::Null,
            },
        ),
        column(
            "argv",
            Kind::TextList,
            true,
            FIRST,
            |e: &Event, _, _| match &e.body {
                Body::Exec(x) => Value::TextList(&x.argv),
                _ => Value::Null,
            },
        ),
        // An exit's lifetime (ns, as in the seed), a memory change's or sample's resident
        // memory (bytes).
        column(
            "value",
            Kind::Int64,
            true,
            FIRST,
            |e: &Event, _, _| match &e.body {
                Body::Exit(_) => {
                    (e.common.ktime_ns.saturating_sub(e.common.start_ns) as i64).into()
                }
                Body::Memory(Memory { rss_bytes, .. }) | Body::Sample(Sample { rss_bytes, .. }) => {
                    (*rss_bytes as i64).into()
                }
                _ => Value::Null,
            },
        ),
        column("uid", Kind::UInt32, false, FIRST, |e: &Event, _, _| {
            e.common.uid.into()
        }),
        column(
            "cgroup_id",
            Kind::UInt64,
            false,
            FIRST,
            |e: &Event, _, _| e.common.cgroup_id.into(),
        ),
        run_id(),
        column(
            "exit_code",
            Kind::Int32,
            true,
            SECOND,
            |_: &Event, d: &Derived, _| d.exit.and_then(|x| x.code()).into(),
        ),
        column(
            "signal",
            Kind::Int32,
            true,
            SECOND,
            |_: &Event, d: &Derived, _| d.exit.and_then(|x| x.signal()).into(),
        ),
    ];
    columns.extend(usage(
        |d: &Derived| d.usage,
        |d: &Derived| d.exit.map(|x| x.usage.peak_rss_bytes),
    ));
    columns.extend(activity(|d: &Derived| &d.activity));
    columns.push(host());
    Dataset::new(EVENTS, derive, columns)
});

/// The `events` dataset.
pub fn events() -> &'static Dataset<Event, Derived> {
    &TABLE
}
