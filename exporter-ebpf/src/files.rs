//! The files traced processes open, create, rename, delete and link.
//!
//! Two raw tracepoints, `sys_enter` and `sys_exit`, see every syscall; an array lookup by
//! number lets through the file syscalls the agent chose (open, openat, openat2, creat,
//! rename*, unlink*, rmdir, mkdir*, truncate, link*, symlink*). The per-syscall
//! `syscalls:sys_enter_*` tracepoints would only fire for those, but each of their 34
//! attachments costs an RCU grace period to detach (≈ 80 ms: seconds at every `run`'s end).
//! The entry keeps the arguments of a traced thread's call (the scope check first); the exit,
//! which knows the outcome, builds the record:
//! - an open that succeeded: the opened file's own path, walked from its `struct file`
//!   (relative names, `..` and symlinks resolved, bind mounts and mount namespaces as the
//!   process sees them), with its size, inode and mode; each file once per process and access
//!   (read or write), so a compiler opening a header forty times sends one record;
//! - anything else (a failed open — a probe —, a rename, a delete, …): the path string as
//!   passed and, when it is relative, the walked directory it is relative to (the working
//!   directory or the `dirfd`).
//!
//! Per process at most `files_max` records leave; the rest are counted and the counts leave
//! with the exit record, as do records the ring had no room for: a file record is never sent
//! into the second half of the ring, which stays for processes' starts and ends, and one not
//! sent is the process's unrecorded file operation (and a record lost), not a hole in its
//! life. Directories and devices opened are not files a step reads or writes: skipped.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user,
        bpf_probe_read_user_str,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use exporter_common::{
    EXEC_DATA_SPAN, FileRecord, FileSeenKey, FileState, FileSyscall, NO_ARG, PATH_MAX, PendingFile,
    RecordHeader, SYSCALLS_MAX, TrackState, counter, file_op, file_path, flags_from, kind, track,
};

use crate::{
    globals::{conf, off},
    kernel::{process_start, ptr, read, real_parent, task_tgid},
    maps::{
        EVENTS, FILE_SCRATCH, FILE_SEEN, FILE_STATE, FILE_SYSCALLS, PENDING_FILES, TRACKED, count,
    },
    path::{self, launder},
    record::event_header,
    scope::in_untracked_scope,
};

const AT_FDCWD: i32 = -100;
const O_ACCMODE: u64 = 3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_WRONLY: u64 = 1;
const O_PATH: u64 = 0o10000000;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// Whether the current process is traced (and not hidden or before the `run` command's exec).
#[inline(always)]
fn traced(task: u64, tgid: u32) -> bool {
    match unsafe { TRACKED.get(tgid) } {
        Some(s) => s.flags & (track::HIDDEN | track::AWAITING_EXEC) == 0,
        None => in_untracked_scope(task, tgid),
    }
}

/// Where argument register `i` is in `struct pt_regs` (volatile, as `off!`).
#[inline(always)]
fn register(i: usize) -> u64 {
    unsafe { core::ptr::read_volatile(&raw const crate::globals::OFFSETS.regs_args[i]) as u64 }
}

/// The layout of watched syscall `nr` (`None`: not a file syscall the agent chose).
#[inline(always)]
fn watched(nr: u64) -> Option<FileSyscall> {
    if nr >= SYSCALLS_MAX as u64 {
        return None;
    }
    let call = FILE_SYSCALLS.get(nr as u32)?;
    (call.op != 0).then_some(*call)
}

// sys_enter(struct pt_regs *regs, long id): every syscall of the host; an array lookup ends
// the others.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn file_enter(ctx: RawTracePointContext) -> i32 {
    let nr: u64 = ctx.arg(1);
    if watched(nr).is_none() {
        return 0;
    }
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    if !traced(unsafe { bpf_get_current_task() }, (pid_tgid >> 32) as u32) {
        return 0;
    }
    let regs: u64 = ctx.arg(0);
    let pending = PendingFile {
        nr: nr as u32,
        _pad0: 0,
        args: [
            read::<u64>(regs, register(0)).unwrap_or(0),
            read::<u64>(regs, register(1)).unwrap_or(0),
            read::<u64>(regs, register(2)).unwrap_or(0),
            read::<u64>(regs, register(3)).unwrap_or(0),
            read::<u64>(regs, register(4)).unwrap_or(0),
            read::<u64>(regs, register(5)).unwrap_or(0),
        ],
    };
    let _ = PENDING_FILES.insert(&pid_tgid, &pending, 0);
    0
}

// sys_exit(struct pt_regs *regs, long ret): the number is read back from the registers.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn file_exit(ctx: RawTracePointContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let Some(call) = watched(read::<u64>(regs, off!(regs_syscall_nr)).unwrap_or(u64::MAX)) else {
        return 0;
    };
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let Some(pending) = (unsafe { PENDING_FILES.get(&pid_tgid) }).copied() else {
        return 0;
    };
    let _ = PENDING_FILES.remove(&pid_tgid);
    let result = ctx.arg::<u64>(1) as i64;
    on_exit(&pending, &call, result);
    0
}

/// Argument `index` (a match, not an index: the verifier rejects a variable stack offset).
#[inline(always)]
fn arg(pending: &PendingFile, index: u8) -> u64 {
    match index {
        0 => pending.args[0],
        1 => pending.args[1],
        2 => pending.args[2],
        3 => pending.args[3],
        4 => pending.args[4],
        5 => pending.args[5],
        _ => 0,
    }
}

#[inline(always)]
fn on_exit(pending: &PendingFile, call: &FileSyscall, result: i64) {
    // Only opens are interesting when they fail (a probe); a failed rename or delete changed
    // nothing.
    if result < 0 && call.op != file_op::OPEN {
        return;
    }
    let task = unsafe { bpf_get_current_task() };
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let flags = match call.flags_from {
        flags_from::CREAT => O_CREAT | O_WRONLY | O_TRUNC,
        flags_from::OPEN_HOW => {
            let how = arg(pending, call.flags);
            let mut f = 0u64;
            unsafe { bpf_probe_read_user((&raw mut f).cast::<c_void>(), 8, how as *const c_void) };
            f
        }
        _ if call.flags == NO_ARG => 0,
        _ => arg(pending, call.flags),
    };
    if call.op == file_op::OPEN && flags & O_PATH != 0 {
        return;
    }
    let start_ns = process_start(task);
    // An opened file: skipped unless a regular file not yet sent with this access.
    let mut file = 0u64;
    let mut inode = 0u64;
    let mut mode = 0u32;
    if call.op == file_op::OPEN && result >= 0 {
        file = fd_file(task, result as u64);
        let dentry = ptr(file + off!(file_f_path), off!(path_dentry));
        inode = ptr(dentry, off!(dentry_d_inode));
        mode = read::<u16>(inode, off!(inode_i_mode)).unwrap_or(0) as u32;
        if file == 0 || mode & S_IFMT != S_IFREG {
            return;
        }
        let write = flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0;
        let key = FileSeenKey {
            start_ns,
            inode,
            tgid,
            access: write as u32,
        };
        if unsafe { FILE_SEEN.get(&key) }.is_some() {
            return;
        }
        let _ = FILE_SEEN.insert(&key, &1, 0);
    }
    if !within_bound(tgid, start_ns) {
        return;
    }
    let Some(record) = FILE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // As `event_header` does for an untracked process, spelled out: an `Option` whose `None`
    // carries undefined bytes got spilled, and the verifier rejects reading them.
    let state = match unsafe { TRACKED.get(tgid) } {
        Some(s) => *s,
        None => {
            let parent = real_parent(task);
            TrackState {
                tree_ppid: task_tgid(parent),
                flags: 0,
                parent_start_ns: process_start(parent),
            }
        }
    };
    let Some(header) = event_header(kind::FILE, 0, task, tgid, Some(state)) else {
        return;
    };
    // SAFETY: this CPU's slot; programs do not migrate while they run.
    let rec = unsafe { &mut *record };
    rec.header = header;
    rec.tail = exporter_common::FileTail {
        result,
        flags,
        op: call.op,
        mode,
        ..Default::default()
    };
    let data = rec.data.as_mut_ptr();
    let work = (&raw mut rec.work).cast::<u64>();
    let mut used = 0usize;
    if file != 0 {
        rec.tail.size = read::<u64>(inode, off!(inode_i_size)).unwrap_or(0);
        rec.tail.ino = read::<u64>(inode, off!(inode_i_ino)).unwrap_or(0);
        let walked = path::walk::<true>(data, work, 0, file + off!(file_f_path));
        let mut bits = file_path::WALKED;
        if walked.truncated {
            bits |= file_path::TRUNCATED;
        }
        if walked.detached {
            bits |= file_path::DETACHED;
        }
        rec.tail.path_flags = bits;
        rec.tail.path_len = walked.len as u16;
        used = launder(work, walked.len) & (EXEC_DATA_SPAN - 1);
    } else {
        // The name (and directory) the call was given; a rename's or link's second one after.
        for second in [false, true] {
            let (name, dir, root_bit) = if second {
                if call.path2 == NO_ARG || used > EXEC_DATA_SPAN - 2 * PATH_MAX {
                    break;
                }
                (call.path2, call.dir2, file_path::BASE2_ROOT)
            } else {
                (call.path, call.dir, file_path::BASE_ROOT)
            };
            let (n, base, root) = named(
                data,
                work,
                used,
                task,
                arg(pending, name),
                dir_arg(pending, dir),
            );
            if second {
                rec.tail.path2_len = n as u16;
                rec.tail.base2_len = base as u16;
            } else {
                rec.tail.path_len = n as u16;
                rec.tail.base_len = base as u16;
            }
            if root {
                rec.tail.path_flags |= root_bit;
            }
            used = launder(work, used + n + base) & (EXEC_DATA_SPAN - 1);
        }
    }
    let len = core::mem::size_of::<RecordHeader>()
        + core::mem::size_of::<exporter_common::FileTail>()
        + used;
    rec.header.len = len as u32;
    if !output(record, len) {
        // Not sent after all: counted with the process's unsent records, not as a loss of the
        // process itself (its lifecycle records are whole).
        if let Some(state) = FILE_STATE.get_ptr_mut(&tgid) {
            // SAFETY: a live map value; only this process's threads write it.
            unsafe {
                (*state).sent = (*state).sent.saturating_sub(1);
                (*state).unsent += 1;
            }
        }
    }
}

/// The directory argument of a call, AT_FDCWD when it has none.
#[inline(always)]
fn dir_arg(pending: &PendingFile, index: u8) -> i32 {
    if index == NO_ARG {
        AT_FDCWD
    } else {
        arg(pending, index) as i32
    }
}

/// Counts a record of process `tgid` against `files_max`: whether it may be sent.
#[inline(always)]
fn within_bound(tgid: u32, start_ns: u64) -> bool {
    let fresh = FileState {
        start_ns,
        sent: 0,
        unsent: 0,
    };
    let state = match FILE_STATE.get_ptr_mut(&tgid) {
        // SAFETY: a live map value; only this process's threads write it.
        Some(s) if unsafe { (*s).start_ns } == start_ns => s,
        _ => {
            let _ = FILE_STATE.insert(&tgid, &fresh, 0);
            match FILE_STATE.get_ptr_mut(&tgid) {
                Some(s) => s,
                None => return false,
            }
        }
    };
    unsafe {
        if (*state).sent >= conf!(files_max) {
            (*state).unsent += 1;
            return false;
        }
        (*state).sent += 1;
    }
    true
}

/// The records sent and only counted for process `tgid` (its exit record carries them).
#[inline(always)]
pub fn totals(tgid: u32, start_ns: u64) -> (u32, u32) {
    match unsafe { FILE_STATE.get(&tgid) } {
        Some(s) if s.start_ns == start_ns => (s.sent, s.unsent),
        _ => (0, 0),
    }
}

/// Forgets process `tgid` (at its exit).
#[inline(always)]
pub fn forget(tgid: u32) {
    let _ = FILE_STATE.remove(&tgid);
}

/// The `struct file` of descriptor `fd` of `task` (0 when there is none).
#[inline(always)]
fn fd_file(task: u64, fd: u64) -> u64 {
    let files = ptr(task, off!(task_files));
    let fdt = ptr(files, off!(files_fdt));
    let max = read::<u32>(fdt, off!(fdtable_max_fds)).unwrap_or(0) as u64;
    if fd >= max {
        return 0;
    }
    let array = ptr(fdt, off!(fdtable_fd));
    ptr(array, fd * 8)
}

/// Writes the user string at `name` into `data` at `start`, and after it, when it is
/// relative, the walked directory it is relative to (`dir`: a descriptor, or AT_FDCWD for the
/// working directory). Returns the string's length (with its NUL), the walk's, and whether
/// the directory is the root.
#[inline(always)]
fn named(
    data: *mut u8,
    work: *mut u64,
    start: usize,
    task: u64,
    name: u64,
    dir: i32,
) -> (usize, usize, bool) {
    let pos = start & (EXEC_DATA_SPAN - 1);
    let n = unsafe {
        bpf_probe_read_user_str(
            data.add(pos).cast::<c_void>(),
            PATH_MAX as u32,
            name as *const c_void,
        )
    };
    if n <= 0 {
        return (0, 0, false);
    }
    let n = launder(work, n as usize) & (PATH_MAX * 2 - 1);
    let first = unsafe { *data.add(pos) };
    if first == b'/' {
        return (n, 0, false);
    }
    let base_path = if dir == AT_FDCWD {
        let fs = ptr(task, off!(task_fs));
        if fs == 0 {
            return (n, 0, false);
        }
        fs + off!(fs_pwd)
    } else {
        let file = fd_file(task, dir as u32 as u64);
        if file == 0 {
            return (n, 0, false);
        }
        file + off!(file_f_path)
    };
    let at = launder(work, start + n) & (EXEC_DATA_SPAN - 1);
    let walked = path::walk::<true>(data, work, at, base_path);
    (n, walked.len, walked.len == 0 && !walked.truncated)
}

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// Copies a built record into the ring; false when it was not: the ring more than half full
/// (file records leave the rest to the records of processes starting and ending, which they
/// would otherwise crowd out in a storm), or full. Either is counted as a record lost.
#[inline(always)]
fn output(record: *mut FileRecord, len: usize) -> bool {
    if EVENTS.query(BPF_RB_AVAIL_DATA) * 2 > EVENTS.query(BPF_RB_RING_SIZE) {
        count(counter::RING_FULL);
        return false;
    }
    crate::maps::submit(record, len)
}
