//! Files and directories the agent and the query side create: they hold command lines, so only
//! their owner and group may read them.

/// Output files hold command lines: readable by their owner and group only.
pub const FILE_MODE: u32 = 0o640;
/// Directories the agent creates for its output.
pub const DIR_MODE: u32 = 0o750;

/// Creates (or truncates) an output file with [`FILE_MODE`].
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates a directory and its missing parents with [`DIR_MODE`] (existing ones are left as
/// they are).
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}
