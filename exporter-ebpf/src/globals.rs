//! The read-only globals the agent sets at load (`EbpfLoader::override_global`): the kernel's
//! struct field offsets from BTF and the capture settings, and the macros that read them.
//! Their names are part of the agent's contract.

use exporter_common::{CaptureConfig, KernelOffsets};

/// Struct field offsets, overwritten by the agent.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_flags: 0,
    task_real_parent: 0,
    task_group_leader: 0,
    task_start_time: 0,
    task_comm: 0,
    task_mm: 0,
    task_fs: 0,
    task_signal: 0,
    task_exit_code: 0,
    task_exit_state: 0,
    task_ptrace: 0,
    signal_live: 0,
    signal_nr_threads: 0,
    signal_stats_lock: 0,
    signal_flags: 0,
    signal_group_exit_code: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_exe_file: 0,
    file_f_path: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_d_parent: 0,
    dentry_d_name: 0,
    qstr_name: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    mount_mnt_mountpoint: 0,
    vfsmount_mnt_root: 0,
    fs_pwd: 0,
    bprm_filename: 0,
    task_utime: 0,
    task_stime: 0,
    task_sum_exec_runtime: 0,
    task_run_delay: exporter_common::ABSENT,
    signal_utime: 0,
    signal_stime: 0,
    signal_sum_sched_runtime: 0,
    signal_maxrss: 0,
    mm_hiwater_rss: 0,
    mm_rss_stat: 0,
    rss_counter_size: 0,
    rss_counter_count: 0,
    task_ioac: exporter_common::ABSENT,
    signal_ioac: exporter_common::ABSENT,
    ioac_rchar: exporter_common::ABSENT,
    ioac_wchar: exporter_common::ABSENT,
    ioac_syscr: exporter_common::ABSENT,
    ioac_syscw: exporter_common::ABSENT,
    ioac_read_bytes: exporter_common::ABSENT,
    ioac_write_bytes: exporter_common::ABSENT,
    ioac_cancelled_write_bytes: exporter_common::ABSENT,
    task_min_flt: 0,
    task_maj_flt: 0,
    task_nvcsw: 0,
    task_nivcsw: 0,
    signal_min_flt: 0,
    signal_maj_flt: 0,
    signal_nvcsw: 0,
    signal_nivcsw: 0,
    signal_oom_mm: exporter_common::ABSENT,
    sock_family: 0,
    sock_daddr: 0,
    sock_rcv_saddr: 0,
    sock_dport: 0,
    sock_num: 0,
    sock_v6_daddr: exporter_common::ABSENT,
    sock_v6_rcv_saddr: exporter_common::ABSENT,
    sock_protocol: exporter_common::ABSENT,
    task_files: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    fdtable_max_fds: 0,
    dentry_d_inode: 0,
    inode_i_size: 0,
    inode_i_ino: 0,
    inode_i_mode: 0,
    regs_syscall_nr: exporter_common::ABSENT,
    regs_args: [exporter_common::ABSENT; 6],
};

/// The capture settings, overwritten by the agent.
#[unsafe(no_mangle)]
pub static CONFIG: CaptureConfig = CaptureConfig {
    scope_mode: 0,
    argv_cap: exporter_common::ARGV_DEFAULT as u32,
    agent_tgid: 0,
    cgroup_level: 0,
    cgroup_id: 0,
    wakeup_bytes: 0,
    network_hooks: 0,
    memory_step_pages: 2048,
    memory_step_percent: 10,
    page_shift: 12,
    network_peers: 64,
    files_max: 16384,
};

/// Reads one offset; volatile so the compiler cannot fold the placeholder value.
macro_rules! off {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        let value = unsafe { core::ptr::read_volatile(&raw const $crate::globals::OFFSETS.$field) };
        value as u64
    }};
}
pub(crate) use off;

/// Reads one config field (volatile for the same reason as `off!`).
macro_rules! conf {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        let value = unsafe { core::ptr::read_volatile(&raw const $crate::globals::CONFIG.$field) };
        value
    }};
}
pub(crate) use conf;
