-- Execution time per full command (the seed's execution-time analysis).
SELECT
    command_line AS command,
    count(*) AS runs,
    round(sum(duration_s), 6) AS total_s,
    round(avg(duration_s), 6) AS mean_s,
    round(quantile_cont(duration_s, 0.5), 6) AS p50_s,
    round(quantile_cont(duration_s, 0.95), 6) AS p95_s,
    round(max(duration_s), 6) AS max_s
FROM run_processes
GROUP BY command_line
ORDER BY total_s DESC, command
