"""Touch the given number of MiB (default 200), hold it briefly, then release it."""
import sys
import time

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 200
block = bytearray(mib * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(0.2)
del block
time.sleep(0.1)
