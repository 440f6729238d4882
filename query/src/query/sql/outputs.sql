-- The files that exist at the end of the run and who made them: each path's last change in
-- the run (a write, create, truncate, the new name of a rename or link, a symlink) that no
-- later delete or rename took away. What to cache or upload, with the writer's command and
-- step, the size when the writer ended and, with --file-hashes, its SHA-256. --under DIR,
-- --path and --step narrow it.
WITH changes AS (
    SELECT time, pid, start_time, path AS file, operation, bytes, sha256,
        operation IN ('write', 'create', 'truncate', 'symlink') AS made
    FROM run_files
    WHERE operation IN ('write', 'create', 'truncate', 'delete', 'symlink')
    UNION ALL
    -- A rename takes the old name away...
    SELECT time, pid, start_time, path, operation, NULL, NULL, false
    FROM run_files
    WHERE operation = 'rename'
    UNION ALL
    -- ...and makes the new one, as a link does.
    SELECT time, pid, start_time, target, operation, bytes, sha256, true
    FROM run_files
    WHERE operation IN ('rename', 'link') AND target IS NOT NULL
),
last_change AS (
    SELECT *
    FROM changes
    QUALIFY row_number() OVER (PARTITION BY file ORDER BY time DESC, made) = 1
)
SELECT
    c.file AS path,
    c.bytes AS size_bytes,
    c.operation AS made_by,
    coalesce(p.command_line, '') AS command,
    c.pid,
    coalesce(p.step_key, p.command_line) AS step,
    c.time AS written_at,
    c.sha256
FROM last_change c
LEFT JOIN run_processes p ON p.pid = c.pid AND p.start = c.start_time
WHERE c.made
    AND (getvariable('files_step') = ''
        OR contains(coalesce(p.step_key, p.command_line, ''), getvariable('files_step')))
    AND (getvariable('files_path') = '' OR contains(c.file, getvariable('files_path')))
    AND (getvariable('files_under') = ''
        OR c.file = getvariable('files_under')
        OR starts_with(c.file, getvariable('files_under') || '/'))
ORDER BY path
