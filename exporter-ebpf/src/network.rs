//! Network use per traced process.
//!
//! Bytes: `sock_send_length` / `sock_recv_length` fire on every send and receive of every
//! socket on the host, so a send only adds to per-CPU counts of the thread that is running
//! (`NET_CPU`: an array read, no hash lookup, no atomic); they move to the process's `NET_IO`
//! entry when the thread leaves the CPU, and leave with the exit record and every live sample.
//! No record per send. An untraced thread's sends stop at the same per-CPU check.
//!
//! Connections: `inet_sock_set_state` sees a TCP socket go CLOSE → SYN_SENT in the connecting
//! task, and SYN_RECV → ESTABLISHED (in softirq) for a connection a listener accepted; the
//! accepted socket belongs to the first traced process that sends or receives on it. Each
//! process lists its first `network_peers` distinct peers as connection records; later ones
//! are only counted, so a crawler cannot flood the ring.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use exporter_common::{
    ABSENT, ConnectionRecord, ConnectionTail, NetState, PeerKey, direction, kind, outcome, present,
};

use crate::{
    atomic::atomic_add as add,
    globals::{conf, off},
    kernel::{process_start, read},
    maps::{
        ACCEPTED, CONNECTING, CONNECTION_SCRATCH, NET_CPU, NET_IO, NetCpu, PEERS, TRACKED,
        scope_generation,
    },
    record::{event_header, mark_lost},
    scope::in_untracked_scope,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const MSG_PEEK: i32 = 2;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const IPPROTO_TCP: u16 = 6;

/// The network state of the current process `tgid` if it is traced, created at its first use.
#[inline(always)]
fn process_state(task: u64, tgid: u32) -> Option<*mut NetState> {
    if let Some(state) = NET_IO.get_ptr_mut(tgid) {
        return Some(state);
    }
    let traced = match unsafe { TRACKED.get(tgid) } {
        Some(s) => s.flags & exporter_common::track::HIDDEN == 0,
        None => in_untracked_scope(task, tgid),
    };
    if !traced {
        return None;
    }
    let _ = NET_IO.insert(tgid, NetState::default(), BPF_NOEXIST as u64);
    NET_IO.get_ptr_mut(tgid)
}

/// Moves this CPU's pending counts into their process's `NET_IO` entry.
#[inline(always)]
pub fn flush(cpu: *mut NetCpu) {
    // SAFETY: this CPU's slot; programs do not migrate while they run.
    unsafe {
        if (*cpu).pending == 0 {
            return;
        }
        if let Some(state) = NET_IO.get_ptr_mut(((*cpu).pid_tgid >> 32) as u32) {
            let totals = &raw mut (*state).totals;
            add(&raw mut (*totals).sent_bytes, (*cpu).sent_bytes);
            add(&raw mut (*totals).received_bytes, (*cpu).received_bytes);
            add(&raw mut (*totals).send_calls, (*cpu).send_calls);
            add(&raw mut (*totals).receive_calls, (*cpu).receive_calls);
        }
        (*cpu).sent_bytes = 0;
        (*cpu).received_bytes = 0;
        (*cpu).send_calls = 0;
        (*cpu).receive_calls = 0;
        (*cpu).pending = 0;
    }
}

/// At every context switch (`prev` leaves the CPU): the counts of the thread that sent or
/// received here go to its process.
#[inline(always)]
pub fn on_switch() {
    if conf!(network_hooks) & present::NET_BYTES == 0 {
        return;
    }
    if let Some(cpu) = NET_CPU.get_ptr_mut(0) {
        flush(cpu);
    }
}

// sock_send_length(struct sock *sk, int ret, int flags)
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    on_bytes(&ctx, false);
    0
}

// sock_recv_length(struct sock *sk, int ret, int flags)
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    on_bytes(&ctx, true);
    0
}

#[inline(always)]
fn on_bytes(ctx: &RawTracePointContext, received: bool) {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret <= 0 {
        return;
    }
    // A peek leaves the data queued: it is received later.
    if received && (ctx.arg::<u64>(2) as i32) & MSG_PEEK != 0 {
        return;
    }
    let Some(cpu) = NET_CPU.get_ptr_mut(0) else {
        return;
    };
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let task = unsafe { bpf_get_current_task() };
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: this CPU's slot; programs do not migrate while they run.
    unsafe {
        // Only an untraced decision goes stale with the generation (a process became traced);
        // a traced one stays right until the thread changes.
        if (*cpu).task != task
            || (*cpu).pid_tgid != pid_tgid
            || ((*cpu).traced == 0 && (*cpu).generation != scope_generation())
        {
            // Another thread than the last one here (whose counts normally left with it).
            flush(cpu);
            (*cpu).task = task;
            (*cpu).pid_tgid = pid_tgid;
            (*cpu).generation = scope_generation();
            (*cpu).traced = process_state(task, tgid).is_some() as u64;
            (*cpu).last_sk = 0;
        }
        if (*cpu).traced == 0 {
            return;
        }
        let sk: u64 = ctx.arg(0);
        if (*cpu).last_sk != sk {
            let family = read::<u16>(sk, off!(sock_family)).unwrap_or(0);
            let inet = family == AF_INET || family == AF_INET6;
            (*cpu).last_sk = sk;
            (*cpu).last_inet = inet as u64;
            if inet
                && conf!(network_hooks) & present::NET_CONNECTIONS != 0
                && let Some(state) = NET_IO.get_ptr_mut(tgid)
            {
                accepted(sk, tgid, state);
            }
        }
        if (*cpu).last_inet == 0 {
            return;
        }
        if received {
            (*cpu).received_bytes += ret as u64;
            (*cpu).receive_calls += 1;
        } else {
            (*cpu).sent_bytes += ret as u64;
            (*cpu).send_calls += 1;
        }
        (*cpu).pending = 1;
    }
}

/// `sk` (new to this process) is a connection a listener accepted that no traced process has
/// used yet: it is this process's.
#[inline(always)]
fn accepted(sk: u64, tgid: u32, state: *mut NetState) {
    if unsafe { ACCEPTED.get(sk) }.is_none() {
        return;
    }
    let _ = ACCEPTED.remove(sk);
    add(unsafe { &raw mut (*state).totals.accepted }, 1);
    let mut tail = connection_tail(sk, direction::INBOUND);
    tail.outcome = outcome::ESTABLISHED;
    if !list_peer(tgid, state, &tail, tail.local_port) {
        return;
    }
    let Some(record) = build_record(tgid, &tail) else {
        return;
    };
    output(record);
}

/// The connection record of the current process with `tail`, built in this CPU's scratch slot
/// (it does not fit on the BPF stack beside the rest); `None` when its events are not sent.
#[inline(always)]
fn build_record(tgid: u32, tail: &ConnectionTail) -> Option<*mut ConnectionRecord> {
    let record = CONNECTION_SCRATCH.get_ptr_mut(0)?;
    let task = unsafe { bpf_get_current_task() };
    let header = event_header(
        kind::CONNECTION,
        core::mem::size_of::<ConnectionRecord>(),
        task,
        tgid,
        unsafe { TRACKED.get(tgid) }.copied(),
    )?;
    // SAFETY: this CPU's slot; programs do not migrate while they run.
    unsafe {
        (*record).header = header;
        (*record).tail = *tail;
    }
    Some(record)
}

/// Copies a built record into the ring.
#[inline(always)]
fn output(record: *mut ConnectionRecord) {
    if !crate::maps::submit(record, core::mem::size_of::<ConnectionRecord>()) {
        mark_lost(unsafe { (*record).header.tgid });
    }
}

/// Whether the peer of `tail` is to be listed: new to the process and within the cap. A
/// peer beyond the cap is counted instead.
#[inline(always)]
fn list_peer(tgid: u32, state: *mut NetState, tail: &ConnectionTail, port: u16) -> bool {
    let task = unsafe { bpf_get_current_task() };
    let key = PeerKey {
        start_ns: process_start(task),
        tgid,
        family: tail.family,
        port,
        direction: tail.direction,
        _pad0: [0; 7],
        addr: tail.peer_addr,
    };
    if unsafe { PEERS.get(&key) }.is_some() {
        return false;
    }
    let listed = unsafe { (*state).listed };
    if listed >= conf!(network_peers) {
        add(unsafe { &raw mut (*state).totals.unlisted }, 1);
        return false;
    }
    unsafe { (*state).listed = listed + 1 };
    let _ = PEERS.insert(&key, &1, 0);
    true
}

/// Family, protocol, ports and addresses of `sk` (ports in host order).
#[inline(always)]
fn connection_tail(sk: u64, dir: u8) -> ConnectionTail {
    let family = read::<u16>(sk, off!(sock_family)).unwrap_or(0);
    let protocol = if off!(sock_protocol) as u32 == ABSENT {
        IPPROTO_TCP
    } else {
        read::<u16>(sk, off!(sock_protocol)).unwrap_or(IPPROTO_TCP)
    };
    let mut tail = ConnectionTail {
        family,
        protocol,
        local_port: read::<u16>(sk, off!(sock_num)).unwrap_or(0),
        peer_port: u16::from_be(read::<u16>(sk, off!(sock_dport)).unwrap_or(0)),
        direction: dir,
        ..ConnectionTail::default()
    };
    tail.peer_addr = address(sk, family, off!(sock_daddr), off!(sock_v6_daddr));
    tail.local_addr = address(sk, family, off!(sock_rcv_saddr), off!(sock_v6_rcv_saddr));
    tail
}

/// An IPv4 (first 4 bytes) or IPv6 address of `sk`, at `v4` or `v6`.
#[inline(always)]
fn address(sk: u64, family: u16, v4: u64, v6: u64) -> [u8; 16] {
    if family == AF_INET6 && v6 as u32 != ABSENT {
        return read::<[u8; 16]>(sk, v6).unwrap_or([0; 16]);
    }
    let a = read::<[u8; 4]>(sk, v4).unwrap_or([0; 4]);
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

// inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate)
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let old = ctx.arg::<u64>(1) as i32;
    let new = ctx.arg::<u64>(2) as i32;
    if old == TCP_CLOSE && new == TCP_SYN_SENT {
        connecting(sk);
    } else if old == TCP_SYN_SENT {
        handshake_done(sk, new == TCP_ESTABLISHED);
    } else if old == TCP_SYN_RECV && new == TCP_ESTABLISHED {
        let _ = ACCEPTED.insert(sk, unsafe { bpf_ktime_get_ns() }, 0);
    }
    // Every TCP socket ends in CLOSE: an accepted one nobody traced used is forgotten, so a
    // new socket at the same address is not taken for it.
    if new == TCP_CLOSE {
        let _ = ACCEPTED.remove(sk);
    }
    0
}

/// `connect()` on `sk`, in the connecting task: counted, and a new peer's record waits for the
/// end of the handshake in `CONNECTING`.
#[inline(always)]
fn connecting(sk: u64) {
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let Some(state) = process_state(unsafe { bpf_get_current_task() }, tgid) else {
        return;
    };
    add(unsafe { &raw mut (*state).totals.connections }, 1);
    let tail = connection_tail(sk, direction::OUTBOUND);
    if !list_peer(tgid, state, &tail, tail.peer_port) {
        return;
    }
    let Some(record) = build_record(tgid, &tail) else {
        return;
    };
    let _ = CONNECTING.insert(sk, unsafe { &*record }, 0);
}

/// The handshake of `sk` ended: its record (if it waits) leaves with the local port and the
/// outcome. Often in softirq context: everything else was read at `connect()`.
#[inline(always)]
fn handshake_done(sk: u64, established: bool) {
    let Some(record) = CONNECTING.get_ptr_mut(sk) else {
        return;
    };
    // SAFETY: a live map value, removed below.
    unsafe {
        let tail = &raw mut (*record).tail;
        // Bound by now; the peer stays as it was asked for (a failed connect may clear it).
        (*tail).local_port = read::<u16>(sk, off!(sock_num)).unwrap_or(0);
        (*tail).local_addr = address(
            sk,
            (*tail).family,
            off!(sock_rcv_saddr),
            off!(sock_v6_rcv_saddr),
        );
        (*tail).outcome = if established {
            outcome::ESTABLISHED
        } else {
            outcome::FAILED
        };
    }
    output(record);
    let _ = CONNECTING.remove(sk);
}

/// The network totals of process `tgid` so far (zero when it used no socket).
#[inline(always)]
pub fn totals(tgid: u32) -> exporter_common::Network {
    unsafe { NET_IO.get(tgid) }
        .map(|s| s.totals)
        .unwrap_or_default()
}
