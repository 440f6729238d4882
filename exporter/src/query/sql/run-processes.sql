-- One run's processes as the reports, the comparison and the trace export read them.
SELECT
    run_id,
    span_id,
    parent_span_id,
    pid,
    ppid,
    epoch_ns(start) AS start_ns,
    epoch_ns("end") AS end_ns,
    executable_name,
    command_line,
    coalesce(step_key, command_line) AS step_key,
    to_json(argv)::VARCHAR AS argv,
    cwd,
    status,
    exit_code,
    signal,
    cpu_user_s,
    cpu_system_s,
    peak_rss_bytes
FROM run_processes
