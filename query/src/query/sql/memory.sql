-- Peak resident memory per binary.
SELECT
    executable_name AS "binary",
    count(*) AS processes,
    max(peak_rss_bytes) AS max_peak_rss_bytes,
    round(avg(peak_rss_bytes)) AS mean_peak_rss_bytes
FROM run_processes
GROUP BY executable_name
ORDER BY max_peak_rss_bytes DESC NULLS LAST, "binary"
