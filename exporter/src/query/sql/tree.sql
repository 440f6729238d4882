-- The run's process tree, children under their parent in start order.
WITH RECURSIVE spans AS MATERIALIZED (
    SELECT span_id FROM run_processes
),
tree(span_id, depth, path) AS (
    SELECT span_id, 0, [epoch_ns(start), pid::BIGINT]
    FROM run_processes
    WHERE parent_span_id IS NULL OR parent_span_id NOT IN (SELECT span_id FROM spans)
    UNION ALL
    SELECT c.span_id, t.depth + 1, list_concat(t.path, [epoch_ns(c.start), c.pid::BIGINT])
    FROM tree t
    JOIN run_processes c ON c.parent_span_id = t.span_id
    WHERE t.depth < 256
)
SELECT
    repeat('  ', t.depth) || p.executable_name AS process,
    p.pid,
    round(p.duration_s, 6) AS duration_s,
    p.status,
    coalesce(p.exit_code::VARCHAR, 'signal ' || p.signal::VARCHAR, '') AS exit,
    p.command_line AS command
FROM tree t
JOIN run_processes p USING (span_id)
ORDER BY t.path
