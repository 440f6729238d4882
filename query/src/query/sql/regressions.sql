-- Steps that got slower and stayed slower. A run is outside a step's baseline (the median of
-- its `baseline_runs` runs before, from at least 5) when it took longer than the median plus
-- the most of: `regression_spread` robust standard deviations (1.4826 × the median absolute
-- deviation), `regression_min_percent` of the median, `regression_min_s`. It shifted when the
-- median of the runs from it on (up to `baseline_runs`) is outside too. The change-point is the
-- first run outside in a stretch of shifted runs; each step's latest one is listed, with its
-- size, the runs since, whether the newest run is still slower, and what changed with it.
-- Over each pipeline's last `lookback_runs` runs.
WITH s AS (
    SELECT *, row_number() OVER (PARTITION BY pipeline, step ORDER BY started, run_id) AS n
    FROM step_runs(getvariable('lookback_runs'))
),
windowed AS (
    SELECT *,
        count(*) OVER before AS base_runs,
        median(duration_s) OVER before AS base_p50,
        mad(duration_s) OVER before AS base_mad,
        median(duration_s) OVER after AS after_p50,
        count(*) OVER after AS after_runs
    FROM s
    WINDOW
        before AS (PARTITION BY pipeline, step ORDER BY n
            ROWS BETWEEN getvariable('baseline_runs') PRECEDING AND 1 PRECEDING),
        after AS (PARTITION BY pipeline, step ORDER BY n
            ROWS BETWEEN CURRENT ROW AND getvariable('baseline_runs') - 1 FOLLOWING)
),
judged AS (
    SELECT *, duration_s > limit_s AS outside, after_p50 > limit_s AS shifted
    FROM (
        SELECT *,
            base_p50 + greatest(
                getvariable('regression_spread') * 1.4826 * base_mad,
                getvariable('regression_min_percent') / 100 * base_p50,
                getvariable('regression_min_s')
            ) AS limit_s
        FROM windowed
        WHERE base_runs >= 5
    )
),
-- Consecutive shifted runs make a stretch: one ordinary run inside it does not end it.
stretches AS (
    SELECT *,
        sum(CASE WHEN shifted AND NOT coalesce(previous_shifted, false) THEN 1 ELSE 0 END)
            OVER (PARTITION BY pipeline, step ORDER BY n ROWS UNBOUNDED PRECEDING) AS stretch
    FROM (
        SELECT *, lag(shifted) OVER (PARTITION BY pipeline, step ORDER BY n) AS previous_shifted
        FROM judged
    )
),
latest AS (
    SELECT * FROM stretches
    WHERE shifted AND outside
    QUALIFY row_number() OVER (PARTITION BY pipeline, step, stretch ORDER BY n) = 1
        AND stretch = max(stretch) OVER (PARTITION BY pipeline, step)
),
newest AS (
    SELECT pipeline, step, max(n) AS last_n, arg_max(duration_s, n) AS last_s
    FROM s
    GROUP BY ALL
),
-- The runs the baseline took (before) and the after median took (after).
sides AS (
    SELECT x.*, l.step AS changed_step, x.n >= l.n AS after
    FROM latest l
    JOIN s x ON x.pipeline = l.pipeline AND x.step = l.step
        AND x.n BETWEEN l.n - l.base_runs AND l.n + l.after_runs - 1
),
measures AS (
    SELECT pipeline, step, after,
        median(cpu_s) AS cpu_s,
        median(peak_rss_bytes) AS peak_rss_bytes,
        median(storage_bytes) AS storage_bytes,
        median(network_bytes) AS network_bytes,
        median(processes) AS processes
    FROM sides
    GROUP BY ALL
),
-- Commands the step's processes started after the change and in none of the baseline's runs.
children AS (
    SELECT x.pipeline, x.step, x.after, coalesce(c.step_key, c.command_line) AS child
    FROM sides x
    JOIN processes p ON p.run_id = x.run_id AND coalesce(p.step_key, p.command_line) = x.step
    JOIN processes c ON c.run_id = p.run_id AND c.parent_span_id = p.span_id
),
new_commands AS (
    SELECT pipeline, step, list(child ORDER BY child) AS new_commands
    FROM (
        SELECT pipeline, step, child
        FROM children
        GROUP BY ALL
        HAVING bool_and(after)
    )
    GROUP BY ALL
)
SELECT
    l.pipeline,
    l.step,
    l.started AS since,
    l.run_id AS since_run,
    w.last_n - l.n + 1 AS runs_since,
    round(l.base_p50, 6) AS before_s,
    round(l.after_p50, 6) AS after_s,
    round(l.after_p50 - l.base_p50, 6) AS change_s,
    round(100 * (l.after_p50 - l.base_p50) / nullif(l.base_p50, 0), 1) AS change_percent,
    round(1.4826 * l.base_mad, 6) AS spread_s,
    w.last_s > l.limit_s AS still_slower,
    round(b.cpu_s, 6) AS cpu_before_s,
    round(a.cpu_s, 6) AS cpu_after_s,
    b.peak_rss_bytes::BIGINT AS peak_before_bytes,
    a.peak_rss_bytes::BIGINT AS peak_after_bytes,
    b.storage_bytes::BIGINT AS storage_before_bytes,
    a.storage_bytes::BIGINT AS storage_after_bytes,
    b.network_bytes::BIGINT AS network_before_bytes,
    a.network_bytes::BIGINT AS network_after_bytes,
    b.processes AS processes_before,
    a.processes AS processes_after,
    coalesce(c.new_commands, []) AS new_commands
FROM latest l
JOIN newest w USING (pipeline, step)
LEFT JOIN measures b ON b.pipeline = l.pipeline AND b.step = l.step AND NOT b.after
LEFT JOIN measures a ON a.pipeline = l.pipeline AND a.step = l.step AND a.after
LEFT JOIN new_commands c ON c.pipeline = l.pipeline AND c.step = l.step
ORDER BY (l.after_p50 - l.base_p50) * (w.last_n - l.n + 1) DESC, l.pipeline, l.step
