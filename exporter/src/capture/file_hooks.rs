//! The file syscalls the kernel programs watch on this architecture: for each, its number and
//! where its arguments are — the table the two programs of `files.rs` read (`FILE_SYSCALLS`).

use exporter_common::{FileSyscall, NO_ARG, file_op, flags_from};

/// One syscall: its name, number and layout.
pub struct FileHook {
    pub name: &'static str,
    pub nr: u32,
    pub layout: FileSyscall,
}

const fn layout(op: u16, path: u8, dir: u8, path2: u8, dir2: u8, flags: u8) -> FileSyscall {
    FileSyscall {
        op,
        path,
        dir,
        path2,
        dir2,
        flags,
        flags_from: flags_from::ARG,
    }
}

const N: u8 = NO_ARG;

/// Every file syscall of this architecture (the legacy ones only where they exist).
pub fn hooks() -> Vec<FileHook> {
    let mut all = vec![
        hook(
            "openat",
            libc::SYS_openat,
            layout(file_op::OPEN, 1, 0, N, N, 2),
        ),
        hook(
            "openat2",
            libc::SYS_openat2,
            FileSyscall {
                flags_from: flags_from::OPEN_HOW,
                ..layout(file_op::OPEN, 1, 0, N, N, 2)
            },
        ),
        hook(
            "renameat",
            libc::SYS_renameat,
            layout(file_op::RENAME, 1, 0, 3, 2, N),
        ),
        hook(
            "renameat2",
            libc::SYS_renameat2,
            layout(file_op::RENAME, 1, 0, 3, 2, 4),
        ),
        hook(
            "unlinkat",
            libc::SYS_unlinkat,
            layout(file_op::UNLINK, 1, 0, N, N, 2),
        ),
        hook(
            "mkdirat",
            libc::SYS_mkdirat,
            layout(file_op::MKDIR, 1, 0, N, N, N),
        ),
        hook(
            "truncate",
            libc::SYS_truncate,
            layout(file_op::TRUNCATE, 0, N, N, N, N),
        ),
        hook(
            "linkat",
            libc::SYS_linkat,
            layout(file_op::LINK, 1, 0, 3, 2, 4),
        ),
        hook(
            "symlinkat",
            libc::SYS_symlinkat,
            layout(file_op::SYMLINK, 0, N, 2, 1, N),
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    all.extend([
        hook("open", libc::SYS_open, layout(file_op::OPEN, 0, N, N, N, 1)),
        hook(
            "creat",
            libc::SYS_creat,
            FileSyscall {
                flags_from: flags_from::CREAT,
                ..layout(file_op::OPEN, 0, N, N, N, N)
            },
        ),
        hook(
            "rename",
            libc::SYS_rename,
            layout(file_op::RENAME, 0, N, 1, N, N),
        ),
        hook(
            "unlink",
            libc::SYS_unlink,
            layout(file_op::UNLINK, 0, N, N, N, N),
        ),
        hook(
            "rmdir",
            libc::SYS_rmdir,
            layout(file_op::RMDIR, 0, N, N, N, N),
        ),
        hook(
            "mkdir",
            libc::SYS_mkdir,
            layout(file_op::MKDIR, 0, N, N, N, N),
        ),
        hook("link", libc::SYS_link, layout(file_op::LINK, 0, N, 1, N, N)),
        hook(
            "symlink",
            libc::SYS_symlink,
            layout(file_op::SYMLINK, 0, N, 1, N, N),
        ),
    ]);
    all
}

fn hook(name: &'static str, nr: libc::c_long, layout: FileSyscall) -> FileHook {
    FileHook {
        name,
        nr: nr as u32,
        layout,
    }
}
