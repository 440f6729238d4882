-- Network use per step (processes with the same step key together): bytes sent and received
-- over IPv4/IPv6 sockets, TCP connections made (attempts included) and accepted, and the
-- peers contacted (outbound: address:port; inbound: the address that connected, and the local
-- port it reached; failed attempts marked). Empty byte columns: the network hooks were off, the
-- kernel lacks them, or the data predates them.
WITH peers AS (
    SELECT
        pid,
        start_time,
        CASE
            WHEN direction = 'inbound'
            THEN 'from ' || peer_address || ' to :' || local_port
            WHEN network_type = 'ipv6' THEN '[' || peer_address || ']:' || peer_port
            ELSE peer_address || ':' || peer_port
        END || CASE WHEN outcome = 'failed' THEN ' (failed)' ELSE '' END AS peer
    FROM run_connections
),
per_process AS (
    SELECT p.*, (SELECT list(peer ORDER BY peer) FROM peers c
                 WHERE c.pid = p.pid AND c.start_time = p.start) AS peer_list
    FROM run_processes p
)
SELECT
    any_value(command_line) AS command,
    count(*) AS processes,
    sum(network_sent_bytes) AS sent_bytes,
    sum(network_received_bytes) AS received_bytes,
    sum(network_connections) AS connections,
    sum(network_accepted) AS accepted,
    sum(network_unlisted) AS unlisted_connections,
    array_to_string(list_sort(list_distinct(flatten(list(peer_list)))), ', ') AS peers
FROM per_process
GROUP BY coalesce(step_key, command_line)
HAVING coalesce(sum(network_sent_bytes), 0) + coalesce(sum(network_received_bytes), 0)
    + coalesce(sum(network_connections), 0) + coalesce(sum(network_accepted), 0) > 0
ORDER BY coalesce(sum(network_sent_bytes), 0) + coalesce(sum(network_received_bytes), 0) DESC,
    command
