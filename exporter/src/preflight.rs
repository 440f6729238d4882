//! Start-up checks that turn the usual reasons eBPF cannot load into one line each: who lacks
//! what, and how to fix it.

use std::path::Path;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

pub const TRACEFS: &str = "/sys/kernel/tracing";
const TRACEPOINTS: [&str; 3] = [
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
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
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({reason}); \
         mount it with: mount -t tracefs nodev {TRACEFS}"
    )]
    Tracefs { reason: String },
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

/// Makes sure tracefs is mounted (mounting it if needed) and the tracepoints exist.
pub fn check_tracefs() -> Result<(), PreflightError> {
    let events = Path::new(TRACEFS).join("events");
    if !events.is_dir() {
        mount_tracefs()?;
    }
    for tp in TRACEPOINTS {
        if !events.join("sched").join(tp).is_dir() {
            return Err(PreflightError::NoTracepoint(tp));
        }
    }
    Ok(())
}

fn mount_tracefs() -> Result<(), PreflightError> {
    let target = std::ffi::CString::new(TRACEFS).expect("static path has no NUL");
    let fstype = c"tracefs";
    let source = c"nodev";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(PreflightError::Tracefs {
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(())
}

/// Runs every check in the order a user would fix them.
pub fn check_all(btf: &Path) -> Result<(), PreflightError> {
    check_privileges()?;
    check_btf(btf)?;
    check_tracefs()
}
