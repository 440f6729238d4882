//! The paths git tracks in a checkout and their blob ids, read from `.git/index` (versions 2,
//! 3 and 4). Ours rather than a git library's: only the entries' paths, modes and ids are
//! needed, and the agent runs as root, where running `git` would run a repository's hooks and
//! configured programs.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// `dir/.git` as a directory, or the directory a `.git` file (`gitdir: …`) points to.
pub fn git_dir_of(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(dir.join(target))
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a git index (no DIRC signature)")]
    Signature,
    #[error("git index version {0} is not supported (2, 3 or 4 are)")]
    Version(u32),
    #[error("the git index is truncated")]
    Truncated,
}

/// One tracked path: its mode (0o100644, 0o100755, 0o120000 symlink, 0o160000 submodule) and
/// object id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub mode: u32,
    pub id: Vec<u8>,
}

/// Parses an index; `id_len` is 20 (SHA-1 repositories) or 32 (SHA-256).
pub fn parse(bytes: &[u8], id_len: usize) -> Result<BTreeMap<String, Tracked>, IndexError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != b"DIRC" {
        return Err(IndexError::Signature);
    }
    let version = r.u32()?;
    if !(2..=4).contains(&version) {
        return Err(IndexError::Version(version));
    }
    let count = r.u32()?;
    let mut out = BTreeMap::new();
    let mut previous: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = r.at;
        // ctime, mtime (8 bytes each), dev, ino: not needed.
        r.take(24)?;
        let mode = r.u32()?;
        r.take(12)?; // uid, gid, size
        let id = r.take(id_len)?.to_vec();
        let flags = r.u16()?;
        if version >= 3 && flags & 0x4000 != 0 {
            r.u16()?;
        }
        let path = if version == 4 {
            let strip = r.varint()? as usize;
            let suffix = r.until_nul()?;
            let keep = previous
                .len()
                .checked_sub(strip)
                .ok_or(IndexError::Truncated)?;
            let mut p = previous[..keep].to_vec();
            p.extend_from_slice(suffix);
            p
        } else {
            let name = r.until_nul()?.to_vec();
            // Entries are padded with NULs to a multiple of 8 bytes (1 to 8 of them).
            let used = r.at - start;
            let padded = (used + 7) & !7;
            r.take(padded - used)?;
            name
        };
        // Stage bits (merge conflicts): one entry per path is enough.
        out.insert(
            String::from_utf8_lossy(&path).into_owned(),
            Tracked { mode, id },
        );
        previous = path;
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        let end = self.at.checked_add(n).ok_or(IndexError::Truncated)?;
        let out = self.bytes.get(self.at..end).ok_or(IndexError::Truncated)?;
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, IndexError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Result<u16, IndexError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The bytes up to a NUL, which is consumed.
    fn until_nul(&mut self) -> Result<&'a [u8], IndexError> {
        let rest = self.bytes.get(self.at..).ok_or(IndexError::Truncated)?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(IndexError::Truncated)?;
        self.at += end + 1;
        Ok(&rest[..end])
    }

    /// git's offset varint (index v4's prefix length).
    fn varint(&mut self) -> Result<u64, IndexError> {
        let mut byte = self.take(1)?[0];
        let mut value = u64::from(byte & 0x7f);
        while byte & 0x80 != 0 {
            byte = self.take(1)?[0];
            value = ((value + 1) << 7) | u64::from(byte & 0x7f);
        }
        Ok(value)
    }
}
