//! What the tracker says happened, in stream order. The agent hands every report to every
//! sink; a sink matches the kinds it uses and ignores the rest.

use super::{model::Process, trace_context::RunSpan};
use crate::event::{Event, Memory, Sample};

#[derive(Debug, Clone, Copy)]
pub enum Report<'a> {
    /// A record as the kernel wrote it (command line already redacted), or a per-process
    /// sample the tracker summed from a round of per-thread records. Per-thread records and
    /// round ends never appear.
    Event(&'a Event),
    /// A process started while traced (its first record went out just before).
    Started(&'a Process),
    /// A process's resident memory moved by a step (its memory record went out just before).
    MemoryChanged(&'a Process, &'a Memory),
    /// A live process was sampled (its sample went out just before).
    Sampled(&'a Process, &'a Sample),
    /// A process left the table: exited, exit record lost, or still running when tracing
    /// stopped — its `ending` says which.
    Ended(&'a Process),
    /// The run (run mode) is over: once, after every process.
    RunEnded(&'a RunSpan),
}
