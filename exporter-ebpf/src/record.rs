//! What every record to user space starts with: the header with the process's identity, tree
//! parent and flags (first sight, records lost before), and the mark that a record of a
//! process was lost, which its later records carry.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_uid_gid, bpf_ktime_get_ns,
};
use exporter_common::{COMM_LEN, RecordHeader, TrackState, flags, track};

use crate::{
    kernel::{process_start, real_parent, task_tgid},
    maps::TRACKED,
};

#[inline(always)]
pub(crate) fn current_comm() -> [u8; COMM_LEN] {
    let mut comm = [0u8; COMM_LEN];
    unsafe { bpf_get_current_comm(comm.as_mut_ptr().cast::<c_void>(), COMM_LEN as u32) };
    comm
}

/// Fills the fields every record shares; the caller sets the process-specific ones.
#[inline(always)]
pub(crate) fn base_header(kind: u16, len: usize) -> RecordHeader {
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    RecordHeader {
        kind,
        flags: 0,
        len: len as u32,
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        start_ns: 0,
        parent_start_ns: 0,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        ppid: 0,
        tree_ppid: 0,
        uid: unsafe { bpf_get_current_uid_gid() } as u32,
        _pad0: 0,
        comm: [0; COMM_LEN],
    }
}

/// The header of a record about the current task's process `tgid` (`tracked`: its `TRACKED`
/// entry), or `None` when its events are not sent (hidden, or the `run` command before its
/// exec). A process user space has not heard of yet is a first sight.
#[inline(always)]
pub(crate) fn event_header(
    kind: u16,
    len: usize,
    task: u64,
    tgid: u32,
    tracked: Option<TrackState>,
) -> Option<RecordHeader> {
    let parent = real_parent(task);
    let ppid = task_tgid(parent);
    let mut record_flags = 0u16;
    let state = match tracked {
        Some(s) => s,
        None => {
            record_flags |= flags::FIRST_SIGHT;
            TrackState {
                tree_ppid: ppid,
                flags: 0,
                parent_start_ns: process_start(parent),
            }
        }
    };
    if state.flags & (track::HIDDEN | track::AWAITING_EXEC) != 0 {
        return None;
    }
    if state.flags & track::ANNOUNCED == 0 {
        record_flags |= flags::FIRST_SIGHT;
    }
    if state.flags & track::RECORD_LOST != 0 {
        record_flags |= flags::RECORDS_LOST;
    }
    let mut header = base_header(kind, len);
    fill_process(&mut header, task, tgid, ppid, &state, current_comm());
    header.flags = record_flags;
    Some(header)
}

#[inline(always)]
pub(crate) fn fill_process(
    header: &mut RecordHeader,
    task: u64,
    tgid: u32,
    ppid: u32,
    state: &TrackState,
    comm: [u8; COMM_LEN],
) {
    header.tgid = tgid;
    header.ppid = ppid;
    header.tree_ppid = state.tree_ppid;
    header.parent_start_ns = state.parent_start_ns;
    header.start_ns = process_start(task);
    header.comm = comm;
}

/// Remembers that a record of process `tgid` was lost: its later records say so.
#[inline(always)]
pub(crate) fn mark_lost(tgid: u32) {
    if let Some(state) = TRACKED.get_ptr_mut(tgid) {
        // SAFETY: a pointer to a live map value; a racing update only sets more bits.
        unsafe { (*state).flags |= track::RECORD_LOST };
    }
}
