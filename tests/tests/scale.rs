//! Many agents at once: fifty `run` wrappers started together (fifty sets of kernel programs on
//! the same tracepoints) each trace exactly their own command's tree, and lose nothing.

use pipetrace_tests::{command, require_root, traced};

const RUNS: usize = 50;
const SPAWNS: usize = 30;

#[test]
fn fifty_concurrent_runs_each_trace_their_own_tree_without_loss() {
    require_root!();
    let _cores = pipetrace_tests::needs_idle_cores();
    let dir = tempfile::tempdir().unwrap();
    // Each run's command spawns /bin/true with its own marker, so a process seen by the wrong
    // run shows by its argv.
    let children: Vec<_> = (0..RUNS)
        .map(|k| {
            let jsonl = dir.path().join(format!("run-{k}.jsonl"));
            let script = format!(
                "i=0; while [ $i -lt {SPAWNS} ]; do /bin/true marker-{k}; i=$((i+1)); done"
            );
            let child = command()
                .args(["run", "--summary", "line", "--jsonl"])
                .arg(&jsonl)
                .args(["--", "/bin/sh", "-c", &script])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn otel-pipetrace");
            (k, jsonl, child)
        })
        .collect();
    for (k, jsonl, child) in children {
        let out = child.wait_with_output().unwrap();
        let t = traced(out, &jsonl);
        assert_eq!(t.status, 0, "run {k}: {}", t.stderr);
        assert!(
            t.summary()
                .contains(&format!("{} processes, 0 failed", SPAWNS + 1))
                && t.summary().contains("0 events lost"),
            "run {k}: {}",
            t.summary()
        );
        let marker = format!("marker-{k}");
        let mut mine = 0;
        for e in t.events.iter().filter(|e| e["kind"] == "exec") {
            let argv: Vec<&str> = e["argv"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            if argv.first() == Some(&"/bin/true") {
                assert_eq!(argv.get(1), Some(&marker.as_str()), "run {k} saw {argv:?}");
                mine += 1;
            } else {
                assert_eq!(argv.first(), Some(&"/bin/sh"), "run {k} saw {argv:?}");
            }
        }
        assert_eq!(mine, SPAWNS, "run {k}: its own spawns");
    }
}
