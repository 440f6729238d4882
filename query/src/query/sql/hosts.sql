-- The hosts in the data (the `host` column: each agent's host name or output.host): how many
-- runs and processes each traced, how many failed, and when it was first and last seen.
SELECT
    coalesce(host, '(unnamed)') AS host,
    count(DISTINCT run_id) AS runs,
    count(*) AS processes,
    count(*) FILTER (WHERE status IN ('failed', 'killed', 'oom_killed')) AS failed,
    min(start) AS first_start,
    max("end") AS last_end
FROM processes
GROUP BY host
ORDER BY host
