-- The critical path: from each root, follow the child that ended last (the one the parent
-- waited for), down to a leaf. Its steps are where the run's time went.
WITH RECURSIVE spans AS MATERIALIZED (
    SELECT span_id FROM run_processes
),
last_child AS MATERIALIZED (
    SELECT parent_span_id, span_id AS child
    FROM (
        SELECT
            parent_span_id,
            span_id,
            row_number() OVER (PARTITION BY parent_span_id ORDER BY "end" DESC, span_id) AS rank
        FROM run_processes
        WHERE parent_span_id IS NOT NULL
    )
    WHERE rank = 1
),
path(span_id, step) AS (
    SELECT span_id, 0
    FROM run_processes
    WHERE parent_span_id IS NULL OR parent_span_id NOT IN (SELECT span_id FROM spans)
    UNION ALL
    SELECT l.child, p.step + 1
    FROM path p
    JOIN last_child l ON l.parent_span_id = p.span_id
    WHERE p.step < 256
)
SELECT
    p.step,
    r.pid,
    round(r.duration_s, 6) AS duration_s,
    r.status,
    r.executable_name AS "binary",
    r.command_line AS command
FROM path p
JOIN run_processes r USING (span_id)
ORDER BY r.start, p.step
