-- Each pipeline (or, with --step, each step matching it) day by day: runs, duration median and
-- p95, CPU time and peak memory medians, failures.
SELECT
    pipeline,
    step,
    date_trunc('day', started)::DATE AS day,
    count(*) AS runs,
    round(median(duration_s), 6) AS p50_s,
    round(quantile_cont(duration_s, 0.95), 6) AS p95_s,
    round(median(cpu_s), 6) AS cpu_p50_s,
    median(peak_rss_bytes)::BIGINT AS peak_p50_bytes,
    count(*) FILTER (WHERE failed > 0) AS failures
FROM step_runs(NULL)
WHERE getvariable('step') <> '' OR step = pipeline
GROUP BY ALL
ORDER BY pipeline, step, day
