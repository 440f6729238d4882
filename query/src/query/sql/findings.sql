-- What the diagnosis found: memory leaks, hangs, deadlocks, runaways, OOM risks, fork bombs — most
-- severe first, then in the order found. `summary` says what is wrong with the number that
-- shows it; `evidence` holds the raw measurements (JSON) and `involved` the other processes of a
-- deadlock or the ones waiting on a hang. The process's command comes from its processes row.
SELECT
    f.severity,
    f.kind,
    f.pid,
    coalesce(p.executable_name, f.comm) AS process,
    f.value,
    f.unit,
    f.summary,
    p.command_line AS command,
    f."time" AS found_at,
    f.evidence,
    f.involved
FROM run_findings f
LEFT JOIN run_processes p ON p.pid = f.pid AND p.start = f.start_time
ORDER BY CASE f.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
    f."time", f.pid
