-- Steps that failed, and whether they are flaky: they passed and failed on the same commit
-- (the `revision` column), or — where no commit ran twice — their outcome changed between
-- consecutive runs in at least `flaky_flip_percent` of their runs, with two passes and two
-- failures at least. Otherwise failing (its newest run failed) or fixed. Over each
-- pipeline's last `lookback_runs` runs.
WITH s AS (
    SELECT *, failed > 0 AS broke
    FROM step_runs(getvariable('lookback_runs'))
),
flips AS (
    SELECT *, lag(broke) OVER (PARTITION BY pipeline, step ORDER BY started, run_id) AS before
    FROM s
),
commits AS (
    SELECT pipeline, step,
        count(*) FILTER (WHERE passed AND broke) AS mixed,
        count(*) FILTER (WHERE runs > 1) AS repeated
    FROM (
        SELECT pipeline, step, revision,
            bool_or(NOT broke) AS passed, bool_or(broke) AS broke, count(*) AS runs
        FROM s
        WHERE revision IS NOT NULL
        GROUP BY ALL
    )
    GROUP BY ALL
),
steps AS (
    SELECT
        pipeline,
        step,
        count(*) AS runs,
        count(*) FILTER (WHERE broke) AS failures,
        count(*) FILTER (WHERE before IS NOT NULL AND before <> broke) AS flips,
        arg_max(broke, started) AS newest_failed,
        max(started) FILTER (WHERE broke) AS last_failed,
        arg_max(run_id, started) FILTER (WHERE broke) AS last_failed_run,
        list(failure ORDER BY started DESC) FILTER (WHERE broke) AS failures_newest_first
    FROM flips
    GROUP BY ALL
    HAVING count(*) FILTER (WHERE broke) > 0
)
SELECT
    s.pipeline,
    s.step,
    CASE
        WHEN coalesce(c.mixed, 0) > 0 THEN 'flaky'
        WHEN coalesce(c.repeated, 0) = 0
            AND s.failures >= 2 AND s.runs - s.failures >= 2
            AND 100.0 * s.flips / s.runs >= getvariable('flaky_flip_percent') THEN 'flaky'
        WHEN s.newest_failed THEN 'failing'
        ELSE 'fixed'
    END AS verdict,
    s.runs,
    s.failures,
    round(100.0 * s.failures / s.runs, 1) AS failure_percent,
    s.flips,
    coalesce(c.mixed, 0) AS commits_both_ways,
    s.last_failed,
    s.last_failed_run,
    s.failures_newest_first[1:3] AS last_failures
FROM steps s
LEFT JOIN commits c USING (pipeline, step)
ORDER BY
    CASE verdict WHEN 'flaky' THEN 0 WHEN 'failing' THEN 1 ELSE 2 END,
    failure_percent DESC,
    s.pipeline,
    s.step
