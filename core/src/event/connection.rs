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
