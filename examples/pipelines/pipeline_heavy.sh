#!/bin/sh
# Heavier data pipeline: Python steps that burn CPU, allocate memory, run in parallel, and fail.
# Exits with the status of its failing step (3), like a CI job would.
here=$(dirname "$0")
# Resolve the interpreter once: a version-manager shim would add its own processes to every step.
PY=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
"$PY" "$here/steps/burn_cpu.py" 1.0
"$PY" "$here/steps/alloc_memory.py" 200 &
"$PY" "$here/steps/burn_cpu.py" 0.5 &
wait
"$PY" "$here/steps/threads.py" 4 0.3
sh -c 'sleep 0.1; exit 0'
"$PY" "$here/steps/fail.py" 3
