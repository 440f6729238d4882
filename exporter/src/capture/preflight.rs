//! Start-up checks that turn the usual reasons eBPF cannot load into one line each: who lacks
//! what, and how to fix it.

use std::path::Path;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

const TRACEPOINTS: [&str; 4] = [
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
    "sched_switch",
];

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "not privileged: loading eBPF programs needs root or CAP_BPF and CAP_PERFMON \
         (effective uid {uid}); run with sudo"
    )]
    NotPrivileged { uid: u32 },
    #[error(
        "no kernel BTF at {path}: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y, \
         or point capture.btf_path at a BTF file for this kernel"
    )]
    NoBtf { path: String },
    #[error(
        "kernel has no tracepoint sched/{0}: process lifecycle cannot be traced on this kernel"
    )]
    NoTracepoint(&'static str),
}

/// Effective capability bits of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn check_privileges() -> Result<(), PreflightError> {
    let caps = effective_caps();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    Err(PreflightError::NotPrivileged {
        uid: unsafe { libc::geteuid() },
    })
}

pub fn check_btf(path: &Path) -> Result<(), PreflightError> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(_) => Err(PreflightError::NoBtf {
            path: path.display().to_string(),
        }),
    }
}

/// The raw tracepoints the lifecycle programs attach to must exist. Checked in the kernel's
/// BTF (`btf_trace_NAME`): raw tracepoints need no tracefs, which an unprivileged agent
/// (CAP_BPF + CAP_PERFMON) often cannot read.
pub fn check_tracepoints(btf: &crate::capture::btf::Btf) -> Result<(), PreflightError> {
    match TRACEPOINTS.into_iter().find(|tp| !btf.has_tracepoint(tp)) {
        Some(missing) => Err(PreflightError::NoTracepoint(missing)),
        None => Ok(()),
    }
}

/// Runs every check in the order a user would fix them.
pub fn check_all(btf: &Path) -> Result<(), PreflightError> {
    check_privileges()?;
    check_btf(btf)
}
