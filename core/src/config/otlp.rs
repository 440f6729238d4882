//! `[otlp]`: where spans and metrics go, how, and with which resource; the URL of each signal.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::Invalid;

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

impl OtlpSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.enabled() {
            let url = self.endpoint.trim();
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            let host = url.split_once("://").map_or("", |(_, rest)| rest);
            if !scheme_ok || host.is_empty() || host.starts_with('/') {
                return Invalid::key(
                    "otlp.endpoint",
                    format!("{url:?} is not a URL; expected http://HOST:PORT or https://HOST:PORT"),
                );
            }
        }
        for (key, n) in [
            ("otlp.max_queue_spans", self.max_queue_spans),
            ("otlp.max_batch_spans", self.max_batch_spans),
        ] {
            if n == 0 {
                return Invalid::key(key, "must be at least 1".into());
            }
        }
        if self.metrics_interval < Duration::from_millis(100) {
            return Invalid::key("otlp.metrics_interval", "must be at least 100ms".into());
        }
        if self.timeout.is_zero() {
            return Invalid::key("otlp.timeout", "must be more than 0".into());
        }
        if self.service_name.trim().is_empty() {
            return Invalid::key("otlp.service_name", "must not be empty".into());
        }
        for (name, value) in &self.headers {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok || value.bytes().any(|b| b.is_ascii_control()) {
                return Invalid::key(
                    "otlp.headers",
                    format!(
                        "{name:?}: header names are letters, digits, '-', '_' or '.', values without control characters"
                    ),
                );
            }
        }
        let tls = &self.tls;
        for (key, path) in [
            ("otlp.tls.ca_file", &tls.ca_file),
            ("otlp.tls.cert_file", &tls.cert_file),
            ("otlp.tls.key_file", &tls.key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Invalid::key(key, format!("{}: not a readable file", path.display()));
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Invalid::key(
                "otlp.tls.cert_file",
                "cert_file and key_file go together (mutual TLS)".into(),
            );
        }
        Ok(())
    }
}
