-- What to fix first: each step's cost over each pipeline's last `lookback_runs` runs — time
-- spent (its duration added up over its runs), time on the runs' critical paths (added by
-- otel-pipetrace from the process trees, not in SQL, with the ranks), and failure cost (the
-- wall time of the runs in which it failed, each to be run again). The pipeline itself (its
-- first process, holding the whole run) is not a step to fix.
SELECT
    pipeline,
    step,
    count(*) AS runs,
    round(sum(duration_s), 6) AS total_s,
    round(avg(duration_s), 6) AS mean_s,
    count(*) FILTER (WHERE failed > 0) AS failures,
    round(coalesce(sum(epoch_us(ended) - epoch_us(started)) FILTER (WHERE failed > 0), 0) / 1e6, 6)
        AS failure_cost_s
FROM step_runs(getvariable('lookback_runs'))
WHERE step <> pipeline
GROUP BY ALL
ORDER BY total_s DESC, pipeline, step
