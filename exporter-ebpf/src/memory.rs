//! Memory movements on the `rss_stat` raw tracepoint (every change of an mm's RSS counters,
//! i.e. on page faults and unmaps): aggregated here, so that a record leaves only when a traced
//! process's RSS moved by at least the configured step (pages and percent). The fast paths: an
//! mm that is not the current task's returns at once; an untraced process's mm is remembered
//! per CPU and returns after one array read; a traced process inside its band returns after
//! one hash lookup and three counter reads.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use exporter_common::{
    MemoryRecord, MemoryState, MemoryTail, TrackState, counter, flags, kind, track,
};

use crate::{
    kernel::{process_start, ptr, read, real_parent, task_tgid},
    lifecycle::{base_header, current_comm, fill_process, in_untracked_scope},
    maps::{EVENTS, MEMORY, MEMORY_SKIP, TRACKED, conf, count, off, wakeup_flags},
};

/// Resident pages of `mm` (file + anon + shmem; swap entries are not resident).
#[inline(always)]
fn rss_pages(mm: u64) -> u64 {
    let counter = |member: u64| {
        let at = off!(mm_rss_stat) + member * off!(rss_counter_size) + off!(rss_counter_count);
        read::<i64>(mm, at).unwrap_or(0).max(0) as u64
    };
    counter(0) + counter(1) + counter(3)
}

/// The band around `pages` inside which RSS is not reported again.
#[inline(always)]
fn band(pages: u64) -> MemoryState {
    let step = conf!(memory_step_pages);
    let pct = pages * conf!(memory_step_percent) as u64 / 100;
    let step = if pct > step { pct } else { step };
    MemoryState {
        reported: pages,
        low: pages.saturating_sub(step),
        high: pages + step,
    }
}

// rss_stat(struct mm_struct *mm, int member)
#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn rss_stat(ctx: RawTracePointContext) -> i32 {
    let mm: u64 = ctx.arg(0);
    let task = unsafe { bpf_get_current_task() };
    if ptr(task, off!(task_mm)) != mm {
        return 0;
    }
    let Some(skip) = MEMORY_SKIP.get_ptr_mut(0) else {
        return 0;
    };
    if unsafe { *skip } == mm {
        return 0;
    }
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let pages = rss_pages(mm);
    let Some(state) = MEMORY.get_ptr_mut(tgid) else {
        // First change seen for this process: start watching it if it is in scope.
        if unsafe { TRACKED.get(tgid) }.is_some() || in_untracked_scope(task, tgid) {
            let _ = MEMORY.insert(tgid, band(pages), 0);
        } else {
            unsafe { *skip = mm };
        }
        return 0;
    };
    let (low, high, previous) = unsafe { ((*state).low, (*state).high, (*state).reported) };
    // `low == 0`: the last report was under one step, so RSS cannot fall a whole step.
    if pages < high && (low == 0 || pages > low) {
        return 0;
    }
    unsafe { *state = band(pages) };
    emit(task, tgid, pages, previous);
    0
}

#[inline(always)]
fn emit(task: u64, tgid: u32, pages: u64, previous: u64) {
    let parent = real_parent(task);
    let ppid = task_tgid(parent);
    let mut record_flags = 0u16;
    let state = match unsafe { TRACKED.get(tgid) }.copied() {
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
    if state.flags & track::HIDDEN != 0 {
        return;
    }
    if state.flags & track::ANNOUNCED == 0 {
        record_flags |= flags::FIRST_SIGHT;
    }
    let Some(mut entry) = EVENTS.reserve::<MemoryRecord>(0) else {
        count(counter::RING_FULL);
        return;
    };
    let mut header = base_header(kind::MEMORY, core::mem::size_of::<MemoryRecord>());
    fill_process(&mut header, task, tgid, ppid, &state, current_comm());
    header.flags = record_flags;
    let shift = conf!(page_shift) as u64;
    entry.write(MemoryRecord {
        header,
        tail: MemoryTail {
            rss_bytes: pages << shift,
            previous_bytes: previous << shift,
        },
    });
    entry.submit(wakeup_flags());
    count(counter::EMITTED);
}
