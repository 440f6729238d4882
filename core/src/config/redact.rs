//! `[redact]`: secrets in command lines, masked before any output (see `process/redact.rs`).

use serde::{Deserialize, Serialize};

use super::Invalid;

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

impl RedactSection {
    /// The patterns compile; the flags are flags.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if let Err(e) = compile_patterns(&self.patterns) {
            return Invalid::key(
                "redact.patterns",
                format!(
                    "pattern {} ({:?}) is not a valid regular expression: {}",
                    e.index, e.pattern, e.reason
                ),
            );
        }
        if let Some(f) = self
            .flags
            .iter()
            .find(|f| !f.starts_with('-') || f.len() < 2)
        {
            return Invalid::key(
                "redact.flags",
                format!("{f:?}: a flag as typed on the command line, e.g. \"--db-password\""),
            );
        }
        Ok(())
    }
}
