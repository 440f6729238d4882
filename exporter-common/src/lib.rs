//! Record layouts shared by the kernel programs (`exporter-ebpf`) and the agent (`exporter`).
//!
//! Every type is `#[repr(C)]` with explicit padding fields and a compile-time size check, so the
//! two sides cannot drift apart silently. Records travel through one BPF ring buffer; each starts
//! with a [`RecordHeader`] whose `len` covers the whole record.
#![no_std]

/// Length of `task_struct.comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// Hard upper bound for the argv capture. The configurable cap (`ARGV_CAP`) must not exceed it.
pub const ARGV_MAX: usize = 32 * 1024;
/// Default argv capture cap.
pub const ARGV_DEFAULT: usize = 4 * 1024;
/// Budget for one walked path (executable or working directory), components included.
pub const PATH_MAX: usize = 4096;
/// Longest path component the kernel allows (NAME_MAX) plus its NUL.
pub const NAME_MAX: usize = 256;
/// Path components walked at most; deeper paths are flagged as truncated.
pub const PATH_DEPTH_MAX: usize = 40;
/// Mask bound for write positions in an exec record's data area (power of two). Everything
/// before argv (three paths) fits below it; argv starts below it and is at most `ARGV_MAX`.
pub const EXEC_DATA_SPAN: usize = 16 * 1024;

/// Record kinds.
pub mod kind {
    pub const FORK: u16 = 1;
    pub const EXEC: u16 = 2;
    pub const EXIT: u16 = 3;
    /// The process's resident memory moved by more than the configured step.
    pub const MEMORY: u16 = 4;
    /// One thread of a traced process, read by the sampling task iterator.
    pub const SAMPLE: u16 = 5;
    /// The sampling round whose thread records preceded it is complete.
    pub const SAMPLE_END: u16 = 6;
    /// A TCP connection of a traced process to a peer it had not connected to before (or
    /// accepted from a peer new to it), up to the configured number of peers per process.
    pub const CONNECTION: u16 = 7;
    /// A file operation of a traced process: an open (or a failed one: a probe), a rename,
    /// delete, mkdir, truncate or link; each opened file once per process and access.
    pub const FILE: u16 = 8;
}

/// Bits of [`RecordHeader::flags`].
pub mod flags {
    /// First record of this process the agent receives (no fork record preceded it): a process
    /// that predates the agent, the `run` root, a matched scope root, or one whose ancestors
    /// were hidden until it executed something visible.
    pub const FIRST_SIGHT: u16 = 1 << 0;
    /// The process executed a deny-listed program: from now on it is hidden and its children
    /// hang off its nearest visible ancestor (`tree_ppid`).
    pub const HIDDEN: u16 = 1 << 1;
    /// argv was longer than the cap; `argv_total` holds the full length.
    pub const ARGV_TRUNCATED: u16 = 1 << 2;
    /// The executable path or the working directory was too deep or too long.
    pub const PATH_TRUNCATED: u16 = 1 << 3;
    /// The process is a root of the traced scope (the `run` command or a matched root).
    pub const ROOT: u16 = 1 << 4;
    /// Some user memory (argv) could not be read.
    pub const READ_FAILED: u16 = 1 << 5;
    /// An earlier record of this process could not be written (ring buffer full): what user
    /// space knows of it is partial.
    pub const RECORDS_LOST: u16 = 1 << 6;
    /// The executable has no path in the mount tree (a memfd, another pseudo file): the one
    /// component is its name, which user space shows as `/proc/PID/exe` does.
    pub const EXE_DETACHED: u16 = 1 << 7;
    /// The working directory is the root directory (a walk with no component).
    pub const CWD_ROOT: u16 = 1 << 8;
}

/// Common head of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u16,
    pub flags: u16,
    /// Whole record length in bytes, header included.
    pub len: u32,
    /// `bpf_ktime_get_ns()` when the event happened (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// Start time of the process (thread-group leader), CLOCK_MONOTONIC ns: with `tgid`, the
    /// identity of the process, since pids are reused.
    pub start_ns: u64,
    /// Start time of the `tree_ppid` process (0 when unknown).
    pub parent_start_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread that raised the event.
    pub pid: u32,
    /// tgid of `real_parent` at the time of the event.
    pub ppid: u32,
    /// Nearest visible ancestor in the traced tree (skips deny-listed processes); 0 = none.
    pub tree_ppid: u32,
    pub uid: u32,
    pub _pad0: u32,
    pub comm: [u8; COMM_LEN],
}

/// Tail of an exec record; the data area that follows holds, back to back:
/// `exe` (NUL-terminated path components, leaf first), `cwd` (same), `filename` (as passed to
/// execve, NUL-terminated) and `argv` (the NUL-separated strings of the new image).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecTail {
    pub exe_len: u16,
    pub cwd_len: u16,
    pub filename_len: u16,
    pub _pad0: u16,
    /// argv bytes captured.
    pub argv_len: u32,
    /// argv bytes in the process (`mm->arg_end - mm->arg_start`).
    pub argv_total: u32,
}

/// I/O, page faults and context switches of a thread group (or of one thread, or of the
/// group's exited threads), as the kernel counts them. The I/O fields are 0 where the kernel
/// lacks them: [`Activity`]'s presence bits in the record say which ones were read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Bytes through read/write-like calls, and the number of those calls (`ioac.rchar`,
    /// `wchar`, `syscr`, `syscw`: CONFIG_TASK_XACCT).
    pub rchar: u64,
    pub wchar: u64,
    pub syscr: u64,
    pub syscw: u64,
    /// Bytes fetched from and sent to the storage layer, and dirty page-cache bytes whose
    /// writeback was cancelled (CONFIG_TASK_IO_ACCOUNTING).
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
    pub min_flt: u64,
    pub maj_flt: u64,
    /// Voluntary and involuntary context switches.
    pub nvcsw: u64,
    pub nivcsw: u64,
}

impl Activity {
    /// Field-wise sum (a group's exited threads plus its last thread).
    pub fn plus(&self, o: &Activity) -> Activity {
        Activity {
            rchar: self.rchar + o.rchar,
            wchar: self.wchar + o.wchar,
            syscr: self.syscr + o.syscr,
            syscw: self.syscw + o.syscw,
            read_bytes: self.read_bytes + o.read_bytes,
            write_bytes: self.write_bytes + o.write_bytes,
            cancelled_write_bytes: self.cancelled_write_bytes + o.cancelled_write_bytes,
            min_flt: self.min_flt + o.min_flt,
            maj_flt: self.maj_flt + o.maj_flt,
            nvcsw: self.nvcsw + o.nvcsw,
            nivcsw: self.nivcsw + o.nivcsw,
        }
    }
}

/// Which [`Activity`] I/O fields the kernel has (bits of `ExitTail::present`).
pub mod present {
    /// `rchar`, `wchar`, `syscr`, `syscw`.
    pub const IO_CHARS: u32 = 1;
    /// `read_bytes`, `write_bytes`, `cancelled_write_bytes`.
    pub const IO_BYTES: u32 = 2;
    /// Not an I/O field: on an exit record, the process was chosen by the OOM killer
    /// (`signal->oom_mm` set by `mark_oom_victim`, where `oom:mark_victim` fires).
    pub const OOM_VICTIM: u32 = 4;
    /// The socket byte hooks are attached: the [`Network`] byte and call counts are measured.
    pub const NET_BYTES: u32 = 8;
    /// The TCP state hook is attached: the [`Network`] connection counts are measured.
    pub const NET_CONNECTIONS: u32 = 16;
    /// The file syscall hooks are attached: the process's files are recorded.
    pub const FILES: u32 = 32;
}

/// Network use of a process (all its threads), counted in the kernel: no event per send.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// Bytes sent and received through IPv4/IPv6 sockets (TCP, UDP, …), and the calls.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub send_calls: u64,
    pub receive_calls: u64,
    /// TCP connections it opened (attempts included) and accepted connections it used.
    pub connections: u64,
    pub accepted: u64,
    /// Connections to peers beyond the first `network_peers` distinct ones: not listed.
    pub unlisted: u64,
}

/// Value of the `NET_IO` map, by tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetState {
    pub totals: Network,
    /// Distinct peers listed so far (connection records sent).
    pub listed: u32,
    pub _pad0: u32,
}

/// Directions of a [`ConnectionTail`].
pub mod direction {
    /// The process connected (`connect`).
    pub const OUTBOUND: u8 = 1;
    /// The process used a connection a listening socket accepted.
    pub const INBOUND: u8 = 2;
}

/// Outcomes of a [`ConnectionTail`].
pub mod outcome {
    pub const ESTABLISHED: u8 = 1;
    /// The handshake ended without a connection (refused, unreachable, timed out, closed).
    pub const FAILED: u8 = 2;
}

/// Tail of a connection record. Addresses in network byte order: IPv4 in the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionTail {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// IPPROTO_* of the socket (6 = TCP).
    pub protocol: u16,
    /// Host byte order; 0 when not known yet.
    pub local_port: u16,
    pub peer_port: u16,
    pub direction: u8,
    pub outcome: u8,
    pub _pad0: [u8; 6],
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub header: RecordHeader,
    pub tail: ConnectionTail,
}

/// Key of the `PEERS` map: one distinct peer of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerKey {
    pub start_ns: u64,
    pub tgid: u32,
    pub family: u16,
    /// The peer's port when outbound; the local (service) port when inbound, so that the
    /// ephemeral ports of a client's connections do not make each one a new peer.
    pub port: u16,
    pub direction: u8,
    pub _pad0: [u8; 7],
    pub addr: [u8; 16],
}

/// Operations of a [`FileTail`].
pub mod file_op {
    /// open/openat/openat2/creat: `flags` are the open flags.
    pub const OPEN: u16 = 1;
    /// rename/renameat/renameat2: `path` → `path2`.
    pub const RENAME: u16 = 2;
    /// unlink/unlinkat (`flags` AT_REMOVEDIR makes it a rmdir).
    pub const UNLINK: u16 = 3;
    pub const RMDIR: u16 = 4;
    pub const MKDIR: u16 = 5;
    pub const TRUNCATE: u16 = 6;
    /// link/linkat: `path` (existing) → `path2` (new name).
    pub const LINK: u16 = 7;
    /// symlink/symlinkat: `path` is the target as written (not resolved), `path2` the link.
    pub const SYMLINK: u16 = 8;
}

/// Where a file syscall's arguments are: the value of the `FILE_SYSCALLS` array, by syscall
/// number (below [`SYSCALLS_MAX`]), which the agent fills for its architecture; `op` 0 for
/// the syscalls not watched. Argument indexes 0..6, or [`NO_ARG`] (a directory absent is
/// AT_FDCWD).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSyscall {
    pub op: u16,
    pub path: u8,
    pub dir: u8,
    pub path2: u8,
    pub dir2: u8,
    pub flags: u8,
    /// [`flags_from`]: how `flags` is found.
    pub flags_from: u8,
}

/// Syscall numbers the file hooks look up (an array indexed by number).
pub const SYSCALLS_MAX: u32 = 512;

/// An argument a syscall does not have.
pub const NO_ARG: u8 = 0xff;

/// Values of [`FileSyscall::flags_from`].
pub mod flags_from {
    /// The flags argument itself (or none: 0).
    pub const ARG: u8 = 0;
    /// A pointer to `struct open_how`, whose first member is the open flags (openat2).
    pub const OPEN_HOW: u8 = 1;
    /// creat(): O_CREAT | O_WRONLY | O_TRUNC.
    pub const CREAT: u8 = 2;
}

/// The arguments of a file syscall in progress, by thread (`PENDING_FILES`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingFile {
    pub args: [u64; 6],
    pub nr: u32,
    pub _pad0: u32,
}

/// Bits of [`FileTail::path_flags`].
pub mod file_path {
    /// `path` is the opened file's own path, walked (components leaf first): symlinks and
    /// relative names resolved. Otherwise `path` is the string as passed, and `base` the
    /// walked directory it is relative to (empty for an absolute one).
    pub const WALKED: u16 = 1;
    /// A walk was too deep or a string too long.
    pub const TRUNCATED: u16 = 2;
    /// The opened file has no path in the mount tree (memfd, pseudo file).
    pub const DETACHED: u16 = 4;
    /// A walked base is the root directory (a walk with no component).
    pub const BASE_ROOT: u16 = 8;
    pub const BASE2_ROOT: u16 = 16;
}

/// Tail of a file record. The data that follows holds, back to back: `path`, `base`,
/// `path2`, `base2` (lengths below; strings NUL-terminated, walks as in exec records).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileTail {
    /// The syscall's return value: a file descriptor, 0, or a negative errno.
    pub result: i64,
    /// Open flags (O_*), or the syscall's AT_*/RENAME_* flags.
    pub flags: u64,
    /// The opened file's size at the open, bytes, and its inode number and mode (0 when not
    /// an open that succeeded).
    pub size: u64,
    pub ino: u64,
    pub mode: u32,
    pub op: u16,
    pub path_flags: u16,
    pub path_len: u16,
    pub base_len: u16,
    pub path2_len: u16,
    pub base2_len: u16,
}

/// Data area of a file record: four segments, each at most [`PATH_MAX`], written below the
/// exec records' mask so that the path walk is shared.
pub const FILE_DATA: usize = EXEC_DATA_SPAN + PATH_MAX;

/// A file record as built in the per-CPU scratch slot before its used part is copied out.
#[repr(C)]
pub struct FileRecord {
    pub header: RecordHeader,
    pub tail: FileTail,
    pub data: [u8; FILE_DATA],
    /// Not sent: the walk's state (see [`ExecRecord::work`]).
    pub work: [u64; WORK_WORDS],
}

/// Value of the `FILE_STATE` map, by tgid: file records sent and only counted so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileState {
    pub start_ns: u64,
    pub sent: u32,
    pub unsent: u32,
}

/// Key of the `FILE_SEEN` map: one opened file of one process, by access (0 read, 1 write).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSeenKey {
    pub start_ns: u64,
    pub inode: u64,
    pub tgid: u32,
    pub access: u32,
}

/// A [`KernelOffsets`] field of a member this kernel does not have.
pub const ABSENT: u32 = u32::MAX;

/// Tail of an exit record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitTail {
    /// Wait status as the parent sees it: `(code << 8) | core_dump(0x80) | signal`.
    pub exit_status: u32,
    /// [`present`] bits: which I/O fields of `activity` the kernel has.
    pub present: u32,
    /// Tick-sampled user and system time of the whole thread group (threads that exited
    /// earlier included), ns: only their ratio is used, to split `runtime_ns`.
    pub utime_ns: u64,
    pub stime_ns: u64,
    /// Precise CPU time of the whole thread group from the scheduler, ns.
    pub runtime_ns: u64,
    /// Peak RSS of the image the process ended with (its mm's high-water mark, or the current
    /// RSS if higher), in pages; `signal->maxrss` when the mm was already gone.
    pub maxrss_pages: u64,
    /// The whole thread group's I/O, faults and switches.
    pub activity: Activity,
    /// The whole thread group's network use ([`present`] `NET_*` bits: measured at all).
    pub network: Network,
    /// File records sent for the process, and those beyond `files_max` only counted
    /// ([`present`] `FILES`: the file hooks are attached).
    pub file_records: u32,
    pub file_unsent: u32,
}

/// A fixed-size exec record as built in the per-CPU scratch buffer before it is copied, trimmed
/// to its real length, into the ring buffer.
#[repr(C)]
pub struct ExecRecord {
    pub header: RecordHeader,
    pub tail: ExecTail,
    /// Writes start below `EXEC_DATA_SPAN` (masked) and are at most `ARGV_MAX` long, which
    /// lets the verifier prove every write in bounds.
    pub data: [u8; EXEC_DATA_SPAN + ARGV_MAX],
    /// Not sent. Lengths pass through `work[0]` so that the verifier forgets their exact
    /// history; the path walk keeps its state in the rest. The verifier tracks no values in map
    /// memory, so every exit of a walk reaches the code after it as one state.
    pub work: [u64; WORK_WORDS],
}

/// Scratch words at the end of [`ExecRecord`].
pub const WORK_WORDS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkRecord {
    pub header: RecordHeader,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: RecordHeader,
    pub tail: ExitTail,
}

/// Tail of a memory record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryTail {
    /// Resident memory now (file + anon + shmem), bytes.
    pub rss_bytes: u64,
    /// Resident memory at the previous report (or when first seen), bytes.
    pub previous_bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRecord {
    pub header: RecordHeader,
    pub tail: MemoryTail,
}

/// Tail of a sample record: one live thread of a traced process, as the task iterator found
/// it. The agent sums the threads of a process over one round (one iterator session).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleTail {
    /// Iterator session: every record of one round carries the same one.
    pub session: u64,
    /// This thread's tick-sampled user and system time and its precise runtime, ns.
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub runtime_ns: u64,
    /// The group's threads that already exited (`signal`), ns: the same in every thread.
    pub dead_utime_ns: u64,
    pub dead_stime_ns: u64,
    pub dead_runtime_ns: u64,
    /// This thread's time runnable but waiting for a CPU (`sched_info.run_delay`), ns; 0 on
    /// kernels without scheduler statistics.
    pub run_delay_ns: u64,
    /// Resident pages of the thread's mm now (file + anon + shmem); 0 without an mm.
    pub rss_pages: u64,
    /// [`present`] bits: which I/O fields the kernel has.
    pub present: u32,
    pub _pad0: u32,
    /// This thread's I/O, faults and switches so far.
    pub activity: Activity,
    /// The group's threads that already exited: the same in every thread.
    pub dead_activity: Activity,
    /// The whole group's network use so far: the same in every thread.
    pub network: Network,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleRecord {
    pub header: RecordHeader,
    pub tail: SampleTail,
}

/// End of a sampling round (the iterator's last call).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleEndRecord {
    pub header: RecordHeader,
    pub session: u64,
}

/// Value of the `MEMORY` map, keyed by mm: where the process's RSS was last reported, the band
/// around it inside which no record is sent, and the last value of each resident counter
/// (file, anon, shmem), so that one change costs one counter read. All in pages.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryState {
    /// The tgid the entry was made for: an mm freed without its entry being removed (its
    /// process exec'd) can come back at the same address as another process's.
    pub owner: u64,
    pub reported: u64,
    pub low: u64,
    pub high: u64,
    pub counters: [u64; 4],
}

/// Value of the `TRACKED` map, keyed by tgid: the processes inside the traced scope.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackState {
    /// Nearest visible ancestor (0 for a root).
    pub tree_ppid: u32,
    /// `track::*` bits.
    pub flags: u32,
    /// Start time of `tree_ppid`.
    pub parent_start_ns: u64,
}

/// Bits of [`TrackState::flags`].
pub mod track {
    /// Running a deny-listed executable: its own events are not sent.
    pub const HIDDEN: u32 = 1 << 0;
    /// A scope root; never hidden.
    pub const ROOT: u32 = 1 << 1;
    /// User space has already been told about this process.
    pub const ANNOUNCED: u32 = 1 << 2;
    /// A record of this process could not be written: later ones carry `flags::RECORDS_LOST`.
    pub const RECORD_LOST: u32 = 1 << 3;
    /// The `run` command between fork and its first exec: if the exec fails, the process never
    /// was the command, and its exit is not reported.
    pub const AWAITING_EXEC: u32 = 1 << 4;
}

/// Scope modes (`CaptureConfig::scope_mode`).
pub mod scope {
    /// Only processes in `TRACKED` (the `run` root, matched roots) and their descendants.
    pub const TRACKED: u32 = 0;
    /// Every process on the host.
    pub const ALL: u32 = 1;
    /// Processes in a cgroup v2 subtree, and descendants of tracked roots.
    pub const CGROUP: u32 = 2;
}

/// Indexes of the per-CPU `COUNTERS` array.
pub mod counter {
    /// Records dropped because the ring buffer was full.
    pub const RING_FULL: u32 = 0;
    /// Processes that could not be added to `TRACKED` (map full): their subtree is lost.
    pub const TRACK_FULL: u32 = 1;
    /// Records written to the ring buffer.
    pub const EMITTED: u32 = 2;
    /// Events suppressed because the process was hidden (deny-list).
    pub const HIDDEN: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Run-time settings injected as a read-only global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    pub scope_mode: u32,
    /// Bytes of argv captured at most (≤ [`ARGV_MAX`]).
    pub argv_cap: u32,
    /// The agent's own tgid: never traced in `ALL` mode.
    pub agent_tgid: u32,
    /// Depth of the scope cgroup in the v2 hierarchy (root = 0).
    pub cgroup_level: u32,
    /// Id of the scope cgroup (its inode number in cgroupfs).
    pub cgroup_id: u64,
    /// Unread bytes in the ring above which a record wakes the reader; below it records are
    /// submitted without a wakeup and the reader drains them on its timer (batching).
    pub wakeup_bytes: u32,
    /// [`present`] `NET_*` bits of the network hooks the agent attached.
    pub network_hooks: u32,
    /// A memory record leaves when RSS moved by at least this many pages...
    pub memory_step_pages: u64,
    /// ...and by at least this percentage of the last reported RSS.
    pub memory_step_percent: u32,
    /// log2 of the page size.
    pub page_shift: u32,
    /// Distinct peers listed per process (connection records); later ones are only counted.
    pub network_peers: u32,
    /// File records sent per process at most; later ones are only counted.
    pub files_max: u32,
}

/// Byte offsets of the kernel struct fields the programs read, resolved by the agent from
/// `/sys/kernel/btf/vmlinux` and injected as a read-only global (Rust emits no CO-RE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_flags: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_time: u32,
    pub task_comm: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_signal: u32,
    pub task_exit_code: u32,
    /// `task_struct.exit_state`: non-zero once the task passed `exit_notify` (a zombie).
    pub task_exit_state: u32,
    /// `task_struct.ptrace`: non-zero while a tracer is attached.
    pub task_ptrace: u32,
    pub signal_live: u32,
    /// `signal_struct.nr_threads`: threads not yet released into `signal`'s totals.
    pub signal_nr_threads: u32,
    /// `signal_struct.stats_lock`, whose first word is its sequence count.
    pub signal_stats_lock: u32,
    /// `signal_struct.flags` and `group_exit_code`: the wait status of a group exit.
    pub signal_flags: u32,
    pub signal_group_exit_code: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    pub file_f_path: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub qstr_name: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub fs_pwd: u32,
    pub bprm_filename: u32,
    pub task_utime: u32,
    pub task_stime: u32,
    /// `task_struct.se` + `sched_entity.sum_exec_runtime`.
    pub task_sum_exec_runtime: u32,
    /// `task_struct.sched_info` + `sched_info.run_delay` ([`ABSENT`] without `CONFIG_SCHED_INFO`).
    pub task_run_delay: u32,
    pub signal_utime: u32,
    pub signal_stime: u32,
    pub signal_sum_sched_runtime: u32,
    pub signal_maxrss: u32,
    pub mm_hiwater_rss: u32,
    /// `mm_struct.rss_stat[]`: array start, element size, offset of the count in an element.
    pub mm_rss_stat: u32,
    pub rss_counter_size: u32,
    pub rss_counter_count: u32,
    /// `task_struct.ioac` and `signal_struct.ioac` ([`ABSENT`] without I/O accounting), and
    /// the members of `struct task_io_accounting` (each [`ABSENT`] when configured out).
    pub task_ioac: u32,
    pub signal_ioac: u32,
    pub ioac_rchar: u32,
    pub ioac_wchar: u32,
    pub ioac_syscr: u32,
    pub ioac_syscw: u32,
    pub ioac_read_bytes: u32,
    pub ioac_write_bytes: u32,
    pub ioac_cancelled_write_bytes: u32,
    pub task_min_flt: u32,
    pub task_maj_flt: u32,
    pub task_nvcsw: u32,
    pub task_nivcsw: u32,
    pub signal_min_flt: u32,
    pub signal_maj_flt: u32,
    pub signal_nvcsw: u32,
    pub signal_nivcsw: u32,
    /// `signal_struct.oom_mm` ([`ABSENT`] on kernels without it).
    pub signal_oom_mm: u32,
    /// `struct sock` (its `sock_common` at the start): family, addresses, ports, protocol.
    pub sock_family: u32,
    pub sock_daddr: u32,
    pub sock_rcv_saddr: u32,
    pub sock_dport: u32,
    pub sock_num: u32,
    /// [`ABSENT`] without IPv6.
    pub sock_v6_daddr: u32,
    pub sock_v6_rcv_saddr: u32,
    pub sock_protocol: u32,
    /// `task_struct.files` → `files_struct.fdt` → `fdtable.fd[]` (below `max_fds`): the open
    /// file of a descriptor.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub dentry_d_inode: u32,
    pub inode_i_size: u32,
    pub inode_i_ino: u32,
    pub inode_i_mode: u32,
    /// `struct pt_regs`: the syscall number (`orig_ax`, arm64's `syscallno`) and the six
    /// argument registers ([`ABSENT`]: the file hooks cannot read them here).
    pub regs_syscall_nr: u32,
    pub regs_args: [u32; 6],
}

/// `task_struct.flags` bit of kernel threads.
pub const PF_KTHREAD: u32 = 0x0020_0000;

const _: () = {
    assert!(core::mem::size_of::<RecordHeader>() == 80);
    assert!(core::mem::size_of::<ExecTail>() == 16);
    assert!(core::mem::size_of::<Activity>() == 88);
    assert!(core::mem::size_of::<ExitTail>() == 192);
    assert!(core::mem::size_of::<Network>() == 56);
    assert!(core::mem::size_of::<NetState>() == 64);
    assert!(core::mem::size_of::<ConnectionRecord>() == 128);
    assert!(core::mem::size_of::<PeerKey>() == 40);
    assert!(core::mem::size_of::<ForkRecord>() == 80);
    assert!(core::mem::size_of::<ExitRecord>() == 272);
    assert!(core::mem::size_of::<FileTail>() == 48);
    assert!(core::mem::size_of::<FileSyscall>() == 8);
    assert!(core::mem::size_of::<PendingFile>() == 56);
    assert!(core::mem::size_of::<FileState>() == 16);
    assert!(core::mem::size_of::<FileSeenKey>() == 24);
    assert!(core::mem::size_of::<FileRecord>() == 128 + FILE_DATA + 8 * WORK_WORDS);
    assert!(core::mem::size_of::<FileRecord>() <= 32 * 1024);
    assert!(core::mem::size_of::<ExecRecord>() == 96 + EXEC_DATA_SPAN + ARGV_MAX + 8 * WORK_WORDS);
    assert!(core::mem::size_of::<TrackState>() == 16);
    assert!(core::mem::size_of::<CaptureConfig>() == 56);
    assert!(core::mem::size_of::<MemoryRecord>() == 96);
    assert!(core::mem::size_of::<SampleRecord>() == 392);
    assert!(core::mem::size_of::<SampleEndRecord>() == 88);
    assert!(core::mem::size_of::<KernelOffsets>() == 86 * 4);
    assert!(3 * PATH_MAX <= EXEC_DATA_SPAN);
    assert!(NAME_MAX <= ARGV_MAX && PATH_MAX <= ARGV_MAX);
    assert!(EXEC_DATA_SPAN.is_power_of_two());
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are #[repr(C)] with explicit padding and only integer fields.
    unsafe impl aya::Pod for TrackState {}
    unsafe impl aya::Pod for CaptureConfig {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for FileSyscall {}
}
