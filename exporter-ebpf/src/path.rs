//! Turns a `struct path` into its absolute path by walking dentries and crossing mounts, the
//! way `d_path` does (which tracepoint programs may not call).
//!
//! Components are written leaf first, each NUL-terminated; the agent reverses and joins them.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;
use exporter_common::{EXEC_DATA_SPAN, NAME_MAX, PATH_DEPTH_MAX, PATH_MAX};

use crate::{kernel::ptr, maps::off};

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

/// Writes the components of the `struct path` at `path_addr` into `data` from `start`.
#[inline(always)]
pub fn walk(data: *mut u8, work: *mut u64, start: usize, path_addr: u64) -> Walked {
    let mut out = Walked {
        len: 0,
        truncated: false,
        detached: false,
    };
    if path_addr == 0 {
        return out;
    }
    let mut dentry = ptr(path_addr, off!(path_dentry));
    let mut vfsmount = ptr(path_addr, off!(path_mnt));
    if dentry == 0 || vfsmount == 0 {
        return out;
    }
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
