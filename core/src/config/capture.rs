//! `[capture]`: what the kernel programs record and how much of it: argv, the ring buffer,
//! memory steps, network counting, samples.

use std::{path::PathBuf, time::Duration};

use exporter_common::ARGV_MAX;
use serde::{Deserialize, Serialize};

use super::Invalid;

/// Where the running kernel describes its types.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Most distinct peers listed per process (each a record and a span event).
pub const MAX_NETWORK_PEERS: u32 = 4096;

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
    /// Record the files each process reads, writes, creates, renames and deletes
    /// (`syscalls:sys_enter_*`/`sys_exit_*` of the file syscalls): `on` or `off`.
    pub files: Switch,
    /// File operations recorded per process at most (each opened file once per access);
    /// further ones are only counted.
    pub files_max: u32,
    /// Files read listed per process; further reads are summarised per directory (files and
    /// bytes).
    pub files_reads_max: u32,
    /// List failed opens (probes for a missing file) one by one; they are always counted.
    pub file_probes: bool,
    /// A SHA-256 of each file a process wrote, at the process's end (for caches and
    /// provenance); files over `file_hash_max_bytes` are not hashed.
    pub file_hashes: bool,
    pub file_hash_max_bytes: u64,
    /// Path prefixes whose files are not recorded.
    pub files_ignore: Vec<String>,
}

/// `on` or `off` (a boolean is taken too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Switch::On),
            Raw::Bool(false) => Ok(Switch::Off),
            Raw::Text(t) => match t.as_str() {
                "on" | "true" => Ok(Switch::On),
                "off" | "false" => Ok(Switch::Off),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not a switch: use on or off"
                ))),
            },
        }
    }
}

/// Most file operations recorded per process.
pub const MAX_FILES_PER_PROCESS: u32 = 1 << 20;

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
            files: Switch::On,
            files_max: 16_384,
            files_reads_max: 1_024,
            file_probes: false,
            file_hashes: false,
            file_hash_max_bytes: 256 * 1024 * 1024,
            files_ignore: vec!["/proc/".into(), "/sys/".into(), "/dev/".into()],
        }
    }
}

impl CaptureSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.argv_max_bytes == 0 || self.argv_max_bytes > ARGV_MAX {
            return Invalid::key(
                "capture.argv_max_bytes",
                format!(
                    "{} is out of range, allowed 1..={ARGV_MAX}",
                    self.argv_max_bytes
                ),
            );
        }
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 4096 {
            return Invalid::key(
                "capture.ring_buffer_bytes",
                format!(
                    "{} must be a power of two of at least 4096",
                    self.ring_buffer_bytes
                ),
            );
        }
        if self.max_processes == 0 {
            return Invalid::key("capture.max_processes", "must be at least 1".into());
        }
        if self.memory_step_bytes < 4096 {
            return Invalid::key(
                "capture.memory_step_bytes",
                "must be at least 4096 (one page)".into(),
            );
        }
        if self.memory_step_percent > 1000 {
            return Invalid::key("capture.memory_step_percent", "at most 1000".into());
        }
        if self.network_peers > MAX_NETWORK_PEERS {
            return Invalid::key(
                "capture.network_peers",
                format!(
                    "{} is too many: at most {MAX_NETWORK_PEERS} peers per process",
                    self.network_peers
                ),
            );
        }
        if !self.sample_interval.is_zero() && self.sample_interval < Duration::from_millis(100) {
            return Invalid::key(
                "capture.sample_interval",
                format!(
                    "{:?} is too short: at least 100ms, or 0 for no samples",
                    self.sample_interval
                ),
            );
        }
        if self.queue_capacity == 0 {
            return Invalid::key("capture.queue_capacity", "must be at least 1".into());
        }
        if self.files_max == 0 || self.files_max > MAX_FILES_PER_PROCESS {
            return Invalid::key(
                "capture.files_max",
                format!(
                    "{} is out of range, allowed 1..={MAX_FILES_PER_PROCESS}",
                    self.files_max
                ),
            );
        }
        if let Some(bad) = self.files_ignore.iter().find(|p| !p.starts_with('/')) {
            return Invalid::key(
                "capture.files_ignore",
                format!("`{bad}` is not an absolute path prefix (it must start with /)"),
            );
        }
        Ok(())
    }
}
