//! The collector tier for the tests: a trace store with a query API (Arize Phoenix, PyPI
//! `arize-phoenix`, installed by `scripts/setup`) behind an OTLP gateway (rotel forwarding
//! with its `otlp` exporter), both on loopback.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    prometheus::get,
    rotel::{TOOLS_VENV, free_port, rotel_agent},
};

/// One span as the store returns it.
#[derive(Debug, Clone)]
pub struct StoredSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub attributes: Value,
}

fn stop(child: &mut Child) {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Phoenix {
    child: Child,
    pub http_port: u16,
    _dir: tempfile::TempDir,
}

impl Phoenix {
    /// A fresh store (≈ 20 s to start).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let child = Command::new(PathBuf::from(TOOLS_VENV).join("bin/phoenix"))
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", dir.path())
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", http_port.to_string())
            .env("PHOENIX_GRPC_PORT", free_port().to_string())
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .stdout(std::fs::File::create(dir.path().join("phoenix.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start phoenix (scripts/setup installs arize-phoenix)");
        let mut me = Self {
            child,
            http_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while get(http_port, "/v1/projects/default/spans?limit=1").is_none() {
            assert!(
                me.child.try_wait().unwrap().is_none(),
                "phoenix exited while starting"
            );
            assert!(Instant::now() < deadline, "phoenix did not start in 120 s");
            std::thread::sleep(Duration::from_millis(500));
        }
        me
    }

    pub fn otlp_http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Every span stored, page by page.
    pub fn spans(&self) -> Vec<StoredSpan> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/projects/default/spans?limit=1000&cursor={c}"),
                None => "/v1/projects/default/spans?limit=1000".to_owned(),
            };
            let body = get(self.http_port, &path).expect("phoenix answers");
            let page: Value = serde_json::from_str(&body).expect("phoenix JSON");
            for s in page["data"].as_array().into_iter().flatten() {
                out.push(StoredSpan {
                    trace_id: s["context"]["trace_id"].as_str().unwrap_or("").to_owned(),
                    span_id: s["context"]["span_id"].as_str().unwrap_or("").to_owned(),
                    parent_id: s["parent_id"].as_str().map(str::to_owned),
                    name: s["name"].as_str().unwrap_or("").to_owned(),
                    attributes: s["attributes"].clone(),
                });
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return out,
            }
        }
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// An OTLP gateway: rotel receiving OTLP and forwarding it in batches, with retries, to
/// `downstream` (OTLP/HTTP).
pub struct Gateway {
    child: Option<Child>,
    pub grpc_port: u16,
    pub http_port: u16,
    downstream: String,
}

impl Gateway {
    pub fn start(downstream: &str) -> Self {
        let mut me = Self {
            child: None,
            grpc_port: free_port(),
            http_port: free_port(),
            downstream: downstream.to_owned(),
        };
        me.resume();
        me
    }

    /// Starts it (again) on the same ports.
    pub fn resume(&mut self) {
        let child = Command::new(rotel_agent())
            .arg("start")
            .args([
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{}", self.grpc_port),
            ])
            .args([
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{}", self.http_port),
            ])
            .args(["--exporter", "otlp", "--otlp-exporter-protocol", "http"])
            .args(["--otlp-exporter-endpoint", &self.downstream])
            .args([
                "--batch-timeout",
                "1s",
                "--otlp-exporter-retry-initial-backoff",
                "1s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotel-agent");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [self.grpc_port, self.http_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "the gateway did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Stops it (SIGTERM: it sends what it holds, then exits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}
