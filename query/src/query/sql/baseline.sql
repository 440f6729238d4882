-- What is normal for each step: its duration over its last `baseline_runs` runs (of the same
-- pipeline) — median, p90, p95, the robust spread (1.4826 × the median absolute deviation) and
-- the limit above which a run counts as slower than usual — with its usual CPU time, peak
-- memory and how often it failed.
WITH s AS (
    SELECT *
    FROM step_runs(getvariable('lookback_runs'))
    QUALIFY row_number() OVER (PARTITION BY pipeline, step ORDER BY started DESC, run_id DESC)
        <= getvariable('baseline_runs')
)
SELECT
    pipeline,
    step,
    count(*) AS runs,
    round(median(duration_s), 6) AS p50_s,
    round(quantile_cont(duration_s, 0.9), 6) AS p90_s,
    round(quantile_cont(duration_s, 0.95), 6) AS p95_s,
    round(1.4826 * mad(duration_s), 6) AS spread_s,
    round(median(duration_s) + greatest(
        getvariable('regression_spread') * 1.4826 * mad(duration_s),
        getvariable('regression_min_percent') / 100 * median(duration_s),
        getvariable('regression_min_s')
    ), 6) AS slower_above_s,
    round(median(cpu_s), 6) AS cpu_p50_s,
    median(peak_rss_bytes)::BIGINT AS peak_p50_bytes,
    round(100.0 * count(*) FILTER (WHERE failed > 0) / count(*), 1) AS failure_percent,
    max(started) AS last_run
FROM s
GROUP BY pipeline, step
ORDER BY pipeline, p50_s DESC, step
