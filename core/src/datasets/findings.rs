//! `findings/`: one row per finding (a leak, a hang, a deadlock, a runaway step), with the
//! process it is about (`pid` and `start_time`, as in its `processes` row; null for a finding
//! about the run or the host) and its evidence as JSON.

use std::sync::{Arc, LazyLock};

use super::{Dataset, FINDINGS, FIRST, Kind, column, event_time, host, run_id};
use crate::event::{Body, Event, Finding};

/// The finding of a `finding` event (the sink adds no other events here).
pub struct Derived(Option<Arc<Finding>>);

pub(super) fn derive(ev: &Event) -> Derived {
    match &ev.body {
        Body::Finding(f) => Derived(Some(f.clone())),
        _ => Derived(None),
    }
}

static TABLE: LazyLock<Dataset<Event, Derived>> = LazyLock::new(|| {
    let about = |e: &Event| e.common.tgid != 0;
    let columns = vec![
        run_id(),
        event_time(),
        column("pid", Kind::UInt32, true, FIRST, move |e: &Event, _, _| {
            about(e).then_some(e.common.tgid).into()
        }),
        column(
            "start_time",
            Kind::Time,
            true,
            FIRST,
            move |e: &Event, _, cx| {
                if about(e) {
                    cx.time(e.common.start_ns)
                } else {
                    super::column::Value::Null
                }
            },
        ),
        column("comm", Kind::Text, true, FIRST, move |e: &Event, _, _| {
            about(e).then_some(e.common.comm.as_str()).into()
        }),
        column("kind", Kind::Text, false, FIRST, |_, d: &Derived, _| {
            d.0.as_ref().map_or("", |f| f.kind.as_str()).into()
        }),
        column("severity", Kind::Text, false, FIRST, |_, d: &Derived, _| {
            d.0.as_ref().map_or("", |f| f.severity.as_str()).into()
        }),
        column("summary", Kind::Text, false, FIRST, |_, d: &Derived, _| {
            d.0.as_ref().map_or("", |f| f.summary.as_str()).into()
        }),
        column("value", Kind::Float64, true, FIRST, |_, d: &Derived, _| {
            d.0.as_ref().map(|f| f.value).into()
        }),
        column("unit", Kind::Text, false, FIRST, |_, d: &Derived, _| {
            d.0.as_ref().map_or("", |f| f.unit).into()
        }),
        column("evidence", Kind::Text, false, FIRST, |_, d: &Derived, _| {
            d.0.as_ref()
                .map_or_else(String::new, |f| f.evidence_json())
                .into()
        }),
        column("involved", Kind::Text, false, FIRST, |_, d: &Derived, _| {
            d.0.as_ref()
                .map_or_else(String::new, |f| {
                    serde_json::Value::Array(f.involved_list()).to_string()
                })
                .into()
        }),
        host(),
    ];
    Dataset::new(FINDINGS, derive, columns)
});

/// The `findings` dataset.
pub fn findings() -> &'static Dataset<Event, Derived> {
    &TABLE
}
