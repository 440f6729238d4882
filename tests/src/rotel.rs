//! A real OTLP receiver for the tests: rotel (a Rust OpenTelemetry collector from PyPI,
//! installed by `scripts/setup`), listening on gRPC and HTTP, printing every span it receives
//! in its detailed debug log, which this module parses back.

use std::{
    collections::HashMap,
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Where `scripts/setup` installs the test tools.
pub const TOOLS_VENV: &str = "/var/cache/otel-pipetrace/venv";

/// The `rotel-agent` binary: `$PIPETRACE_ROTEL`, else the one in the tools venv.
pub fn rotel_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("PIPETRACE_ROTEL") {
        return PathBuf::from(path);
    }
    let lib = PathBuf::from(TOOLS_VENV).join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dir| {
        dir.flatten()
            .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("rotel-agent not found under {TOOLS_VENV}: run scripts/setup (it installs rotel)")
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// One span as the receiver printed it.
#[derive(Debug, Clone, Default)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    /// Start and end, ns since the Unix epoch.
    pub start_ns: u64,
    pub end_ns: u64,
    pub status_code: String,
    pub status_message: String,
    pub attributes: HashMap<String, String>,
    pub resource: HashMap<String, String>,
    pub events: Vec<String>,
    /// The attributes of each event, in `events` order.
    pub event_attributes: Vec<HashMap<String, String>>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
    pub fn is_error(&self) -> bool {
        self.status_code == "STATUS_CODE_ERROR"
    }
}

/// `Str(x)` → `x`, `Int(3)` → `3`, anything else as printed.
fn value(raw: &str) -> String {
    for tag in ["Str(", "Int(", "Bool(", "Double("] {
        if let Some(inner) = raw.strip_prefix(tag).and_then(|r| r.strip_suffix(')')) {
            return inner.to_owned();
        }
    }
    raw.to_owned()
}

/// Parses rotel's `--debug-log-verbosity detailed` output.
pub fn parse(log: &str) -> Vec<ReceivedSpan> {
    #[derive(PartialEq)]
    enum Section {
        None,
        Resource,
        Span,
        Attributes,
        Events,
    }
    let mut spans: Vec<ReceivedSpan> = Vec::new();
    let mut resource = HashMap::new();
    let mut section = Section::None;
    for line in log.lines() {
        let t = line.trim();
        if t.starts_with("ResourceSpans #") {
            resource = HashMap::new();
            section = Section::None;
        } else if t == "Resource attributes:" {
            section = Section::Resource;
        } else if t.starts_with("ScopeSpans") || t.starts_with("InstrumentationScope") {
            section = Section::None;
        } else if t.starts_with("Span #") {
            spans.push(ReceivedSpan {
                resource: resource.clone(),
                ..Default::default()
            });
            section = Section::Span;
        } else if t == "Attributes:" {
            section = Section::Attributes;
        } else if t == "Events:" || t == "Links:" {
            section = Section::Events;
        } else if let Some(kv) = t.strip_prefix("-> ") {
            let Some((k, v)) = kv.split_once(": ") else {
                continue;
            };
            match section {
                Section::Resource => {
                    resource.insert(k.to_owned(), value(v));
                }
                Section::Attributes => {
                    if let Some(span) = spans.last_mut() {
                        span.attributes.insert(k.to_owned(), value(v));
                    }
                }
                Section::Events if k == "Name" => {
                    if let Some(span) = spans.last_mut() {
                        span.events.push(v.to_owned());
                        span.event_attributes.push(HashMap::new());
                    }
                }
                // An event's attributes (its timestamp and counts too, harmlessly).
                Section::Events => {
                    if let Some(attrs) =
                        spans.last_mut().and_then(|s| s.event_attributes.last_mut())
                    {
                        attrs.insert(k.to_owned(), value(v));
                    }
                }
                _ => {}
            }
        } else if section == Section::Span
            && let Some((k, v)) = t.split_once(':')
            && let Some(span) = spans.last_mut()
        {
            let v = v.trim().to_owned();
            match k.trim() {
                "Trace ID" => span.trace_id = v,
                "Parent ID" => span.parent_id = v,
                "ID" => span.id = v,
                "Name" => span.name = v,
                "Kind" => span.kind = v,
                "Start time" => span.start_ns = v.parse().unwrap_or_default(),
                "End time" => span.end_ns = v.parse().unwrap_or_default(),
                "Status code" => span.status_code = v,
                "Status message" => span.status_message = v,
                _ => {}
            }
        }
    }
    spans
}

/// One data point of a metric as the receiver printed it (sums and gauges: `value`;
/// histograms: `count` and `sum`).
#[derive(Debug, Clone, Default)]
pub struct ReceivedPoint {
    pub metric: String,
    pub attributes: HashMap<String, String>,
    pub value: Option<f64>,
    pub count: Option<f64>,
    pub sum: Option<f64>,
}

/// Parses rotel's detailed metrics log.
pub fn parse_metrics(log: &str) -> Vec<ReceivedPoint> {
    let mut points: Vec<ReceivedPoint> = Vec::new();
    let mut metric = String::new();
    let mut in_point = false;
    for line in log.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("-> Name: ") {
            metric = name.to_owned();
            in_point = false;
        } else if t.starts_with("NumberDataPoints #") || t.starts_with("HistogramDataPoints #") {
            points.push(ReceivedPoint {
                metric: metric.clone(),
                ..Default::default()
            });
            in_point = true;
        } else if t.starts_with("Metric #") || t.starts_with("ResourceMetrics #") {
            in_point = false;
        } else if in_point && let Some(point) = points.last_mut() {
            if let Some(kv) = t.strip_prefix("-> ")
                && let Some((k, v)) = kv.split_once(": ")
            {
                point.attributes.insert(k.to_owned(), value(v));
            } else if let Some(v) = t.strip_prefix("Value: ") {
                point.value = v.trim().parse().ok();
            } else if let Some(v) = t.strip_prefix("Count: ") {
                point.count = v.trim().parse().ok();
            } else if let Some(v) = t.strip_prefix("Sum: ") {
                point.sum = v.trim().parse().ok();
            }
        }
    }
    points
}

pub struct Rotel {
    child: Child,
    pub grpc_port: u16,
    pub http_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rotel {
    /// A receiver that prints the spans it gets.
    pub fn start() -> Self {
        Self::start_logging("traces")
    }

    /// A receiver that prints the metrics it gets (read them with [`Rotel::metrics`]).
    pub fn start_metrics() -> Self {
        Self::start_logging("metrics")
    }

    /// A port taken between choosing and binding it makes rotel exit: then it starts again on
    /// others.
    fn start_logging(signal: &str) -> Self {
        for _ in 0..5 {
            if let Some(rotel) = Self::try_start_on(signal, free_port(), free_port()) {
                return rotel;
            }
        }
        panic!("rotel did not start on any of five port pairs");
    }

    /// A receiver of `signal` ("traces", "metrics") on these ports (to restart one in place).
    pub fn start_on(signal: &str, grpc_port: u16, http_port: u16) -> Self {
        Self::try_start_on(signal, grpc_port, http_port)
            .unwrap_or_else(|| panic!("rotel could not listen on {grpc_port} and {http_port}"))
    }

    fn try_start_on(signal: &str, grpc_port: u16, http_port: u16) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("rotel.log");
        let child = Command::new(rotel_agent())
            .args(["start", "--exporter", "blackhole"])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--debug-log", signal, "--debug-log-verbosity", "detailed"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotel-agent");
        let mut me = Self {
            child,
            grpc_port,
            http_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [grpc_port, http_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if me.child.try_wait().unwrap().is_some() {
                    return None;
                }
                assert!(Instant::now() < deadline, "rotel did not listen on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Listening, but is it rotel? Another process may hold a port: rotel must be alive.
        if me.child.try_wait().unwrap().is_some() {
            return None;
        }
        Some(me)
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn metrics(&self) -> Vec<ReceivedPoint> {
        parse_metrics(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits until the received points satisfy `done` and the log has stopped growing;
    /// returns all points.
    pub fn wait_for_metrics(&self, done: impl Fn(&[ReceivedPoint]) -> bool) -> Vec<ReceivedPoint> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut previous = String::new();
        loop {
            let log = self.log();
            let points = parse_metrics(&log);
            if done(&points) && log == previous {
                return points;
            }
            previous = log;
            assert!(
                Instant::now() < deadline,
                "receiver did not get the expected metrics; it has {} points",
                points.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the receiver (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the receiver printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        parse(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits until the receiver has printed spans satisfying `done` and its log has stopped
    /// growing (it prints a batch span by span); returns all spans.
    pub fn wait_for(&self, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut previous = String::new();
        loop {
            let log = self.log();
            let spans = parse(&log);
            if done(&spans) && log == previous {
                return spans;
            }
            previous = log;
            assert!(
                Instant::now() < deadline,
                "receiver did not get the expected spans; it has {} spans: {:#?}",
                spans.len(),
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_detailed_log() {
        let log = "ResourceSpans #0\nResource attributes:\n     -> service.name: Str(x)\n\
                   ScopeSpans #0\nSpan #0\n    Trace ID       : aa\n    Parent ID      : \n\
                   \x20   ID             : bb\n    Name           : run sh\n\
                   \x20   Kind           : SPAN_KIND_INTERNAL\nStart time: 17\nEnd time: 18\n\
                   \x20   Status code    : STATUS_CODE_ERROR\n    Status message : exit code 2\n\
                   Attributes:\n     -> process.pid: Int(12)\nEvents:\nSpanEvent #0\n\
                   \x20    -> Name: process.exec\n          -> process.pid: Int(1)\n";
        let spans = parse(log);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!((s.trace_id.as_str(), s.id.as_str()), ("aa", "bb"));
        assert_eq!(s.parent_id, "");
        assert_eq!(s.name, "run sh");
        assert_eq!(
            (s.kind.as_str(), s.start_ns, s.end_ns),
            ("SPAN_KIND_INTERNAL", 17, 18)
        );
        assert!(s.is_error());
        assert_eq!(s.attr("process.pid"), Some("12"));
        assert_eq!(s.resource["service.name"], "x");
        assert_eq!(s.events, ["process.exec"]);
    }
}
