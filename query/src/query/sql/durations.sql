-- Execution time per step: the same step across processes and runs, by its step key (the
-- command with temporary paths, ids, pids and timestamps as placeholders).
SELECT
    coalesce(step_key, command_line) AS step,
    count(DISTINCT run_id) AS runs,
    count(*) AS processes,
    round(sum(duration_s), 6) AS total_s,
    round(avg(duration_s), 6) AS mean_s,
    round(quantile_cont(duration_s, 0.5), 6) AS p50_s,
    round(quantile_cont(duration_s, 0.95), 6) AS p95_s,
    round(max(duration_s), 6) AS max_s
FROM run_processes
GROUP BY 1
ORDER BY total_s DESC, step
