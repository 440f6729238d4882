//! `connections/`: one row per listed TCP connection of a process (its first to each peer).

use std::sync::LazyLock;

use super::{
    CONNECTIONS, Dataset, FIRST, Kind, column, event_comm, event_pid, event_start_time, event_time,
    host, run_id,
};
use crate::event::{Body, Connection, Event};

/// The connection of a `connection` event (the sink adds no other events here).
pub struct Derived(Connection);

pub(super) fn derive(ev: &Event) -> Derived {
    match &ev.body {
        Body::Connection(c) => Derived(*c),
        // Not reached: only connection events are rows of this dataset.
        _ => Derived(Connection {
            outbound: false,
            protocol: 0,
            peer: std::net::Ipv4Addr::UNSPECIFIED.into(),
            peer_port: 0,
            local: std::net::Ipv4Addr::UNSPECIFIED.into(),
            local_port: None,
            established: false,
        }),
    }
}

static TABLE: LazyLock<Dataset<Event, Derived>> = LazyLock::new(|| {
    let columns = vec![
        run_id(),
        event_time(),
        event_pid(),
        event_start_time(),
        event_comm(),
        // outbound (connect) or inbound (accepted).
        column(
            "direction",
            Kind::Text,
            false,
            FIRST,
            |_: &Event, d: &Derived, _| d.0.direction().into(),
        ),
        column(
            "transport",
            Kind::Text,
            false,
            FIRST,
            |_: &Event, d: &Derived, _| d.0.transport().into(),
        ),
        column(
            "network_type",
            Kind::Text,
            false,
            FIRST,
            |_: &Event, d: &Derived, _| d.0.network_type().into(),
        ),
        column(
            "peer_address",
            Kind::Text,
            false,
            FIRST,
            |_: &Event, d: &Derived, _| d.0.peer.to_string().into(),
        ),
        column(
            "peer_port",
            Kind::Int32,
            false,
            FIRST,
            |_: &Event, d: &Derived, _| i32::from(d.0.peer_port).into(),
        ),
        column(
            "local_address",
            Kind::Text,
            false,
            FIRST,
            |_: &Event, d: &Derived, _| d.0.local.to_string().into(),
        ),
        column(
            "local_port",
            Kind::Int32,
            true,
            FIRST,
            |_: &Event, d: &Derived, _| d.0.local_port.map(i32::from).into(),
        ),
        // established, or failed (refused, unreachable, timed out).
        column(
            "outcome",
            Kind::Text,
            false,
            FIRST,
            |_: &Event, d: &Derived, _| d.0.outcome().into(),
        ),
        host(),
    ];
    Dataset::new(CONNECTIONS, derive, columns)
});

/// The `connections` dataset.
pub fn connections() -> &'static Dataset<Event, Derived> {
    &TABLE
}
