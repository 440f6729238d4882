-- I/O per step (processes with the same step key together): bytes read from and written to
-- storage, bytes passed through read and write system calls (page cache, pipes and sockets
-- included; the names say bytes, not calls), major page faults (reads that waited for the disk)
-- and context switches. Empty I/O columns: the kernel has no task I/O accounting, or the data
-- predates these columns.
SELECT
    any_value(command_line) AS command,
    count(*) AS processes,
    sum(read_bytes) AS storage_read_bytes,
    sum(write_bytes) AS storage_write_bytes,
    sum(cancelled_write_bytes) AS cancelled_write_bytes,
    sum(read_chars) AS syscall_read_bytes,
    sum(write_chars) AS syscall_write_bytes,
    sum(major_faults) AS major_faults,
    sum(minor_faults) AS minor_faults,
    sum(voluntary_switches) AS voluntary_switches,
    sum(involuntary_switches) AS involuntary_switches
FROM run_processes
GROUP BY coalesce(step_key, command_line)
ORDER BY coalesce(sum(read_bytes), 0) + coalesce(sum(write_bytes), 0) DESC,
    coalesce(sum(read_chars), 0) + coalesce(sum(write_chars), 0) DESC,
    command
