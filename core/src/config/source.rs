//! `[source]`: the checkout whose tracked files no step should change during the build, what
//! steps may change in it, and whether a change fails `run`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSection {
    /// The checkout (a git work tree). Empty: the CI's workspace (`GITHUB_WORKSPACE`,
    /// `CI_PROJECT_DIR`, `BUILDKITE_BUILD_CHECKOUT_PATH`) when set, else no check.
    pub dir: PathBuf,
    /// Paths inside `dir` that steps may change, as `.gitignore` patterns (`build/`,
    /// `*.generated.go`); files the checkout's `.gitignore` rules ignore are allowed too.
    pub allow: Vec<String>,
    /// `run` exits with [`SOURCE_CHANGE_EXIT_STATUS`] when the command succeeded but a step
    /// changed a tracked file outside `allow`.
    pub fail_on_change: bool,
}

/// `run`'s status when the command succeeded and `source.fail_on_change` found a changed
/// tracked file (EX_DATAERR).
pub const SOURCE_CHANGE_EXIT_STATUS: i32 = 65;

/// CI variables that name the job's checkout, first set wins.
pub const WORKSPACE_VARIABLES: [&str; 3] = [
    "GITHUB_WORKSPACE",
    "CI_PROJECT_DIR",
    "BUILDKITE_BUILD_CHECKOUT_PATH",
];

impl Default for SourceSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            allow: vec![
                "build/".into(),
                "target/".into(),
                "dist/".into(),
                "out/".into(),
            ],
            fail_on_change: false,
        }
    }
}

impl SourceSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if let Some(bad) = self.allow.iter().find(|p| p.trim().is_empty()) {
            return Invalid::key(
                "source.allow",
                format!("`{bad}` is empty: give a path pattern such as build/"),
            );
        }
        Ok(())
    }

    /// The checkout to watch: `dir`, else the CI's workspace variable.
    pub fn checkout(&self) -> Option<PathBuf> {
        if !self.dir.as_os_str().is_empty() {
            return Some(self.dir.clone());
        }
        WORKSPACE_VARIABLES
            .iter()
            .find_map(|v| std::env::var_os(v).filter(|s| !s.is_empty()))
            .map(PathBuf::from)
    }
}
