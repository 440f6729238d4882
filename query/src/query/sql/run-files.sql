-- The selected run's files with each process's step (the reports' outputs and readers).
SELECT
    coalesce(p.step_key, p.command_line, f.comm) AS step,
    f.operation,
    f.path,
    f.target,
    f.bytes,
    f.count,
    epoch_ns(f.time) AS time_ns
FROM run_files f
LEFT JOIN run_processes p ON p.pid = f.pid AND p.start = f.start_time
