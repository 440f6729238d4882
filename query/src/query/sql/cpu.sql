-- CPU time per binary (the seed's analysis: the top CPU value of each process, summed per
-- executable without its arguments). Empty CPU columns mean the agent did not measure CPU.
WITH per_process AS (
    SELECT
        executable_name,
        pid,
        max(cpu_user_s + cpu_system_s) AS cpu_s,
        max(cpu_user_s) AS user_s,
        max(cpu_system_s) AS system_s
    FROM run_processes
    GROUP BY executable_name, pid, span_id
)
SELECT
    executable_name AS "binary",
    count(*) AS processes,
    round(sum(cpu_s), 6) AS cpu_s,
    round(sum(user_s), 6) AS user_s,
    round(sum(system_s), 6) AS system_s,
    round(max(cpu_s), 6) AS max_process_cpu_s
FROM per_process
GROUP BY executable_name
ORDER BY cpu_s DESC, "binary"
