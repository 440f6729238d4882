-- The processes the critical path is computed from (by otel-pipetrace, not in SQL: see
-- core/src/analysis/critical_path.rs): each with its lifetime and its tree parent.
SELECT
    span_id,
    parent_span_id,
    epoch_ns(start) AS start_ns,
    epoch_ns("end") AS end_ns,
    pid,
    executable_name,
    status,
    command_line,
    duration_s
FROM run_processes
ORDER BY start, span_id
