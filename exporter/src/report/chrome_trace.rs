//! The run as Trace Event JSON (the format of chrome://tracing, opened by Perfetto and
//! speedscope): one track per process, ordered and indented by the tree, its lifetime as a
//! complete event with the details as arguments, and its memory and CPU over time as counter
//! tracks on the same process.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::{analysis::run::RunView, present::summary::ending, query::load::LoadedRun};

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

pub fn chrome_trace(loaded: &LoadedRun) -> Value {
    let run = &loaded.view;
    let start = run.start_ns();
    let ids = track_ids(run);
    let depths = run.depths();
    let mut events = Vec::with_capacity(run.procs.len() * 4 + loaded.samples.len());
    for (order, i) in run.tree_order().into_iter().enumerate() {
        let p = &run.procs[i];
        let id = ids[i];
        let label = format!("{}{} [{}]", "  ".repeat(depths[i].min(32)), p.binary, p.pid);
        events.push(json!({"ph": "M", "name": "process_name", "pid": id, "args": {"name": label}}));
        events.push(json!({"ph": "M", "name": "process_sort_index", "pid": id, "args": {"sort_index": order}}));
        events.push(json!({"ph": "M", "name": "thread_name", "pid": id, "tid": id, "args": {"name": p.binary}}));
        events.push(json!({
            "ph": "X",
            "name": p.command,
            "cat": p.status.as_str(),
            "pid": id,
            "tid": id,
            "ts": micros(p.start_ns - start),
            "dur": micros(p.duration_ns()),
            "args": {
                "pid": p.pid,
                "parent_pid": p.ppid,
                "argv": p.argv,
                "cwd": p.cwd,
                "status": p.status.as_str(),
                "ended": ending(p),
                "exit_code": p.exit_code,
                "signal": p.signal,
                "cpu_user_s": p.cpu_user_s,
                "cpu_system_s": p.cpu_system_s,
                "peak_rss_bytes": p.peak_rss_bytes,
                "step_key": p.step_key,
            },
        }));
    }
    for s in &loaded.samples {
        let id = ids[s.proc];
        events.push(json!({
            "ph": "C",
            "name": "memory",
            "pid": id,
            "ts": micros(s.time_ns - start),
            "args": {"rss_MiB": s.rss_bytes as f64 / (1u64 << 20) as f64},
        }));
        if let Some(cpu) = s.cpu_s {
            events.push(json!({
                "ph": "C",
                "name": "cpu",
                "pid": id,
                "ts": micros(s.time_ns - start),
                "args": {"cpu_s": cpu},
            }));
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"run_id": run.run_id, "generator": "otel-pipetrace"},
    })
}
