//! `[metrics]`: the Prometheus endpoint and what its series are per.

use serde::{Deserialize, Serialize};

use super::Invalid;

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

impl MetricsSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let listen = self.prometheus_listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            return Invalid::key(
                "metrics.prometheus_listen",
                format!("{listen:?} is not an address; expected IP:PORT, e.g. 127.0.0.1:9464"),
            );
        }
        Ok(())
    }
}
