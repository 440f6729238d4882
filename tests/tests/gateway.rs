//! The collector tier: agents → an OTLP gateway (rotel, batching and retrying) → a trace store
//! with a query API (Arize Phoenix). Every span tree arrives intact; a gateway restart is
//! survived, and what could not be sent meanwhile is counted by the agent.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use pipetrace_tests::{
    bin,
    phoenix::{Gateway, Phoenix, StoredSpan},
    require_root, script, wait_until,
};
use serde_json::Value;

/// `otel-pipetrace run` of `pipeline`, sending spans to `endpoint`, Parquet under `data`.
fn agent(endpoint: &str, data: &Path, pipeline: &Path) -> Child {
    Command::new(bin())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("PIPETRACE_OUTPUT__PARQUET_DIR", data)
        // The store takes traces only.
        .env("PIPETRACE_OTLP__METRICS", "false")
        .args([
            "--otlp-endpoint",
            endpoint,
            "run",
            "--summary",
            "line",
            "--",
        ])
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: Child) -> String {
    let out: Output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

/// The latest run's processes as the agent recorded them: (trace id, span id, parent span id).
fn recorded(data: &Path) -> Vec<(String, String, Option<String>)> {
    let rows = pipetrace_tests::query_json(
        data,
        &[
            "sql",
            "SELECT trace_id, span_id, parent_span_id FROM run_processes",
        ],
    );
    rows.iter()
        .map(|r: &Value| {
            (
                r["trace_id"].as_str().unwrap().to_owned(),
                r["span_id"].as_str().unwrap().to_owned(),
                r["parent_span_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Every process of the run is a stored span with its trace and parent, under the run's span.
fn assert_tree_arrived(
    stored: &HashMap<String, StoredSpan>,
    run: &[(String, String, Option<String>)],
) {
    let span_ids: HashSet<&str> = run.iter().map(|(_, s, _)| s.as_str()).collect();
    let mut run_span = None;
    for (trace, span, parent) in run {
        let s = stored
            .get(span)
            .unwrap_or_else(|| panic!("span {span} of trace {trace} not stored"));
        assert_eq!(&s.trace_id, trace, "{s:?}");
        assert_eq!(&s.parent_id, parent, "{s:?}");
        let parent = parent.as_deref().expect("every process has a parent span");
        if !span_ids.contains(parent) {
            // The root process: its parent is the run's span.
            assert!(run_span.is_none() || run_span == Some(parent), "two roots");
            run_span = Some(parent);
        }
    }
    let run_span = stored
        .get(run_span.expect("a root process"))
        .expect("the run's span stored");
    assert!(
        run_span.parent_id.is_none() && run_span.name.starts_with("run "),
        "{run_span:?}"
    );
}

fn stored_by_id(phoenix: &Phoenix) -> HashMap<String, StoredSpan> {
    phoenix
        .spans()
        .into_iter()
        .map(|s| (s.span_id.clone(), s))
        .collect()
}

fn wait_for(
    phoenix: &Phoenix,
    runs: &[&[(String, String, Option<String>)]],
) -> HashMap<String, StoredSpan> {
    let mut stored = HashMap::new();
    wait_until("every span in the store", Duration::from_secs(90), || {
        stored = stored_by_id(phoenix);
        runs.iter().flat_map(|r| r.iter()).all(|(_, span, parent)| {
            stored.contains_key(span) && parent.as_ref().is_none_or(|p| stored.contains_key(p))
        })
    });
    stored
}

fn dropped(summary: &str) -> u64 {
    summary
        .split(" exported, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no span counts in {summary:?}"))
}

/// Two agents run `pipeline` at once; each says it sent every span.
fn both_deliver(endpoint: &str, data: [&Path; 2], pipeline: &Path) {
    let children = data.map(|d| agent(endpoint, d, pipeline));
    for child in children {
        let summary = finished(child);
        assert_eq!(dropped(&summary), 0, "{summary}");
    }
}

#[test]
fn two_agents_send_through_a_gateway_and_every_span_tree_arrives_intact() {
    require_root!();
    let phoenix = Phoenix::start();
    let mut gateway = Gateway::start(&phoenix.otlp_http());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = script(
        dir.path(),
        "build.sh",
        "ls / > /dev/null\nsleep 0.2 &\nsh -c 'exit 2' || true\nwait\n/bin/true",
    );
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));

    // Two agents at once through the gateway.
    both_deliver(&gateway.grpc_endpoint(), [&a, &b], &pipeline);
    let (a1, b1) = (recorded(&a), recorded(&b));
    assert_eq!((a1.len(), b1.len()), (5, 5), "script, ls, sleep, sh, true");
    assert_ne!(a1[0].0, b1[0].0, "two traces");
    let stored = wait_for(&phoenix, &[&a1, &b1]);
    assert_tree_arrived(&stored, &a1);
    assert_tree_arrived(&stored, &b1);

    // The gateway restarts: a run while it is down cannot deliver, and says so in its counts.
    gateway.stop();
    let summary = finished(agent(&gateway.grpc_endpoint(), &a, &pipeline));
    let down = recorded(&a);
    assert_eq!(
        dropped(&summary),
        down.len() as u64 + 1,
        "every span of the run (and the run's): {summary}"
    );
    assert!(summary.contains("export failed"), "{summary}");
    gateway.resume();

    // After the restart both agents deliver again, trees intact.
    both_deliver(&gateway.grpc_endpoint(), [&a, &b], &pipeline);
    let (a3, b3) = (recorded(&a), recorded(&b));
    let stored = wait_for(&phoenix, &[&a1, &b1, &a3, &b3]);
    for run in [&a1, &b1, &a3, &b3] {
        assert_tree_arrived(&stored, run);
    }
    // Nothing of the run that was counted as dropped arrived; nothing else is in the store.
    let down_trace = &down[0].0;
    assert!(stored.values().all(|s| &s.trace_id != down_trace));
    assert_eq!(
        stored.len(),
        4 * (5 + 1),
        "four runs of five processes and a run span each"
    );
}
