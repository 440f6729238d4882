//! A real Prometheus (Debian `prometheus`, installed by scripts/setup) on loopback, and its
//! HTTP API.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::rotel::free_port;

/// A minimal HTTP GET (no client library in the tests): the body. Retried for a few seconds,
/// for servers under load.
pub fn get(port: u16, path: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(body) = get_once(port, path) {
            return Some(body);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of a counter's series on an agent's `/metrics` whose line has every one of
/// `labels` (`sink="parquet"`); the endpoint must answer.
pub fn counter(port: u16, name: &str, labels: &[&str]) -> u64 {
    get(port, "/metrics")
        .expect("the metrics endpoint answers")
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn get_once(port: u16, path: &str) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return dechunk(body);
    }
    Some(body.to_owned())
}

/// A chunked HTTP/1.1 body (large answers come that way): the chunks joined.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub struct Prometheus {
    /// None for a Prometheus this test did not start (one in a container).
    child: Option<Child>,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Prometheus {
    /// Scrapes the agent's endpoint on `target_port` every second.
    pub fn start(target_port: u16) -> Self {
        Self::with_config(&format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pipetrace\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ))
    }

    /// Starts with this configuration (YAML) on a free loopback port and waits until ready.
    /// A port taken between choosing and binding it makes Prometheus exit: then it starts
    /// again on another.
    pub fn with_config(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, yaml).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join(format!("data-{port}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus (Debian package, installed by scripts/setup)");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if get_once(port, "/-/ready").is_some() {
                    return Self {
                        child: Some(child),
                        port,
                        _dir: Some(dir),
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // The port was taken: try another.
                }
                assert!(Instant::now() < deadline, "prometheus not ready");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("prometheus did not start on any of five ports");
    }

    /// A Prometheus already answering on loopback `port` (started elsewhere).
    pub fn at(port: u16) -> Self {
        Self {
            child: None,
            port,
            _dir: None,
        }
    }

    /// Instant query; the (labels, value) pairs of the result vector. A Prometheus that does
    /// not answer, or refuses the query, fails the test: an empty result means no series.
    pub fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        self.query_checked(promql)
            .unwrap_or_else(|e| panic!("prometheus query {promql}: {e}"))
    }

    /// Instant query: the (labels, value) pairs, or why Prometheus refused it.
    pub fn query_checked(&self, promql: &str) -> Result<Vec<(Value, f64)>, String> {
        let body = get(
            self.port,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .ok_or_else(|| "no answer".to_owned())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let value = r["value"][1]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(f64::NAN);
                        (r["metric"].clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Every metric name Prometheus has stored.
    pub fn metric_names(&self) -> Vec<String> {
        let body = get(self.port, "/api/v1/label/__name__/values")
            .expect("prometheus answers its label API");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["status"], "success", "{body}");
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `promql` returns a value satisfying `ok`.
    pub fn wait_for(&self, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, v)) = self.query(promql).into_iter().find(|(_, v)| ok(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: no acceptable value in 30 s; last result {:?}",
                self.query(promql)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
