//! A process's exit, accounted thread by thread: every exiting thread of a process in scope is
//! counted in at `sched_process_exit` and out at its final context switch (summing its I/O
//! into [`DEAD_THREADS`]); the exit record is written once the group is released, with the
//! group's totals read from `signal` and the leader.

use aya_ebpf::bindings::BPF_NOEXIST;
use exporter_common::{ABSENT, Activity, ExitTail};

use crate::{
    atomic::atomic_add,
    globals::off,
    kernel::{image_peak_rss, ptr, read},
    maps::{DEAD_THREADS, DeadThreads, ExitPending},
};

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
