//! The processes outside the run on the same machine: their CPU time, memory and I/O by
//! executable and cgroup, from `/proc/PID/stat` (and `io`, `exe`, `cgroup` once per process),
//! looked at while the run lasts.
//!
//! A process's CPU time counts its reaped children's (`cutime`, `cstime`): a neighbour that
//! runs many short commands (a `make` outside the run) is seen whole. What a child was already
//! counted for before it ended is taken off its parent's next step, so nothing counts twice.

use std::collections::HashMap;

/// A group of neighbours: one executable in one cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Base name of the executable (`[kworker]` for kernel threads).
    pub executable: String,
    /// Its cgroup (v2's path, else the first v1 hierarchy's).
    pub cgroup: String,
}

/// What one group used while looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupUsage {
    pub cpu_ns: u64,
    /// Of it, while the run's steps waited for a CPU ("contended" intervals).
    pub contended_cpu_ns: u64,
    /// The most its processes held at once.
    pub peak_rss_bytes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Processes seen in it.
    pub processes: u64,
}

/// One outside process as last seen.
#[derive(Debug, Clone)]
struct Seen {
    start_ticks: u64,
    ppid: u32,
    /// Own and reaped children's CPU, ticks.
    cpu_ticks: u64,
    /// Counted already for children that ended since: off the next step.
    credit_ticks: u64,
    read_bytes: u64,
    write_bytes: u64,
    group: usize,
    /// Scan in which it was last seen.
    scan: u64,
}

/// The fields of `/proc/PID/stat` used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: u32,
    pub kernel_thread: bool,
    pub cpu_ticks: u64,
    pub start_ticks: u64,
    pub rss_pages: u64,
}

pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // From the state on: state(0) ppid(1) … flags(6) … utime(11) stime(12) cutime(13)
    // cstime(14) … starttime(19) vsize(20) rss(21).
    let f: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let signed = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |v| v.max(0) as u64)
    };
    Some(Stat {
        comm,
        ppid: n(1)? as u32,
        kernel_thread: n(6)? & u64::from(exporter_common::PF_KTHREAD) != 0,
        cpu_ticks: n(11)? + n(12)? + signed(13) + signed(14),
        start_ticks: n(19)?,
        rss_pages: signed(21),
    })
}

/// `read_bytes` and `write_bytes` of `/proc/PID/io` (storage, not the page cache's).
pub fn parse_io(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

/// The cgroup a `/proc/PID/cgroup` names: v2's, unless it is the root and a v1 hierarchy says
/// more (hybrid set-ups): systemd's, else the first other one; `/` when none does.
pub fn parse_cgroup(text: &str) -> String {
    let mut v2 = None;
    let mut systemd = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" {
            v2 = Some(path);
        } else if path == "/" {
        } else if controllers == "name=systemd" {
            systemd = Some(path);
        } else if v1.is_none() {
            v1 = Some(path);
        }
    }
    match (v2, systemd.or(v1)) {
        (Some(p), _) if p != "/" => p.to_owned(),
        (_, Some(p)) => p.to_owned(),
        _ => "/".into(),
    }
}

/// A kernel thread's group name: `kworker/1:2-events` is `[kworker]`.
fn kernel_thread_name(comm: &str) -> String {
    let base = comm.split(['/', ':']).next().unwrap_or(comm);
    format!("[{base}]")
}

#[derive(Debug)]
pub struct Neighbours {
    tick_ns: u64,
    page_size: u64,
    own_pid: u32,
    seen: HashMap<u32, Seen>,
    groups: Vec<(GroupKey, GroupUsage)>,
    index: HashMap<GroupKey, usize>,
    scans: u64,
    /// Boot-relative ticks of the first look: a process started later counts from its start.
    first_scan_ticks: Option<u64>,
}

impl Neighbours {
    pub fn new(tick_ns: u64) -> Self {
        Self {
            tick_ns,
            page_size: crate::capture::decode::page_size(),
            own_pid: std::process::id(),
            seen: HashMap::new(),
            groups: Vec::new(),
            index: HashMap::new(),
            scans: 0,
            first_scan_ticks: None,
        }
    }

    /// The groups seen, with what each used, in the order first seen.
    pub fn groups(&self) -> &[(GroupKey, GroupUsage)] {
        &self.groups
    }

    fn group(&mut self, key: GroupKey) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.groups.push((key.clone(), GroupUsage::default()));
        self.index.insert(key, self.groups.len() - 1);
        self.groups.len() - 1
    }

    /// Looks at every process not `traced` (nor the agent): adds what each used since the last
    /// look to its group, also to the contended CPU when `contended`.
    pub fn scan(&mut self, traced: impl Fn(u32) -> bool, uptime_ticks: u64, contended: bool) {
        self.scans += 1;
        let scan = self.scans;
        let since = *self.first_scan_ticks.get_or_insert(uptime_ticks);
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut rss_by_group: HashMap<usize, u64> = HashMap::new();
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == self.own_pid || traced(pid) {
                continue;
            }
            let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
            else {
                continue;
            };
            let known = self
                .seen
                .get(&pid)
                .is_some_and(|s| s.start_ticks == stat.start_ticks);
            if !known {
                let group = self.group(group_key(pid, &stat));
                self.groups[group].1.processes += 1;
                // Already running at the first look: only what it uses from now on counts.
                let from_start = scan > 1 && stat.start_ticks >= since;
                let (read, write) = if from_start { (0, 0) } else { io_of(pid) };
                self.seen.insert(
                    pid,
                    Seen {
                        start_ticks: stat.start_ticks,
                        ppid: stat.ppid,
                        cpu_ticks: if from_start { 0 } else { stat.cpu_ticks },
                        credit_ticks: 0,
                        read_bytes: read,
                        write_bytes: write,
                        group,
                        scan,
                    },
                );
            }
            let s = self.seen.get_mut(&pid).expect("inserted above");
            s.scan = scan;
            s.ppid = stat.ppid;
            let step = stat
                .cpu_ticks
                .saturating_sub(s.cpu_ticks)
                .saturating_sub(s.credit_ticks);
            s.credit_ticks = 0;
            s.cpu_ticks = s.cpu_ticks.max(stat.cpu_ticks);
            let group = s.group;
            let usage = &mut self.groups[group].1;
            if step > 0 {
                let ns = step * self.tick_ns;
                usage.cpu_ns += ns;
                if contended {
                    usage.contended_cpu_ns += ns;
                }
                // I/O costs CPU: a process whose CPU did not move did none.
                let (read, write) = io_of(pid);
                usage.read_bytes += read.saturating_sub(s.read_bytes);
                usage.write_bytes += write.saturating_sub(s.write_bytes);
                s.read_bytes = s.read_bytes.max(read);
                s.write_bytes = s.write_bytes.max(write);
            }
            *rss_by_group.entry(group).or_default() += stat.rss_pages * self.page_size;
        }
        for (group, rss) in rss_by_group {
            let usage = &mut self.groups[group].1;
            usage.peak_rss_bytes = usage.peak_rss_bytes.max(rss);
        }
        // Gone since the last look: what was counted of each comes off its parent's next step
        // (the parent's `cutime` takes the child's whole time when it reaps it).
        let gone: Vec<(u32, u32)> = self
            .seen
            .iter()
            .filter(|(_, s)| s.scan != scan)
            .map(|(pid, s)| (*pid, s.ppid))
            .collect();
        for (pid, ppid) in gone {
            let Some(child) = self.seen.remove(&pid) else {
                continue;
            };
            if let Some(parent) = self.seen.get_mut(&ppid) {
                parent.credit_ticks += child.cpu_ticks;
            }
        }
    }
}

fn io_of(pid: u32) -> (u64, u64) {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .map(|t| parse_io(&t))
        .unwrap_or((0, 0))
}

fn group_key(pid: u32, stat: &Stat) -> GroupKey {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|t| parse_cgroup(&t))
        .unwrap_or_else(|_| "/".into());
    let executable = if stat.kernel_thread {
        kernel_thread_name(&stat.comm)
    } else {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some(
                    name.strip_suffix(" (deleted)")
                        .map(str::to_owned)
                        .unwrap_or(name),
                )
            })
            .unwrap_or_else(|| stat.comm.clone())
    };
    GroupKey { executable, cgroup }
}

/// Seconds since boot in clock ticks, as `/proc/PID/stat`'s start times count.
pub fn uptime_ticks(tick_ns: u64) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) / tick_ns.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_comm_with_spaces_and_parentheses() {
        let text = "4242 (my (odd) prog) R 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 7 3 20 0 1 0 12345 1000000 300 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, "my (odd) prog");
        assert_eq!(s.ppid, 1);
        assert!(!s.kernel_thread);
        assert_eq!(s.cpu_ticks, 250 + 50 + 7 + 3);
        assert_eq!(s.start_ticks, 12345);
        assert_eq!(s.rss_pages, 300);
        let kthread = "9 (kworker/0:1-events) I 2 0 0 0 -1 69238880 0 0 0 0 \
                       4 9 0 0 20 0 1 0 20 0 0 18446744073709551615";
        let k = parse_stat(kthread).unwrap();
        assert!(k.kernel_thread);
        assert_eq!(kernel_thread_name(&k.comm), "[kworker]");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn io_and_cgroup_lines() {
        let io = "rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\n\
                  cancelled_write_bytes: 0\n";
        assert_eq!(parse_io(io), (4096, 8192));
        assert_eq!(
            parse_cgroup("0::/system.slice/cron.service\n"),
            "/system.slice/cron.service"
        );
        assert_eq!(parse_cgroup("4:memory:/ci\n3:cpu:/ci/b\n"), "/ci");
        // Hybrid: the unified hierarchy unused, v1's says where.
        assert_eq!(parse_cgroup("9:name=systemd:/\n1:cpu:/job\n0::/\n"), "/job");
        assert_eq!(
            parse_cgroup("9:name=systemd:/ci.service\n4:memory:/x\n0::/\n"),
            "/ci.service"
        );
        assert_eq!(parse_cgroup("1:cpu:/\n0::/\n"), "/");
        assert_eq!(parse_cgroup(""), "/");
    }

    #[test]
    fn a_busy_outsider_is_counted_by_executable_and_cgroup() {
        // A real process outside any run: this test's own child, spinning.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let tick = super::super::host::tick_ns();
        let mut n = Neighbours::new(tick);
        // Everything but the child is "traced": only it is looked at.
        n.scan(|p| p != pid, uptime_ticks(tick), false);
        std::thread::sleep(std::time::Duration::from_millis(600));
        n.scan(|p| p != pid, uptime_ticks(tick), true);
        child.kill().unwrap();
        child.wait().unwrap();
        let groups = n.groups();
        assert_eq!(groups.len(), 1, "{groups:?}");
        let (key, usage) = &groups[0];
        assert!(
            ["sh", "dash", "bash"].contains(&key.executable.as_str()),
            "{key:?}"
        );
        assert!(key.cgroup.starts_with('/'), "{key:?}");
        assert!(usage.cpu_ns >= 200_000_000, "{usage:?}");
        assert_eq!(usage.contended_cpu_ns, usage.cpu_ns);
        assert_eq!(usage.processes, 1);
        assert!(usage.peak_rss_bytes > 0);
    }
}
