//! Where the run sits in a distributed trace: the parent handed down in `TRACEPARENT` (W3C trace
//! context), the value handed on to the traced command, and the run as a whole (run mode), the
//! root of the processes' trace.

pub use pipetrace_core::model::SpanRef;

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
    /// Failures that were not absorbed by an ancestor (see `TrackerTotals::failed`).
    pub failed: u64,
    /// Non-zero exits an ancestor absorbed.
    pub absorbed: u64,
    pub still_running: u64,
    /// Why the command could not start (it never ran).
    pub start_error: Option<String>,
    /// `run` itself got SIGINT or SIGTERM (and passed it on): the job was cancelled.
    pub interrupted: bool,
    /// `cicd.pipeline.task.*` attributes of the CI job around the run (empty outside CI).
    pub ci_task: Vec<(&'static str, String)>,
}

/// Signals by which a task counts as timed out rather than failed (an alarm, a CPU limit).
const TIMEOUT_SIGNALS: [i32; 2] = [libc::SIGALRM, libc::SIGXCPU];
/// `timeout(1)`'s exit status when its command ran out of time.
const TIMEOUT_EXIT: i32 = 124;

impl RunSpan {
    /// `cicd.pipeline.task.run.result` of a task that is this run.
    pub fn ci_result(&self) -> &'static str {
        if self.start_error.is_some() {
            return "error";
        }
        if self.interrupted
            || matches!(
                self.signal,
                Some(libc::SIGINT | libc::SIGTERM | libc::SIGHUP)
            )
        {
            return "cancellation";
        }
        if self.signal.is_some_and(|s| TIMEOUT_SIGNALS.contains(&s))
            || self.exit_code == Some(TIMEOUT_EXIT)
        {
            return "timeout";
        }
        match (self.exit_code, self.signal) {
            (Some(0), None) => "success",
            _ => "failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(exit_code: Option<i32>, signal: Option<i32>) -> RunSpan {
        RunSpan {
            span: SpanRef {
                trace_id: 1,
                span_id: 1,
            },
            remote_parent: None,
            run_id: String::new(),
            command: Vec::new(),
            start_ns: 0,
            end_ns: 0,
            exit_code,
            signal,
            processes: 1,
            failed: 0,
            absorbed: 0,
            still_running: 0,
            start_error: None,
            interrupted: false,
            ci_task: Vec::new(),
        }
    }

    #[test]
    fn ci_result_follows_how_the_command_ended() {
        assert_eq!(ended(Some(0), None).ci_result(), "success");
        assert_eq!(ended(Some(2), None).ci_result(), "failure");
        assert_eq!(ended(None, Some(libc::SIGKILL)).ci_result(), "failure");
        assert_eq!(ended(None, Some(libc::SIGTERM)).ci_result(), "cancellation");
        assert_eq!(ended(None, Some(libc::SIGINT)).ci_result(), "cancellation");
        assert_eq!(ended(None, Some(libc::SIGALRM)).ci_result(), "timeout");
        assert_eq!(ended(Some(124), None).ci_result(), "timeout");
        let mut passed_on = ended(Some(0), None);
        passed_on.interrupted = true;
        assert_eq!(passed_on.ci_result(), "cancellation");
        let mut never_ran = ended(Some(127), None);
        never_ran.start_error = Some("no such file".into());
        assert_eq!(never_ran.ci_result(), "error");
    }

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
