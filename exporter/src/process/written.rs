//! The files a process wrote, measured at its end: size and, with `capture.file_hashes`, a
//! SHA-256 of the content, for caching and provenance.

use std::{io::Read, os::unix::fs::MetadataExt};

use pipetrace_core::{event::FileOp, file_log::FileLog, file_log::FilePolicy};
use sha2::{Digest, Sha256};

/// Sizes (and hashes) of the files `files` created, wrote, truncated or renamed into place,
/// as they are now. A file replaced since (another inode) or gone keeps no size: it is no
/// longer what this process left.
pub fn measure(files: &mut FileLog, policy: &FilePolicy) {
    for entry in files.entries_mut() {
        let path = match entry.op {
            FileOp::Create | FileOp::Write | FileOp::Truncate => &entry.path,
            FileOp::Rename | FileOp::Link => match &entry.target {
                Some(t) => t,
                None => continue,
            },
            _ => continue,
        };
        let Ok(meta) = std::fs::metadata(path) else {
            entry.bytes = None;
            continue;
        };
        let same = entry.ino == 0 || meta.ino() == entry.ino;
        if !meta.is_file() || !same {
            entry.bytes = None;
            continue;
        }
        entry.bytes = Some(meta.len());
        if policy.hashes && meta.len() <= policy.hash_max_bytes {
            entry.sha256 = sha256_of(path);
        }
    }
}

fn sha256_of(path: &str) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(format!("{:x}", hasher.finalize()))
}
