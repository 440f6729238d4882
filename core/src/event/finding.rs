//! A verdict the agent reached about a process (or the run): a memory leak, a hang, a deadlock,
//! a runaway step — with the numbers a person can check. Made by the diagnosis stage from the
//! samples and `/proc`, then carried like any event: to the process's span, the `findings`
//! dataset, the metrics and the run's summary.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// Traced processes wait on each other in a cycle (locks, pipes, a wait for a child).
    Deadlock,
    /// Alive, no CPU progress for `diagnosis.hang_after`, blocked on something that does not
    /// move either.
    Hang,
    /// Resident memory grew steadily over the process's life.
    MemoryLeak,
    /// A whole core busy for `diagnosis.runaway_after` with no I/O at all.
    Runaway,
    /// Resident memory within a few percent of the memory limit the process runs under.
    OomRisk,
    /// A program that starts itself, one inside the other, far deeper than any real recursion.
    ForkExplosion,
    /// Processes outside the run took a large share of the machine while the run's steps
    /// waited for a CPU (about the run: pid 0).
    NoisyNeighbour,
    /// The run kept every core busy, or its memory near the limit, for much of its time.
    UndersizedRunner,
    /// The run used a small part of a large machine's cores and memory.
    OversizedRunner,
    /// A step wrote, deleted or renamed a file git tracks in the checkout (`[source]`).
    SourceChanged,
}

impl FindingKind {
    pub const ALL: [FindingKind; 10] = [
        Self::Deadlock,
        Self::Hang,
        Self::MemoryLeak,
        Self::Runaway,
        Self::OomRisk,
        Self::ForkExplosion,
        Self::NoisyNeighbour,
        Self::UndersizedRunner,
        Self::OversizedRunner,
        Self::SourceChanged,
    ];

    /// The `kind` column and attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deadlock => "deadlock",
            Self::Hang => "hang",
            Self::MemoryLeak => "memory_leak",
            Self::Runaway => "runaway",
            Self::OomRisk => "oom_risk",
            Self::ForkExplosion => "fork_explosion",
            Self::NoisyNeighbour => "noisy_neighbour",
            Self::UndersizedRunner => "undersized_runner",
            Self::OversizedRunner => "oversized_runner",
            Self::SourceChanged => "source_changed",
        }
    }
}

/// Most severe last: findings sort by it, descending, in every listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "critical" => Self::Critical,
            "warning" => Self::Warning,
            _ => Self::Info,
        }
    }
}

/// Another process a finding is about (a deadlock's cycle), and what it waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Involved {
    pub tgid: u32,
    /// CLOCK_MONOTONIC ns: with `tgid`, the process.
    pub start_ns: u64,
    pub comm: String,
    /// `lock on /tmp/b held by 4242`, `write to pipe 81234 (read by 4243)`.
    pub waits_on: String,
}

/// One finding. The event that carries it names the process it is about (the subject); a
/// finding about the run or the host has pid 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// One line a person reads: what is wrong and the number that shows it.
    pub summary: String,
    /// The number the finding rests on, in `unit` (a leak's MiB/s, a hang's seconds).
    pub value: f64,
    pub unit: &'static str,
    /// Named measurements behind it, raw (bytes, seconds, ratios), in a fixed order.
    pub evidence: Vec<(&'static str, serde_json::Value)>,
    /// Further processes involved, in order (the rest of a deadlock's cycle).
    pub involved: Vec<Involved>,
}

// Findings are compared only in tests of the event stream; a NaN value never occurs.
impl Eq for Finding {}

impl Finding {
    /// The evidence as one JSON object (the JSONL field).
    pub fn evidence_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.evidence
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// The evidence as JSON text (the `evidence` column).
    pub fn evidence_json(&self) -> String {
        serde_json::Value::Object(self.evidence_map()).to_string()
    }

    /// The other processes involved: `[{"pid":…,"comm":…,"waits_on":…}]` (the JSONL field and,
    /// as text, the `involved` column).
    pub fn involved_list(&self) -> Vec<serde_json::Value> {
        self.involved
            .iter()
            .map(|i| serde_json::json!({"pid": i.tgid, "comm": i.comm, "waits_on": i.waits_on}))
            .collect()
    }

    /// A number of the evidence.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.evidence
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.as_f64())
    }
}
