"""Burn CPU for the given number of seconds (default 1.0)."""
import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
deadline = time.process_time() + seconds
x = 0
while time.process_time() < deadline:
    x = (x * 31 + 7) % 1_000_003
