-- The runs in the data, newest first.
SELECT
    run_id,
    min(start) AS started,
    max("end") AS ended,
    count(*) AS processes,
    count(*) FILTER (WHERE status IN ('failed', 'killed')) AS failed
FROM processes
GROUP BY run_id
ORDER BY started DESC, run_id
