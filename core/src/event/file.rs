/// What a process did to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileOp {
    /// Opened for reading only.
    Read,
    /// Opened for writing (without O_CREAT).
    Write,
    /// Opened with O_CREAT: created, or replaced when it existed.
    Create,
    /// Unlinked.
    Delete,
    /// Renamed (`path` → `target`).
    Rename,
    Mkdir,
    Rmdir,
    Truncate,
    /// Hard link `target` made to `path`.
    Link,
    /// Symbolic link `path` made, pointing at `target` (as written).
    Symlink,
    /// An open that failed (a missing file looked for): the errno says why.
    Probe,
    /// Reads beyond the per-process cap, summarised: `path` is their directory, `count` the
    /// files read in it and `bytes` their sizes.
    ReadsUnder,
}

impl FileOp {
    pub fn name(self) -> &'static str {
        match self {
            FileOp::Read => "read",
            FileOp::Write => "write",
            FileOp::Create => "create",
            FileOp::Delete => "delete",
            FileOp::Rename => "rename",
            FileOp::Mkdir => "mkdir",
            FileOp::Rmdir => "rmdir",
            FileOp::Truncate => "truncate",
            FileOp::Link => "link",
            FileOp::Symlink => "symlink",
            FileOp::Probe => "probe",
            FileOp::ReadsUnder => "reads_under",
        }
    }

    /// The operation changes what is on disk (an output, or a change to the source tree).
    pub fn changes(self) -> bool {
        !matches!(self, FileOp::Read | FileOp::Probe | FileOp::ReadsUnder)
    }

    /// Which path of the operation holds the content it leaves: a rename's or link's target,
    /// else the path.
    pub fn result_is_target(self) -> bool {
        matches!(self, FileOp::Rename | FileOp::Link)
    }
}

/// One file operation of a process, as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAccess {
    pub op: FileOp,
    /// Absolute, as the process saw it (its mount namespace); lexically normalised. An opened
    /// file's path is its own (symlinks resolved).
    pub path: String,
    /// A rename's or link's new name, a symlink's target as written.
    pub target: Option<String>,
    /// Open flags (O_*) of an open; the call's AT_*/RENAME_* flags otherwise.
    pub flags: u64,
    /// An open that failed: its errno.
    pub errno: Option<i32>,
    /// Size of an opened file at the open, bytes.
    pub size: Option<u64>,
    pub ino: u64,
    /// The path was too deep or too long to be read whole.
    pub truncated: bool,
}

/// `O_*` flags as text (`O_WRONLY|O_CREAT|O_TRUNC`), for people.
pub fn open_flags_text(flags: u64) -> String {
    let mut parts = vec![match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    }];
    for (bit, name) in [
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o2000000, "O_CLOEXEC"),
        (0o20000000, "O_TMPFILE"),
    ] {
        if flags & bit == bit {
            parts.push(name);
        }
    }
    parts.join("|")
}

/// The errno's symbolic name (`ENOENT`), or its number.
pub fn errno_name(errno: i32) -> String {
    match errno {
        1 => "EPERM".into(),
        2 => "ENOENT".into(),
        13 => "EACCES".into(),
        17 => "EEXIST".into(),
        20 => "ENOTDIR".into(),
        21 => "EISDIR".into(),
        24 => "EMFILE".into(),
        30 => "EROFS".into(),
        36 => "ENAMETOOLONG".into(),
        40 => "ELOOP".into(),
        n => format!("errno {n}"),
    }
}

/// `path` with `.` and `..` components and repeated slashes resolved lexically (the kernel
/// resolved them against the real tree; a `..` across a symlink may differ, rarely).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len());
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize("/a/./b//c/../d"), "/a/b/d");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/a/b/"), "/a/b");
    }

    #[test]
    fn names_flags() {
        assert_eq!(open_flags_text(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(open_flags_text(0), "O_RDONLY");
        assert_eq!(errno_name(2), "ENOENT");
    }
}
