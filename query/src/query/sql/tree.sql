-- The run's process tree, children under their parent in start order: depth and parent pid
-- say where each sits, start_s when it started after its run did.
WITH RECURSIVE spans AS MATERIALIZED (
    SELECT span_id FROM run_processes
),
run_start AS (
    SELECT run_id, min(start) AS t0 FROM run_processes GROUP BY run_id
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
    t.depth,
    p.pid,
    p.ppid,
    p.executable_name AS process,
    round((epoch_ns(p.start) - epoch_ns(r.t0)) / 1e9, 6) AS start_s,
    round(p.duration_s, 6) AS duration_s,
    p.status,
    coalesce(p.exit_code::VARCHAR, signal_name(p.signal), '') AS exit,
    p.command_line AS command
FROM tree t
JOIN run_processes p USING (span_id)
JOIN run_start r ON r.run_id = p.run_id
ORDER BY t.path
