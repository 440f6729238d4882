//! Periodic samples of live traced processes: a task iterator (`iter/task`) that the agent runs
//! once per sampling interval. It visits every thread on the host; each thread of a traced,
//! visible process sends its CPU time, I/O, faults and switches so far, its group's exited
//! threads' totals and its mm's RSS. The agent sums the threads of a process over one round; the iterator's final call
//! (no task) closes the round. Runs in the agent's context: everything is read from the task.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::seq_file,
    helpers::generated::{bpf_ktime_get_ns, bpf_seq_write},
};
use exporter_common::{
    Activity, PF_KTHREAD, RecordHeader, SampleEndRecord, SampleRecord, counter, flags, kind, track,
};

use crate::{
    exits::set_dead_activity,
    globals::{conf, off},
    kernel::{
        activity_present, add_task_activity, process_start, ptr, read, real_parent, resident_pages,
        task_comm, task_flags, task_pid, task_tgid,
    },
    maps::{EVENTS, TRACKED, count, wakeup_flags},
    record::mark_lost,
};

/// `bpf_iter_meta.session_id` (UAPI layout: `seq` pointer, then the session id).
const META_SESSION_ID: u64 = 8;

#[inline(always)]
fn header(kind: u16, len: usize) -> RecordHeader {
    RecordHeader {
        kind,
        len: len as u32,
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        ..RecordHeader::default()
    }
}

// struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub extern "C" fn sample_tasks(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const u64;
    let meta = unsafe { core::ptr::read_volatile(ctx) };
    let task = unsafe { core::ptr::read_volatile(ctx.add(1)) };
    let session = read::<u64>(meta, META_SESSION_ID).unwrap_or(0);
    // `meta->seq`, loaded directly: the helper below needs the typed pointer.
    let seq = unsafe { core::ptr::read_volatile(meta as *const *mut seq_file) };
    if task == 0 {
        end_round(session);
        return 0;
    }
    if task_flags(task) & PF_KTHREAD != 0 {
        return 0;
    }
    let tgid = task_tgid(task);
    let Some(state) = (unsafe { TRACKED.get(tgid) }) else {
        return 0;
    };
    if state.flags & (track::HIDDEN | track::AWAITING_EXEC) != 0 {
        return 0;
    }
    let tree_ppid = state.tree_ppid;
    let lost = state.flags & track::RECORD_LOST != 0;
    let signal = ptr(task, off!(task_signal));
    let of_signal = |offset: u64| read::<u64>(signal, offset).unwrap_or(0);
    let of_task = |offset: u64| read::<u64>(task, offset).unwrap_or(0);
    let Some(mut entry) = EVENTS.reserve::<SampleRecord>(0) else {
        count(counter::RING_FULL);
        mark_lost(tgid);
        return 0;
    };
    let mut h = header(kind::SAMPLE, core::mem::size_of::<SampleRecord>());
    if lost {
        h.flags = flags::RECORDS_LOST;
    }
    h.ppid = task_tgid(real_parent(task));
    h.tgid = tgid;
    h.pid = task_pid(task);
    h.tree_ppid = tree_ppid;
    h.start_ns = process_start(task);
    h.comm = task_comm(task);
    let rec = entry.as_mut_ptr();
    // Field by field into the ring buffer: the record is too large for the stack.
    unsafe {
        (*rec).header = h;
        let tail = &mut (*rec).tail;
        tail.session = session;
        tail.utime_ns = of_task(off!(task_utime));
        tail.stime_ns = of_task(off!(task_stime));
        tail.runtime_ns = of_task(off!(task_sum_exec_runtime));
        tail.dead_utime_ns = of_signal(off!(signal_utime));
        tail.dead_stime_ns = of_signal(off!(signal_stime));
        tail.dead_runtime_ns = of_signal(off!(signal_sum_sched_runtime));
        let run_delay = off!(task_run_delay);
        tail.run_delay_ns = if run_delay as u32 == exporter_common::ABSENT {
            0
        } else {
            of_task(run_delay)
        };
        tail.rss_pages = resident_pages(ptr(task, off!(task_mm)));
        tail.present = activity_present() | conf!(network_hooks);
        tail._pad0 = 0;
        tail.activity = Activity::default();
        add_task_activity(&mut tail.activity, task);
        set_dead_activity(&mut tail.dead_activity, task, tgid);
        tail.network = crate::network::totals(tgid);
    }
    entry.submit(wakeup_flags());
    count(counter::EMITTED);
    // One byte to the iterator's file per record sent: a read of N bytes returns after N
    // records, so the agent paces a round (thousands of live processes) to what its reader
    // drains, instead of the whole round landing in the ring at once.
    let one = 1u8;
    unsafe { bpf_seq_write(seq, (&raw const one).cast::<c_void>(), 1) };
    0
}

#[inline(always)]
fn end_round(session: u64) {
    let Some(mut entry) = EVENTS.reserve::<SampleEndRecord>(0) else {
        count(counter::RING_FULL);
        return;
    };
    entry.write(SampleEndRecord {
        header: header(kind::SAMPLE_END, core::mem::size_of::<SampleEndRecord>()),
        session,
    });
    entry.submit(wakeup_flags());
    count(counter::EMITTED);
}
