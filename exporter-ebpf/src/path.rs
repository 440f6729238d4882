//! Turns a `struct path` into its absolute path by walking dentries and crossing mounts, the
//! way `d_path` does (which tracepoint programs may not call).
//!
//! Components are written leaf first, each NUL-terminated; the agent reverses and joins them.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel_str};
use exporter_common::{EXEC_DATA_SPAN, NAME_MAX, PATH_DEPTH_MAX, PATH_MAX};

use crate::{globals::off, kernel::ptr};

pub struct Walked {
    pub len: usize,
    pub truncated: bool,
    /// The file has no path in the mount tree (memfd, pseudo file): `len` covers its name.
    pub detached: bool,
}

/// Stores `value` in map memory and reads it back: the verifier then sees an unknown scalar,
/// so states that differ only in this value can be pruned as one.
#[inline(always)]
pub fn launder(work: *mut u64, value: usize) -> usize {
    unsafe {
        core::ptr::write_volatile(work, value as u64);
        core::ptr::read_volatile(work) as usize
    }
}

/// Where a walk is. It lives in the scratch record's work words (map memory), not on the
/// stack: the verifier tracks stack values but not map values, so each step starts from the
/// same state (checked once) and every way out of the walk continues as one state. With the
/// state on the stack the walk's several exits multiplied the paths after it: ≈ 20,000
/// instructions verified per walk.
#[repr(C)]
struct WalkState {
    dentry: u64,
    vfsmount: u64,
    mount: u64,
    len: u64,
    reached_root: u64,
    detached: u64,
}

/// What `bpf_loop` hands each step (its context must be on the stack).
#[repr(C)]
struct Walk {
    data: *mut u8,
    state: *mut WalkState,
    start: u64,
}

const _: () = assert!(
    core::mem::size_of::<WalkState>() <= (exporter_common::WORK_WORDS - 1) * 8,
    "the walk's state must fit in the work words after the first"
);

/// One step of the walk (a `bpf_loop` callback): 1 ends the loop, 0 goes on. The verifier
/// checks this body once, not once per possible iteration: a 40-deep walk inlined twice was
/// most of the exec program's verification (≈ 320 ms of a 420 ms start-up).
#[inline(never)]
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` that `walk` passed to `bpf_loop`, alive for the loop; its
    // `state` points into the per-CPU scratch record.
    let (walk, w) = unsafe {
        let walk = &*ctx.cast::<Walk>();
        (walk, &mut *walk.state)
    };
    let mnt_root = ptr(w.vfsmount, off!(vfsmount_mnt_root));
    let parent = ptr(w.dentry, off!(dentry_d_parent));
    // A dentry that is its own parent without being its mount's root belongs to no
    // directory: a memfd or another pseudo file. `d_path` shows its name alone.
    let detached = w.dentry == parent && w.dentry != mnt_root;
    if !detached && (w.dentry == mnt_root || w.dentry == parent) {
        let mount_parent = ptr(w.mount, off!(mount_mnt_parent));
        if mount_parent == w.mount || mount_parent == 0 {
            w.reached_root = 1;
            return 1;
        }
        // Continue in the parent mount, from the dentry this one is mounted on.
        w.dentry = ptr(w.mount, off!(mount_mnt_mountpoint));
        w.mount = mount_parent;
        w.vfsmount = w.mount + off!(mount_mnt);
        return 0;
    }
    let len = w.len as usize;
    if len > PATH_MAX - NAME_MAX {
        return 1;
    }
    let name = ptr(w.dentry, off!(dentry_d_name) + off!(qstr_name));
    let pos = (walk.start as usize + len) & (EXEC_DATA_SPAN - 1);
    let n = unsafe {
        bpf_probe_read_kernel_str(
            walk.data.add(pos).cast::<c_void>(),
            NAME_MAX as u32,
            name as *const c_void,
        )
    };
    if n <= 0 {
        return 1;
    }
    w.len = (len + n as usize) as u64;
    if detached {
        w.detached = 1;
        w.reached_root = 1;
        return 1;
    }
    w.dentry = parent;
    0
}

/// Writes the components of the `struct path` at `path_addr` into `data` from `start`; with
/// `LOOPED`, one `bpf_loop` step per component. `work` is the scratch record's work words.
#[inline(always)]
pub fn walk<const LOOPED: bool>(
    data: *mut u8,
    work: *mut u64,
    start: usize,
    path_addr: u64,
) -> Walked {
    let mut out = Walked {
        len: 0,
        truncated: false,
        detached: false,
    };
    if path_addr == 0 {
        return out;
    }
    let dentry = ptr(path_addr, off!(path_dentry));
    let vfsmount = ptr(path_addr, off!(path_mnt));
    if dentry == 0 || vfsmount == 0 {
        return out;
    }
    if !LOOPED {
        return walk_unrolled(data, work, start, dentry, vfsmount);
    }
    // SAFETY: the work words are WORK_WORDS long: one for `launder`, then the walk's state.
    let state = unsafe { work.add(1) }.cast::<WalkState>();
    unsafe {
        state.write_volatile(WalkState {
            dentry,
            vfsmount,
            // container_of(vfsmount, struct mount, mnt)
            mount: vfsmount - off!(mount_mnt),
            len: 0,
            reached_root: 0,
            detached: 0,
        })
    };
    let mut w = Walk {
        data,
        state,
        start: start as u64,
    };
    unsafe {
        bpf_loop(
            PATH_DEPTH_MAX as u32,
            walk_step as *mut c_void,
            (&raw mut w).cast::<c_void>(),
            0,
        )
    };
    // SAFETY: as above; read back after the loop.
    let end = unsafe { state.read_volatile() };
    out.len = launder(work, end.len as usize);
    out.detached = end.detached != 0;
    out.truncated = end.reached_root == 0;
    out
}

/// [`walk`] from `dentry` in `vfsmount` as a bounded loop the verifier follows iteration by
/// iteration (kernels without `bpf_loop`).
#[inline(always)]
fn walk_unrolled(
    data: *mut u8,
    work: *mut u64,
    start: usize,
    mut dentry: u64,
    mut vfsmount: u64,
) -> Walked {
    let mut out = Walked {
        len: 0,
        truncated: false,
        detached: false,
    };
    // container_of(vfsmount, struct mount, mnt)
    let mut mount = vfsmount - off!(mount_mnt);
    let mut reached_root = false;

    for _ in 0..PATH_DEPTH_MAX {
        let mnt_root = ptr(vfsmount, off!(vfsmount_mnt_root));
        let parent = ptr(dentry, off!(dentry_d_parent));
        // A dentry that is its own parent without being its mount's root belongs to no
        // directory: a memfd or another pseudo file. `d_path` shows its name alone.
        let detached = dentry == parent && dentry != mnt_root;
        if !detached && (dentry == mnt_root || dentry == parent) {
            let mount_parent = ptr(mount, off!(mount_mnt_parent));
            if mount_parent == mount || mount_parent == 0 {
                reached_root = true;
                break;
            }
            // Continue in the parent mount, from the dentry this one is mounted on.
            dentry = ptr(mount, off!(mount_mnt_mountpoint));
            mount = mount_parent;
            vfsmount = mount + off!(mount_mnt);
            continue;
        }
        out.len = launder(work, out.len);
        if out.len > PATH_MAX - NAME_MAX {
            break;
        }
        let name = ptr(dentry, off!(dentry_d_name) + off!(qstr_name));
        let pos = (start + out.len) & (EXEC_DATA_SPAN - 1);
        let n = unsafe {
            bpf_probe_read_kernel_str(
                data.add(pos).cast::<c_void>(),
                NAME_MAX as u32,
                name as *const c_void,
            )
        };
        if n <= 0 {
            break;
        }
        out.len += n as usize;
        if detached {
            out.detached = true;
            reached_root = true;
            break;
        }
        dentry = parent;
    }
    out.truncated = !reached_root;
    out
}
