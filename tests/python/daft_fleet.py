"""An independent engine over the fleet's bucket: Daft on a local Ray cluster of two worker
nodes reads every host's `processes` objects from the S3 server (hive partitions host=/date=)
and answers two questions on its own, for the test to hold against `otel-pipetrace query`:

- durations: per step key, runs, processes, total, mean, p50, p95 (interpolated, as DuckDB's
  quantile_cont) and max of the processes' durations;
- regressions: per pipeline and step, each run's duration (its processes added up), judged by
  the documented rule (README, "Across runs") written out again here: baseline = the median and
  1.4826 × MAD of the previous BASELINE runs (from 5), limit = median + max(3 spreads, 10 %,
  0.1 s); a run is outside above the limit, shifted when the median of it and the next
  BASELINE - 1 runs is; the change is the first outside run of a stretch of shifted runs.

Usage: daft_fleet.py ENDPOINT KEY SECRET S3_GLOB  →  JSON on stdout.
"""
import json
import os
import statistics
import sys

# Every node and client on loopback: Ray otherwise advertises the machine's routed address
# (test traffic stays on loopback).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import daft  # noqa: E402
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

BASELINE, MIN_RUNS, SPREAD, MIN_PERCENT, MIN_S = 20, 5, 3.0, 10.0, 0.1


def quantile_cont(values, q):
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def mad(values):
    m = statistics.median(values)
    return statistics.median([abs(x - m) for x in values])


def regressions(series):
    """series: [(run_id, duration)] oldest first → the latest change, or None."""
    d = [x for _, x in series]
    judged = {}
    for i in range(len(d)):
        before = d[max(0, i - BASELINE):i]
        if len(before) < MIN_RUNS:
            continue
        p50 = statistics.median(before)
        spread = 1.4826 * mad(before)
        limit = p50 + max(SPREAD * spread, MIN_PERCENT / 100 * p50, MIN_S)
        after = statistics.median(d[i:i + BASELINE])
        judged[i] = (p50, after, d[i] > limit, after > limit, limit)
    change, previous_shifted, taken = None, False, False
    for i in range(len(d)):
        if i not in judged:
            previous_shifted, taken = False, False
            continue
        p50, after, outside, shifted, limit = judged[i]
        if shifted and not previous_shifted:
            taken = False
        if shifted and outside and not taken:
            change, taken = (i, p50, after, limit), True
        previous_shifted = shifted
    if change is None:
        return None
    i, p50, after, limit = change
    return {"since_run": series[i][0], "runs_since": len(d) - i, "before_s": p50, "after_s": after,
            "still_slower": d[-1] > limit}


def main():
    endpoint, key, secret, glob = sys.argv[1:5]
    # Two nodes, both on loopback: no traffic leaves the machine.
    local = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args=local)
    cluster.add_node(**local)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        daft.set_runner_ray(address=cluster.address)
        io = daft.io.IOConfig(s3=daft.io.S3Config(
            endpoint_url=endpoint, key_id=key, access_key=secret, region_name="us-east-1",
            force_virtual_addressing=False, use_ssl=False))
        df = daft.read_parquet(glob, io_config=io, hive_partitioning=True)
        col = daft.col
        # The scans and the groupings run on the cluster; quantiles and the rule on the driver.
        by_step = (df.groupby("step_key")
                     .agg(col("run_id").count_distinct().alias("runs"),
                          col("duration_s").count().alias("processes"),
                          col("duration_s").sum().alias("total_s"),
                          col("duration_s").mean().alias("mean_s"),
                          col("duration_s").max().alias("max_s"),
                          col("duration_s").list_agg().alias("all"))
                     .collect().to_pylist())
        per_run_step = (df.groupby("run_id", "step_key")
                          .agg(col("duration_s").sum().alias("d"), col("start").min().alias("t"))
                          .collect().to_pylist())
    finally:
        ray.shutdown()
        cluster.shutdown()
    out_d = []
    for row in by_step:
        values = row.pop("all")
        out_d.append({"step": row.pop("step_key"), **row,
                      "p50_s": quantile_cont(values, 0.5), "p95_s": quantile_cont(values, 0.95)})
    # Each run's pipeline: the step of its first process.
    first = {}
    for r in per_run_step:
        if r["run_id"] not in first or r["t"] < first[r["run_id"]][0]:
            first[r["run_id"]] = (r["t"], r["step_key"])
    series = {}
    for r in per_run_step:
        started, pipeline = first[r["run_id"]]
        series.setdefault((pipeline, r["step_key"]), []).append((started, r["run_id"], r["d"]))
    out_r = []
    for (pipeline, s), items in series.items():
        items.sort()
        found = regressions([(run, d) for _, run, d in items])
        if found:
            out_r.append({"pipeline": pipeline, "step": s, **found})
    print(json.dumps({"nodes": nodes, "durations": out_d, "regressions": out_r}, default=str))


if __name__ == "__main__":
    main()
