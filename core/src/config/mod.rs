//! Configuration: built-in defaults < `--config FILE` (TOML) < `PIPETRACE_*` environment <
//! command-line flags. Unknown keys, wrong types and impossible values are rejected with one
//! line that names the source, the key and what is allowed.
//!
//! Each section is a file with its struct, defaults and checks; the layering is `load.rs`, the
//! messages `errors.rs`, and the flags that set keys one table in `flags.rs`.

mod capture;
mod diagnosis;
mod errors;
mod flags;
mod history;
mod load;
mod metrics;
mod object_store;
pub mod otel_env;
mod otlp;
mod output;
mod redact;
mod run;
mod scope;
mod source;
mod tracker;

use serde::{Deserialize, Serialize};

pub use capture::{CaptureSection, MAX_FILES_PER_PROCESS, MAX_NETWORK_PEERS, Switch, VMLINUX_BTF};
pub use diagnosis::DiagnosisSection;
pub use errors::ConfigError;
use errors::Invalid;
pub use flags::{FLAGS, Flag, FlagKind, Overrides};
pub use history::{HistorySection, MIN_BASELINE_RUNS};
pub use metrics::MetricsSection;
pub use object_store::{
    FileCredentials, UrlStyle, credentials, credentials_source, endpoint, env_nonempty,
    read_credentials_file, region, url_style,
};
pub use otlp::{OtlpProtocol, OtlpSection, Signal, TlsSection};
pub use output::{
    DEFAULT_DATA_DIR, MIN_MULTIPART_BYTES, ObjectStoreSection, OutputSection, machine_host_name,
    store_url_parts,
};
pub use redact::{PatternError, RedactSection, compile_patterns};
pub use run::{LOSS_EXIT_STATUS, RunSection};
pub use scope::{ScopeMode, ScopeSection};
pub use source::{SOURCE_CHANGE_EXIT_STATUS, SourceSection, WORKSPACE_VARIABLES};
pub use tracker::TrackerSection;

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
    pub diagnosis: DiagnosisSection,
    pub history: HistorySection,
    pub source: SourceSection,
}

impl Config {
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
mod tests;
