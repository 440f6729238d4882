//! Configuration: built-in defaults < `--config FILE` (TOML) < `PIPETRACE_*` environment <
//! command-line flags. Unknown keys, wrong types and impossible values are rejected with one
//! line that names the source, the key and what is allowed.

pub mod otel_env;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use exporter_common::{ARGV_MAX, COMM_LEN};

/// Where the running kernel describes its types.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub capture: CaptureSection,
    pub scope: ScopeSection,
    pub run: RunSection,
    pub output: OutputSection,
    pub tracker: TrackerSection,
    pub otlp: OtlpSection,
    pub metrics: MetricsSection,
    pub redact: RedactSection,
}

/// Secrets in command lines, masked before any output (see `redact.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactSection {
    /// Mask the built-in forms (`--password=…`, `--token …`, `*_SECRET=…`, `Authorization:
    /// Bearer …`, AWS access key ids, passwords in URLs) and the ones below.
    pub enabled: bool,
    /// More flags whose value (`--flag value` or `--flag=value`) is secret.
    pub flags: Vec<String>,
    /// More regular expressions: the `secret` group, or the whole match, is masked.
    pub patterns: Vec<String>,
}

impl Default for RedactSection {
    fn default() -> Self {
        Self {
            enabled: true,
            flags: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "key `redact.patterns`: pattern {index} ({pattern:?}) is not a valid regular expression: {reason}"
)]
pub struct PatternError {
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

/// The user's redaction patterns, compiled: the check at load time and the redactor share it.
pub fn compile_patterns(patterns: &[String]) -> Result<Vec<regex::Regex>, PatternError> {
    patterns
        .iter()
        .enumerate()
        .map(|(index, p)| {
            regex::Regex::new(p).map_err(|e| PatternError {
                index,
                pattern: p.clone(),
                reason: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address of the Prometheus scrape endpoint (`GET /metrics`), e.g. "127.0.0.1:9464";
    /// empty = off.
    pub prometheus_listen: String,
    /// CPU and memory series per live process (label `process.pid`) instead of per
    /// executable. Off by default: one series per pid is unbounded over time.
    pub per_process: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSection {
    /// How long an ended process is remembered, for children and events that arrive late.
    #[serde(with = "humantime_serde")]
    pub retain_ended: Duration,
    /// At most this many ended processes are remembered.
    pub max_ended: usize,
    /// How often live processes are checked against /proc for lost exit records (0 = never).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for TrackerSection {
    fn default() -> Self {
        Self {
            retain_ended: Duration::from_secs(10),
            max_ended: 16_384,
            sweep_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM CA certificate(s) to trust instead of the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSection {
    /// Receiver URL; empty = no export. For http/protobuf, `/v1/traces` is appended unless
    /// the URL already ends with it.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Extra request headers (gRPC metadata), e.g. an API key.
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub service_name: String,
    /// Added to the resource of every span.
    pub resource_attributes: BTreeMap<String, String>,
    /// Spans waiting for export; beyond it spans are dropped and counted.
    pub max_queue_spans: usize,
    /// Spans per export request.
    pub max_batch_spans: usize,
    /// Longest wait before a partial batch is sent.
    #[serde(with = "humantime_serde")]
    pub batch_delay: Duration,
    /// How long the agent waits at exit for the last spans to be sent.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Also export metrics (per executable, and the agent's own) to the same receiver.
    pub metrics: bool,
    /// How often metrics are exported.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    pub tls: TlsSection,
}

impl Default for OtlpSection {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: OtlpProtocol::Grpc,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            service_name: "otel-pipetrace".into(),
            resource_attributes: BTreeMap::new(),
            max_queue_spans: 8192,
            max_batch_spans: 512,
            batch_delay: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(5),
            metrics: true,
            metrics_interval: Duration::from_secs(10),
            tls: TlsSection::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    pub fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

impl OtlpSection {
    pub fn enabled(&self) -> bool {
        !self.endpoint.trim().is_empty()
    }

    /// The URL spans are sent to.
    pub fn traces_url(&self) -> String {
        self.signal_url(Signal::Traces)
    }

    /// The URL a signal is sent to: the endpoint as is for gRPC; for HTTP the base URL with
    /// the signal's path (a configured `/v1/traces` or `/v1/metrics` suffix is replaced).
    pub fn signal_url(&self, signal: Signal) -> String {
        let base = self.endpoint.trim();
        match self.protocol {
            OtlpProtocol::Grpc => base.to_owned(),
            OtlpProtocol::HttpProtobuf => {
                let base = base
                    .strip_suffix(Signal::Traces.path())
                    .or_else(|| base.strip_suffix(Signal::Metrics.path()))
                    .unwrap_or(base);
                format!("{}{}", base.trim_end_matches('/'), signal.path())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Bytes of argv captured per exec; longer command lines are truncated and flagged.
    pub argv_max_bytes: usize,
    /// Ring buffer size in bytes (power of two, at least one page).
    pub ring_buffer_bytes: usize,
    /// Processes tracked in the kernel at once.
    pub max_processes: u32,
    /// Events buffered between the ring reader and the tracker.
    pub queue_capacity: usize,
    /// Kernel BTF used to resolve struct offsets.
    pub btf_path: PathBuf,
    /// Send memory events (allocation / release steps from `kmem/rss_stat`).
    pub memory_events: bool,
    /// A memory event is sent when a process's RSS moved by at least this many bytes...
    pub memory_step_bytes: u64,
    /// ...and by at least this percentage of the RSS last reported.
    pub memory_step_percent: u32,
    /// Count bytes sent and received per process (`sock:sock_send_length` and
    /// `sock_recv_length`, which run on every send and receive of the host).
    pub network_bytes: bool,
    /// Count TCP connections per process and list their peers (`sock:inet_sock_set_state`).
    pub network_connections: bool,
    /// Distinct peers listed per process; connections to further peers are only counted.
    pub network_peers: u32,
    /// Walk exec paths with the kernel's `bpf_loop` where it has one (5.17+): a quarter of the
    /// exec program's verification time at start-up. `false` loads the unrolled walk.
    pub bpf_loop: bool,
    /// How often live traced processes are sampled (CPU so far, RSS now); 0 = never.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeMode {
    /// Every process on the host.
    All,
    /// Processes of one cgroup v2 subtree.
    Cgroup,
    /// Descendants of processes whose executable name is in `root_names`.
    Descendants,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeSection {
    /// What the daemon traces; `run` always traces its command's tree.
    pub mode: ScopeMode,
    /// cgroup v2 directory for `mode = "cgroup"`.
    pub cgroup: Option<PathBuf>,
    /// Executable names (the kernel's 15-character comm) that start a traced tree.
    pub root_names: Vec<String>,
    /// Executable names whose own events are skipped; their children stay in the tree,
    /// attached to the nearest visible ancestor.
    pub hide: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// How long `run` waits for the command's remaining descendants after it exits.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Append the run's Markdown report to the file named by `$GITHUB_STEP_SUMMARY` (the job
    /// summary of GitHub Actions) when that variable is set.
    pub job_summary: bool,
    /// Exit with [`LOSS_EXIT_STATUS`] when the command succeeded but the record is incomplete:
    /// an event, an exit, a span, a row or an upload lost.
    pub fail_on_loss: bool,
}

/// `run`'s status when the command succeeded and `run.fail_on_loss` found something lost
/// (EX_TEMPFAIL: the record is incomplete, the run may be repeated).
pub const LOSS_EXIT_STATUS: i32 = 75;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Write one JSON object per event to this file ("-" = stdout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonl: Option<String>,
    /// Write the `events` and `processes` Parquet datasets (what `query` reads).
    pub parquet: bool,
    /// Where the Parquet datasets live (`events/`, `processes/` below it).
    pub parquet_dir: PathBuf,
    /// Rows buffered before a Parquet file is written.
    pub flush_rows: usize,
    /// Bytes of rows (estimated) buffered before a Parquet file is written: bounds the
    /// agent's memory when processes with long command lines come fast.
    pub flush_bytes: usize,
    /// Longest time a row waits before it is written (what a SIGKILL can lose).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Bytes of output (encoded Parquet files, JSONL lines) kept in memory per file output
    /// while its disk refuses writes; beyond it the oldest are dropped, and counted.
    pub unwritten_bytes: usize,
    /// How long the agent, when it stops, waits for a file output's last writes; what the disk
    /// has not taken by then is counted as lost.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// The `host` column of every Parquet row (default: this machine's host name): what tells
    /// hosts apart when their data is read together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Upload every completed Parquet file to S3-compatible object storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSection>,
}

/// `[output.object_store]`: where the Parquet data of every host meets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreSection {
    /// `s3://bucket/prefix`: objects go to `prefix/DATASET/host=H/date=YYYY-MM-DD/`.
    pub url: String,
    /// An S3-compatible server's URL (`http://127.0.0.1:8333`); empty: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: String,
    /// Empty: `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1.
    pub region: String,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key` (most self-hosted
    /// servers want this). An IP-address or `localhost` endpoint is always path-style.
    pub path_style: bool,
    /// The profile read from the shared credentials file when `AWS_ACCESS_KEY_ID` is not set;
    /// empty: `AWS_PROFILE`, else `default`.
    pub profile: String,
    /// Empty: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
    pub credentials_file: String,
    /// Local files are merged into one object per dataset, host and day at most this often (and
    /// at the end of every `run`): few objects, not one per flush.
    #[serde(with = "humantime_serde")]
    pub roll_interval: Duration,
    /// How long local files stay after their upload is confirmed (`query` reads them); 0s:
    /// deleted at once.
    #[serde(with = "humantime_serde")]
    pub local_retention: Duration,
    /// Most bytes waiting for upload; beyond it the oldest waiting objects are dropped (and
    /// counted).
    pub max_spool_bytes: u64,
    /// Objects at least this large go up in parts (at least 5 MiB, S3's smallest part).
    pub multipart_bytes: u64,
    /// At the end of a run or a daemon, how long to keep uploading before leaving the rest
    /// for the next start.
    #[serde(with = "humantime_serde")]
    pub finish_timeout: Duration,
}

impl Default for ObjectStoreSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            path_style: false,
            profile: String::new(),
            credentials_file: String::new(),
            roll_interval: Duration::from_secs(3600),
            local_retention: Duration::from_secs(24 * 3600),
            max_spool_bytes: 1 << 30,
            multipart_bytes: 16 << 20,
            finish_timeout: Duration::from_secs(30),
        }
    }
}

/// Smallest S3 part but the last.
pub const MIN_MULTIPART_BYTES: u64 = 5 << 20;

impl OutputSection {
    /// How long the end of a run or a daemon keeps uploading (`object_store.finish_timeout`).
    pub fn upload_deadline(&self) -> Duration {
        self.object_store
            .as_ref()
            .map_or(Duration::ZERO, |s| s.finish_timeout)
    }

    /// The configured host, or this machine's host name.
    pub fn host(&self) -> String {
        self.host
            .clone()
            .or_else(machine_host_name)
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// `s3://bucket/prefix` → (bucket, prefix without slashes at either end).
pub fn store_url_parts(url: &str) -> Result<(String, String), String> {
    let rest = url.trim().strip_prefix("s3://").ok_or_else(|| {
        format!("{url:?} is not an S3 URL; expected s3://BUCKET or s3://BUCKET/PREFIX")
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(format!(
            "{url:?}: {bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, '-' or '.')"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|part| part == "." || part == "..")
        || prefix.contains("//")
        || prefix
            .chars()
            .any(|c| c.is_control() || c == '*' || c == '?')
    {
        return Err(format!(
            "{url:?}: the prefix may not hold empty, '.' or '..' parts, '*', '?' or control characters"
        ));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// This machine's host name (`/proc/sys/kernel/hostname`).
pub fn machine_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Most distinct peers listed per process (each a record and a span event).
pub const MAX_NETWORK_PEERS: u32 = 4096;

/// Where Parquet data goes unless configured: root runs the agent, and this is its state.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/otel-pipetrace";

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            jsonl: None,
            parquet: true,
            parquet_dir: PathBuf::from(DEFAULT_DATA_DIR),
            flush_rows: 100_000,
            flush_bytes: 8 << 20,
            flush_interval: Duration::from_secs(10),
            unwritten_bytes: 64 << 20,
            close_timeout: Duration::from_secs(30),
            host: None,
            object_store: None,
        }
    }
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            argv_max_bytes: exporter_common::ARGV_DEFAULT,
            ring_buffer_bytes: 4 * 1024 * 1024,
            max_processes: 65536,
            queue_capacity: 65536,
            btf_path: PathBuf::from(VMLINUX_BTF),
            memory_events: true,
            memory_step_bytes: 8 * 1024 * 1024,
            memory_step_percent: 10,
            network_bytes: true,
            network_connections: true,
            network_peers: 64,
            bpf_loop: true,
            sample_interval: Duration::from_secs(1),
        }
    }
}

impl Default for ScopeSection {
    fn default() -> Self {
        Self {
            mode: ScopeMode::All,
            cgroup: None,
            root_names: Vec::new(),
            hide: Vec::new(),
        }
    }
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(5),
            job_summary: true,
            fail_on_loss: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: not found")]
    Missing(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

/// Values from command-line flags; `None` leaves the lower layers in force.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<String>,
    /// `--fail-on-loss` (given: true; absent: the lower layers decide).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_loss: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv_max_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btf_path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_protocol: Option<String>,
}

/// A value given by a command-line flag: errors about it name the flag.
struct FlagValue {
    flag: &'static str,
    value: Serialized<serde_json::Value>,
}

impl FlagValue {
    fn new(flag: &'static str, key: &str, value: serde_json::Value) -> Self {
        Self {
            flag,
            value: Serialized::default(key, value),
        }
    }
}

impl figment::Provider for FlagValue {
    fn metadata(&self) -> figment::Metadata {
        let name = format!("flag {}", self.flag);
        figment::Metadata::named(name.clone()).source(figment::Source::Custom(name))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.value.data()
    }
}

impl Overrides {
    fn into_figment(self) -> Figment {
        let mut f = Figment::new();
        let mut set = |flag, key: &str, value: serde_json::Value| {
            f = std::mem::take(&mut f).merge(FlagValue::new(flag, key, value));
        };
        if let Some(v) = &self.jsonl {
            set("--jsonl", "output.jsonl", serde_json::json!(v));
        }
        if let Some(v) = &self.grace_period {
            set("--grace", "run.grace_period", serde_json::json!(v));
        }
        if self.fail_on_loss {
            set(
                "--fail-on-loss",
                "run.fail_on_loss",
                serde_json::json!(true),
            );
        }
        if let Some(v) = &self.argv_max_bytes {
            set("--argv-max", "capture.argv_max_bytes", serde_json::json!(v));
        }
        if !self.hide.is_empty() {
            set("--hide", "scope.hide", serde_json::json!(self.hide));
        }
        if let Some(v) = &self.btf_path {
            set("--btf", "capture.btf_path", serde_json::json!(v));
        }
        if let Some(v) = &self.parquet_dir {
            set("--parquet", "output.parquet_dir", serde_json::json!(v));
            set("--parquet", "output.parquet", serde_json::json!(true));
        }
        if let Some(v) = &self.metrics_listen {
            set(
                "--metrics-listen",
                "metrics.prometheus_listen",
                serde_json::json!(v),
            );
        }
        if let Some(v) = &self.otlp_endpoint {
            set("--otlp-endpoint", "otlp.endpoint", serde_json::json!(v));
        }
        if let Some(v) = &self.otlp_protocol {
            set("--otlp-protocol", "otlp.protocol", serde_json::json!(v));
        }
        f
    }
}

/// Parser messages can span lines (a caret diagram): keep the first line and the last one,
/// which says what was expected.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

/// Where a bad value came from, as the user wrote it: the file, the variable or the flag.
fn origin(metadata: Option<&figment::Metadata>, key: &str) -> String {
    let Some(m) = metadata else {
        return String::new();
    };
    match &m.source {
        Some(figment::Source::File(path)) => format!("{}: ", path.display()),
        // Flags name themselves (`FlagValue`).
        Some(figment::Source::Custom(name)) => format!("{name}: "),
        Some(_) => String::new(),
        None if m.name.contains("PIPETRACE_") && !key.is_empty() => format!(
            "environment variable PIPETRACE_{}: ",
            key.to_ascii_uppercase().replace('.', "__")
        ),
        None => format!("{}: ", m.name),
    }
}

/// The known key closest to an unknown one, when one is close enough to be a typo.
fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// One line naming where the bad value came from, which key, and what is wrong.
fn describe(err: figment::Error) -> String {
    use figment::error::Kind;
    let mut lines = Vec::new();
    for e in err {
        let path = e.path.join(".");
        let source = origin(e.metadata.as_ref(), &path);
        let message = match &e.kind {
            Kind::UnknownField(field, expected) => {
                // The path ends with the unknown key itself.
                let section = match path.rsplit_once('.') {
                    Some((section, _)) => format!("{section}."),
                    None => String::new(),
                };
                let known: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
                match closest(field, expected) {
                    Some(k) => {
                        format!("unknown key `{section}{field}`: did you mean `{section}{k}`?")
                    }
                    None => format!(
                        "unknown key `{section}{field}`: known keys here are {}",
                        known.join(", ")
                    ),
                }
            }
            kind => {
                let key = if path.is_empty() {
                    String::new()
                } else {
                    format!("key `{path}`: ")
                };
                let text = one_line(&kind.to_string());
                // Whichever key: the parser says when it wanted a duration.
                let hint = if text.contains("expected a duration") {
                    " (a duration looks like 5s, 500ms, 2m or 1h 30m)"
                } else {
                    ""
                };
                format!("{key}{text}{hint}")
            }
        };
        lines.push(format!("{source}{message}"));
    }
    lines.join("; ")
}

/// Running as root, the agent reads only a configuration that no other user can change: it
/// decides what the agent loads into the kernel and where it writes as root. The file must
/// belong to root (or to the user who ran sudo), be writable by its owner only, and sit in a
/// directory where others cannot replace it.
fn check_writers(path: &Path, euid: u32, invoker: Option<u32>) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    if euid != 0 {
        return Ok(());
    }
    let unsafe_file = |why: String| {
        ConfigError::Invalid(format!(
            "config file {}: {why}; running as root, the agent refuses a configuration other users can change",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| unsafe_file(e.to_string()))?;
    if meta.uid() != 0 && Some(meta.uid()) != invoker {
        return Err(unsafe_file(format!(
            "owned by uid {} (chown root {})",
            meta.uid(),
            path.display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_file(format!(
            "writable by {} (mode {:04o}; chmod go-w {})",
            if meta.mode() & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    let dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(dir) = dir
        && let Ok(d) = std::fs::metadata(&dir)
        && d.mode() & 0o002 != 0
        && d.mode() & 0o1000 == 0
    {
        return Err(unsafe_file(format!(
            "its directory {} is writable by everyone without the sticky bit (anyone can replace the file)",
            dir.display()
        )));
    }
    Ok(())
}

impl Config {
    pub fn load(file: Option<&std::path::Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, overrides, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment given as a lookup (tests pass their own).
    pub fn load_with_env(
        file: Option<&std::path::Path>,
        overrides: Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(crate::config::otel_env::layer(&env).map_err(ConfigError::Invalid)?);
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            let invoker = env("SUDO_UID").and_then(|u| u.parse().ok());
            check_writers(path, euid, invoker)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            // Only SECTION__KEY variables are configuration; other PIPETRACE_* variables (build
            // or test switches) are not this layer's business.
            .merge(
                Env::prefixed("PIPETRACE_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            )
            .merge(overrides.into_figment());
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate(|key| origin(figment.find_metadata(key), key))?;
        Ok(config)
    }

    /// The defaults with one TOML document on top, validated (no environment, no flags): what
    /// a configuration file alone means. Never panics, whatever the text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate(|_| String::new())?;
        Ok(config)
    }

    /// Checks what types alone cannot; `origin` names where a key's value came from.
    fn validate(&self, origin: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: String| {
            Err(ConfigError::Invalid(format!(
                "{}key `{key}`: {msg}",
                origin(key)
            )))
        };
        let c = &self.capture;
        if c.argv_max_bytes == 0 || c.argv_max_bytes > ARGV_MAX {
            return bad(
                "capture.argv_max_bytes",
                format!(
                    "{} is out of range, allowed 1..={ARGV_MAX}",
                    c.argv_max_bytes
                ),
            );
        }
        if !c.ring_buffer_bytes.is_power_of_two() || c.ring_buffer_bytes < 4096 {
            return bad(
                "capture.ring_buffer_bytes",
                format!(
                    "{} must be a power of two of at least 4096",
                    c.ring_buffer_bytes
                ),
            );
        }
        if c.max_processes == 0 {
            return bad("capture.max_processes", "must be at least 1".into());
        }
        if c.memory_step_bytes < 4096 {
            return bad(
                "capture.memory_step_bytes",
                "must be at least 4096 (one page)".into(),
            );
        }
        if c.memory_step_percent > 1000 {
            return bad("capture.memory_step_percent", "at most 1000".into());
        }
        if let Some(host) = &self.output.host
            && (host.is_empty()
                || host.len() > 253
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return bad(
                "output.host",
                format!("{host:?} is not a host name: 1 to 253 letters, digits, '.', '-' or '_'"),
            );
        }
        if c.network_peers > MAX_NETWORK_PEERS {
            return bad(
                "capture.network_peers",
                format!(
                    "{} is too many: at most {MAX_NETWORK_PEERS} peers per process",
                    c.network_peers
                ),
            );
        }
        if let Err(e) = compile_patterns(&self.redact.patterns) {
            return Err(ConfigError::Invalid(e.to_string()));
        }
        if let Some(f) = self
            .redact
            .flags
            .iter()
            .find(|f| !f.starts_with('-') || f.len() < 2)
        {
            return bad(
                "redact.flags",
                format!("{f:?}: a flag as typed on the command line, e.g. \"--db-password\""),
            );
        }
        if !c.sample_interval.is_zero() && c.sample_interval < Duration::from_millis(100) {
            return bad(
                "capture.sample_interval",
                format!(
                    "{:?} is too short: at least 100ms, or 0 for no samples",
                    c.sample_interval
                ),
            );
        }
        if c.queue_capacity == 0 {
            return bad("capture.queue_capacity", "must be at least 1".into());
        }
        for (key, names) in [
            ("scope.hide", &self.scope.hide),
            ("scope.root_names", &self.scope.root_names),
        ] {
            if let Some(n) = names.iter().find(|n| n.is_empty() || n.len() >= COMM_LEN) {
                return bad(
                    key,
                    format!("{n:?}: names are matched against the kernel comm, 1 to 15 bytes"),
                );
            }
        }
        if self.scope.mode == ScopeMode::Cgroup && self.scope.cgroup.is_none() {
            return bad(
                "scope.cgroup",
                "required when scope.mode = \"cgroup\"".into(),
            );
        }
        if self.scope.mode == ScopeMode::Descendants && self.scope.root_names.is_empty() {
            return bad(
                "scope.root_names",
                "required (non-empty) when scope.mode = \"descendants\"".into(),
            );
        }
        if self.run.grace_period > Duration::from_secs(24 * 3600) {
            return bad("run.grace_period", "at most 24h".into());
        }
        if self.output.flush_rows == 0 {
            return bad("output.flush_rows", "must be at least 1".into());
        }
        if self.output.flush_bytes < 64 * 1024 {
            return bad(
                "output.flush_bytes",
                format!("at least 65536 (64 KiB), not {}", self.output.flush_bytes),
            );
        }
        if self.output.unwritten_bytes < 64 * 1024 {
            return bad(
                "output.unwritten_bytes",
                format!(
                    "at least 65536 (64 KiB), not {}",
                    self.output.unwritten_bytes
                ),
            );
        }
        if self.output.flush_interval.is_zero() {
            return bad("output.flush_interval", "must be more than 0".into());
        }
        if self.output.close_timeout.is_zero() {
            return bad("output.close_timeout", "must be more than 0".into());
        }
        if let Some(store) = &self.output.object_store {
            let key = |k: &str| format!("output.object_store.{k}");
            if let Err(msg) = store_url_parts(&store.url) {
                return bad(&key("url"), msg);
            }
            let endpoint = store.endpoint.trim();
            let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !endpoint.is_empty() && !is_url {
                return bad(
                    &key("endpoint"),
                    format!("{endpoint:?} is not a URL; expected http://HOST:PORT or https://HOST"),
                );
            }
            if store.roll_interval < Duration::from_secs(1) {
                return bad(&key("roll_interval"), "at least 1s".into());
            }
            if store.multipart_bytes < MIN_MULTIPART_BYTES {
                return bad(
                    &key("multipart_bytes"),
                    format!("at least {MIN_MULTIPART_BYTES} (5 MiB, the smallest S3 part)"),
                );
            }
            if store.max_spool_bytes == 0 {
                return bad(&key("max_spool_bytes"), "must be more than 0".into());
            }
            if !self.output.parquet {
                return bad(
                    &key("url"),
                    "uploads Parquet files: needs output.parquet = true".into(),
                );
            }
        }
        let listen = self.metrics.prometheus_listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(
                "metrics.prometheus_listen",
                format!("{listen:?} is not an address; expected IP:PORT, e.g. 127.0.0.1:9464"),
            );
        }
        if self.tracker.max_ended == 0 {
            return bad("tracker.max_ended", "must be at least 1".into());
        }
        let o = &self.otlp;
        if o.enabled() {
            let url = o.endpoint.trim();
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            let host = url.split_once("://").map_or("", |(_, rest)| rest);
            if !scheme_ok || host.is_empty() || host.starts_with('/') {
                return bad(
                    "otlp.endpoint",
                    format!("{url:?} is not a URL; expected http://HOST:PORT or https://HOST:PORT"),
                );
            }
        }
        for (key, n) in [
            ("otlp.max_queue_spans", o.max_queue_spans),
            ("otlp.max_batch_spans", o.max_batch_spans),
        ] {
            if n == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if o.metrics_interval < Duration::from_millis(100) {
            return bad("otlp.metrics_interval", "must be at least 100ms".into());
        }
        if o.timeout.is_zero() {
            return bad("otlp.timeout", "must be more than 0".into());
        }
        if o.service_name.trim().is_empty() {
            return bad("otlp.service_name", "must not be empty".into());
        }
        for (name, value) in &o.headers {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok || value.bytes().any(|b| b.is_ascii_control()) {
                return bad(
                    "otlp.headers",
                    format!(
                        "{name:?}: header names are letters, digits, '-', '_' or '.', values without control characters"
                    ),
                );
            }
        }
        for (key, path) in [
            ("otlp.tls.ca_file", &o.tls.ca_file),
            ("otlp.tls.cert_file", &o.tls.cert_file),
            ("otlp.tls.key_file", &o.tls.key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return bad(key, format!("{}: not a readable file", path.display()));
            }
        }
        if o.tls.cert_file.is_some() != o.tls.key_file.is_some() {
            return bad(
                "otlp.tls.cert_file",
                "cert_file and key_file go together (mutual TLS)".into(),
            );
        }
        Ok(())
    }

    /// The effective configuration as TOML (loads back with `--config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Like [`Config::to_toml`], with header values (API keys, tokens) masked: for printing.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        for value in shown.otlp.headers.values_mut() {
            *value = "<redacted>".into();
        }
        shown.to_toml()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, Overrides::default()).unwrap();
        assert_eq!(c.capture.argv_max_bytes, 4096);
        assert_eq!(c.run.grace_period, Duration::from_secs(5));
    }

    #[test]
    fn file_then_flags_override() {
        let f = file("[capture]\nargv_max_bytes = 1000\n[run]\ngrace_period = \"2s\"\n");
        let c = Config::load(Some(f.path()), Overrides::default()).unwrap();
        assert_eq!(c.capture.argv_max_bytes, 1000);
        assert_eq!(c.run.grace_period, Duration::from_secs(2));
        let o = Overrides {
            argv_max_bytes: Some(2000),
            grace_period: Some("250ms".into()),
            ..Default::default()
        };
        let c = Config::load(Some(f.path()), o).unwrap();
        assert_eq!(c.capture.argv_max_bytes, 2000);
        assert_eq!(c.run.grace_period, Duration::from_millis(250));
    }

    #[test]
    fn bad_inputs_name_the_key() {
        let cases = [
            ("[capture]\nargv_max = 1\n", "argv_max"),
            (
                "[capture]\nargv_max_bytes = \"big\"\n",
                "capture.argv_max_bytes",
            ),
            ("[capture]\nargv_max_bytes = 0\n", "capture.argv_max_bytes"),
            (
                "[capture]\nring_buffer_bytes = 5000\n",
                "capture.ring_buffer_bytes",
            ),
            (
                "[scope]\nhide = [\"a-very-long-executable-name\"]\n",
                "scope.hide",
            ),
            ("[scope]\nmode = \"cgroup\"\n", "scope.cgroup"),
            ("[scope]\nmode = \"everything\"\n", "scope.mode"),
            ("[run]\ngrace_period = \"soon\"\n", "run.grace_period"),
            ("[nonsense]\n", "nonsense"),
            ("[otlp]\nendpoint = \"localhost:4317\"\n", "otlp.endpoint"),
            ("[otlp]\nprotocol = \"http/json\"\n", "otlp.protocol"),
            ("[otlp]\ntimeout = \"0s\"\n", "otlp.timeout"),
            ("[otlp]\nmax_queue_spans = 0\n", "otlp.max_queue_spans"),
            ("[otlp.headers]\n\"bad header\" = \"x\"\n", "otlp.headers"),
            (
                "[otlp.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
                "otlp.tls.ca_file",
            ),
            ("[otlp.tls]\nbogus = 1\n", "bogus"),
            (
                "[tracker]\nretain_ended = \"forever\"\n",
                "tracker.retain_ended",
            ),
            ("[output]\nflush_bytes = 1000\n", "output.flush_bytes"),
            (
                "[output.object_store]\nurl = \"https://bucket/x\"\n",
                "output.object_store.url",
            ),
            (
                "[output.object_store]\nurl = \"s3://B_ad/x\"\n",
                "output.object_store.url",
            ),
            (
                "[output.object_store]\nurl = \"s3://bucket/../x\"\n",
                "output.object_store.url",
            ),
            (
                "[output.object_store]\nurl = \"s3://bucket\"\nendpoint = \"127.0.0.1:8333\"\n",
                "output.object_store.endpoint",
            ),
            (
                "[output.object_store]\nurl = \"s3://bucket\"\nmultipart_bytes = 1000\n",
                "output.object_store.multipart_bytes",
            ),
            (
                "[output.object_store]\nurl = \"s3://bucket\"\nroll_interval = \"0s\"\n",
                "output.object_store.roll_interval",
            ),
            (
                "[output.object_store]\nurl = \"s3://bucket\"\nregoin = \"x\"\n",
                "regoin",
            ),
            ("this is = = not toml", ""),
        ];
        for (text, key) in cases {
            let f = file(text);
            let err = Config::load(Some(f.path()), Overrides::default())
                .expect_err(text)
                .to_string();
            assert!(err.contains(key), "{text:?} gave {err:?}");
            assert!(!err.contains('\n'), "multi-line error {err:?}");
        }
        let missing = Config::load(
            Some(std::path::Path::new("/nonexistent.toml")),
            Overrides::default(),
        );
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("/nonexistent.toml")
        );
    }

    /// config/pipetrace.toml documents every key with its default: it must load and equal them.
    #[test]
    fn example_config_shows_the_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pipetrace.toml");
        let loaded = Config::load_with_env(Some(&path), Overrides::default(), |_| None).unwrap();
        assert_eq!(loaded, Config::default());
        // Every key (optional ones commented out) is documented there.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut all = Config::default();
        all.scope.cgroup = Some("/x".into());
        all.output.jsonl = Some("x".into());
        all.otlp.tls.ca_file = Some("x".into());
        all.otlp.tls.cert_file = Some("x".into());
        all.otlp.tls.key_file = Some("x".into());
        for line in all.to_toml().lines() {
            if let Some(section) = line.strip_prefix('[') {
                assert!(
                    text.contains(&format!("[{section}")),
                    "section [{section} undocumented"
                );
            } else if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    text.contains(&format!("{key} = ")),
                    "key {key} undocumented"
                );
            }
        }
    }

    #[test]
    fn printed_config_loads_back() {
        let c = Config::load(
            None,
            Overrides {
                hide: vec!["sh".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let f = file(&c.to_toml());
        let again = Config::load(Some(f.path()), Overrides::default()).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn as_root_a_config_others_can_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "").unwrap();
        let chmod = |mode: u32| {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        chmod(0o644);
        // Not root: nothing to protect.
        assert!(check_writers(&file, 1000, None).is_ok());
        // The rest changes owners: root only.
        if pipetrace_tests::privileged() {
            assert!(check_writers(&file, 0, None).is_ok());
            chmod(0o664);
            let e = check_writers(&file, 0, None).unwrap_err().to_string();
            assert!(
                e.contains("writable by its group") && e.contains("0664"),
                "{e}"
            );
            chmod(0o666);
            let e = check_writers(&file, 0, None).unwrap_err().to_string();
            assert!(
                e.contains("writable by everyone") && !e.contains('\n'),
                "{e}"
            );
            chmod(0o644);
            std::os::unix::fs::chown(&file, Some(1234), None).unwrap();
            let e = check_writers(&file, 0, None).unwrap_err().to_string();
            assert!(e.contains("owned by uid 1234"), "{e}");
            // The user who ran sudo may own it.
            assert!(check_writers(&file, 0, Some(1234)).is_ok());
            std::os::unix::fs::chown(&file, Some(0), None).unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            let e = check_writers(&file, 0, None).unwrap_err().to_string();
            assert!(e.contains("without the sticky bit"), "{e}");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
            assert!(check_writers(&file, 0, None).is_ok());
        }
    }

    #[test]
    fn urls_per_signal() {
        let mut c = OtlpSection {
            endpoint: "http://collector:4318/".into(),
            protocol: OtlpProtocol::HttpProtobuf,
            ..Default::default()
        };
        assert_eq!(
            c.signal_url(Signal::Traces),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            c.signal_url(Signal::Metrics),
            "http://collector:4318/v1/metrics"
        );
        c.endpoint = "http://collector:4318/otlp/v1/traces".into();
        assert_eq!(
            c.signal_url(Signal::Metrics),
            "http://collector:4318/otlp/v1/metrics"
        );
        c.protocol = OtlpProtocol::Grpc;
        c.endpoint = "http://collector:4317".into();
        assert_eq!(c.signal_url(Signal::Metrics), "http://collector:4317");
    }
}
