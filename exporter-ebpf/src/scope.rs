//! Which processes the programs report when they are not in `TRACKED`: the scope the agent
//! set (host-wide, a cgroup, or only the traced trees), never the agent itself or a kernel
//! thread.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use exporter_common::{PF_KTHREAD, scope};

use crate::{globals::conf, kernel::task_flags};

/// Whether a process that is not in `TRACKED` is in scope anyway (host-wide or cgroup scope).
#[inline(always)]
pub(crate) fn in_untracked_scope(task: u64, tgid: u32) -> bool {
    if tgid == conf!(agent_tgid) || task_flags(task) & PF_KTHREAD != 0 {
        return false;
    }
    match conf!(scope_mode) {
        scope::ALL => true,
        scope::CGROUP => {
            let level = conf!(cgroup_level) as i32;
            unsafe { bpf_get_current_ancestor_cgroup_id(level) == conf!(cgroup_id) }
        }
        _ => false,
    }
}
