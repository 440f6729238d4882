"""A step that fails with the given exit code (default 1)."""
import sys

print("step failed: simulated error", file=sys.stderr)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
