//! A step that changed the checked-out source: a write, delete or rename of a file git tracks
//! in the checkout (`[source]`), outside the paths steps may change (`source.allow`, the
//! checkout's `.gitignore` rules). A file rewritten with the content git has for it is not a
//! change. Harden-runner's users install it for this check (supply-chain tampering during a
//! build); here it is a finding about the process that did it.

use std::{
    collections::{BTreeMap, HashMap},
    io::Read,
    path::{Path, PathBuf},
};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha1::Digest;

use super::git_index::{self, Tracked};
use crate::{
    event::{FileOp, Finding, FindingKind, Severity},
    process::model::Process,
};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source.dir (--source) {dir}: not a git checkout (no .git): give the directory of a checked-out repository"
    )]
    NotCheckout { dir: String },
    #[error("source.dir (--source) {dir}: reading its git index: {reason}")]
    Index { dir: String, reason: String },
    #[error("source.allow: `{pattern}` is not a .gitignore pattern: {reason}")]
    Allow { pattern: String, reason: String },
}

/// Tracked files changed per finding listed in its summary (all are in its evidence).
const SHOWN: usize = 3;

/// The checkout `[source]` names (`source.dir`, else the CI's workspace): an error for a bad
/// `source.dir`, a warning (and no check) for a CI workspace that is not a git checkout.
pub fn from_config(
    section: &crate::config::SourceSection,
) -> Result<Option<SourceTree>, SourceError> {
    let Some(dir) = section.checkout() else {
        return Ok(None);
    };
    match SourceTree::open(&dir, &section.allow) {
        Ok(tree) => Ok(Some(tree)),
        Err(e) if section.dir.as_os_str().is_empty() => {
            tracing::warn!("the CI's workspace {e}: source changes are not checked");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone)]
pub struct SourceTree {
    /// The work tree, symlinks resolved (file paths are the kernel's real ones).
    root: PathBuf,
    tracked: BTreeMap<String, Tracked>,
    sha256: bool,
    allow: Gitignore,
    /// `.gitignore` of each directory looked at (`None`: it has none).
    ignores: HashMap<PathBuf, Option<Gitignore>>,
}

/// One tracked file a process changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to the checkout.
    pub path: String,
    pub op: FileOp,
}

impl SourceTree {
    /// The checkout at `dir` as git's index has it now.
    pub fn open(dir: &Path, allow: &[String]) -> Result<Self, SourceError> {
        let shown = dir.display().to_string();
        let root = dir
            .canonicalize()
            .map_err(|_| SourceError::NotCheckout { dir: shown.clone() })?;
        let git_dir = git_index::git_dir_of(&root)
            .ok_or_else(|| SourceError::NotCheckout { dir: shown.clone() })?;
        let config = std::fs::read_to_string(git_dir.join("config")).unwrap_or_default();
        let sha256 = config.lines().any(|l| {
            l.replace(' ', "")
                .eq_ignore_ascii_case("objectformat=sha256")
        });
        let bytes = std::fs::read(git_dir.join("index")).map_err(|e| SourceError::Index {
            dir: shown.clone(),
            reason: e.to_string(),
        })?;
        let tracked = git_index::parse(&bytes, if sha256 { 32 } else { 20 }).map_err(|e| {
            SourceError::Index {
                dir: shown.clone(),
                reason: e.to_string(),
            }
        })?;
        let mut builder = GitignoreBuilder::new(&root);
        for pattern in allow {
            builder
                .add_line(None, pattern)
                .map_err(|e| SourceError::Allow {
                    pattern: pattern.clone(),
                    reason: e.to_string(),
                })?;
        }
        let allow = builder.build().map_err(|e| SourceError::Allow {
            pattern: allow.join(", "),
            reason: e.to_string(),
        })?;
        Ok(Self {
            root,
            tracked,
            sha256,
            allow,
            ignores: HashMap::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tracked_files(&self) -> usize {
        self.tracked.len()
    }

    /// The tracked files `p` changed, outside the allowed paths.
    pub fn changes(&mut self, p: &Process) -> Vec<Change> {
        let Some(log) = p.files.as_deref() else {
            return Vec::new();
        };
        let mut out: Vec<Change> = Vec::new();
        for e in log.entries() {
            let mut paths = Vec::new();
            match e.op {
                FileOp::Write | FileOp::Create | FileOp::Truncate | FileOp::Delete => {
                    paths.push(e.path.clone())
                }
                // The old name is gone (a tracked file or directory moved away); the new one
                // replaced whatever was there.
                FileOp::Rename | FileOp::Link | FileOp::Symlink => {
                    if e.op == FileOp::Rename {
                        paths.push(e.path.clone());
                    }
                    let made = if e.op == FileOp::Symlink {
                        Some(e.path.clone())
                    } else {
                        e.target.clone()
                    };
                    paths.extend(made);
                }
                _ => {}
            }
            for path in paths {
                for rel in self.tracked_under(&path, e.op == FileOp::Rename) {
                    if self.allowed(&rel) || out.iter().any(|c| c.path == rel) {
                        continue;
                    }
                    if matches!(e.op, FileOp::Write | FileOp::Create | FileOp::Truncate)
                        && self.unchanged(&rel)
                    {
                        continue;
                    }
                    out.push(Change {
                        path: rel,
                        op: e.op,
                    });
                }
            }
        }
        out
    }

    /// The tracked paths at `path` (relative to the checkout), and with `below` those under
    /// it (a directory renamed away).
    fn tracked_under(&self, path: &str, below: bool) -> Vec<String> {
        let Ok(rel) = Path::new(path).strip_prefix(&self.root) else {
            return Vec::new();
        };
        let rel = rel.to_string_lossy().into_owned();
        if rel.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.tracked.contains_key(&rel) {
            out.push(rel.clone());
        }
        if below {
            let prefix = format!("{rel}/");
            out.extend(
                self.tracked
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone()),
            );
        }
        out
    }

    /// `source.allow`, or the checkout's `.gitignore` rules, match `rel` or a directory above.
    fn allowed(&mut self, rel: &str) -> bool {
        if self
            .allow
            .matched_path_or_any_parents(rel, false)
            .is_ignore()
        {
            return true;
        }
        // Each directory's .gitignore from the root down to the file's.
        let mut dir = self.root.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for depth in 0..parts.len() {
            if depth > 0 {
                dir.push(parts[depth - 1]);
            }
            let ignore = self
                .ignores
                .entry(dir.clone())
                .or_insert_with(|| {
                    let file = dir.join(".gitignore");
                    file.is_file().then(|| Gitignore::new(&file).0)
                })
                .clone();
            if let Some(ignore) = ignore {
                let below = dir.join(parts[depth..].join("/"));
                if ignore
                    .matched_path_or_any_parents(&below, false)
                    .is_ignore()
                {
                    return true;
                }
            }
        }
        false
    }

    /// The file at `rel` has the content git has for it (rewritten identically).
    fn unchanged(&self, rel: &str) -> bool {
        let Some(t) = self.tracked.get(rel) else {
            return false;
        };
        if t.mode & 0o170000 != 0o100000 {
            return false;
        }
        let Ok(mut file) = std::fs::File::open(self.root.join(rel)) else {
            return false;
        };
        let mut content = Vec::new();
        if file.read_to_end(&mut content).is_err() {
            return false;
        }
        let header = format!("blob {}\0", content.len());
        let id: Vec<u8> = if self.sha256 {
            let mut h = sha2::Sha256::new();
            h.update(header.as_bytes());
            h.update(&content);
            h.finalize().to_vec()
        } else {
            let mut h = sha1::Sha1::new();
            h.update(header.as_bytes());
            h.update(&content);
            h.finalize().to_vec()
        };
        id == t.id
    }

    /// The finding about `p` for `changes`.
    pub fn finding(&self, p: &Process, changes: &[Change]) -> Finding {
        let listed: Vec<String> = changes
            .iter()
            .take(SHOWN)
            .map(|c| format!("{} ({})", c.path, c.op.name()))
            .collect();
        let more = changes.len().saturating_sub(SHOWN);
        let summary = format!(
            "{} ({}) changed {} file{} git tracks in the checkout: {}{}",
            p.executable_name(),
            p.key.tgid,
            changes.len(),
            if changes.len() == 1 { "" } else { "s" },
            listed.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        Finding {
            kind: FindingKind::SourceChanged,
            severity: Severity::Warning,
            summary,
            value: changes.len() as f64,
            unit: "files",
            evidence: vec![
                ("checkout", self.root.display().to_string().into()),
                (
                    "files",
                    serde_json::Value::Array(
                        changes
                            .iter()
                            .map(|c| serde_json::json!({"path": c.path, "operation": c.op.name()}))
                            .collect(),
                    ),
                ),
            ],
            involved: Vec::new(),
        }
    }
}
