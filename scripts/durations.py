"""Durations per command from an otel-pipetrace jsonl file: count, total, mean, max, failures."""
import json
import sys
from collections import defaultdict

rows = defaultdict(lambda: {"count": 0, "total": 0.0, "max": 0.0, "failed": 0})
argv_of = {}
with open(sys.argv[1]) as f:
    for line in f:
        ev = json.loads(line)
        key = (ev["pid"], ev["start_time_unix_nano"])
        if ev["kind"] == "exec":
            argv_of[key] = " ".join(ev["argv"]) or ev["comm"]
        elif ev["kind"] == "exit":
            cmd = argv_of.get(key, ev["comm"])
            r = rows[cmd[:70]]
            secs = ev["duration_ns"] / 1e9
            r["count"] += 1
            r["total"] += secs
            r["max"] = max(r["max"], secs)
            r["failed"] += ev["exit_code"] != 0
print(f"{'command':70}  {'n':>4}  {'total s':>8}  {'mean s':>8}  {'max s':>8}  {'failed':>6}")
for cmd, r in sorted(rows.items(), key=lambda kv: -kv[1]["total"]):
    print(f"{cmd:70}  {r['count']:>4}  {r['total']:>8.3f}  {r['total'] / r['count']:>8.3f}  {r['max']:>8.3f}  {r['failed']:>6}")
