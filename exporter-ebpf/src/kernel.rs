//! Reads of kernel memory at BTF-resolved offsets (the Rust substitute for CO-RE).

use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::generated::bpf_probe_read_kernel};
use exporter_common::{ABSENT, Activity, COMM_LEN, ExitTail, present};

use crate::maps::{DEAD_THREADS, off};

/// Reads a `T` at `base + offset`; `None` for a null base or a failed read.
#[inline(always)]
pub fn read<T: Copy>(base: u64, offset: u64) -> Option<T> {
    if base == 0 {
        return None;
    }
    let mut value = MaybeUninit::<T>::uninit();
    let ret = unsafe {
        bpf_probe_read_kernel(
            value.as_mut_ptr().cast::<c_void>(),
            core::mem::size_of::<T>() as u32,
            (base + offset) as *const c_void,
        )
    };
    if ret == 0 {
        Some(unsafe { value.assume_init() })
    } else {
        None
    }
}

#[inline(always)]
pub fn ptr(base: u64, offset: u64) -> u64 {
    read::<u64>(base, offset).unwrap_or(0)
}

#[inline(always)]
pub fn task_tgid(task: u64) -> u32 {
    read::<u32>(task, off!(task_tgid)).unwrap_or(0)
}

#[inline(always)]
pub fn task_pid(task: u64) -> u32 {
    read::<u32>(task, off!(task_pid)).unwrap_or(0)
}

/// Start time of the task's thread-group leader: the process identity with its tgid.
#[inline(always)]
pub fn process_start(task: u64) -> u64 {
    let leader = ptr(task, off!(task_group_leader));
    read::<u64>(leader, off!(task_start_time)).unwrap_or(0)
}

#[inline(always)]
pub fn real_parent(task: u64) -> u64 {
    ptr(task, off!(task_real_parent))
}

#[inline(always)]
pub fn task_flags(task: u64) -> u32 {
    read::<u32>(task, off!(task_flags)).unwrap_or(0)
}

#[inline(always)]
pub fn task_comm(task: u64) -> [u8; COMM_LEN] {
    read::<[u8; COMM_LEN]>(task, off!(task_comm)).unwrap_or([0; COMM_LEN])
}

/// Threads still alive in the task's thread group (`signal->live`); 0 once the last one is in
/// do_exit, which is how a process exit is told apart from a thread exit on every kernel.
#[inline(always)]
pub fn live_threads(task: u64) -> i32 {
    let signal = ptr(task, off!(task_signal));
    read::<i32>(signal, off!(signal_live)).unwrap_or(-1)
}

/// `SIGNAL_GROUP_EXIT` in `signal->flags`: the group ends with `group_exit_code`.
const SIGNAL_GROUP_EXIT: u32 = 0x4;

/// The wait status of `task`'s dead process, as `wait_task_zombie` gives it to the parent: the
/// group's exit code after a group exit (`exit_group`, a fatal signal), the leader's otherwise
/// (the last thread to end may have ended with its own `exit`).
#[inline(always)]
pub fn exit_code(task: u64) -> u32 {
    let signal = ptr(task, off!(task_signal));
    if read::<u32>(signal, off!(signal_flags)).unwrap_or(0) & SIGNAL_GROUP_EXIT != 0 {
        return read::<u32>(signal, off!(signal_group_exit_code)).unwrap_or(0);
    }
    let leader = ptr(task, off!(task_group_leader));
    read::<u32>(leader, off!(task_exit_code)).unwrap_or(0)
}

/// Peak RSS of the task's current image, in pages: the mm's high-water mark, or its current RSS
/// (file + anon + shmem) if higher; 0 without an mm.
#[inline(always)]
pub fn image_peak_rss(task: u64) -> u64 {
    let mm = ptr(task, off!(task_mm));
    if mm == 0 {
        return 0;
    }
    let rss = resident_pages(mm);
    let hiwater = read::<u64>(mm, off!(mm_hiwater_rss)).unwrap_or(0);
    if rss > hiwater { rss } else { hiwater }
}

/// Resident pages of `mm` now: MM_FILEPAGES + MM_ANONPAGES + MM_SHMEMPAGES (MM_SWAPENTS, 2, is
/// not resident). The counters' central values, as `/proc/PID/statm` shows them.
#[inline(always)]
pub fn resident_pages(mm: u64) -> u64 {
    if mm == 0 {
        return 0;
    }
    let counter = |member: u64| {
        let at = off!(mm_rss_stat) + member * off!(rss_counter_size) + off!(rss_counter_count);
        read::<i64>(mm, at).unwrap_or(0).max(0) as u64
    };
    counter(0) + counter(1) + counter(3)
}

/// What is read of a dead thread group while its mm is still there (at `sched_process_exit`).
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct ExitPending {
    /// Peak RSS of the final image, pages (0: unknown).
    pub peak_pages: u64,
    /// `signal->maxrss`, pages.
    pub group_maxrss: u64,
}

/// Adds `task`'s own counters (one thread) to `sum`, field by field: no [`Activity`] on the
/// stack, which the exit programs cannot spare. An I/O member this kernel lacks adds nothing.
#[inline(always)]
pub fn add_task_activity(sum: &mut Activity, task: u64) {
    let ioac = off!(task_ioac);
    let io = |member: u64| {
        if ioac as u32 == ABSENT || member as u32 == ABSENT {
            0
        } else {
            read::<u64>(task, ioac + member).unwrap_or(0)
        }
    };
    let get = |offset: u64| read::<u64>(task, offset).unwrap_or(0);
    sum.rchar += io(off!(ioac_rchar));
    sum.wchar += io(off!(ioac_wchar));
    sum.syscr += io(off!(ioac_syscr));
    sum.syscw += io(off!(ioac_syscw));
    sum.read_bytes += io(off!(ioac_read_bytes));
    sum.write_bytes += io(off!(ioac_write_bytes));
    sum.cancelled_write_bytes += io(off!(ioac_cancelled_write_bytes));
    sum.min_flt += get(off!(task_min_flt));
    sum.maj_flt += get(off!(task_maj_flt));
    sum.nvcsw += get(off!(task_nvcsw));
    sum.nivcsw += get(off!(task_nivcsw));
}

/// Sets `a` to the counters of the group's threads that already exited: faults and switches
/// from `signal` (which keeps reaped children's apart, in `cmin_flt` and the like), I/O from
/// [`DEAD_THREADS`] (`signal->ioac` mixes in every reaped child).
#[inline(always)]
pub fn set_dead_activity(a: &mut Activity, task: u64, tgid: u32) {
    let signal = ptr(task, off!(task_signal));
    let get = |offset: u64| read::<u64>(signal, offset).unwrap_or(0);
    a.min_flt = get(off!(signal_min_flt));
    a.maj_flt = get(off!(signal_maj_flt));
    a.nvcsw = get(off!(signal_nvcsw));
    a.nivcsw = get(off!(signal_nivcsw));
    set_dead_io(a, tgid);
}

/// Sets `a`'s I/O fields to those of the process's exited threads ([`DEAD_THREADS`]).
#[inline(always)]
fn set_dead_io(a: &mut Activity, tgid: u32) {
    let dead = unsafe { DEAD_THREADS.get(tgid) };
    let io = |f: fn(&Activity) -> u64| dead.map(|d| f(&d.io)).unwrap_or(0);
    a.rchar = io(|d| d.rchar);
    a.wchar = io(|d| d.wchar);
    a.syscr = io(|d| d.syscr);
    a.syscw = io(|d| d.syscw);
    a.read_bytes = io(|d| d.read_bytes);
    a.write_bytes = io(|d| d.write_bytes);
    a.cancelled_write_bytes = io(|d| d.cancelled_write_bytes);
}

/// See [`DEAD_THREADS`].
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct DeadThreads {
    /// Only the I/O fields are used.
    pub io: Activity,
    /// Threads in do_exit whose last switch is still to come. Read as signed: a thread whose
    /// `sched_process_exit` came before tracing did takes it below 0.
    pub exiting: u64,
}

/// A thread of a process in scope is in do_exit (`sched_process_exit`): counted until its last
/// context switch.
#[inline(always)]
pub fn thread_exit_begins(tgid: u32) {
    if DEAD_THREADS.get_ptr_mut(tgid).is_none() {
        // NOEXIST: a thread exiting on another CPU may have made it since.
        let _ = DEAD_THREADS.insert(tgid, DeadThreads::default(), BPF_NOEXIST as u64);
    }
    if let Some(dead) = DEAD_THREADS.get_ptr_mut(tgid) {
        // SAFETY: a live map value.
        atomic_add(unsafe { &raw mut (*dead).exiting }, 1);
    }
}

/// The last context switch of `task`, a thread of a process in scope: its I/O is final and is
/// added to the process's. Whether no other thread of the process is still exiting; `None`
/// when the process is not in [`DEAD_THREADS`]. Atomic: threads of a group exit on several
/// CPUs at once.
#[inline(always)]
pub fn thread_exit_ends(task: u64, tgid: u32) -> Option<bool> {
    let dead = DEAD_THREADS.get_ptr_mut(tgid)?;
    let ioac = off!(task_ioac);
    let io = |member: u64| {
        if ioac as u32 == ABSENT || member as u32 == ABSENT {
            0
        } else {
            read::<u64>(task, ioac + member).unwrap_or(0)
        }
    };
    // SAFETY: a live map value.
    unsafe {
        let sum = &raw mut (*dead).io;
        atomic_add(&raw mut (*sum).rchar, io(off!(ioac_rchar)));
        atomic_add(&raw mut (*sum).wchar, io(off!(ioac_wchar)));
        atomic_add(&raw mut (*sum).syscr, io(off!(ioac_syscr)));
        atomic_add(&raw mut (*sum).syscw, io(off!(ioac_syscw)));
        atomic_add(&raw mut (*sum).read_bytes, io(off!(ioac_read_bytes)));
        atomic_add(&raw mut (*sum).write_bytes, io(off!(ioac_write_bytes)));
        atomic_add(
            &raw mut (*sum).cancelled_write_bytes,
            io(off!(ioac_cancelled_write_bytes)),
        );
        atomic_add(&raw mut (*dead).exiting, u64::MAX);
        Some(core::ptr::read_volatile(&raw const (*dead).exiting) as i64 <= 0)
    }
}

/// Was the task's process chosen by the OOM killer? (`signal->oom_mm`, set when it was marked
/// as the victim, stays until the signal struct is freed.)
#[inline(always)]
pub fn oom_victim(task: u64) -> bool {
    let offset = off!(signal_oom_mm);
    offset as u32 != ABSENT && ptr(ptr(task, off!(task_signal)), offset) != 0
}

/// Which I/O fields this kernel has ([`present`] bits).
#[inline(always)]
pub fn activity_present() -> u32 {
    let has = |member: u64| off!(task_ioac) as u32 != ABSENT && member as u32 != ABSENT;
    let mut bits = 0;
    if has(off!(ioac_rchar))
        && has(off!(ioac_wchar))
        && has(off!(ioac_syscr))
        && has(off!(ioac_syscw))
    {
        bits |= present::IO_CHARS;
    }
    if has(off!(ioac_read_bytes))
        && has(off!(ioac_write_bytes))
        && has(off!(ioac_cancelled_write_bytes))
    {
        bits |= present::IO_BYTES;
    }
    bits
}

#[inline(always)]
pub fn exit_pending(task: u64) -> ExitPending {
    let signal = ptr(task, off!(task_signal));
    ExitPending {
        peak_pages: image_peak_rss(task),
        group_maxrss: read::<u64>(signal, off!(signal_maxrss)).unwrap_or(0),
    }
}

/// Whether a dead thread group's counters are final, at the last context switch of `task`,
/// one of its threads. They are once every thread but the leader has been released (its
/// counters moved into `signal` by `__exit_signal`, which also counts it out of
/// `nr_threads`) and the leader has exited too. Threads of a group exit concurrently: the
/// one that ends the group (`live` to 0) is not always the last to be released, nor the
/// leader. A traced thread is released only when its tracer reaps it, which no context switch
/// follows: its group is written at once.
#[inline(always)]
pub fn group_released(task: u64) -> bool {
    let signal = ptr(task, off!(task_signal));
    if read::<i32>(signal, off!(signal_live)).unwrap_or(0) != 0 {
        return false;
    }
    let hashed = read::<i32>(signal, off!(signal_nr_threads)).unwrap_or(0);
    let leader = ptr(task, off!(task_group_leader));
    let leader_done =
        leader == task || read::<i32>(leader, off!(task_exit_state)).unwrap_or(0) != 0;
    hashed <= 0
        || (hashed == 1 && leader_done)
        || read::<u32>(task, off!(task_ptrace)).unwrap_or(0) != 0
}

/// Sets a released group's CPU time, faults and switches (see [`group_released`]): the
/// released threads' from `signal`, and the leader's own while the parent has not reaped it
/// (it is then still counted in `nr_threads`). Read between two reads of `stats_lock`'s
/// sequence, which `__exit_signal` makes odd while it moves a thread's counters in, so that a
/// reap racing this read neither drops nor doubles the leader. I/O comes from
/// [`DEAD_THREADS`] (see there).
///
/// # Safety
/// `tail` points into a reserved ring buffer record.
#[inline(always)]
pub unsafe fn set_group_totals(tail: *mut ExitTail, task: u64, tgid: u32) {
    let signal = ptr(task, off!(task_signal));
    let leader = ptr(task, off!(task_group_leader));
    let of_signal = |offset: u64| read::<u64>(signal, offset).unwrap_or(0);
    let sequence = || read::<u32>(signal, off!(signal_stats_lock)).unwrap_or(0);
    // Two tries: a second reap cannot race the retry (the leader is reaped once).
    for _ in 0..2 {
        let before = sequence();
        let hashed = read::<i32>(signal, off!(signal_nr_threads)).unwrap_or(0);
        let own = |offset: u64| {
            if hashed > 0 {
                read::<u64>(leader, offset).unwrap_or(0)
            } else {
                0
            }
        };
        unsafe {
            (*tail).utime_ns = of_signal(off!(signal_utime)) + own(off!(task_utime));
            (*tail).stime_ns = of_signal(off!(signal_stime)) + own(off!(task_stime));
            (*tail).runtime_ns =
                of_signal(off!(signal_sum_sched_runtime)) + own(off!(task_sum_exec_runtime));
            let a = &mut (*tail).activity;
            a.min_flt = of_signal(off!(signal_min_flt)) + own(off!(task_min_flt));
            a.maj_flt = of_signal(off!(signal_maj_flt)) + own(off!(task_maj_flt));
            a.nvcsw = of_signal(off!(signal_nvcsw)) + own(off!(task_nvcsw));
            a.nivcsw = of_signal(off!(signal_nivcsw)) + own(off!(task_nivcsw));
        }
        if before & 1 == 0 && sequence() == before {
            break;
        }
    }
    set_dead_io(unsafe { &mut (*tail).activity }, tgid);
}

/// Adds to a counter that several CPUs may update at once: BPF's atomic add, written out
/// because `core` offers no atomic read-modify-write on this target.
#[inline(always)]
pub fn atomic_add(counter: *mut u64, n: u64) {
    // SAFETY: a pointer into a live map value, 8-byte aligned.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({0} + 0) += {1}",
            in(reg) counter,
            in(reg) n,
        )
    };
}
