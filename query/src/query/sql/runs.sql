-- The runs in the data, newest first: the command at the root of each, how it ended, how long
-- it took, how many processes it ran and how many failed.
WITH roots AS (
    SELECT
        p.run_id,
        p.command_line,
        coalesce(p.step_key, p.command_line) AS step_key,
        p.status,
        p.exit_code,
        p.signal,
        row_number() OVER (PARTITION BY p.run_id ORDER BY p.start, p.span_id) AS n
    FROM processes p
    LEFT JOIN processes parent
        ON parent.span_id = p.parent_span_id AND parent.run_id = p.run_id
    WHERE parent.span_id IS NULL
),
totals AS (
    SELECT
        run_id,
        min(start) AS started,
        max("end") AS ended,
        count(*) AS processes,
        count(*) FILTER (WHERE status IN ('failed', 'killed', 'oom_killed')) AS failed
    FROM processes
    GROUP BY run_id
)
SELECT
    t.run_id,
    t.started,
    round((epoch_us(t.ended) - epoch_us(t.started)) / 1e6, 6) AS duration_s,
    r.status,
    r.exit_code,
    r.signal,
    t.processes,
    t.failed,
    r.command_line AS command,
    r.step_key
FROM totals t
LEFT JOIN roots r ON r.run_id = t.run_id AND r.n = 1
ORDER BY t.started DESC, t.run_id
