"""N threads each burning CPU for S seconds: one process, N threads."""
import sys
import threading
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3


def burn():
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


threads = [threading.Thread(target=burn) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
