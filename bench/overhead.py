#!/usr/bin/env python3
"""Overhead: 200 HTTP probes, each every second, against a local server (the demo
app) for 60 s, one rule per probe. Reports the CPU used by `backout watch` as a
share of one core, and its peak RSS (VmHWM).

Goal: under 5% of one core, under 40 MB.

Usage: python3 bench/overhead.py [seconds] [probes]
"""

import os
import subprocess
import sys
import tempfile
import time

from common import BIN, build, demo_app, free_port, proc_cpu_seconds, proc_status_kb


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    probes = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    build()
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        app = demo_app(d, port)
        plan = ['[plan]\nname = "overhead"\nrto = "1m"\n']
        for i in range(probes):
            plan.append(f"""[[probe]]
name = "p{i}"
every = "1s"
timeout = "1s"
http = {{ url = "http://127.0.0.1:{port}/health", status = 200, json = {{ status = "healthy" }} }}
[[rule]]
when = "p{i}.error_rate > 50% over 10s"
""")
        with open(os.path.join(d, "backout.toml"), "w") as f:
            f.write("".join(plan))
        watch = subprocess.Popen([BIN, "watch", "--for", f"{seconds + 5}s"], cwd=d,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Skip start-up (plan parsing, first connections), then measure a steady state.
        time.sleep(5)
        c0, t0 = proc_cpu_seconds(watch.pid), time.time()
        time.sleep(seconds)
        c1, t1 = proc_cpu_seconds(watch.pid), time.time()
        hwm = proc_status_kb(watch.pid, "VmHWM")
        watch.wait()
        app.terminate()
        app.wait()
        out = subprocess.run([BIN, "log", "--kind", "watch", "-n", "1"], cwd=d, capture_output=True, text=True)
        cpu = (c1 - c0) / (t1 - t0) * 100
        print(f"{probes} HTTP probes at 1/s for {seconds}s: CPU {cpu:.1f}% of one core, "
              f"peak RSS {hwm / 1024:.1f} MB (goal < 5%, < 40 MB)")
        print(out.stdout.strip(), file=sys.stderr)


if __name__ == "__main__":
    main()
