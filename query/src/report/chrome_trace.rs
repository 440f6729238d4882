//! The run as Trace Event JSON (the format of chrome://tracing, opened by Perfetto and
//! speedscope): one track per process, ordered and indented by the tree, its lifetime as a
//! complete event with the details as arguments, and its memory and CPU over time as counter
//! tracks on the same process.

use std::collections::HashSet;

use serde::Serialize;

use crate::{
    analysis::run::{Proc, RunView},
    present::summary::ending,
    query::load::LoadedRun,
};

/// Track ids for processes whose pid was reused within the run start here.
const REUSED_PID_BASE: u64 = 1 << 32;

fn micros(ns: i64) -> f64 {
    ns as f64 / 1e3
}

/// A track id per process: its pid, unless an earlier process of the run had it.
fn track_ids(run: &RunView) -> Vec<u64> {
    let mut seen = HashSet::new();
    run.procs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if seen.insert(p.pid) {
                u64::from(p.pid)
            } else {
                REUSED_PID_BASE + i as u64
            }
        })
        .collect()
}

/// One Trace Event; typed rather than built as JSON values, which for a 100,000-process run
/// took most of the export's time.
#[derive(Serialize)]
#[serde(tag = "ph")]
enum Event<'a> {
    #[serde(rename = "M")]
    Meta {
        name: &'static str,
        pid: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        tid: Option<u64>,
        args: MetaArgs<'a>,
    },
    #[serde(rename = "X")]
    Complete {
        name: &'a str,
        cat: &'static str,
        pid: u64,
        tid: u64,
        ts: f64,
        dur: f64,
        args: Details<'a>,
    },
    #[serde(rename = "C")]
    Counter {
        name: &'static str,
        pid: u64,
        ts: f64,
        args: CounterArgs,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum MetaArgs<'a> {
    Label { name: String },
    Name { name: &'a str },
    Sort { sort_index: usize },
}

#[derive(Serialize)]
#[serde(untagged)]
enum CounterArgs {
    Memory {
        #[serde(rename = "rss_MiB")]
        rss_mib: f64,
    },
    Cpu {
        cpu_s: f64,
    },
}

/// A process's details, shown when its slice is selected.
#[derive(Serialize)]
struct Details<'a> {
    pid: u32,
    parent_pid: u32,
    argv: &'a [String],
    cwd: Option<&'a str>,
    status: &'static str,
    ended: String,
    exit_code: Option<i32>,
    signal: Option<i32>,
    cpu_user_s: Option<f64>,
    cpu_system_s: Option<f64>,
    peak_rss_bytes: Option<i64>,
    step_key: &'a str,
}

impl<'a> Details<'a> {
    fn of(p: &'a Proc) -> Self {
        Self {
            pid: p.pid,
            parent_pid: p.ppid,
            argv: &p.argv,
            cwd: p.cwd.as_deref(),
            status: p.status.as_str(),
            ended: ending(p),
            exit_code: p.exit_code,
            signal: p.signal,
            cpu_user_s: p.cpu_user_s,
            cpu_system_s: p.cpu_system_s,
            peak_rss_bytes: p.peak_rss_bytes,
            step_key: &p.step_key,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Trace<'a> {
    trace_events: Vec<Event<'a>>,
    display_time_unit: &'static str,
    other_data: OtherData<'a>,
}

#[derive(Serialize)]
struct OtherData<'a> {
    run_id: &'a str,
    generator: &'static str,
}

/// The run as Trace Event JSON.
pub fn chrome_trace(loaded: &LoadedRun) -> Result<String, serde_json::Error> {
    let run = &loaded.view;
    let start = run.start_ns();
    let ids = track_ids(run);
    let depths = run.depths();
    let mut events = Vec::with_capacity(run.procs.len() * 4 + loaded.samples.len() * 2);
    for (order, i) in run.tree_order().into_iter().enumerate() {
        let p = &run.procs[i];
        let id = ids[i];
        let label = format!("{}{} [{}]", "  ".repeat(depths[i].min(32)), p.binary, p.pid);
        let meta = |name, tid, args| Event::Meta {
            name,
            pid: id,
            tid,
            args,
        };
        events.push(meta("process_name", None, MetaArgs::Label { name: label }));
        events.push(meta(
            "process_sort_index",
            None,
            MetaArgs::Sort { sort_index: order },
        ));
        events.push(meta(
            "thread_name",
            Some(id),
            MetaArgs::Name { name: &p.binary },
        ));
        events.push(Event::Complete {
            name: &p.command,
            cat: p.status.as_str(),
            pid: id,
            tid: id,
            ts: micros(p.start_ns - start),
            dur: micros(p.duration_ns()),
            args: Details::of(p),
        });
    }
    for s in &loaded.samples {
        let (pid, ts) = (ids[s.proc], micros(s.time_ns - start));
        events.push(Event::Counter {
            name: "memory",
            pid,
            ts,
            args: CounterArgs::Memory {
                rss_mib: s.rss_bytes as f64 / (1u64 << 20) as f64,
            },
        });
        if let Some(cpu_s) = s.cpu_s {
            events.push(Event::Counter {
                name: "cpu",
                pid,
                ts,
                args: CounterArgs::Cpu { cpu_s },
            });
        }
    }
    serde_json::to_string(&Trace {
        trace_events: events,
        display_time_unit: "ms",
        other_data: OtherData {
            run_id: &run.run_id,
            generator: "otel-pipetrace",
        },
    })
}
