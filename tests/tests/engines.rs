//! The bucket as a table other engines read as is: real runs of a pipeline uploaded by the
//! agent to a real S3 server (SeaweedFS), one step made slower from run 9. `otel-pipetrace
//! compact` merges the objects of each partition and the fleet's answers do not change;
//! then Daft on a local Ray cluster of two worker nodes reads the same objects (hive
//! partitions, typed columns) and, with its own code, agrees with `query durations` and
//! `query regressions`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use pipetrace_tests::{
    require_root,
    rotel::TOOLS_VENV,
    s3::{ACCESS_KEY, BUCKET, ENDPOINT, SECRET_KEY, Weed, agent_config, agent_with, duckdb_s3},
};
use serde_json::Value;

const RUNS: usize = 12;
const SLOWER_FROM: usize = 9;

const STEP: &str = r#"#!/bin/sh
d=$(sed -n "s/^$1 //p" durations)
D="$d" perl -e 'select(undef, undef, undef, $ENV{D})' "$1"
"#;
const PIPELINE: &str = "#!/bin/sh\n./step.sh build\n./step.sh test\n./step.sh lint\n";

fn query(config: &Path, url: &str, args: &[&str]) -> Vec<Value> {
    let out = agent_with(config)
        .arg("query")
        .args(args)
        .args(["--format", "json", "--data", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "query {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn objects(url_prefix: &str) -> u64 {
    let rows: Vec<Value> = serde_json::from_str(
        &duckdb_s3(&format!(
            "SELECT count(*) AS n FROM glob('{url_prefix}/processes/*/*/*.parquet')"
        ))
        .unwrap(),
    )
    .unwrap();
    rows[0]["n"].as_u64().unwrap()
}

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(1.0),
        _ => a == b,
    }
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn compaction_changes_no_answer_and_daft_on_ray_agrees_with_the_fleet_queries() {
    require_root!();
    let daft_python = PathBuf::from(TOOLS_VENV).join("bin/python");
    let _weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        agent_config(&work.join("data"), "builder-1", "engines", ""),
    )
    .unwrap();
    for (name, body) in [("step.sh", STEP), ("pipeline.sh", PIPELINE)] {
        write_script(work, name, body);
    }
    for n in 1..=RUNS {
        let test = if n >= SLOWER_FROM { 0.6 } else { 0.3 };
        let jitter = 0.01 * (n % 3) as f64;
        std::fs::write(
            work.join("durations"),
            format!(
                "build {:.3}\ntest {:.3}\nlint 0.15\n",
                0.2 + jitter,
                test + jitter
            ),
        )
        .unwrap();
        let out = agent_with(&config)
            .current_dir(work)
            .args(["run", "--summary", "line", "--", "./pipeline.sh"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = format!("s3://{BUCKET}/engines");
    let per_run = objects(&url);
    assert_eq!(per_run, RUNS as u64, "one processes object per run");
    let durations = query(&config, &url, &["durations", "--run", "all"]);
    let regressions = query(&config, &url, &["regressions"]);
    let slowed: Vec<&str> = regressions
        .iter()
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert!(
        slowed.iter().any(|s| s.ends_with("step.sh test"))
            && slowed
                .iter()
                .all(|s| s.contains(" test") || s.ends_with("pipeline.sh")),
        "{regressions:#?}"
    );

    // Compaction: one object for the partition, the same answers.
    let out = agent_with(&config)
        .args(["compact", "--data", &url, "--min-age", "0s"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("merged into"), "{said}");
    assert_eq!(objects(&url), 1, "{said}");
    assert_eq!(
        query(&config, &url, &["durations", "--run", "all"]),
        durations
    );
    assert_eq!(query(&config, &url, &["regressions"]), regressions);

    // Daft on two Ray worker nodes, over the same objects.
    let out = Command::new(&daft_python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/daft_fleet.py"))
        .args([ENDPOINT, ACCESS_KEY, SECRET_KEY])
        .arg(format!("{url}/processes/**/*.parquet"))
        .env("RAY_AUTH_MODE", "disabled")
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "daft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daft: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(daft["nodes"], 2, "{daft}");
    let theirs = daft["durations"].as_array().unwrap();
    assert_eq!(theirs.len(), durations.len(), "{daft:#}");
    for ours in &durations {
        let step = &ours["step"];
        let other = theirs
            .iter()
            .find(|t| &t["step"] == step)
            .unwrap_or_else(|| panic!("daft has no {step}"));
        for column in [
            "runs",
            "processes",
            "total_s",
            "mean_s",
            "p50_s",
            "p95_s",
            "max_s",
        ] {
            assert!(
                close(&ours[column], &other[column]),
                "{step} {column}: ours {} daft {}",
                ours[column],
                other[column]
            );
        }
    }
    let theirs = daft["regressions"].as_array().unwrap();
    assert_eq!(theirs.len(), regressions.len(), "{daft:#}");
    for ours in &regressions {
        let other = theirs
            .iter()
            .find(|t| t["step"] == ours["step"] && t["pipeline"] == ours["pipeline"])
            .unwrap_or_else(|| panic!("daft finds no regression of {}", ours["step"]));
        for column in [
            "since_run",
            "runs_since",
            "before_s",
            "after_s",
            "still_slower",
        ] {
            assert!(
                close(&ours[column], &other[column]),
                "{} {column}: ours {} daft {}",
                ours["step"],
                ours[column],
                other[column]
            );
        }
    }
}
