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
    pipetrace_tests::workspace()
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
    // The override that runs the stack where images cannot be pulled merges cleanly.
    assert_ok(
        &run(Command::new("docker-compose")
            .current_dir(compose_dir())
            .args([
                "-f",
                "docker-compose.yml",
                "-f",
                "local/docker-compose.local.yml",
            ])
            .args(["config", "-q"])),
        "docker-compose config with local/docker-compose.local.yml",
    );
    // The validator is not a rubber stamp: a wrong type is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&broken, text.replace("pid: host", "pid: [\"host\"]")).unwrap();
    assert!(!check_compose_schema(&broken).status.success());

    let compose = yaml(&file);
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["agent", "collector", "grafana", "jaeger", "prometheus"])
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
    // Least privilege: named capabilities, never `privileged` (refused where the host's
    // bounding set lacks one capability).
    assert!(agent.get("privileged").is_none());
    assert_eq!(
        agent["cap_add"],
        serde_json::json!(["SYS_ADMIN", "SYS_PTRACE"])
    );
    assert_eq!(agent["pid"], "host");
    let dockerfile = repo()
        .join("deploy/docker-compose")
        .join(agent["build"]["context"].as_str().unwrap())
        .join(agent["build"]["dockerfile"].as_str().unwrap());
    let dockerfile = std::fs::read_to_string(&dockerfile).unwrap();
    // The files the image copies from the build context exist.
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        // Another stage's files, the whole context, or a build argument's (the archive).
        if words[1].starts_with("--from") || words[1] == "." || words[1].starts_with('$') {
            continue;
        }
        assert!(repo().join(words[1]).exists(), "Dockerfile: {line}");
    }
    // The optional collector's pipeline uses only components its configuration defines, and
    // forwards to the jaeger service.
    assert_eq!(
        services["collector"]["profiles"],
        serde_json::json!(["collector"])
    );
    let collector = yaml(&compose_dir().join("collector/config.yaml"));
    for (kind, section) in [
        ("receivers", "receivers"),
        ("processors", "processors"),
        ("exporters", "exporters"),
    ] {
        for name in collector["service"]["pipelines"]["traces"][kind]
            .as_array()
            .unwrap()
        {
            let name = name.as_str().unwrap();
            assert!(
                collector[section].get(name).is_some(),
                "collector: {kind} {name} is not defined"
            );
        }
    }
    assert_eq!(
        collector["exporters"]["otlp/jaeger"]["endpoint"],
        "jaeger:4317"
    );
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

/// Values for the dashboard variables and Grafana's built-in intervals, for a Prometheus
/// scraping every `scrape_s` seconds (Grafana's `$__rate_interval` is at least four scrapes).
fn substitute(expr: &str, scrape_s: u64) -> String {
    expr.replace("$executable", ".*")
        .replace("$__rate_interval", &format!("{}s", 4 * scrape_s.max(1)))
        .replace("$__interval", &format!("{}s", scrape_s.max(1)))
        .replace("$__range", "10m")
}

/// Label names the dashboards use; every other `pipetrace_*` / `process_*` word is a metric.
const LABELS: [&str; 5] = [
    "process_executable_name",
    "process_pid",
    "process_paging_fault_type",
    "process_context_switch_type",
    "pipetrace_finding_kind",
];

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

/// A passing run (CPU, a 64 MiB allocation released again, 1 MiB over a loopback TCP
/// connection to itself) and a failing one (a spinning loop stopped by `timeout`, a step
/// killed by SIGKILL, a failing step, exit 3): between them, data for every dashboard panel. Named
/// `{prefix}-ok.sh` and `{prefix}-bad.sh`.
fn dashboard_pipelines(dir: &Path, prefix: &str) -> (PathBuf, PathBuf) {
    let python = real_python();
    let ok = write_script(
        dir,
        &format!("{prefix}-ok.sh"),
        &format!(
            "{python} -c 'import time\nwhile time.process_time() < 0.3: sum(range(20000))\nx = bytearray(64 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ndel x\ntime.sleep(0.5)'\n{python} -c 'import socket\nl = socket.create_server((\"127.0.0.1\", 0))\nc = socket.create_connection(l.getsockname())\na = l.accept()[0]\nc.sendall(bytes(1 << 20))\nc.close()\nwhile a.recv(65536): pass'\n/bin/true\n"
        ),
    );
    let bad = write_script(
        dir,
        &format!("{prefix}-bad.sh"),
        "timeout 5 /bin/sh -c 'while :; do :; done'\n/bin/sh -c 'kill -9 $$'\n/bin/false\nexit 3\n",
    );
    (ok, bad)
}

/// Runs every query of every dashboard (panel targets and `label_values` variables) against
/// `prometheus`, asking again for up to `patience` while a query returns nothing (a rate needs
/// two scrapes after the change): how many ran, and what failed.
fn dashboard_query_failures(
    prometheus: &Prometheus,
    scrape_s: u64,
    patience: Duration,
) -> (usize, Vec<String>) {
    let stored: BTreeSet<String> = prometheus.metric_names().into_iter().collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    let deadline = Instant::now() + patience;
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
            let promql = substitute(&expr, scrape_s);
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
    (checked, failures)
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id() % 100_000;
    let (ok, bad) = dashboard_pipelines(dir.path(), &format!("ptd{id}"));
    let rotel = Rotel::start();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\nsample_interval = \"200ms\"\n[diagnosis]\nrunaway_after = \"2s\"\nrunaway_cpu_percent = 50\n[scope]\nmode = \"descendants\"\nroot_names = [\"ptd{id}-ok.sh\", \"ptd{id}-bad.sh\"]\n[output]\nparquet_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\nmetrics = false\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\n",
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

    let (checked, failures) = dashboard_query_failures(&prometheus, 1, Duration::from_secs(60));
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
    // The spinning loop is the runs' one finding (the ok run's Python computes for 0.3 s: far
    // from a core for 2 s).
    assert_eq!(
        value(r#"sum(pipetrace_findings_total{pipetrace_finding_kind="runaway"})"#),
        1.0
    );
    // Two ok runs (script, python, python over loopback, true) and a failed one (script,
    // timeout, its spinning sh, sh, false).
    // (The last run's spans leave in the export's next batch: waited for.)
    prometheus.wait_for("sum(pipetrace_spans_exported_total)", |v| v == 13.0);

    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}

/// A file removed when the test ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The host's network as a test could change it: firewall rules and interfaces.
fn host_network() -> (String, BTreeSet<String>) {
    let rules = Command::new("iptables-save")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with(':'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let links = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    (rules, links)
}

/// The host's own additional CA certificates (a TLS-intercepting proxy's), for the image
/// builds to reach the package registries the way the host does; empty on most machines.
fn extra_ca_certs() -> String {
    let mut pem = String::new();
    for e in std::fs::read_dir("/usr/local/share/ca-certificates")
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "crt") {
            pem += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    pem
}

#[test]
fn the_compose_stack_comes_up_traces_the_host_and_keeps_its_parquet() {
    let _cores = pipetrace_tests::loads_every_core();
    use pipetrace_tests::{
        docker::{DATA_ROOT, Engine, mounts_under},
        require, rotel, wait_until,
    };
    require_root!();
    require!(
        Path::new("/usr/sbin/dockerd").exists()
            && Path::new("/usr/bin/docker-compose").exists()
            && Path::new("/usr/sbin/debootstrap").exists(),
        "a Docker engine, docker-compose and debootstrap (docker.io, docker-compose and debootstrap: scripts/setup installs them)"
    );
    let network_before = host_network();
    let cgroups_before = pipetrace_tests::docker::docker_cgroups();
    let id = std::process::id() % 100_000;
    // The agent image from the release archive the suite builds (how release images are
    // made): nothing compiles in the image. scripts/check-image builds it from source.
    let (archive, _) = pipetrace_tests::release_artifacts();
    let in_context = format!("dist/compose-test-{id}.tar.gz");
    std::fs::create_dir_all(repo().join("dist")).unwrap();
    std::fs::copy(archive, repo().join(&in_context)).unwrap();
    let _archive_copy = RemoveOnDrop(repo().join(&in_context));
    let engine = Engine::start();
    let project = format!("ptc{id}");
    let compose = |args: &[&str]| {
        let mut cmd = engine.command("docker-compose");
        cmd.current_dir(compose_dir())
            .env("PIPETRACE_IMAGE", "from-archive")
            .env("PIPETRACE_ARCHIVE", &in_context)
            .env("EXTRA_CA_CERTS", extra_ca_certs())
            .args(["-p", &project, "-f", "docker-compose.yml"])
            .args(["-f", "local/docker-compose.local.yml"])
            .args(args);
        cmd
    };
    let compose_ok = |args: &[&str]| {
        let out = compose(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };

    // Base images made here (nothing can be pulled), then the stack built and started.
    if !engine
        .docker()
        .args(["image", "inspect", "debian:12"])
        .output()
        .unwrap()
        .status
        .success()
    {
        let out = engine
            .command(compose_dir().join("local/debian-base-images"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "debian-base-images: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stack = Stack {
        down: compose(&["down", "--volumes", "--timeout", "20"]),
    };
    compose_ok(&["up", "-d", "--build"]);

    // Every service with a health check passes it: the agent's own (its /metrics answering),
    // the stand-ins' (Prometheus' /-/ready, the receiver's port).
    let container = |service: &str| compose_ok(&["ps", "-q", service]);
    for service in ["agent", "jaeger", "prometheus"] {
        let id = container(service);
        assert!(!id.is_empty(), "{service} has no container");
        let mut health = String::new();
        wait_until(
            &format!("{service} healthy"),
            Duration::from_secs(180),
            || {
                health = engine.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &id]);
                assert_ne!(
                    health,
                    "unhealthy",
                    "{service}: {}",
                    engine.docker_ok(&["logs", "--tail", "30", &id])
                );
                health == "healthy"
            },
        );
    }
    assert_eq!(
        compose_ok(&["ps", "-q"]).lines().count(),
        3,
        "grafana has no stand-in and does not start"
    );

    // Pipelines run on the host, traced by the agent in its container.
    let dir = tempfile::tempdir().unwrap();
    // Names of their own: the host Prometheus test may run its pipelines at the same time,
    // and this agent traces every process on the host.
    let (ok, bad) = dashboard_pipelines(dir.path(), &project);
    for script in [&ok, &bad, &ok] {
        pipetrace_tests::status_of(&mut Command::new(script));
    }

    // The receiver got each run's whole process tree: the failing run's script and its three
    // children (`exit 3` is the shell's own), the failed script marked as an error.
    let receiver = container("jaeger");
    let bad_name = bad.file_name().unwrap().to_string_lossy().into_owned();
    let mut tree = Vec::new();
    wait_until("the failing run's spans", Duration::from_secs(60), || {
        let log = engine.docker_ok(&["logs", &receiver]);
        let spans = rotel::parse(&log);
        let Some(root) = spans.iter().find(|s| {
            s.attr("process.command_line")
                .is_some_and(|c| c.ends_with(&bad_name))
        }) else {
            return false;
        };
        tree = spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id)
            .cloned()
            .collect();
        tree.iter().filter(|s| s.parent_id == root.id).count() >= 3
    });
    let root = tree
        .iter()
        .find(|s| {
            s.attr("process.command_line")
                .is_some_and(|c| c.ends_with(&bad_name))
        })
        .unwrap();
    let children: BTreeSet<&str> = tree
        .iter()
        .filter(|s| s.parent_id == root.id)
        .filter_map(|s| s.attr("process.command_line"))
        .collect();
    assert_eq!(
        children,
        BTreeSet::from([
            "timeout 5 /bin/sh -c 'while :; do :; done'",
            "/bin/sh -c 'kill -9 $$'",
            "/bin/false"
        ]),
        "{tree:#?}"
    );
    assert!(root.is_error());
    assert_eq!(root.attr("process.exit.code"), Some("3"));

    // Prometheus, in its container with the deployment's configuration, scraped the agent,
    // and every dashboard query has data (two scrapes at the deployment's 15 s interval).
    let prometheus = Prometheus::at(9090);
    prometheus.wait_for(r#"up{job="otel-pipetrace"}"#, |v| v == 1.0);
    prometheus.wait_for(
        r#"sum(pipetrace_process_signals_total{signal="SIGKILL"})"#,
        |v| v >= 1.0,
    );
    let (checked, failures) = dashboard_query_failures(&prometheus, 15, Duration::from_secs(120));
    assert!(checked >= 30, "{checked} queries");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // `down` stops the agent, which writes what it holds: the named volume has the runs in
    // complete Parquet files, which `otel-pipetrace query` and DuckDB read.
    compose_ok(&["down", "--timeout", "20"]);
    let volume = engine.docker_ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        &format!("{project}_pipetrace-data"),
    ]);
    let rows = pipetrace_tests::query_json(Path::new(&volume), &["processes", "--run", "all"]);
    let runs_of = |name: &str| {
        rows.iter()
            .filter(|r| r["command"].as_str().is_some_and(|c| c.ends_with(name)))
            .count()
    };
    let ok_name = ok.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(runs_of(&ok_name), 2);
    assert_eq!(runs_of(&bad_name), 1);
    let duckdb = run(Command::new(format!("{TOOLS_VENV}/bin/duckdb"))
        .args(["-csv", "-noheader", ":memory:"])
        .arg(format!(
            "SELECT count(*) FROM read_parquet('{volume}/processes/**/*.parquet') WHERE command_line LIKE '%{bad_name}'"
        )));
    assert_ok(&duckdb, "duckdb reading the volume");
    assert_eq!(String::from_utf8_lossy(&duckdb.stdout).trim(), "1");

    // Nothing left behind: containers, networks and volumes gone, the engine stopped, no
    // mounts, the host's firewall rules and interfaces as they were.
    drop(stack);
    let exec_root = engine.exec_root();
    drop(engine);
    assert!(mounts_under(&exec_root).is_empty());
    assert!(mounts_under(Path::new(DATA_ROOT)).is_empty());
    assert_eq!(host_network(), network_before);
    assert_eq!(pipetrace_tests::docker::docker_cgroups(), cgroups_before);
}

/// Takes the stack down (volumes too) when the test ends, failed assertions included.
struct Stack {
    down: Command,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.down.output();
    }
}
