//! Ring-buffer bytes to typed events. Pure and length-checked: any byte string either decodes
//! or yields a [`DecodeError`]; nothing here panics or trusts a length field.

use exporter_common::{ExecTail, ExitTail, RecordHeader, flags, kind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need} its kind needs")]
    Short { need: usize, got: usize },
    #[error("record header says {declared} bytes but {got} arrived")]
    LengthMismatch { declared: usize, got: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("exec record data lengths ({declared} bytes) exceed its data area ({available})")]
    DataOverrun { declared: usize, available: usize },
}

/// Fields every event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub flags: u16,
    /// CLOCK_MONOTONIC ns of the event.
    pub ktime_ns: u64,
    /// Process start, CLOCK_MONOTONIC ns: `(tgid, start_ns)` identifies a process.
    pub start_ns: u64,
    pub parent_start_ns: u64,
    pub cgroup_id: u64,
    pub tgid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub tree_ppid: u32,
    pub uid: u32,
    pub comm: String,
}

impl Common {
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// A process `tgid` (child of pid 1) that started at `start_ns`, at time `ktime_ns`.
    #[cfg(test)]
    pub fn sample(tgid: u32, start_ns: u64, ktime_ns: u64, comm: &str) -> Self {
        Self {
            flags: 0,
            ktime_ns,
            start_ns,
            parent_start_ns: 0,
            cgroup_id: 0,
            tgid,
            tid: tgid,
            ppid: 1,
            tree_ppid: 1,
            uid: 0,
            comm: comm.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Executable file of the new image (symlinks resolved; the interpreter for a script).
    pub exe: Option<String>,
    pub cwd: Option<String>,
    /// Path as passed to execve.
    pub filename: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// Full argv size in bytes, even when truncated.
    pub argv_total_bytes: u32,
    /// The process now runs a deny-listed executable: drop it from the tree.
    pub hidden: bool,
}

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
}

/// I/O, page faults and context switches of a process as the kernel counted them. `None`:
/// not measured (an exit that was not seen), or not in this kernel (the I/O fields without
/// task I/O accounting) — never a made-up zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Activity {
    /// Bytes through read/write-like system calls, and the number of those calls.
    pub read_chars: Option<u64>,
    pub write_chars: Option<u64>,
    pub read_calls: Option<u64>,
    pub write_calls: Option<u64>,
    /// Bytes read from and written to the storage layer; dirty bytes whose writeback was
    /// cancelled (a file truncated or deleted before it was written).
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub cancelled_write_bytes: Option<u64>,
    pub minor_faults: Option<u64>,
    pub major_faults: Option<u64>,
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
    /// Bytes sent and received over IPv4/IPv6 sockets, and the send and receive calls.
    pub network_sent_bytes: Option<u64>,
    pub network_received_bytes: Option<u64>,
    pub network_send_calls: Option<u64>,
    pub network_receive_calls: Option<u64>,
    /// TCP connections it opened (failed attempts included) and accepted ones it used.
    pub network_connections: Option<u64>,
    pub network_accepted: Option<u64>,
    /// Connections to peers beyond the listed ones (`capture.network_peers`).
    pub network_unlisted: Option<u64>,
}

impl Activity {
    /// How many measures there are.
    pub const COUNT: usize = 18;

    /// The field names, in [`Activity::values`] order: JSONL keys, Parquet columns.
    pub const FIELDS: [&'static str; Self::COUNT] = [
        "read_chars",
        "write_chars",
        "read_calls",
        "write_calls",
        "read_bytes",
        "write_bytes",
        "cancelled_write_bytes",
        "minor_faults",
        "major_faults",
        "voluntary_switches",
        "involuntary_switches",
        "network_sent_bytes",
        "network_received_bytes",
        "network_send_calls",
        "network_receive_calls",
        "network_connections",
        "network_accepted",
        "network_unlisted",
    ];

    pub fn values(&self) -> [Option<u64>; Self::COUNT] {
        [
            self.read_chars,
            self.write_chars,
            self.read_calls,
            self.write_calls,
            self.read_bytes,
            self.write_bytes,
            self.cancelled_write_bytes,
            self.minor_faults,
            self.major_faults,
            self.voluntary_switches,
            self.involuntary_switches,
            self.network_sent_bytes,
            self.network_received_bytes,
            self.network_send_calls,
            self.network_receive_calls,
            self.network_connections,
            self.network_accepted,
            self.network_unlisted,
        ]
    }

    /// From the kernel's counters and its `present` bits.
    pub fn from_kernel(
        a: &exporter_common::Activity,
        n: &exporter_common::Network,
        present: u32,
    ) -> Self {
        use exporter_common::present::{IO_BYTES, IO_CHARS, NET_BYTES, NET_CONNECTIONS};
        let chars = |v: u64| (present & IO_CHARS != 0).then_some(v);
        let bytes = |v: u64| (present & IO_BYTES != 0).then_some(v);
        let net = |v: u64| (present & NET_BYTES != 0).then_some(v);
        let tcp = |v: u64| (present & NET_CONNECTIONS != 0).then_some(v);
        Self {
            read_chars: chars(a.rchar),
            write_chars: chars(a.wchar),
            read_calls: chars(a.syscr),
            write_calls: chars(a.syscw),
            read_bytes: bytes(a.read_bytes),
            write_bytes: bytes(a.write_bytes),
            cancelled_write_bytes: bytes(a.cancelled_write_bytes),
            minor_faults: Some(a.min_flt),
            major_faults: Some(a.maj_flt),
            voluntary_switches: Some(a.nvcsw),
            involuntary_switches: Some(a.nivcsw),
            network_sent_bytes: net(n.sent_bytes),
            network_received_bytes: net(n.received_bytes),
            network_send_calls: net(n.send_calls),
            network_receive_calls: net(n.receive_calls),
            network_connections: tcp(n.connections),
            network_accepted: tcp(n.accepted),
            network_unlisted: tcp(n.unlisted),
        }
    }
}

/// A TCP connection of a process (the first to each peer it listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The process connected (`true`), or used a connection a listener accepted.
    pub outbound: bool,
    /// IPPROTO_* of the socket.
    pub protocol: u16,
    pub peer: std::net::IpAddr,
    pub peer_port: u16,
    pub local: std::net::IpAddr,
    /// `None` when the handshake ended before a port was bound.
    pub local_port: Option<u16>,
    /// The handshake completed (an accepted connection always did).
    pub established: bool,
}

impl Connection {
    /// `network.transport`.
    pub fn transport(&self) -> &'static str {
        match self.protocol {
            17 => "udp",
            132 => "sctp",
            _ => "tcp",
        }
    }

    /// `network.type`: an IPv4-mapped IPv6 address counts as IPv4 (it is shown as one).
    pub fn network_type(&self) -> &'static str {
        if self.peer.is_ipv4() { "ipv4" } else { "ipv6" }
    }

    pub fn direction(&self) -> &'static str {
        if self.outbound { "outbound" } else { "inbound" }
    }

    pub fn outcome(&self) -> &'static str {
        if self.established {
            "established"
        } else {
            "failed"
        }
    }
}

/// An address as the kernel stores it (network byte order; IPv4 in the first 4 bytes).
fn address(family: u16, bytes: &[u8]) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    const AF_INET6: u16 = 10;
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    if family == AF_INET6 {
        Ipv6Addr::from(b).to_canonical()
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
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

/// Size of a memory page (read once).
pub fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

impl Exit {
    /// An exit with this wait status and no usage figures.
    pub fn from_status(status: u32) -> Self {
        Self {
            status,
            usage: Usage::default(),
            activity: Activity::default(),
            oom_killed: false,
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

/// The process's resident memory moved by more than the configured step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_bytes: u64,
    pub previous_bytes: u64,
}

impl Memory {
    /// An allocation (RSS grew) rather than a release.
    pub fn grew(&self) -> bool {
        self.rss_bytes >= self.previous_bytes
    }
}

/// One live thread of a traced process in a sampling round (summed by the tracker), as the
/// kernel sent it.
pub use exporter_common::SampleTail as ThreadSample;

/// A live process at a sampling round: its CPU time so far and its resident memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub rss_bytes: u64,
    /// Live threads.
    pub threads: u32,
    /// The group's I/O, faults, switches and network use so far (threads that exited
    /// included).
    pub activity: Activity,
}

impl Sample {
    /// The CPU part as a [`Usage`] (no peak).
    pub fn usage(&self) -> Usage {
        Usage {
            cpu_user_ns: self.cpu_user_ns,
            cpu_system_ns: self.cpu_system_ns,
            peak_rss_bytes: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Fork,
    Exec(Box<Exec>),
    Exit(Exit),
    Memory(Memory),
    Connection(Connection),
    /// From the kernel: one thread's share of a sample.
    ThreadSample(ThreadSample),
    /// From the kernel: the sampling round (session) is complete.
    SampleEnd(u64),
    /// From the tracker: a process's sample, its threads summed.
    Sample(Sample),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub common: Common,
    pub body: Body,
}

impl Event {
    /// An event of process `tgid` (see [`Common::sample`]), for tests.
    #[cfg(test)]
    pub fn sample(tgid: u32, body: Body) -> Self {
        Self {
            common: Common::sample(tgid, 1_000_000_000, 1_500_000_000, "cc\"x"),
            body,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.body {
            Body::Fork => "fork",
            Body::Exec(_) => "exec",
            Body::Exit(_) => "exit",
            Body::Memory(m) if m.grew() => "memory_alloc",
            Body::Memory(_) => "memory_release",
            Body::Connection(_) => "connection",
            Body::ThreadSample(_) => "thread_sample",
            Body::SampleEnd(_) => "sample_end",
            Body::Sample(_) => "sample",
        }
    }
}

const HEADER: usize = std::mem::size_of::<RecordHeader>();
const EXEC_TAIL: usize = std::mem::size_of::<ExecTail>();
#[cfg(test)]
const EXIT_TAIL: usize = std::mem::size_of::<ExitTail>();
#[cfg(test)]
const MEMORY_TAIL: usize = std::mem::size_of::<exporter_common::MemoryTail>();

/// The shared `#[repr(C)]` record parts: integers and byte arrays only, so every bit pattern
/// is a valid value.
trait Plain: Copy {}
impl Plain for u64 {}
impl Plain for RecordHeader {}
impl Plain for ExecTail {}
impl Plain for ExitTail {}
impl Plain for exporter_common::MemoryTail {}
impl Plain for exporter_common::SampleTail {}
impl Plain for exporter_common::ConnectionTail {}

/// The record part `T` at byte `at`, read whole as the kernel program wrote it: every field at
/// the offset the compiler gave it in `exporter-common`, none at an offset written by hand.
fn read_at<T: Plain>(record: &[u8], at: usize) -> Result<T, DecodeError> {
    let need = at + std::mem::size_of::<T>();
    if record.len() < need {
        return Err(DecodeError::Short {
            need,
            got: record.len(),
        });
    }
    // SAFETY: `at..need` is inside `record` (checked above); `read_unaligned` needs no
    // alignment; `T: Plain` has no invalid bit patterns.
    Ok(unsafe { std::ptr::read_unaligned(record.as_ptr().add(at).cast::<T>()) })
}

/// Bytes up to the first NUL, as text (invalid UTF-8 replaced).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Path components written leaf first, each NUL-terminated, joined root first.
fn walked_path(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    let mut path = String::new();
    for part in parts.iter().rev() {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(part));
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(path)
}

/// NUL-separated argv strings; a truncated last string is kept as far as it goes.
fn split_argv(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let h: RecordHeader = read_at(record, 0)?;
    let declared = h.len as usize;
    if declared != record.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            got: record.len(),
        });
    }
    let common = Common {
        flags: h.flags,
        ktime_ns: h.ktime_ns,
        start_ns: h.start_ns,
        parent_start_ns: h.parent_start_ns,
        cgroup_id: h.cgroup_id,
        tgid: h.tgid,
        tid: h.pid,
        ppid: h.ppid,
        tree_ppid: h.tree_ppid,
        uid: h.uid,
        comm: c_string(&h.comm),
    };
    let body = match h.kind {
        kind::FORK => Body::Fork,
        kind::MEMORY => {
            let t: exporter_common::MemoryTail = read_at(record, HEADER)?;
            Body::Memory(Memory {
                rss_bytes: t.rss_bytes,
                previous_bytes: t.previous_bytes,
            })
        }
        kind::SAMPLE => Body::ThreadSample(ThreadSample {
            _pad0: 0,
            ..read_at(record, HEADER)?
        }),
        kind::CONNECTION => {
            let t: exporter_common::ConnectionTail = read_at(record, HEADER)?;
            Body::Connection(Connection {
                outbound: t.direction == exporter_common::direction::OUTBOUND,
                protocol: t.protocol,
                peer: address(t.family, &t.peer_addr),
                peer_port: t.peer_port,
                local: address(t.family, &t.local_addr),
                local_port: (t.local_port != 0).then_some(t.local_port),
                established: t.outcome == exporter_common::outcome::ESTABLISHED,
            })
        }
        kind::SAMPLE_END => Body::SampleEnd(read_at(record, HEADER)?),
        kind::EXIT => {
            let t: ExitTail = read_at(record, HEADER)?;
            Body::Exit(Exit {
                status: t.exit_status,
                usage: Usage::from_kernel(
                    t.utime_ns,
                    t.stime_ns,
                    t.runtime_ns,
                    t.maxrss_pages.saturating_mul(page_size()),
                ),
                activity: Activity::from_kernel(&t.activity, &t.network, t.present),
                oom_killed: t.present & exporter_common::present::OOM_VICTIM != 0,
            })
        }
        kind::EXEC => {
            let t: ExecTail = read_at(record, HEADER)?;
            let exe_len = usize::from(t.exe_len);
            let cwd_len = usize::from(t.cwd_len);
            let filename_len = usize::from(t.filename_len);
            let argv_len = t.argv_len as usize;
            let argv_total = t.argv_total;
            let data = &record[HEADER + EXEC_TAIL..];
            let declared = exe_len + cwd_len + filename_len + argv_len;
            if declared > data.len() {
                return Err(DecodeError::DataOverrun {
                    declared,
                    available: data.len(),
                });
            }
            let (exe, rest) = data.split_at(exe_len);
            let (cwd, rest) = rest.split_at(cwd_len);
            let (filename, rest) = rest.split_at(filename_len);
            let argv = &rest[..argv_len];
            let exe = if common.has(flags::EXE_DETACHED) {
                // As `d_path` shows a file outside any directory (`/memfd:x (deleted)`).
                walked_path(exe).map(|name| format!("{name} (deleted)"))
            } else {
                walked_path(exe)
            };
            let cwd = match walked_path(cwd) {
                None if common.has(flags::CWD_ROOT) => Some("/".to_owned()),
                cwd => cwd,
            };
            Body::Exec(Box::new(Exec {
                exe,
                cwd,
                filename: c_string(filename),
                argv: split_argv(argv),
                // The kernel flags a cap it hit; a shorter read than the process's argv is
                // a truncation whatever the reason.
                argv_truncated: common.flags & flags::ARGV_TRUNCATED != 0
                    || (argv_len as u64) < u64::from(argv_total),
                argv_total_bytes: argv_total,
                hidden: common.flags & flags::HIDDEN != 0,
            }))
        }
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(Event { common, body })
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
    use exporter_common::{COMM_LEN, ExecTail, ExitTail, RecordHeader};

    fn header(kind: u16, flags: u16, len: usize) -> RecordHeader {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"make");
        RecordHeader {
            kind,
            flags,
            len: len as u32,
            ktime_ns: 1_000,
            start_ns: 900,
            parent_start_ns: 100,
            cgroup_id: 7,
            tgid: 42,
            pid: 43,
            ppid: 41,
            tree_ppid: 40,
            uid: 1000,
            _pad0: 0,
            comm,
        }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: the record types are #[repr(C)] integers with explicit padding.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn exec_record(exe: &[u8], cwd: &[u8], filename: &[u8], argv: &[u8], flags: u16) -> Vec<u8> {
        let len = HEADER + EXEC_TAIL + exe.len() + cwd.len() + filename.len() + argv.len();
        let mut out = bytes_of(&header(kind::EXEC, flags, len));
        out.extend(bytes_of(&ExecTail {
            exe_len: exe.len() as u16,
            cwd_len: cwd.len() as u16,
            filename_len: filename.len() as u16,
            _pad0: 0,
            argv_len: argv.len() as u32,
            argv_total: argv.len() as u32 + 10,
        }));
        for part in [exe, cwd, filename, argv] {
            out.extend_from_slice(part);
        }
        out
    }

    /// Every header field set to a value no other field has: each lands in its own place.
    #[test]
    fn every_header_field_is_read_from_its_own_place() {
        let mut comm = [0u8; COMM_LEN];
        comm[..7].copy_from_slice(b"distinc");
        let h = RecordHeader {
            kind: kind::MEMORY,
            flags: 0x0a0b,
            len: (HEADER + MEMORY_TAIL) as u32,
            ktime_ns: 1_000_000_011,
            start_ns: 1_000_000_012,
            parent_start_ns: 1_000_000_013,
            cgroup_id: 1_000_000_014,
            tgid: 15,
            pid: 16,
            ppid: 17,
            tree_ppid: 18,
            uid: 19,
            _pad0: 0xffff_ffff,
            comm,
        };
        let mut rec = bytes_of(&h);
        rec.extend(bytes_of(&exporter_common::MemoryTail {
            rss_bytes: 21,
            previous_bytes: 22,
        }));
        let ev = decode(&rec).unwrap();
        assert_eq!(
            ev.common,
            Common {
                flags: 0x0a0b,
                ktime_ns: 1_000_000_011,
                start_ns: 1_000_000_012,
                parent_start_ns: 1_000_000_013,
                cgroup_id: 1_000_000_014,
                tgid: 15,
                tid: 16,
                ppid: 17,
                tree_ppid: 18,
                uid: 19,
                comm: "distinc".into(),
            }
        );
        assert_eq!(
            ev.body,
            Body::Memory(Memory {
                rss_bytes: 21,
                previous_bytes: 22
            })
        );
    }

    #[test]
    fn decodes_exec_with_paths_and_argv() {
        let rec = exec_record(
            b"python3.11\0bin\0usr\0",
            b"w\0tmp\0",
            b"./job.py\0",
            "python3\0-c\0print('h\u{e9}llo w')\0".as_bytes(),
            flags::ARGV_TRUNCATED | flags::FIRST_SIGHT,
        );
        let ev = decode(&rec).unwrap();
        assert_eq!(ev.common.tgid, 42);
        assert_eq!(ev.common.tid, 43);
        assert_eq!(ev.common.comm, "make");
        assert!(ev.common.has(flags::FIRST_SIGHT));
        let Body::Exec(exec) = ev.body else {
            panic!("not exec")
        };
        assert_eq!(exec.exe.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(exec.cwd.as_deref(), Some("/tmp/w"));
        assert_eq!(exec.filename, "./job.py");
        assert_eq!(exec.argv, vec!["python3", "-c", "print('h\u{e9}llo w')"]);
        assert!(exec.argv_truncated);
        assert!(!exec.hidden);
    }

    #[test]
    fn root_directory_and_empty_argv() {
        let ev = decode(&exec_record(b"", b"\0", b"\0", b"", 0)).unwrap();
        let Body::Exec(exec) = ev.body else { panic!() };
        assert_eq!(exec.exe, None);
        assert_eq!(exec.cwd.as_deref(), Some("/"));
        assert!(exec.argv.is_empty());
    }

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

    #[test]
    fn decodes_thread_samples_and_round_ends() {
        use exporter_common::{SampleEndRecord, SampleRecord, SampleTail};
        let size = std::mem::size_of::<SampleRecord>();
        let tail = SampleTail {
            session: 7,
            utime_ns: 1,
            stime_ns: 2,
            runtime_ns: 3,
            dead_utime_ns: 4,
            dead_stime_ns: 5,
            dead_runtime_ns: 6,
            rss_pages: 8,
            present: exporter_common::present::IO_CHARS,
            _pad0: 0,
            activity: exporter_common::Activity {
                rchar: 9,
                nvcsw: 10,
                ..Default::default()
            },
            dead_activity: exporter_common::Activity {
                min_flt: 11,
                ..Default::default()
            },
            network: exporter_common::Network {
                sent_bytes: 12,
                ..Default::default()
            },
        };
        let rec = SampleRecord {
            header: header(kind::SAMPLE, 0, size),
            tail,
        };
        let ev = decode(&bytes_of(&rec)).unwrap();
        assert_eq!(ev.kind_name(), "thread_sample");
        assert_eq!(ev.body, Body::ThreadSample(tail));
        let end = SampleEndRecord {
            header: header(kind::SAMPLE_END, 0, std::mem::size_of::<SampleEndRecord>()),
            session: 7,
        };
        assert_eq!(decode(&bytes_of(&end)).unwrap().body, Body::SampleEnd(7));
        let short = bytes_of(&header(kind::SAMPLE, 0, HEADER));
        assert!(matches!(decode(&short), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn decodes_connections_of_both_families() {
        use exporter_common::{ConnectionRecord, ConnectionTail, direction, outcome};
        let size = std::mem::size_of::<ConnectionRecord>();
        let mut mapped = [0u8; 16];
        mapped[10..12].copy_from_slice(&[0xff, 0xff]);
        mapped[12..].copy_from_slice(&[10, 0, 0, 7]);
        let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
        let record = |family, peer: [u8; 16], local_port, dir, result| {
            bytes_of(&ConnectionRecord {
                header: header(kind::CONNECTION, 0, size),
                tail: ConnectionTail {
                    family,
                    protocol: 6,
                    local_port,
                    peer_port: 443,
                    direction: dir,
                    outcome: result,
                    peer_addr: peer,
                    ..Default::default()
                },
            })
        };
        let ev = decode(&record(10, mapped, 0, direction::OUTBOUND, outcome::FAILED)).unwrap();
        assert_eq!(ev.kind_name(), "connection");
        let Body::Connection(c) = ev.body else {
            panic!("not a connection")
        };
        // An IPv4-mapped IPv6 peer reads as the IPv4 address it is.
        assert_eq!(c.peer.to_string(), "10.0.0.7");
        assert_eq!(c.network_type(), "ipv4");
        assert_eq!((c.peer_port, c.local_port), (443, None));
        assert_eq!((c.direction(), c.outcome()), ("outbound", "failed"));
        assert_eq!(c.transport(), "tcp");
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        let Body::Connection(c) = decode(&record(
            2,
            v4,
            8080,
            direction::INBOUND,
            outcome::ESTABLISHED,
        ))
        .unwrap()
        .body
        else {
            panic!()
        };
        assert_eq!(c.peer.to_string(), "127.0.0.1");
        assert_eq!((c.direction(), c.local_port), ("inbound", Some(8080)));
        let Body::Connection(c) = decode(&record(
            10,
            v6,
            1,
            direction::OUTBOUND,
            outcome::ESTABLISHED,
        ))
        .unwrap()
        .body
        else {
            panic!()
        };
        assert_eq!(
            (c.peer.to_string().as_str(), c.network_type()),
            ("2001:db8::1", "ipv6")
        );
        let short = bytes_of(&header(kind::CONNECTION, 0, HEADER + 4));
        let mut short = short;
        short.extend([0u8; 4]);
        assert!(decode(&short).is_err());
    }

    #[test]
    fn exit_status_is_split() {
        let mk = |status: u32| {
            let mut out = bytes_of(&header(kind::EXIT, 0, HEADER + EXIT_TAIL));
            out.extend(bytes_of(&ExitTail {
                exit_status: status,
                present: exporter_common::present::IO_BYTES | exporter_common::present::NET_BYTES,
                utime_ns: 3,
                stime_ns: 1,
                runtime_ns: 4_000,
                maxrss_pages: 10,
                activity: exporter_common::Activity {
                    rchar: 5,
                    write_bytes: 4096,
                    min_flt: 7,
                    nivcsw: 2,
                    ..Default::default()
                },
                network: exporter_common::Network {
                    sent_bytes: 100,
                    received_bytes: 200,
                    connections: 3,
                    ..Default::default()
                },
            }));
            match decode(&out).unwrap().body {
                Body::Exit(e) => e,
                _ => panic!(),
            }
        };
        let ok = mk(0);
        assert_eq!(
            (ok.code(), ok.signal(), ok.failed()),
            (Some(0), None, false)
        );
        assert_eq!(ok.usage.cpu_user_ns, 3_000);
        // Only the fields the kernel has: storage bytes yes, call counters not.
        assert_eq!(ok.activity.write_bytes, Some(4096));
        assert_eq!(ok.activity.read_chars, None);
        assert_eq!(ok.activity.minor_faults, Some(7));
        assert_eq!(ok.activity.involuntary_switches, Some(2));
        // Bytes measured (their hooks on), connections not (that hook off): null, not zero.
        assert_eq!(ok.activity.network_sent_bytes, Some(100));
        assert_eq!(ok.activity.network_received_bytes, Some(200));
        assert_eq!(ok.activity.network_connections, None);
        assert_eq!(ok.usage.cpu_system_ns, 1_000);
        assert_eq!(ok.usage.peak_rss_bytes, 10 * page_size());
        let three = mk(3 << 8);
        assert_eq!(
            (three.code(), three.signal(), three.shell_status()),
            (Some(3), None, 3)
        );
        let killed = mk(9);
        assert_eq!(
            (killed.code(), killed.signal(), killed.shell_status()),
            (None, Some(9), 137)
        );
        let core = mk(0x80 | 11);
        assert!(core.core_dumped());
        assert_eq!(core.signal(), Some(11));
    }

    #[test]
    fn rejects_short_mismatched_unknown_and_overrun() {
        assert!(matches!(decode(&[0u8; 10]), Err(DecodeError::Short { .. })));
        let mut fork = bytes_of(&header(kind::FORK, 0, HEADER));
        assert_eq!(decode(&fork).unwrap().body, Body::Fork);
        fork.push(0);
        assert!(matches!(
            decode(&fork),
            Err(DecodeError::LengthMismatch { .. })
        ));
        let unknown = bytes_of(&header(99, 0, HEADER));
        assert_eq!(decode(&unknown), Err(DecodeError::UnknownKind(99)));
        let exit_short = bytes_of(&header(kind::EXIT, 0, HEADER));
        assert!(matches!(
            decode(&exit_short),
            Err(DecodeError::Short { .. })
        ));
        let mut exec = exec_record(b"a\0", b"", b"", b"x\0", 0);
        // Claim more argv than the record holds.
        exec[HEADER + 8] = 200;
        assert!(matches!(
            decode(&exec),
            Err(DecodeError::DataOverrun { .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_valid_record_is_an_error() {
        use exporter_common::{SampleEndRecord, SampleRecord, SampleTail};
        let exit = {
            let mut out = bytes_of(&header(kind::EXIT, 0, HEADER + EXIT_TAIL));
            out.extend(bytes_of(&ExitTail {
                exit_status: 0,
                utime_ns: 3,
                stime_ns: 1,
                runtime_ns: 4_000,
                maxrss_pages: 10,
                ..Default::default()
            }));
            out
        };
        let memory = {
            let mut out = bytes_of(&header(kind::MEMORY, 0, HEADER + MEMORY_TAIL));
            out.extend(16u64.to_ne_bytes());
            out.extend(8u64.to_ne_bytes());
            out
        };
        let sample = bytes_of(&SampleRecord {
            header: header(kind::SAMPLE, 0, std::mem::size_of::<SampleRecord>()),
            tail: SampleTail {
                session: 1,
                utime_ns: 1,
                stime_ns: 1,
                runtime_ns: 1,
                dead_utime_ns: 0,
                dead_stime_ns: 0,
                dead_runtime_ns: 0,
                rss_pages: 1,
                ..Default::default()
            },
        });
        let sample_end = bytes_of(&SampleEndRecord {
            header: header(kind::SAMPLE_END, 0, std::mem::size_of::<SampleEndRecord>()),
            session: 1,
        });
        let records = [
            (
                "exec",
                exec_record(b"sh\0bin\0", b"\0", b"/bin/sh\0", b"sh\0-c\0true\0", 0),
            ),
            ("fork", bytes_of(&header(kind::FORK, 0, HEADER))),
            ("exit", exit),
            ("memory", memory),
            ("sample", sample),
            ("sample_end", sample_end),
        ];
        for (name, rec) in records {
            assert!(decode(&rec).is_ok(), "{name}: the whole record decodes");
            for cut in 0..rec.len() {
                // A prefix whose header claims exactly its own length, so only the body's
                // own checks can reject it.
                let mut r = rec[..cut].to_vec();
                if r.len() >= 8 {
                    r[4..8].copy_from_slice(&(cut as u32).to_ne_bytes());
                }
                assert!(
                    decode(&r).is_err(),
                    "{name} cut at {cut} of {} accepted",
                    rec.len()
                );
            }
        }
    }
}
