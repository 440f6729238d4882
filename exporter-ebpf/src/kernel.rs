//! Reads of kernel memory at BTF-resolved offsets (the Rust substitute for CO-RE).

use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use exporter_common::COMM_LEN;

use crate::maps::off;

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

#[inline(always)]
pub fn exit_code(task: u64) -> u32 {
    read::<u32>(task, off!(task_exit_code)).unwrap_or(0)
}
