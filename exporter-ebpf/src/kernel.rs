//! Reads of kernel memory at BTF-resolved offsets (the Rust substitute for CO-RE).

use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use exporter_common::{ABSENT, Activity, COMM_LEN, present};

use crate::globals::off;

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
