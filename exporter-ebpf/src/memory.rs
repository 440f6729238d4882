//! Memory movements on the `rss_stat` raw tracepoint (every change of an mm's RSS counters,
//! i.e. on page faults and unmaps): aggregated here, so that a record leaves only when a traced
//! process's RSS moved by at least the configured step (pages and percent).
//!
//! This runs on every page fault, so the common paths are short: an mm known to belong to no
//! traced process returns after one per-CPU array read (and a check that its process and the
//! scope are still those it was judged by), and so do all but every
//! `MEMORY_SAMPLE`th change on a CPU (a step of 8 MiB is 2,048 pages: looking at one change in
//! 16 moves a report by a few pages at most). A looked-at change of a traced mm inside its band
//! costs one hash lookup and one counter read (the other counters are cached in its entry).
//! Only the first change of an mm and a step out of the band look at the current task.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use exporter_common::{MemoryRecord, MemoryState, MemoryTail, TrackState, counter, kind};

use crate::{
    globals::{conf, off},
    kernel::{ptr, read},
    maps::{EVENTS, MEMORY, MEMORY_CPU, MemoryCpu, TRACKED, count, scope_generation, wakeup_flags},
    record::{event_header, mark_lost},
    scope::in_untracked_scope,
};

/// One RSS change in this many, per CPU, is looked at.
const MEMORY_SAMPLE: u64 = 16;

/// Resident counters: MM_FILEPAGES, MM_ANONPAGES and MM_SHMEMPAGES (2, MM_SWAPENTS, is not).
#[inline(always)]
fn resident(member: u64) -> bool {
    member == 0 || member == 1 || member == 3
}

#[inline(always)]
fn counter_pages(mm: u64, member: u64) -> u64 {
    let at = off!(mm_rss_stat) + member * off!(rss_counter_size) + off!(rss_counter_count);
    read::<i64>(mm, at).unwrap_or(0).max(0) as u64
}

/// Sets the band around `pages` inside which RSS is not reported again.
#[inline(always)]
fn rebase(state: &mut MemoryState, pages: u64) {
    let step = conf!(memory_step_pages);
    let pct = pages * conf!(memory_step_percent) as u64 / 100;
    let step = if pct > step { pct } else { step };
    state.reported = pages;
    state.low = pages.saturating_sub(step);
    state.high = pages + step;
}

/// The entry of an mm first seen now, for process `tgid`: its counters as they are.
#[inline(always)]
fn fresh_state(mm: u64, tgid: u32) -> MemoryState {
    let mut state = MemoryState {
        owner: tgid as u64,
        ..MemoryState::default()
    };
    for m in [0u64, 1, 3] {
        state.counters[m as usize] = counter_pages(mm, m);
    }
    let pages = state.counters[0] + state.counters[1] + state.counters[3];
    rebase(&mut state, pages);
    state
}

/// An entry made for another process than the one that owns `mm` now (the current task, if
/// its mm is this one).
#[inline(always)]
fn stale(state: &MemoryState, mm: u64) -> bool {
    state.owner != unsafe { bpf_get_current_pid_tgid() } >> 32
        && ptr(unsafe { bpf_get_current_task() }, off!(task_mm)) == mm
}

/// The first change seen of `mm` (or the first since its entry went stale): watch it if its
/// process is traced, skip it on this CPU if not.
#[inline(always)]
fn first_change(cpu: &mut MemoryCpu, mm: u64) {
    match owner(mm) {
        Owner::Traced(_, tgid, _) => {
            let _ = MEMORY.insert(mm, fresh_state(mm, tgid), 0);
        }
        Owner::Untraced => {
            cpu.skip = mm;
            cpu.skip_tgid = unsafe { bpf_get_current_pid_tgid() } >> 32;
            cpu.skip_generation = scope_generation();
        }
        Owner::Unknown => {}
    }
}

/// Who changed `mm`.
enum Owner {
    /// Not the current task (exec building a new mm, reclaim, another process): decide later.
    Unknown,
    /// The current task, which is not traced.
    Untraced,
    /// The current task, its tgid and its `TRACKED` entry (a pointer: a copied `Option` of the
    /// entry carried undefined bytes when `None`, which the verifier refused to see spilled).
    Traced(u64, u32, Option<*const TrackState>),
}

#[inline(always)]
fn owner(mm: u64) -> Owner {
    let task = unsafe { bpf_get_current_task() };
    if ptr(task, off!(task_mm)) != mm {
        return Owner::Unknown;
    }
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let tracked = TRACKED.get_ptr(tgid);
    if tracked.is_none() && !in_untracked_scope(task, tgid) {
        return Owner::Untraced;
    }
    Owner::Traced(task, tgid, tracked)
}

// rss_stat(struct mm_struct *mm, int member)
#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn rss_stat(ctx: RawTracePointContext) -> i32 {
    let mm: u64 = ctx.arg(0);
    let member = ctx.arg::<u64>(1) & 0xffff_ffff;
    if !resident(member) {
        return 0;
    }
    let Some(cpu) = MEMORY_CPU.get_ptr_mut(0) else {
        return 0;
    };
    let cpu = unsafe { &mut *cpu };
    if cpu.skip == mm
        && cpu.skip_tgid == unsafe { bpf_get_current_pid_tgid() } >> 32
        && cpu.skip_generation == scope_generation()
    {
        return 0;
    }
    cpu.ticks += 1;
    if cpu.ticks % MEMORY_SAMPLE != 0 {
        return 0;
    }
    let state = match MEMORY.get_ptr_mut(mm) {
        Some(state) if !stale(unsafe { &*state }, mm) => unsafe { &mut *state },
        found => {
            if found.is_some() {
                let _ = MEMORY.remove(mm);
            }
            first_change(cpu, mm);
            return 0;
        }
    };
    let value = counter_pages(mm, member);
    match member {
        0 => state.counters[0] = value,
        1 => state.counters[1] = value,
        _ => state.counters[3] = value,
    }
    let pages = state.counters[0] + state.counters[1] + state.counters[3];
    // `low == 0`: the last report was under one step, so RSS cannot fall a whole step.
    if pages < state.high && (state.low == 0 || pages > state.low) {
        return 0;
    }
    // Out of the band: report it, from the owner's context (another task changing this mm,
    // e.g. reclaim, waits for the owner's next change).
    let Owner::Traced(task, tgid, tracked) = owner(mm) else {
        return 0;
    };
    let previous = state.reported;
    rebase(state, pages);
    emit(task, tgid, tracked, pages, previous);
    0
}

#[inline(always)]
fn emit(task: u64, tgid: u32, tracked: Option<*const TrackState>, pages: u64, previous: u64) {
    let Some(header) = event_header(
        kind::MEMORY,
        core::mem::size_of::<MemoryRecord>(),
        task,
        tgid,
        // SAFETY: a map value, alive while the program runs.
        tracked.map(|state| unsafe { *state }),
    ) else {
        return;
    };
    let Some(mut entry) = EVENTS.reserve::<MemoryRecord>(0) else {
        count(counter::RING_FULL);
        mark_lost(tgid);
        return;
    };
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
