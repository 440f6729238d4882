-- Processes that exited non-zero or were killed (by the OOM killer: status oom_killed), with
-- the chain of processes above them. `outcome` tells the failures that made the run fail
-- (`propagated`: no ancestor exited 0 after it) from the non-zero exits an ancestor absorbed
-- (`absorbed by …`: a shell that ran `probe || true`, a version-manager shim's probes); the
-- failures come first.
WITH RECURSIVE chain(span_id, ancestor_span, path, depth) AS (
    SELECT span_id, parent_span_id, executable_name, 0
    FROM run_processes
    WHERE status IN ('failed', 'killed', 'oom_killed')
    UNION ALL
    SELECT c.span_id, p.parent_span_id, p.executable_name || ' > ' || c.path, c.depth + 1
    FROM chain c
    JOIN run_processes p ON p.span_id = c.ancestor_span
    WHERE c.depth < 64
),
full_chain AS (
    SELECT span_id, arg_max(path, depth) AS parent_chain
    FROM chain
    GROUP BY span_id
),
-- Up from each failure through the ancestors that failed too: the first one that did not
-- decides (exit 0 absorbed it; none, or one still running, let it propagate).
up(span_id, decider, depth) AS (
    SELECT span_id, parent_span_id, 0
    FROM run_processes
    WHERE status IN ('failed', 'killed', 'oom_killed')
    UNION ALL
    SELECT u.span_id, p.parent_span_id, u.depth + 1
    FROM up u
    JOIN run_processes p ON p.span_id = u.decider
    WHERE p.status IN ('failed', 'killed', 'oom_killed') AND u.depth < 64
),
decided AS (
    SELECT span_id, arg_max(coalesce(decider, ''), depth) AS decider
    FROM up
    GROUP BY span_id
),
outcome AS (
    SELECT d.span_id,
        CASE WHEN a.status = 'ok'
            THEN 'absorbed by ' || a.executable_name || ' ' || a.pid
            ELSE 'propagated'
        END AS outcome
    FROM decided d
    LEFT JOIN run_processes a ON a.span_id = d.decider
)
SELECT
    p.pid,
    p.status,
    o.outcome,
    p.exit_code,
    CASE WHEN p.status = 'oom_killed'
        THEN signal_name(p.signal) || ' (the OOM killer)'
        ELSE signal_name(p.signal)
    END AS signal,
    round(p.duration_s, 6) AS duration_s,
    f.parent_chain,
    p.command_line AS command
FROM run_processes p
JOIN full_chain f USING (span_id)
JOIN outcome o USING (span_id)
ORDER BY o.outcome <> 'propagated', p.start, p.pid
