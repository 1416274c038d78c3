#!/usr/bin/env python3
"""Time to detect: the demo service probed every 250 ms by a rule that needs 3
failed samples in a row; the fault (the service replaced by one answering 500 to
every /api request) is injected while the watch runs. Measures, over 20 runs, the
time from the first bad sample to the rollback verdict line on stdout.

The rule's own need is (3 - 1) x 250 ms = 500 ms after the first bad sample: the
goal is at most that + 100 ms.

Usage: python3 bench/detect.py [runs]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import BIN, build, demo_app, free_port

INTERVAL_MS = 250
NEED = 3


def one_run(workdir, port):
    app = demo_app(workdir, port, 0.0)
    watch = subprocess.Popen([BIN, "watch", "--json", "--alert-only", "--for", "60s"], cwd=workdir,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    # Let it take a few good samples first.
    time.sleep(1.0)
    app.terminate()
    app.wait()
    bad = demo_app(workdir, port, 1.0)
    first_bad = None
    verdict_at = None
    for line in watch.stdout:
        now = time.time() * 1000
        e = json.loads(line)
        if e["event"] == "first_bad_sample":
            first_bad = e["at"]
        elif e["event"] == "verdict" and e["outcome"] == "rollback":
            verdict_at = now
            break
    watch.wait()
    bad.terminate()
    bad.wait()
    return verdict_at - first_bad


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    build()
    times = []
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        with open(os.path.join(d, "backout.toml"), "w") as f:
            f.write(f"""[plan]
name = "detect"
rto = "30s"
[[probe]]
name = "api"
every = "{INTERVAL_MS}ms"
timeout = "1s"
http = {{ url = "http://127.0.0.1:{port}/api/quote", status = 200 }}
[[rule]]
name = "api-down"
when = "api.consecutive_failures >= {NEED}"
""")
        for i in range(runs):
            t = one_run(d, port)
            times.append(t)
            print(f"run {i + 1}: {t:.0f} ms", file=sys.stderr)
    need = (NEED - 1) * INTERVAL_MS
    print(f"time to detect over {runs} runs: median {statistics.median(times):.0f} ms, "
          f"max {max(times):.0f} ms (rule's own need {need} ms, goal <= {need + 100} ms)")


if __name__ == "__main__":
    main()
