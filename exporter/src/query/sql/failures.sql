-- Processes that exited non-zero or were killed (by the OOM killer: status oom_killed), with
-- the chain of processes above them.
WITH RECURSIVE chain(span_id, ancestor_span, path, depth) AS (
    SELECT span_id, parent_span_id, executable_name, 0
    FROM run_processes
    WHERE status IN ('failed', 'killed', 'oom_killed')
    UNION ALL
    SELECT c.span_id, p.parent_span_id, p.executable_name || ' > ' || c.path, c.depth + 1
    FROM chain c
    JOIN run_processes p ON p.span_id = c.ancestor_span
    WHERE c.depth < 64
),
full_chain AS (
    SELECT span_id, arg_max(path, depth) AS parent_chain
    FROM chain
    GROUP BY span_id
)
SELECT
    p.pid,
    p.status,
    p.exit_code,
    CASE WHEN p.status = 'oom_killed'
        THEN signal_name(p.signal) || ' (the OOM killer)'
        ELSE signal_name(p.signal)
    END AS signal,
    round(p.duration_s, 6) AS duration_s,
    f.parent_chain,
    p.command_line AS command
FROM run_processes p
JOIN full_chain f USING (span_id)
ORDER BY p.start, p.pid
