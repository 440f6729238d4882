//! Deployment files checked by real tools (no Docker engine runs here): the Compose file against
//! the Compose specification's schema and by docker-compose's own parser, the dashboards against
//! Grafana's schema package, the systemd unit by systemd-analyze, the Prometheus config by
//! promtool; and every query of every dashboard panel run against a real Prometheus that
//! scrapes the agent while it traces a pipeline.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use pipetrace_tests::{
    command, config_daemon,
    prometheus::Prometheus,
    real_python, require_root,
    rotel::{Rotel, TOOLS_VENV},
};
use serde_json::Value;

const NPM_DIR: &str = "/var/cache/otel-pipetrace/npm";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn compose_dir() -> PathBuf {
    repo().join("deploy/docker-compose")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (installed by scripts/setup)"))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A YAML file as JSON (PyYAML comes with Debian's docker-compose).
fn yaml(path: &Path) -> Value {
    let out = run(Command::new("/usr/bin/python3").args([
        "-c",
        "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        path.to_str().unwrap(),
    ]));
    assert_ok(&out, &format!("reading {}", path.display()));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_compose_schema(file: &Path) -> Output {
    run(
        Command::new(format!("{TOOLS_VENV}/bin/check-jsonschema")).args([
            "--builtin-schema",
            "vendor.compose-spec",
            file.to_str().unwrap(),
        ]),
    )
}

#[test]
fn compose_file_follows_the_compose_specification() {
    let file = compose_dir().join("docker-compose.yml");
    assert_ok(&check_compose_schema(&file), "Compose spec schema");
    assert_ok(
        &run(Command::new("docker-compose")
            .arg("-f")
            .arg(&file)
            .args(["config", "-q"])),
        "docker-compose config",
    );
    // The validator is not a rubber stamp: a wrong type is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &broken,
        text.replace("privileged: true", "privileged: [\"yes\"]"),
    )
    .unwrap();
    assert!(!check_compose_schema(&broken).status.success());

    let compose = yaml(&file);
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["agent", "grafana", "jaeger", "prometheus"])
    );
    for (name, s) in services {
        assert!(
            s["healthcheck"]["test"].is_array(),
            "{name} has a health check"
        );
        if let Some(image) = s["image"].as_str().filter(|_| name != "agent") {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest",
                "{name}: image {image} is not pinned"
            );
        }
        // Every bind mount's source is in the repository.
        for v in s["volumes"].as_array().into_iter().flatten() {
            let source = v.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(
                    compose_dir().join(source).exists(),
                    "{name}: {source} does not exist"
                );
            }
        }
    }
    let agent = &services["agent"];
    assert_eq!(agent["privileged"], true);
    assert_eq!(agent["pid"], "host");
    let dockerfile = repo()
        .join("deploy/docker-compose")
        .join(agent["build"]["context"].as_str().unwrap())
        .join(agent["build"]["dockerfile"].as_str().unwrap());
    let dockerfile = std::fs::read_to_string(&dockerfile).unwrap();
    // The files the image copies from the build context exist.
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[1].starts_with("--from") || words[1] == "." {
            continue;
        }
        assert!(repo().join(words[1]).exists(), "Dockerfile: {line}");
    }
    let volumes = compose["volumes"].as_object().unwrap();
    for v in ["pipetrace-data", "prometheus-data", "grafana-data"] {
        assert!(volumes.contains_key(v), "named volume {v}");
    }
}

#[test]
fn prometheus_grafana_and_agent_configs_are_valid() {
    let dir = compose_dir();
    assert_ok(
        &run(Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.join("prometheus/prometheus.yml"))),
        "promtool check config",
    );
    let sources = yaml(&dir.join("grafana/provisioning/datasources/datasources.yml"));
    let uids: BTreeSet<&str> = sources["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, BTreeSet::from(["jaeger", "prometheus"]));
    let providers = yaml(&dir.join("grafana/provisioning/dashboards/dashboards.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let compose = yaml(&dir.join("docker-compose.yml"));
    let mounted = compose["services"]["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap() == format!("../../dashboards:{path}:ro"));
    assert!(mounted, "dashboards/ is mounted where the provider reads");
    // The agent configuration the compose file mounts loads.
    let out = command()
        .args(["--config", "config/compose.toml", "config"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_ok(&out, "otel-pipetrace --config config/compose.toml config");
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("prometheus_listen = \"0.0.0.0:9464\""));
    assert!(effective.contains("endpoint = \"http://jaeger:4317\""));
}

#[test]
fn systemd_unit_verifies() {
    let unit =
        std::fs::read_to_string(repo().join("deploy/systemd/otel-pipetrace.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/otel-pipetrace --config "));
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let file = dir.path().join("otel-pipetrace.service");
        // Verified with the binary of this build in place of the installed one.
        let text = text.replace(
            "/usr/local/bin/otel-pipetrace",
            pipetrace_tests::bin().to_str().unwrap(),
        );
        std::fs::write(&file, text).unwrap();
        run(Command::new("systemd-analyze").arg("verify").arg(&file))
    };
    let out = check(&unit);
    assert_ok(&out, "systemd-analyze verify");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A misspelt key is reported.
    let out = check(&unit.replace("Restart=", "Restrat="));
    assert!(!out.stderr.is_empty());
}

fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(repo().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "overview, resources, agent health");
    out
}

/// Panels with their rows' children.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

fn type_check(files: &[PathBuf]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut ts = String::from(
        "import type { Dashboard } from '@grafana/schema';\n\
         // JSON strings cannot be narrowed to TypeScript string enums: compare with them widened.\n\
         type Widen<T> = T extends string ? string : T extends number ? number : \
         T extends object ? { [K in keyof T]: Widen<T[K]> } : T;\n",
    );
    for (i, f) in files.iter().enumerate() {
        ts.push_str(&format!(
            "import d{i} from '{}';\nexport const x{i}: Widen<Dashboard> = d{i};\n",
            f.display()
        ));
    }
    let check = dir.path().join("check.ts");
    std::fs::write(&check, ts).unwrap();
    run(Command::new(format!("{NPM_DIR}/node_modules/.bin/tsc"))
        .args([
            "--noEmit",
            "--strict",
            "--resolveJsonModule",
            "--esModuleInterop",
            "--skipLibCheck",
            "--moduleResolution",
            "node",
            "--module",
            "commonjs",
            "--target",
            "es2020",
            "--typeRoots",
            &format!("{NPM_DIR}/node_modules/@types"),
            "--baseUrl",
            &format!("{NPM_DIR}/node_modules"),
        ])
        .arg(&check)
        .current_dir(NPM_DIR))
}

#[test]
fn dashboards_match_grafanas_schema_and_the_provisioned_datasources() {
    let files: Vec<PathBuf> = dashboards()
        .iter()
        .map(|(name, _)| repo().join("dashboards").join(name))
        .collect();
    assert_ok(&type_check(&files), "tsc against @grafana/schema");
    // A wrongly typed field is caught.
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bad) = dashboards().remove(0);
    bad["panels"][1]["gridPos"]["w"] = Value::from("12");
    let bad_file = dir.path().join("bad.json");
    std::fs::write(&bad_file, bad.to_string()).unwrap();
    assert!(!type_check(&[bad_file]).status.success());

    let mut uids = BTreeSet::new();
    for (name, d) in dashboards() {
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_owned()),
            "{name}: uid"
        );
        let mut ids = BTreeSet::new();
        let mut jaeger_links = 0;
        for p in panels(&d) {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{name}: panel ids");
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{name}: {} is wider than the grid",
                p["title"]
            );
            for t in p["targets"].as_array().into_iter().flatten() {
                let uid = t["datasource"]["uid"].as_str().unwrap_or("");
                assert!(
                    uid == "prometheus" || uid == "jaeger",
                    "{name}: {} uses datasource {uid:?}, not a provisioned one",
                    p["title"]
                );
                if uid == "prometheus" {
                    assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
                }
            }
            for l in p["fieldConfig"]["defaults"]["links"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let url = l["url"].as_str().unwrap();
                if url.starts_with("${jaeger_url}/search?") {
                    assert!(url.contains("operation=${__field.labels.process_executable_name}"));
                    jaeger_links += 1;
                }
            }
        }
        if name != "agent-health.json" {
            assert!(jaeger_links >= 3, "{name}: steps link to their traces");
        }
    }
}

/// Values for the dashboard variables and Grafana's built-in intervals.
fn substitute(expr: &str) -> String {
    expr.replace("$executable", ".*")
        .replace("$__rate_interval", "15s")
        .replace("$__interval", "5s")
        .replace("$__range", "10m")
}

/// Label names the dashboards use; every other `pipetrace_*` / `process_*` word is a metric.
const LABELS: [&str; 2] = ["process_executable_name", "process_pid"];

fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("pipetrace_") || w.starts_with("process_"))
        .filter(|w| !LABELS.contains(w))
        .map(str::to_owned)
        .collect()
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id() % 100_000;
    let python = real_python();
    // A passing run (CPU, a 64 MiB allocation released again) and a failing one (a step killed
    // by SIGKILL, a failing step, exit 3).
    let ok = write_script(
        dir.path(),
        &format!("ptd{id}-ok.sh"),
        &format!(
            "{python} -c 'import time\nwhile time.process_time() < 0.3: sum(range(20000))\nx = bytearray(64 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ndel x\ntime.sleep(0.5)'\n/bin/true\n"
        ),
    );
    let bad = write_script(
        dir.path(),
        &format!("ptd{id}-bad.sh"),
        "/bin/sh -c 'kill -9 $$'\n/bin/false\nexit 3\n",
    );
    let rotel = Rotel::start();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\nsample_interval = \"200ms\"\n[scope]\nmode = \"descendants\"\nroot_names = [\"ptd{id}-ok.sh\", \"ptd{id}-bad.sh\"]\n[output]\nparquet_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\nmetrics = false\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\n",
            dir.path().join("data").display(),
            rotel.grpc_endpoint()
        ),
    )
    .unwrap();
    let mut daemon = config_daemon(&config);
    let metrics_port = daemon.metrics_port();
    // The compose file's Prometheus configuration, pointed at this agent and scraping faster.
    let yaml = std::fs::read_to_string(compose_dir().join("prometheus/prometheus.yml")).unwrap();
    let local = yaml
        .replace("agent:9464", &format!("127.0.0.1:{metrics_port}"))
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    assert_ne!(yaml, local);
    let prometheus = Prometheus::with_config(&local);

    for script in [&ok, &bad, &ok] {
        pipetrace_tests::status_of(&mut Command::new(script));
    }
    prometheus.wait_for("sum(pipetrace_runs_total)", |v| v == 3.0);

    let stored: BTreeSet<String> = prometheus.metric_names().into_iter().collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, d) in dashboards() {
        let mut queries: Vec<(String, String)> = Vec::new();
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["definition"].as_str()
                && let Some(inner) = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.strip_suffix(')'))
            {
                // label_values(metric, label): the metric's series carry the label.
                let (metric, label) = inner.split_once(',').unwrap();
                queries.push((
                    format!("variable {}", v["name"]),
                    format!("count by ({}) ({})", label.trim(), metric.trim()),
                ));
            }
        }
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    queries.push((p["title"].as_str().unwrap().to_owned(), expr.to_owned()));
                }
            }
        }
        for (panel, expr) in queries {
            checked += 1;
            for metric in metric_names(&expr) {
                if !stored.contains(&metric) {
                    failures.push(format!(
                        "{name} / {panel}: metric {metric} is not emitted by the agent"
                    ));
                }
            }
            let promql = substitute(&expr);
            // A rate needs two scrapes after the change: an empty answer is asked again
            // until the deadline.
            let result = loop {
                let r = prometheus.query_checked(&promql);
                if matches!(&r, Ok(rows) if rows.is_empty()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                break r;
            };
            match result {
                Err(e) => failures.push(format!("{name} / {panel}: {promql}: {e}")),
                Ok(rows) if rows.is_empty() => {
                    failures.push(format!("{name} / {panel}: {promql}: no data"))
                }
                Ok(_) => {}
            }
        }
    }
    assert!(checked >= 30, "{checked} queries");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The data is the pipeline's: two ok runs, one failed; a SIGKILL; memory steps both ways.
    let value = |q: &str| {
        prometheus
            .query(q)
            .first()
            .map(|(_, v)| *v)
            .unwrap_or(f64::NAN)
    };
    assert_eq!(value(r#"sum(pipetrace_runs_total{status="ok"})"#), 2.0);
    assert_eq!(value(r#"sum(pipetrace_runs_total{status="failed"})"#), 1.0);
    assert_eq!(
        value(r#"sum(pipetrace_process_signals_total{signal="SIGKILL"})"#),
        1.0
    );
    let by_direction: BTreeMap<String, f64> = prometheus
        .query("sum by (direction) (pipetrace_memory_events_total)")
        .into_iter()
        .map(|(l, v)| (l["direction"].as_str().unwrap().to_owned(), v))
        .collect();
    assert!(
        by_direction["alloc"] >= 2.0 && by_direction["release"] >= 2.0,
        "{by_direction:?}"
    );
    // Two ok runs (script, python, true) and a failed one (script, sh, false).
    assert_eq!(value("sum(pipetrace_spans_exported_total)"), 9.0);

    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}
