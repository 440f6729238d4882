//! `[output]`: the file outputs (JSONL, Parquet) and `[output.object_store]`, where every
//! host's Parquet data meets.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::Invalid;

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

impl OutputSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if let Some(host) = &self.host
            && (host.is_empty()
                || host.len() > 253
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Invalid::key(
                "output.host",
                format!("{host:?} is not a host name: 1 to 253 letters, digits, '.', '-' or '_'"),
            );
        }
        if self.flush_rows == 0 {
            return Invalid::key("output.flush_rows", "must be at least 1".into());
        }
        if self.flush_bytes < 64 * 1024 {
            return Invalid::key(
                "output.flush_bytes",
                format!("at least 65536 (64 KiB), not {}", self.flush_bytes),
            );
        }
        if self.unwritten_bytes < 64 * 1024 {
            return Invalid::key(
                "output.unwritten_bytes",
                format!("at least 65536 (64 KiB), not {}", self.unwritten_bytes),
            );
        }
        if self.flush_interval.is_zero() {
            return Invalid::key("output.flush_interval", "must be more than 0".into());
        }
        if self.close_timeout.is_zero() {
            return Invalid::key("output.close_timeout", "must be more than 0".into());
        }
        if let Some(store) = &self.object_store {
            store.validate()?;
            if !self.parquet {
                return Invalid::key(
                    "output.object_store.url",
                    "uploads Parquet files: needs output.parquet = true".into(),
                );
            }
        }
        Ok(())
    }
}

impl ObjectStoreSection {
    fn validate(&self) -> Result<(), Invalid> {
        let key = |k: &str| format!("output.object_store.{k}");
        if let Err(msg) = store_url_parts(&self.url) {
            return Invalid::key(&key("url"), msg);
        }
        let endpoint = self.endpoint.trim();
        let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !is_url {
            return Invalid::key(
                &key("endpoint"),
                format!("{endpoint:?} is not a URL; expected http://HOST:PORT or https://HOST"),
            );
        }
        if self.roll_interval < Duration::from_secs(1) {
            return Invalid::key(&key("roll_interval"), "at least 1s".into());
        }
        if self.multipart_bytes < MIN_MULTIPART_BYTES {
            return Invalid::key(
                &key("multipart_bytes"),
                format!("at least {MIN_MULTIPART_BYTES} (5 MiB, the smallest S3 part)"),
            );
        }
        if self.max_spool_bytes == 0 {
            return Invalid::key(&key("max_spool_bytes"), "must be more than 0".into());
        }
        Ok(())
    }
}
