-- Each run's first root process, by its step key: which runs ran the same command.
WITH roots AS (
    SELECT
        p.run_id,
        coalesce(p.step_key, p.command_line) AS step,
        p.start,
        row_number() OVER (PARTITION BY p.run_id ORDER BY p.start, p.span_id) AS n
    FROM processes p
    LEFT JOIN processes parent
        ON parent.span_id = p.parent_span_id AND parent.run_id = p.run_id
    WHERE parent.span_id IS NULL
)
SELECT run_id, step FROM roots WHERE n = 1 ORDER BY start DESC, run_id
