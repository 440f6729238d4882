use super::Activity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Raw wait status.
    pub status: u32,
    /// What the whole thread group used.
    pub usage: Usage,
    /// The whole thread group's I/O, page faults and context switches.
    pub activity: Activity,
    /// The OOM killer chose it (it then dies of SIGKILL).
    pub oom_killed: bool,
    /// File operations beyond `capture.files_max` the kernel only counted.
    pub files_unsent: u64,
}

impl Exit {
    /// An exit with this wait status and no usage figures.
    pub fn from_status(status: u32) -> Self {
        Self {
            status,
            usage: Usage::default(),
            activity: Activity::default(),
            oom_killed: false,
            files_unsent: 0,
        }
    }

    /// Exit code when the process exited normally.
    pub fn code(&self) -> Option<i32> {
        (self.status & 0x7f == 0).then_some(((self.status >> 8) & 0xff) as i32)
    }
    /// Terminating signal when the process was killed.
    pub fn signal(&self) -> Option<i32> {
        let sig = (self.status & 0x7f) as i32;
        (sig != 0 && sig != 0x7f).then_some(sig)
    }
    pub fn core_dumped(&self) -> bool {
        self.signal().is_some() && self.status & 0x80 != 0
    }
    /// Did the process fail (non-zero exit or killed)?
    pub fn failed(&self) -> bool {
        self.signal().is_some() || self.code().is_some_and(|c| c != 0)
    }
    /// The status a shell reports: the code, or 128 + signal.
    pub fn shell_status(&self) -> i32 {
        match (self.code(), self.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 255,
        }
    }
}

/// CPU time and peak memory of a process (its whole thread group), measured by the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub peak_rss_bytes: u64,
}

impl Usage {
    /// The scheduler's precise runtime, split between user and system in the proportion of the
    /// tick-sampled times — what the kernel's own `cputime_adjust` does for getrusage.
    pub fn from_kernel(utime_ns: u64, stime_ns: u64, runtime_ns: u64, peak_rss_bytes: u64) -> Self {
        let (user, system) = if stime_ns == 0 {
            (runtime_ns, 0)
        } else if utime_ns == 0 {
            (0, runtime_ns)
        } else {
            let user = (u128::from(runtime_ns) * u128::from(utime_ns)
                / (u128::from(utime_ns) + u128::from(stime_ns))) as u64;
            (user, runtime_ns - user)
        };
        Self {
            cpu_user_ns: user,
            cpu_system_ns: system,
            peak_rss_bytes,
        }
    }

    pub fn cpu_ns(&self) -> u64 {
        self.cpu_user_ns + self.cpu_system_ns
    }

    /// This split made consistent with one reported earlier, as the kernel's `cputime_adjust`
    /// does: neither mode goes below what it was, so samples and the final totals form
    /// monotonic counters. A total below the earlier one keeps the earlier split.
    pub fn after(self, earlier: &Usage) -> Self {
        let total = self.cpu_ns();
        if total < earlier.cpu_ns() {
            return Self {
                cpu_user_ns: earlier.cpu_user_ns,
                cpu_system_ns: earlier.cpu_system_ns,
                ..self
            };
        }
        let mut system = self.cpu_system_ns.max(earlier.cpu_system_ns);
        let mut user = total - system;
        if user < earlier.cpu_user_ns {
            user = earlier.cpu_user_ns;
            system = total - user;
        }
        Self {
            cpu_user_ns: user,
            cpu_system_ns: system,
            ..self
        }
    }
}

/// Signal names for the common signals (Linux numbering).
pub fn signal_name(sig: i32) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_split_like_the_kernel_does() {
        let u = Usage::from_kernel(0, 0, 5_000_000, 0);
        assert_eq!((u.cpu_user_ns, u.cpu_system_ns), (5_000_000, 0));
        let u = Usage::from_kernel(0, 4_000_000, 5_000_000, 0);
        assert_eq!((u.cpu_user_ns, u.cpu_system_ns), (0, 5_000_000));
        let u = Usage::from_kernel(12_000_000, 4_000_000, 15_000_000, 0);
        assert_eq!((u.cpu_user_ns, u.cpu_system_ns), (11_250_000, 3_750_000));
        assert_eq!(u.cpu_ns(), 15_000_000);
    }

    #[test]
    fn later_splits_never_go_below_earlier_ones() {
        let usage = |u, s| Usage {
            cpu_user_ns: u,
            cpu_system_ns: s,
            peak_rss_bytes: 0,
        };
        let earlier = usage(600, 400);
        // The tick ratio moved towards user: system keeps what it had.
        let later = usage(1_100, 300).after(&earlier);
        assert_eq!((later.cpu_user_ns, later.cpu_system_ns), (1_000, 400));
        // ...and towards system: user keeps what it had.
        let later = usage(500, 700).after(&earlier);
        assert_eq!((later.cpu_user_ns, later.cpu_system_ns), (600, 600));
        // A smaller total (a thread's time moving to the group's) keeps the earlier split.
        let later = usage(500, 400).after(&earlier);
        assert_eq!((later.cpu_user_ns, later.cpu_system_ns), (600, 400));
    }
}
