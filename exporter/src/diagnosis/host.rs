//! The machine as a whole, from `/proc`: CPU time by state (`/proc/stat`), memory
//! (`/proc/meminfo`), and how many cores the run may use (its affinity and its cgroup's
//! `cpu.max`).

use std::path::Path;

/// CPU time of every core so far, ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Running anything: user, nice, system, interrupts, stolen by the hypervisor.
    pub busy_ns: u64,
    /// Busy, idle and waiting for I/O.
    pub total_ns: u64,
    /// Cores online (`cpuN` lines).
    pub online: u32,
}

/// Nanoseconds per clock tick (`USER_HZ`).
pub fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
}

/// The machine's CPU times from `/proc/stat`'s text.
pub fn parse_stat(text: &str, tick_ns: u64) -> Option<CpuTimes> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut fields = first.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    // user nice system idle iowait irq softirq steal (guest time is inside user's).
    let v: Vec<u64> = fields.take(8).map(|f| f.parse().unwrap_or(0)).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let total = busy + at(3) + at(4);
    let online = lines
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    Some(CpuTimes {
        busy_ns: busy.saturating_mul(tick_ns),
        total_ns: total.saturating_mul(tick_ns),
        online: online.max(1),
    })
}

pub fn cpu_times(tick_ns: u64) -> Option<CpuTimes> {
    parse_stat(&std::fs::read_to_string("/proc/stat").ok()?, tick_ns)
}

/// The machine's memory, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    pub total: u64,
    /// What can be given to programs without swapping (`MemAvailable`).
    pub available: u64,
}

impl Memory {
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    let total = field("MemTotal")?;
    Some(Memory {
        total,
        available: field("MemAvailable").or_else(|| field("MemFree"))?,
    })
}

pub fn memory() -> Option<Memory> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// Cores the agent (and so the run it starts) may use: its CPU affinity, lowered by the
/// smallest `cpu.max` quota of its cgroup v2 and those above it.
pub fn usable_cores(online: u32) -> f64 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let affinity = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set) as u32
        } else {
            online
        }
    };
    let cores = f64::from(affinity.clamp(1, online.max(1)));
    match own_cpu_quota() {
        Some(quota) => cores.min(quota).max(0.01),
        None => cores,
    }
}

/// `cpu.max` as cores: `"200000 100000"` is 2, `"max 100000"` none.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0 && quota > 0.0).then(|| quota / period)
}

/// The smallest `cpu.max` from the agent's cgroup v2 up to the root.
fn own_cpu_quota() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_end_matches('/');
    let root = super::memory_limit::mount(false)?;
    smallest_quota(&root, path)
}

fn smallest_quota(root: &Path, path: &str) -> Option<f64> {
    super::memory_limit::up_from(root, path)
        .into_iter()
        .filter_map(|(_, dir)| {
            std::fs::read_to_string(dir.join("cpu.max"))
                .ok()
                .and_then(|t| parse_cpu_max(&t))
        })
        .reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_counts_busy_states_and_cores() {
        let text = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n\
                    cpu1 50 3 25 500 10 2 1 1 0 0\nintr 1 2 3\n";
        let t = parse_stat(text, 10_000_000).unwrap();
        assert_eq!(t.online, 2);
        assert_eq!(t.busy_ns, (100 + 5 + 50 + 3 + 2 + 1) * 10_000_000);
        assert_eq!(t.total_ns, t.busy_ns + (1000 + 20) * 10_000_000);
        assert_eq!(parse_stat("intr 1\n", 1), None);
    }

    #[test]
    fn meminfo_takes_total_and_available() {
        let text = "MemTotal:       2048 kB\nMemFree:         100 kB\nMemAvailable:    1024 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(
            (m.total, m.available, m.used()),
            (2 << 20, 1 << 20, 1 << 20)
        );
        // Kernels before 3.14 have no MemAvailable.
        let old = "MemTotal: 2048 kB\nMemFree: 512 kB\n";
        assert_eq!(parse_meminfo(old).unwrap().available, 512 << 10);
    }

    #[test]
    fn the_smallest_cpu_quota_on_the_way_up_counts() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        let root = tempfile::tempdir().unwrap();
        let job = root.path().join("ci/job");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(root.path().join("ci/cpu.max"), "150000 100000\n").unwrap();
        std::fs::write(job.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(smallest_quota(root.path(), "/ci/job"), Some(1.5));
        assert_eq!(smallest_quota(root.path(), "/other"), None);
        assert!(usable_cores(1024) >= 1.0 / 100.0);
    }
}
