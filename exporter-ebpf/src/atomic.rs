//! The one read-modify-write BPF programs need here.

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
