-- One run's findings as the reports read them.
SELECT
    epoch_ns("time") AS time_ns,
    pid,
    epoch_ns(start_time) AS start_ns,
    coalesce(comm, '') AS comm,
    kind,
    severity,
    summary,
    value,
    unit,
    evidence
FROM run_findings
ORDER BY "time", pid
