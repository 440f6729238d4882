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
