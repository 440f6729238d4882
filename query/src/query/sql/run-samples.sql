-- Memory and CPU of the run's processes over time: RSS steps and live samples.
SELECT
    pid,
    epoch_ns(start_time) AS start_ns,
    epoch_ns(time) AS time_ns,
    value AS rss_bytes,
    cpu_user_s + cpu_system_s AS cpu_s
FROM run_events
WHERE kind IN ('memory_alloc', 'memory_release', 'sample') AND value IS NOT NULL
ORDER BY time
