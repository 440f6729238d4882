-- The files each step read, wrote, created, renamed and deleted (a step: the processes of the
-- run with one step key), one row per operation on a path: how many times and by how many
-- processes, the file's size (a read file's at the open, a written one's when its writer
-- ended), the outcome of a failed open (probes are listed when the agent ran with
-- --files-probes). Reads beyond capture.files_reads_max per process are one `reads_under`
-- row per directory. --step, --path, --under DIR and --writes narrow it.
SELECT
    coalesce(p.step_key, p.command_line, f.comm) AS step,
    f.operation,
    f.path,
    any_value(f.target) AS target,
    sum(f.count) AS times,
    count(DISTINCT (f.pid, f.start_time)) AS processes,
    max(f.bytes) AS size_bytes,
    f.outcome
FROM run_files f
LEFT JOIN run_processes p ON p.pid = f.pid AND p.start = f.start_time
WHERE (getvariable('files_step') = ''
        OR contains(coalesce(p.step_key, p.command_line, f.comm), getvariable('files_step')))
    AND (getvariable('files_path') = ''
        OR contains(f.path, getvariable('files_path'))
        OR contains(coalesce(f.target, ''), getvariable('files_path')))
    AND (getvariable('files_under') = ''
        OR f.path = getvariable('files_under')
        OR starts_with(f.path, getvariable('files_under') || '/')
        OR starts_with(coalesce(f.target, ''), getvariable('files_under') || '/'))
    AND (NOT getvariable('files_writes')
        OR f.operation NOT IN ('read', 'probe', 'reads_under'))
GROUP BY ALL
ORDER BY min(f.time), step, f.path, f.operation
