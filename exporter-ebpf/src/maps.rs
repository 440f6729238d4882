//! The maps shared with the agent, their value types, and the counters and ring helpers every
//! program uses. Names are part of the agent's contract.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use exporter_common::{Activity, COMM_LEN, ExecRecord, MemoryState, TrackState, counter};

use crate::globals::conf;

/// Every record for user space, in event order. Size set by the agent at load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Processes in scope, by tgid. Inherited at fork, removed at exit.
#[map]
pub static TRACKED: HashMap<u32, TrackState> = HashMap::with_max_entries(65536, 0);

/// Dead thread groups whose exit record waits for their counters to be final (see
/// `exits::group_released`), by tgid, with what was read while the mm was still there;
/// entries live for microseconds.
#[map]
pub static EXITING: HashMap<u32, ExitPending> = HashMap::with_max_entries(8192, 0);

/// The exited threads of a traced process, by tgid: their I/O, and how many threads are
/// between `sched_process_exit` and their last context switch. The kernel adds threads' I/O to
/// `signal->ioac` together with every child the process reaped, so that sum would count a
/// child's I/O in its parent too; summed here instead, at each thread's last switch, when it
/// is final. LRU: the entry of a process whose exit was missed ages out.
#[map]
pub static DEAD_THREADS: LruHashMap<u32, DeadThreads> = LruHashMap::with_max_entries(16384, 0);

/// The value of [`EXITING`]: what is read of a dead thread group while its mm is still there (at `sched_process_exit`).
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct ExitPending {
    /// Peak RSS of the final image, pages (0: unknown).
    pub peak_pages: u64,
    /// `signal->maxrss`, pages.
    pub group_maxrss: u64,
}

/// The value of [`DEAD_THREADS`] (see there).
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct DeadThreads {
    /// Only the I/O fields are used.
    pub io: Activity,
    /// Threads in do_exit whose last switch is still to come. Read as signed: a thread whose
    /// `sched_process_exit` came before tracing did takes it below 0.
    pub exiting: u64,
}

/// Where each traced process's RSS was last reported (see `memory.rs`), by mm. LRU: an entry
/// whose mm went away without being removed ages out.
#[map]
pub static MEMORY: LruHashMap<u64, MemoryState> = LruHashMap::with_max_entries(65536, 0);

/// Per CPU state of the memory hook (see `memory.rs`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MemoryCpu {
    /// The last mm seen that belongs to no traced process, with that process and the scope
    /// generation then: a freed mm's address is soon another process's (often a traced one,
    /// right after an untraced one exited on this CPU), and an untraced process can become
    /// traced by exec.
    pub skip: u64,
    pub skip_tgid: u64,
    pub skip_generation: u64,
    /// RSS changes seen on this CPU: only every `MEMORY_SAMPLE`th is looked at.
    pub ticks: u64,
}

#[map]
pub static MEMORY_CPU: PerCpuArray<MemoryCpu> = PerCpuArray::with_max_entries(1, 0);

/// Network use of traced processes, by tgid (see `network.rs`): created at a process's first
/// send, receive or connect, read and removed at its exit. A plain hash, not LRU: its lookup on
/// every send writes nothing (an LRU lookup marks the entry). Not preallocated: most processes
/// never use the network, and 65,536 preallocated entries cost ≈ 1 ms of start-up and ≈ 8 MiB of
/// kernel memory (charged to the agent's cgroup) whatever the load.
#[map]
pub static NET_IO: HashMap<u32, exporter_common::NetState> =
    HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// Per CPU: the thread of the last send or receive on this CPU, whether its process is traced,
/// its last socket, and its byte and call counts not yet added to its `NET_IO` entry. A send
/// of the same thread then costs an array read and four additions (no hash lookup, no atomic):
/// the counts move to `NET_IO` when the thread leaves the CPU (`sched_switch`), before its
/// exit record is written, or when another thread sends here. The thread is known by its
/// `task_struct` address and pid together (neither alone survives reuse) and the generation
/// (see `NET_GENERATION`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetCpu {
    pub task: u64,
    pub pid_tgid: u64,
    pub generation: u64,
    /// 1: the thread's process is traced.
    pub traced: u64,
    /// Its last socket, and 1 if that is an IPv4/IPv6 one (its family is read once).
    pub last_sk: u64,
    pub last_inet: u64,
    /// 1: the counts below are not zero.
    pub pending: u64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub send_calls: u64,
    pub receive_calls: u64,
}

#[map]
pub static NET_CPU: PerCpuArray<NetCpu> = PerCpuArray::with_max_entries(1, 0);

/// Bumped whenever a process becomes traced by exec (a root name matched, a hidden process
/// ran something visible): every CPU's remembered untraced task (`NET_CPU`, `MEMORY_CPU`) is
/// then stale.
#[map]
pub static SCOPE_GENERATION: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn scope_generation() -> u64 {
    SCOPE_GENERATION.get(0).copied().unwrap_or(0)
}

/// A process became traced by exec: every CPU's remembered untraced task is stale.
#[inline(always)]
pub fn bump_scope_generation() {
    if let Some(g) = SCOPE_GENERATION.get_ptr_mut(0) {
        crate::atomic::atomic_add(g, 1);
    }
}

/// Distinct peers of each process already listed. LRU: entries of ended processes age out
/// (the key has the process's start time, so a reused pid starts afresh).
#[map]
pub static PEERS: LruHashMap<exporter_common::PeerKey, u8> = LruHashMap::with_max_entries(16384, 0);

/// Sockets a listener accepted (host-wide, by `struct sock` address) that no traced process
/// has used yet: the first traced process to send or receive on one is its owner. LRU.
#[map]
pub static ACCEPTED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// Connection records of handshakes in progress, by socket: sent when the handshake ends, with
/// the local port (assigned after the connect starts) and the outcome. LRU.
#[map]
pub static CONNECTING: LruHashMap<u64, exporter_common::ConnectionRecord> =
    LruHashMap::with_max_entries(4096, 0);

/// Per CPU scratch space for a connection record (too large for the stack beside the rest).
#[map]
pub static CONNECTION_SCRATCH: PerCpuArray<exporter_common::ConnectionRecord> =
    PerCpuArray::with_max_entries(1, 0);

/// The file syscalls the agent chose, by syscall number: where their arguments are (see
/// `files.rs`); `op` 0 for the others.
#[map]
pub static FILE_SYSCALLS: Array<exporter_common::FileSyscall> =
    Array::with_max_entries(exporter_common::SYSCALLS_MAX, 0);

/// The arguments of each traced thread's file syscall in progress, by pid_tgid. LRU: a call
/// whose exit was not seen ages out.
#[map]
pub static PENDING_FILES: LruHashMap<u64, exporter_common::PendingFile> =
    LruHashMap::with_max_entries(16384, 0);

/// File records sent and only counted per process, by tgid (with the start time: pids are
/// reused). Removed at exit; LRU for a missed exit.
#[map]
pub static FILE_STATE: LruHashMap<u32, exporter_common::FileState> =
    LruHashMap::with_max_entries(65536, 0);

/// Files each process has opened, by access: each is sent once. LRU: entries of ended
/// processes age out (the key has the start time).
#[map]
pub static FILE_SEEN: LruHashMap<exporter_common::FileSeenKey, u8> =
    LruHashMap::with_max_entries(131072, 0);

/// Per CPU scratch space for a file record.
#[map]
pub static FILE_SCRATCH: PerCpuArray<exporter_common::FileRecord> =
    PerCpuArray::with_max_entries(1, 0);

/// comm values (16 bytes, NUL padded) whose own events are hidden.
#[map]
pub static DENY_COMMS: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(256, 0);

/// comm values that start a traced subtree when they exec (daemon scope `descendants`).
#[map]
pub static ROOT_COMMS: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(256, 0);

/// Scratch space for building exec records (too large for the 512-byte BPF stack, and for a
/// per-CPU map's 32 KiB value limit): one slot per CPU, sized by the agent. Tracepoint programs
/// run with preemption disabled, so a slot is never shared while in use.
#[map]
pub static EXEC_SCRATCH: Array<ExecRecord> = Array::with_max_entries(1, 0);

/// Loss and volume counters, summed over CPUs by the agent.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer while this program runs on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Copies the first `len` bytes (at most the whole) of a record built in scratch memory into
/// the ring, counted as emitted or, when the ring is full, as lost; whether it went in.
#[inline(always)]
pub fn submit<T>(record: *const T, len: usize) -> bool {
    let mut len = len;
    if len > core::mem::size_of::<T>() {
        len = core::mem::size_of::<T>();
    }
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_ringbuf_output(
            (&raw const EVENTS).cast_mut().cast::<core::ffi::c_void>(),
            record.cast_mut().cast::<core::ffi::c_void>(),
            len as u64,
            wakeup_flags(),
        )
    };
    if ret < 0 {
        count(counter::RING_FULL);
        false
    } else {
        count(counter::EMITTED);
        true
    }
}

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Submit flags: wake the reader only once enough data waits, so it reads in batches instead of
/// being woken (a context switch) for every record.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= conf!(wakeup_bytes) as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}
