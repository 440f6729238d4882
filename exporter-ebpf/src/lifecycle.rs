//! fork / exec / exit on raw tracepoints: scope decisions and records.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_probe_read_kernel_str,
        bpf_probe_read_user,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use exporter_common::{
    ARGV_MAX, COMM_LEN, EXEC_DATA_SPAN, ExecRecord, ExecTail, ExitRecord, ForkRecord, PATH_MAX,
    RecordHeader, TrackState, counter, flags, kind, track,
};

use crate::{
    exits::{exit_pending, group_released, set_group_totals, thread_exit_begins, thread_exit_ends},
    globals::{conf, off},
    kernel::{
        activity_present, exit_code, live_threads, oom_victim, process_start, ptr, real_parent,
        task_comm, task_pid, task_tgid,
    },
    maps::{
        DEAD_THREADS, DENY_COMMS, EVENTS, EXEC_SCRATCH, EXITING, ExitPending, MEMORY, NET_IO,
        ROOT_COMMS, TRACKED, count, wakeup_flags,
    },
    path,
    record::{base_header, current_comm, fill_process, mark_lost},
    scope::in_untracked_scope,
};

// sched_process_fork(struct task_struct *parent, struct task_struct *child)
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let child: u64 = ctx.arg(1);
    let child_tgid = task_tgid(child);
    // A new thread is not a new process.
    if child_tgid == 0 || task_pid(child) != child_tgid {
        return 0;
    }
    let parent = real_parent(child);
    let ppid = task_tgid(parent);

    // Scope follows the real parent, which is also the reported parent. A CLONE_PARENT child
    // (real parent = its creator's parent) therefore takes its grandparent's scope: rare, and it
    // keeps the tree and the scope consistent.
    let state = match unsafe { TRACKED.get(ppid) } {
        Some(p) if p.flags & track::HIDDEN != 0 => TrackState {
            tree_ppid: p.tree_ppid,
            flags: track::HIDDEN,
            parent_start_ns: p.parent_start_ns,
        },
        Some(_) => TrackState {
            tree_ppid: ppid,
            flags: track::ANNOUNCED,
            parent_start_ns: process_start(parent),
        },
        None => {
            if !in_untracked_scope(child, child_tgid) {
                return 0;
            }
            TrackState {
                tree_ppid: ppid,
                flags: track::ANNOUNCED,
                parent_start_ns: process_start(parent),
            }
        }
    };
    if TRACKED.insert(child_tgid, state, 0).is_err() {
        count(counter::TRACK_FULL);
    }
    if state.flags & track::HIDDEN != 0 {
        // A subshell of a hidden process: announced when (if) it execs something visible.
        count(counter::HIDDEN);
        return 0;
    }

    let Some(mut entry) = EVENTS.reserve::<ForkRecord>(0) else {
        count(counter::RING_FULL);
        mark_lost(child_tgid);
        return 0;
    };
    let mut header = base_header(kind::FORK, core::mem::size_of::<ForkRecord>());
    header.tgid = child_tgid;
    header.pid = child_tgid;
    header.ppid = ppid;
    header.tree_ppid = state.tree_ppid;
    header.start_ns = process_start(child);
    header.parent_start_ns = state.parent_start_ns;
    header.comm = task_comm(child);
    entry.write(ForkRecord { header });
    entry.submit(wakeup_flags());
    count(counter::EMITTED);
    0
}

// sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
/// Walks paths with `bpf_loop` (Linux 5.17 and later): verified in ≈ 80 ms instead of ≈ 320.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    on_exec::<true>(ctx)
}

/// The same with the walk unrolled, for kernels without `bpf_loop` (the agent loads one).
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec_unrolled(ctx: RawTracePointContext) -> i32 {
    on_exec::<false>(ctx)
}

#[inline(always)]
fn on_exec<const LOOPED: bool>(ctx: RawTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let bprm: u64 = ctx.arg(2);
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let comm = current_comm();
    let ppid = task_tgid(real_parent(task));

    let tracked = unsafe { TRACKED.get(tgid) }.copied();
    // Untraced (or hidden) until now: the network hooks' per-CPU skip entries are stale.
    let newly_traced = tracked.is_none_or(|s| s.flags & track::HIDDEN != 0);
    let mut state = match tracked {
        Some(s) => s,
        None => {
            let is_root = unsafe { ROOT_COMMS.get(comm) }.is_some();
            if !is_root && !in_untracked_scope(task, tgid) {
                return 0;
            }
            TrackState {
                tree_ppid: if is_root { 0 } else { ppid },
                flags: if is_root { track::ROOT } else { 0 },
                parent_start_ns: if is_root {
                    0
                } else {
                    process_start(real_parent(task))
                },
            }
        }
    };

    let denied = state.flags & track::ROOT == 0 && unsafe { DENY_COMMS.get(comm) }.is_some();
    if denied {
        let was_announced = state.flags & track::ANNOUNCED != 0;
        state.flags = (state.flags | track::HIDDEN) & !track::ANNOUNCED;
        if TRACKED.insert(tgid, state, 0).is_err() {
            count(counter::TRACK_FULL);
        }
        count(counter::HIDDEN);
        if was_announced {
            // User space saw its fork: tell it to drop the process from the tree.
            emit_hidden(task, tgid, ppid, &state, comm);
        }
        return 0;
    }

    let mut record_flags = 0u16;
    if state.flags & track::ANNOUNCED == 0 {
        record_flags |= flags::FIRST_SIGHT;
    }
    if state.flags & track::ROOT != 0 {
        record_flags |= flags::ROOT;
    }
    if state.flags & track::RECORD_LOST != 0 {
        record_flags |= flags::RECORDS_LOST;
    }
    state.flags = (state.flags | track::ANNOUNCED) & !(track::HIDDEN | track::AWAITING_EXEC);
    if TRACKED.insert(tgid, state, 0).is_err() {
        count(counter::TRACK_FULL);
    }
    if newly_traced {
        crate::maps::bump_scope_generation();
    }
    if !emit_exec::<LOOPED>(task, bprm, tgid, ppid, &state, comm, record_flags) {
        mark_lost(tgid);
    }
    0
}

#[inline(always)]
fn scratch_slot() -> Option<*mut ExecRecord> {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    EXEC_SCRATCH.get_ptr_mut(cpu)
}

#[inline(always)]
fn emit_hidden(task: u64, tgid: u32, ppid: u32, state: &TrackState, comm: [u8; COMM_LEN]) {
    const LEN: usize = core::mem::size_of::<RecordHeader>() + core::mem::size_of::<ExecTail>();
    let Some(scratch) = scratch_slot() else {
        return;
    };
    let rec = unsafe { &mut *scratch };
    rec.header = base_header(kind::EXEC, LEN);
    fill_process(&mut rec.header, task, tgid, ppid, state, comm);
    rec.header.flags = flags::HIDDEN;
    rec.tail = ExecTail::default();
    output(scratch, LEN);
}

/// Copies a built record into the ring; false when the ring was full.
#[inline(always)]
fn output(record: *mut ExecRecord, len: usize) -> bool {
    crate::maps::submit(record, len)
}

#[inline(always)]
fn emit_exec<const LOOPED: bool>(
    task: u64,
    bprm: u64,
    tgid: u32,
    ppid: u32,
    state: &TrackState,
    comm: [u8; COMM_LEN],
    mut record_flags: u16,
) -> bool {
    let Some(scratch) = scratch_slot() else {
        return false;
    };
    let rec = unsafe { &mut *scratch };
    rec.header = base_header(kind::EXEC, 0);
    fill_process(&mut rec.header, task, tgid, ppid, state, comm);
    let data = rec.data.as_mut_ptr();
    let work = (&raw mut rec.work).cast::<u64>();
    let mut tail = ExecTail::default();
    let mut used: usize = 0;

    // Executable: the file the new image was loaded from (symlinks resolved).
    let mm = ptr(task, off!(task_mm));
    let exe_file = ptr(mm, off!(mm_exe_file));
    if exe_file != 0 {
        let walked = path::walk::<LOOPED>(data, work, used, exe_file + off!(file_f_path));
        if walked.truncated {
            record_flags |= flags::PATH_TRUNCATED;
        }
        if walked.detached {
            record_flags |= flags::EXE_DETACHED;
        }
        tail.exe_len = walked.len as u16;
        used = path::launder(work, used + walked.len) & (EXEC_DATA_SPAN - 1);
    }

    // Working directory.
    let fs = ptr(task, off!(task_fs));
    if fs != 0 {
        let walked = path::walk::<LOOPED>(data, work, used, fs + off!(fs_pwd));
        if walked.truncated {
            record_flags |= flags::PATH_TRUNCATED;
        } else if walked.len == 0 {
            record_flags |= flags::CWD_ROOT;
        }
        tail.cwd_len = walked.len as u16;
        used = path::launder(work, used + walked.len) & (EXEC_DATA_SPAN - 1);
    }

    // The path as given to execve (a script keeps its own name here).
    let filename = ptr(bprm, off!(bprm_filename));
    if filename != 0 {
        let pos = used & (EXEC_DATA_SPAN - 1);
        let n = unsafe {
            bpf_probe_read_kernel_str(
                data.add(pos).cast::<c_void>(),
                PATH_MAX as u32,
                filename as *const c_void,
            )
        };
        if n > 0 {
            tail.filename_len = n as u16;
            used = path::launder(work, used + n as usize) & (EXEC_DATA_SPAN - 1);
        }
    }

    // argv of the new image, read from its stack.
    let arg_start = ptr(mm, off!(mm_arg_start));
    let arg_end = ptr(mm, off!(mm_arg_end));
    if arg_end > arg_start {
        let total = arg_end - arg_start;
        tail.argv_total = total as u32;
        let mut cap = conf!(argv_cap) as u64;
        if cap > ARGV_MAX as u64 {
            cap = ARGV_MAX as u64;
        }
        let mut n = total;
        if n > cap {
            n = cap;
            record_flags |= flags::ARGV_TRUNCATED;
        }
        // n <= ARGV_MAX already; laundered and clamped again so that the verifier, which
        // cannot follow the comparisons above, sees the bound (a mask would have to be a power
        // of two minus one, and 2 * ARGV_MAX - 1 overruns the data area).
        let mut n = path::launder(work, n as usize);
        if n > ARGV_MAX {
            n = ARGV_MAX;
        }
        let pos = used & (EXEC_DATA_SPAN - 1);
        if n > 0 {
            let ret = unsafe {
                bpf_probe_read_user(
                    data.add(pos).cast::<c_void>(),
                    n as u32,
                    arg_start as *const c_void,
                )
            };
            if ret == 0 {
                tail.argv_len = n as u32;
                used += n;
            } else {
                record_flags |= flags::READ_FAILED;
            }
        }
    }

    let len = core::mem::size_of::<RecordHeader>() + core::mem::size_of::<ExecTail>() + used;
    rec.header.flags = record_flags;
    rec.header.len = len as u32;
    rec.tail = tail;
    output(scratch, len)
}

// sched_process_exit(struct task_struct *p[, bool group_dead]): fires for every thread.
// A process's exit record is written at the last context switch of one of its threads, once
// all of them have exited and been counted into the group's totals (see `group_released`):
// the thread that ends the group is not always the last to finish exiting, and a short
// process that never left the CPU has not had its runtime accounted yet at this point.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let tgid = task_tgid(task);
    if unsafe { TRACKED.get(tgid) }.is_none() && !in_untracked_scope(task, tgid) {
        return 0;
    }
    thread_exit_begins(tgid);
    if live_threads(task) != 0 {
        // A thread of a process that goes on.
        return 0;
    }
    // The group is dead. The mm is still there now, not at the final switch.
    let pending = exit_pending(task);
    // The mm is about to go: stop watching it.
    let _ = MEMORY.remove(ptr(task, off!(task_mm)));
    if EXITING.insert(tgid, pending, 0).is_err() {
        // Map full (never expected): write the record now, with what is accounted so far.
        finish_exit(task, &pending);
    }
    0
}

/// `TASK_DEAD` in `prev_state`: the task will never run again.
const TASK_DEAD: u32 = 0x80;

// sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
//              unsigned int prev_state): cheap tests first, so the cost on the context-switch
// path is a per-CPU array read and two comparisons for every switch but a task's last (and
// but one after network use, whose counts are then moved to the process).
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> i32 {
    // The leaving thread's network counts, before its exit record (if this is its end) reads
    // them.
    crate::network::on_switch();
    let prev_state: u32 = ctx.arg(3);
    if prev_state & TASK_DEAD == 0 {
        return 0;
    }
    let prev: u64 = ctx.arg(1);
    let tgid = task_tgid(prev);
    if thread_exit_ends(prev, tgid) != Some(true) {
        return 0;
    }
    let Some(pending) = unsafe { EXITING.get(tgid) }.copied() else {
        return 0;
    };
    // The removal decides which of two threads ending at once on two CPUs writes the record.
    if group_released(prev) && EXITING.remove(tgid).is_ok() {
        finish_exit(prev, &pending);
    }
    0
}

/// Writes the exit record of `task`'s process, whose threads have all exited (`task`, one of
/// them, is the current task).
#[inline(always)]
fn finish_exit(task: u64, pending: &ExitPending) {
    let tgid = task_tgid(task);
    let parent = real_parent(task);
    let ppid = task_tgid(parent);
    let mut record_flags = 0u16;
    let tracked = unsafe { TRACKED.get(tgid) }.copied();
    let state = match tracked {
        Some(s) => s,
        None => {
            if !in_untracked_scope(task, tgid) {
                return;
            }
            record_flags |= flags::FIRST_SIGHT;
            TrackState {
                tree_ppid: ppid,
                flags: 0,
                parent_start_ns: process_start(parent),
            }
        }
    };
    emit_exit(task, tgid, ppid, &state, record_flags, pending);
    let _ = NET_IO.remove(tgid);
    crate::files::forget(tgid);
    // Only after its exit record is in the ring: `run` takes an empty TRACKED to mean that
    // every exit of the tree is there to be read.
    if tracked.is_some() {
        let _ = TRACKED.remove(tgid);
    }
}

#[inline(always)]
fn emit_exit(
    task: u64,
    tgid: u32,
    ppid: u32,
    state: &TrackState,
    mut record_flags: u16,
    pending: &ExitPending,
) {
    if state.flags & track::HIDDEN != 0 {
        count(counter::HIDDEN);
        return;
    }
    // The `run` command's exec failed: the process was never the command (`run` reports why
    // it could not start).
    if state.flags & track::AWAITING_EXEC != 0 {
        return;
    }
    if state.flags & track::RECORD_LOST != 0 {
        record_flags |= flags::RECORDS_LOST;
    }
    if state.flags & track::ANNOUNCED == 0 {
        record_flags |= flags::FIRST_SIGHT;
    }
    if state.flags & track::ROOT != 0 {
        record_flags |= flags::ROOT;
    }
    let Some(mut entry) = EVENTS.reserve::<ExitRecord>(0) else {
        count(counter::RING_FULL);
        return;
    };
    let mut header = base_header(kind::EXIT, core::mem::size_of::<ExitRecord>());
    // The leader's name, as `ps` shows the process: the thread that writes the record may
    // have been named otherwise.
    let leader = ptr(task, off!(task_group_leader));
    fill_process(&mut header, task, tgid, ppid, state, task_comm(leader));
    header.flags = record_flags;
    let maxrss_pages = if pending.peak_pages > 0 {
        pending.peak_pages
    } else {
        pending.group_maxrss
    };
    let rec = entry.as_mut_ptr();
    // Field by field into the ring buffer: the record is too large for the stack.
    unsafe {
        (*rec).header = header;
        (*rec).tail.exit_status = exit_code(task);
        (*rec).tail.present = activity_present()
            | conf!(network_hooks)
            | if oom_victim(task) {
                exporter_common::present::OOM_VICTIM
            } else {
                0
            };
        (*rec).tail.maxrss_pages = maxrss_pages;
        set_group_totals(&raw mut (*rec).tail, task, tgid);
        (*rec).tail.network = crate::network::totals(tgid);
        let (sent, unsent) = crate::files::totals(tgid, header.start_ns);
        (*rec).tail.file_records = sent;
        (*rec).tail.file_unsent = unsent;
    }
    let _ = DEAD_THREADS.remove(tgid);
    entry.submit(wakeup_flags());
    count(counter::EMITTED);
}
