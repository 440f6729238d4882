-- step_runs(lookback): one row per step of each run, the history queries' rows. A step is the
-- processes of a run with the same step key, together (durations and CPU added up, the highest
-- peak memory); a run's pipeline is the step key of its first process (the command `run` ran,
-- the first command of a daemon session). With lookback, only each pipeline's newest
-- `lookback` runs (NULL: every run).
CREATE OR REPLACE MACRO step_runs(lookback) AS TABLE
WITH steps AS (
    -- One pass over the processes (over many small files, each pass costs a read of every
    -- footer): each run's steps, and from them the run.
    SELECT
        run_id,
        coalesce(step_key, command_line) AS step,
        min(start) AS first_start,
        max("end") AS last_end,
        any_value(revision) AS revision,
        any_value(host) AS host,
        count(*)::INTEGER AS processes,
        sum(duration_s) AS duration_s,
        sum(coalesce(cpu_user_s, 0) + coalesce(cpu_system_s, 0))
            FILTER (WHERE cpu_user_s IS NOT NULL OR cpu_system_s IS NOT NULL) AS cpu_s,
        max(peak_rss_bytes) AS peak_rss_bytes,
        sum(coalesce(read_bytes, 0) + coalesce(write_bytes, 0))
            FILTER (WHERE read_bytes IS NOT NULL OR write_bytes IS NOT NULL) AS storage_bytes,
        sum(coalesce(network_sent_bytes, 0) + coalesce(network_received_bytes, 0))
            FILTER (WHERE network_sent_bytes IS NOT NULL OR network_received_bytes IS NOT NULL)
            AS network_bytes,
        count(*) FILTER (WHERE status IN ('failed', 'killed', 'oom_killed'))::INTEGER AS failed,
        -- How the step's last failing process ended: "exit 1", "SIGKILL".
        arg_max(
            CASE WHEN signal IS NOT NULL THEN signal_name(signal) ELSE 'exit ' || exit_code END,
            "end"
        ) FILTER (WHERE status IN ('failed', 'killed', 'oom_killed')) AS failure
    FROM processes
    GROUP BY ALL
),
runs AS (
    SELECT
        run_id,
        arg_min(step, first_start) AS pipeline,
        min(first_start) AS started,
        max(last_end) AS ended,
        any_value(revision) AS revision,
        any_value(host) AS host
    FROM steps
    GROUP BY run_id
    QUALIFY lookback IS NULL
        OR row_number() OVER (PARTITION BY pipeline ORDER BY started DESC, run_id DESC) <= lookback
)
SELECT
    r.pipeline,
    s.step,
    r.run_id,
    r.started,
    r.ended,
    r.revision,
    r.host,
    s.* EXCLUDE (run_id, step, first_start, last_end, revision, host)
FROM steps s
JOIN runs r USING (run_id)
WHERE (getvariable('pipeline') = '' OR contains(r.pipeline, getvariable('pipeline')))
  AND (getvariable('step') = '' OR contains(s.step, getvariable('step')))
