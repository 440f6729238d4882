-- Every process of the run, in start order.
SELECT
    pid,
    ppid,
    start,
    "end",
    round(duration_s, 6) AS duration_s,
    status,
    exit_code,
    signal,
    executable_name AS "binary",
    command_line AS command,
    cpu_user_s,
    cpu_system_s,
    peak_rss_bytes,
    trace_id,
    span_id,
    parent_span_id
FROM run_processes
ORDER BY start, pid
