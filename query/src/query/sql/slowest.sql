-- The longest-running processes of the run.
SELECT
    pid,
    round(duration_s, 6) AS duration_s,
    status,
    executable_name AS "binary",
    command_line AS command
FROM run_processes
ORDER BY duration_s DESC, pid
