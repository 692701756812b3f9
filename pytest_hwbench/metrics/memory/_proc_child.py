"""Helper process of the process sampler: reads /proc/<pid>/statm at a fixed interval.

Runs as a script with only the standard library (``python -I _proc_child.py PID INTERVAL_S``).
Writes records of two little-endian int64 (perf_counter_ns, rss_bytes) to stdout in batches.
Commands on stdin, one byte each: "1" sample, "0" pause, "f" flush then send a flush marker
(t = -1), "q" quit. Exits by itself when the parent dies or closes the pipes.
"""

from __future__ import annotations

import os
import select
import struct
import sys
import time

RECORD = struct.Struct("<qq")
FLUSH_MARKER_T = -1
#: Records go to the parent this often (and on "f"): each delivery wakes its reader thread, which
#: must take the GIL from the measured code; 4 a second cost it nothing measurable, 100 did.
BATCH_S = 0.250


def main() -> int:
    """Sample until told to quit or the parent goes away."""
    pid = int(sys.argv[1])
    interval_ns = int(float(sys.argv[2]) * 1e9)
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
    parent = os.getppid()
    stdin = sys.stdin.fileno()
    out = sys.stdout.fileno()
    sampling = False
    batch = bytearray()
    last_flush = time.perf_counter_ns()
    next_due = time.perf_counter_ns()
    while True:
        now = time.perf_counter_ns()
        timeout = max(next_due - now, 0) / 1e9 if sampling else 0.2
        ready, _, _ = select.select([stdin], [], [], timeout)
        if ready:
            command = os.read(stdin, 64)
            if not command or b"q" in command:
                break
            for byte in command:
                if byte == ord("1"):
                    sampling = True
                    next_due = time.perf_counter_ns()
                elif byte == ord("0"):
                    sampling = False
                elif byte == ord("f"):
                    batch += RECORD.pack(FLUSH_MARKER_T, 0)
                    os.write(out, bytes(batch))
                    batch.clear()
                    last_flush = time.perf_counter_ns()
            continue
        if os.getppid() != parent:
            break
        if not sampling:
            continue
        now = time.perf_counter_ns()
        if now >= next_due:
            try:
                fields = os.pread(fd, 128, 0).split()
            except OSError:
                break  # the measured process is gone
            batch += RECORD.pack(now, int(fields[1]) * page)
            next_due += interval_ns * (1 + (now - next_due) // interval_ns)
        if batch and now - last_flush >= BATCH_S * 1e9:
            try:
                os.write(out, bytes(batch))
            except BrokenPipeError:
                break
            batch.clear()
            last_flush = now
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
