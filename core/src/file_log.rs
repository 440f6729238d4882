//! A process's files: each (operation, path) once, bounded, with what the agent learnt of the
//! file at the process's end (size, content hash). What the `files` dataset, the span events
//! and the source-tree check read.

use std::collections::{BTreeMap, HashMap};

use crate::event::{FileAccess, FileOp};

/// How much of a process's files is kept (from `[capture]`).
#[derive(Debug, Clone)]
pub struct FilePolicy {
    /// Entries kept per process at most (the kernel sends at most as many records).
    pub max_entries: usize,
    /// Read files listed per process; further reads are summarised per directory.
    pub reads_listed: usize,
    /// Failed opens listed (else only counted).
    pub probes: bool,
    /// Path prefixes not recorded (`/proc/`, `/sys/`, `/dev/`).
    pub ignore: Vec<String>,
    /// Hash (SHA-256) the files a process wrote at its end.
    pub hashes: bool,
    /// Files larger than this are not hashed.
    pub hash_max_bytes: u64,
}

impl FilePolicy {
    /// The policy `[capture]` sets.
    pub fn from_config(c: &crate::config::CaptureSection) -> Self {
        Self {
            max_entries: c.files_max as usize,
            reads_listed: c.files_reads_max.min(c.files_max) as usize,
            probes: c.file_probes,
            ignore: c.files_ignore.clone(),
            hashes: c.file_hashes,
            hash_max_bytes: c.file_hash_max_bytes,
        }
    }
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            max_entries: 16_384,
            reads_listed: 1_024,
            probes: false,
            ignore: vec!["/proc/".into(), "/sys/".into(), "/dev/".into()],
            hashes: false,
            hash_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One kept operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub op: FileOp,
    pub path: String,
    pub target: Option<String>,
    pub flags: u64,
    /// CLOCK_MONOTONIC ns of the first time.
    pub first_ns: u64,
    /// Times seen (files for `reads_under`).
    pub count: u64,
    /// Bytes: a read file's size at the open, a written file's at the process's end, the sum
    /// for `reads_under`.
    pub bytes: Option<u64>,
    pub errno: Option<i32>,
    /// Inode number at the open (a written file is only measured if it is still that file).
    pub ino: u64,
    pub sha256: Option<String>,
    pub truncated: bool,
}

/// A process's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileLog {
    entries: Vec<FileEntry>,
    index: HashMap<(FileOp, String), usize>,
    reads: usize,
    /// Reads beyond `reads_listed`, by directory: files, bytes, first time.
    read_dirs: BTreeMap<String, (u64, u64, u64)>,
    /// Failed opens, listed or not.
    pub probes: u64,
    /// Operations not kept: beyond `max_entries` here, or only counted in the kernel.
    pub unrecorded: u64,
}

impl FileLog {
    /// Records `access` at `ktime_ns` under `policy`.
    pub fn add(&mut self, ktime_ns: u64, access: FileAccess, policy: &FilePolicy) {
        if policy
            .ignore
            .iter()
            .any(|p| access.path.starts_with(p.as_str()))
        {
            return;
        }
        if access.op == FileOp::Probe {
            self.probes += 1;
            if !policy.probes {
                return;
            }
        }
        let key = (access.op, access.path);
        if let Some(&at) = self.index.get(&key) {
            let e = &mut self.entries[at];
            e.count += 1;
            return;
        }
        let (op, path) = key;
        if op == FileOp::Read {
            if self.reads >= policy.reads_listed {
                let dir = parent(&path).to_owned();
                let new = !self.read_dirs.contains_key(&dir);
                if new && self.len() >= policy.max_entries {
                    self.unrecorded += 1;
                    return;
                }
                let slot = self.read_dirs.entry(dir).or_insert((0, 0, ktime_ns));
                slot.0 += 1;
                slot.1 += access.size.unwrap_or(0);
                return;
            }
            self.reads += 1;
        }
        if self.len() >= policy.max_entries {
            self.unrecorded += 1;
            return;
        }
        self.index.insert((op, path.clone()), self.entries.len());
        self.entries.push(FileEntry {
            op,
            path,
            target: access.target,
            flags: access.flags,
            first_ns: ktime_ns,
            count: 1,
            bytes: access.size,
            errno: access.errno,
            ino: access.ino,
            sha256: None,
            truncated: access.truncated,
        });
    }

    fn len(&self) -> usize {
        self.entries.len() + self.read_dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.probes == 0 && self.unrecorded == 0
    }

    /// Every kept entry, the per-directory read summaries last.
    pub fn entries(&self) -> impl Iterator<Item = FileEntry> + '_ {
        self.entries
            .iter()
            .cloned()
            .chain(
                self.read_dirs
                    .iter()
                    .map(|(dir, &(count, bytes, first_ns))| FileEntry {
                        op: FileOp::ReadsUnder,
                        path: dir.clone(),
                        target: None,
                        flags: 0,
                        first_ns,
                        count,
                        bytes: Some(bytes),
                        errno: None,
                        ino: 0,
                        sha256: None,
                        truncated: false,
                    }),
            )
    }

    /// The kept entries, to be completed at the process's end (sizes, hashes).
    pub fn entries_mut(&mut self) -> &mut [FileEntry] {
        &mut self.entries
    }

    /// Entries kept, summaries included.
    pub fn kept(&self) -> usize {
        self.len()
    }
}

/// The directory of `path` (`/` for a top-level name).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(op: FileOp, path: &str) -> FileAccess {
        FileAccess {
            op,
            path: path.into(),
            target: None,
            flags: 0,
            errno: None,
            size: Some(10),
            ino: 1,
            truncated: false,
        }
    }

    #[test]
    fn deduplicates_bounds_and_summarises_reads() {
        let policy = FilePolicy {
            max_entries: 4,
            reads_listed: 1,
            ..FilePolicy::default()
        };
        let mut log = FileLog::default();
        log.add(1, access(FileOp::Read, "/src/a.h"), &policy);
        log.add(2, access(FileOp::Read, "/src/a.h"), &policy);
        log.add(3, access(FileOp::Read, "/src/b.h"), &policy);
        log.add(4, access(FileOp::Read, "/src/c.h"), &policy);
        log.add(5, access(FileOp::Create, "/out/x.o"), &policy);
        log.add(6, access(FileOp::Probe, "/inc/a.h"), &policy);
        log.add(7, access(FileOp::Read, "/proc/self/stat"), &policy);
        log.add(8, access(FileOp::Create, "/out/y.o"), &policy);
        log.add(9, access(FileOp::Create, "/out/z.o"), &policy);
        let all: Vec<_> = log.entries().collect();
        assert_eq!(all.len(), 4);
        assert_eq!((all[0].path.as_str(), all[0].count), ("/src/a.h", 2));
        let summary = all.last().unwrap();
        assert_eq!(summary.op, FileOp::ReadsUnder);
        assert_eq!(
            (summary.path.as_str(), summary.count, summary.bytes),
            ("/src", 2, Some(20))
        );
        assert_eq!((log.probes, log.unrecorded), (1, 1));
    }
}
