//! `[scope]`: which processes the daemon traces, and which executables are hidden.

use std::path::PathBuf;

use exporter_common::COMM_LEN;
use serde::{Deserialize, Serialize};

use super::Invalid;

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

impl ScopeSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        for (key, names) in [
            ("scope.hide", &self.hide),
            ("scope.root_names", &self.root_names),
        ] {
            if let Some(n) = names.iter().find(|n| n.is_empty() || n.len() >= COMM_LEN) {
                return Invalid::key(
                    key,
                    format!("{n:?}: names are matched against the kernel comm, 1 to 15 bytes"),
                );
            }
        }
        if self.mode == ScopeMode::Cgroup && self.cgroup.is_none() {
            return Invalid::key(
                "scope.cgroup",
                "required when scope.mode = \"cgroup\"".into(),
            );
        }
        if self.mode == ScopeMode::Descendants && self.root_names.is_empty() {
            return Invalid::key(
                "scope.root_names",
                "required (non-empty) when scope.mode = \"descendants\"".into(),
            );
        }
        Ok(())
    }
}
