//! Where the run sits in a distributed trace: the parent handed down in `TRACEPARENT` (W3C trace
//! context), the value handed on to the traced command, and the run as a whole (run mode), the
//! root of the processes' trace.

/// Where a process sits in the distributed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRef {
    pub trace_id: u128,
    pub span_id: u64,
}

/// A remote parent from `TRACEPARENT` (W3C trace context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
    pub trace_state: Option<String>,
}

impl RemoteParent {
    /// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; `None` when malformed or all-zero
    /// (the spec says to ignore such a header and start a new trace).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let [version, trace, span, flags, rest @ ..] = parts.as_slice() else {
            return None;
        };
        let version = u8::from_str_radix(hex(version, 2)?, 16).ok()?;
        // Version 00 has exactly four fields; later versions may append more.
        if version == 0xff || (version == 0 && !rest.is_empty()) {
            return None;
        }
        let trace_id = u128::from_str_radix(hex(trace, 32)?, 16).ok()?;
        let span_id = u64::from_str_radix(hex(span, 16)?, 16).ok()?;
        let flags = u8::from_str_radix(hex(flags, 2)?, 16).ok()?;
        (trace_id != 0 && span_id != 0).then(|| Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            trace_state: tracestate.map(str::to_owned).filter(|s| !s.is_empty()),
        })
    }
}

/// Lower-case hex of exactly `len` digits, as trace context requires.
fn hex(s: &str, len: usize) -> Option<&str> {
    (s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(s)
}

/// `TRACEPARENT` value for a span, handed to the traced command so that instrumented tools in
/// the pipeline continue the trace.
pub fn traceparent(span: SpanRef) -> String {
    format!("00-{:032x}-{:016x}-01", span.trace_id, span.span_id)
}

/// The pipeline run as a whole (run mode): the root of the trace.
#[derive(Debug, Clone)]
pub struct RunSpan {
    pub span: SpanRef,
    pub remote_parent: Option<RemoteParent>,
    pub run_id: String,
    pub command: Vec<String>,
    /// CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    pub end_ns: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub processes: u64,
    pub failed: u64,
    pub still_running: u64,
    /// Why the command could not start (it never ran).
    pub start_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_traceparent() {
        let p = RemoteParent::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("congo=t61rcWkgMzE"),
        )
        .unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert!(p.sampled);
        assert_eq!(p.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(RemoteParent::parse(bad, None).is_none(), "{bad}");
        }
        assert_eq!(
            traceparent(SpanRef {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                span_id: 0xf067aa0ba902b7
            }),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }
}
