#!/usr/bin/env python3
"""Log scanning: 3 patterns counted in a 1 GB generated log by the log probe's
first sample (a cursor at offset 0), against `rg -c` (with and without mmap:
backout reads with read(2), as its crate forbids the unsafe code mmap needs) and
`grep -c` on the same file in the same run (page cache warm for all). Then 1 MB is appended and
the next sample's time shows the cost follows the new bytes, not the file.

Usage: python3 bench/logscan.py [size_mb]
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from common import BIN, build

PATTERNS = ["ERROR", "CRITICAL", r"timed out after [0-9]+s"]


def generate(path, size):
    line_ok = "2026-01-01T00:00:00Z INFO request handled path=/api/quote status=200 duration_ms=3 user=alice\n"
    block = []
    for i in range(10_000):
        if i % 1000 == 1:
            block.append("2026-01-01T00:00:00Z ERROR database connection refused host=db port=5432\n")
        elif i % 1000 == 2:
            block.append("2026-01-01T00:00:00Z CRITICAL worker crashed exit=137\n")
        elif i % 1000 == 3:
            block.append("2026-01-01T00:00:00Z WARN job 42 timed out after 30s\n")
        else:
            block.append(line_ok)
    chunk = "".join(block).encode()
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(chunk)
            written += len(chunk)


def timed(cmd, **kw):
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - t, out


def sample(d):
    """One watch sample of the log probe (the plan's [success] ends the watch at
    its first sample); returns (scan ms, count, bytes)."""
    _, out = timed([BIN, "watch", "--json", "--for", "10m"], cwd=d)
    for line in out.stdout.splitlines():
        e = json.loads(line)
        if e.get("event") == "sample":
            return e["latency_ms"], e["fields"]["count"], e["fields"]["bytes"]
    raise RuntimeError(out.stderr)


def main():
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    build()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        log = os.path.join(d, "app.log")
        generate(log, size_mb * 1024 * 1024)
        size = os.path.getsize(log)
        with open(os.path.join(d, "backout.toml"), "w") as f:
            pats = ", ".join(json.dumps(p) for p in PATTERNS)
            f.write(f'[plan]\nname = "scan"\nrto = "1m"\n[[probe]]\nname = "errors"\nevery = "1h"\n'
                    f'timeout = "1m"\nlog = {{ path = "app.log", patterns = [{pats}] }}\n'
                    '[success]\nwhen = ["errors.count >= 0"]\n')
        # Warm the page cache so every tool reads from memory.
        subprocess.run(["cat", log], stdout=subprocess.DEVNULL, check=True)
        rg_args = ["rg", "-c"] + sum((["-e", p] for p in PATTERNS), []) + [log]
        t_rg, rg = timed(rg_args)
        t_rg_read, _ = timed(rg_args[:1] + ["--no-mmap"] + rg_args[1:])
        t_grep, grep = timed(["grep", "-c", "-E", "|".join(f"({p})" for p in PATTERNS), log])
        # A cursor at offset 0: the first sample reads the whole file.
        st = os.stat(log)
        os.makedirs(os.path.join(d, ".backout", "probes"), exist_ok=True)
        with open(os.path.join(d, ".backout", "probes", "errors.cursor"), "w") as f:
            json.dump({"dev": st.st_dev, "ino": st.st_ino, "offset": 0}, f)
        ms, count, read = sample(d)
        gbs = lambda secs: size / secs / 1e9
        print(f"{size / 2**20:.0f} MB log, 3 patterns:")
        print(f"  backout log probe: {ms / 1000:.2f} s ({gbs(ms / 1000):.2f} GB/s), {count:.0f} lines")
        print(f"  rg -c:             {t_rg:.2f} s ({gbs(t_rg):.2f} GB/s), {rg.stdout.strip()} lines")
        print(f"  rg -c --no-mmap:   {t_rg_read:.2f} s ({gbs(t_rg_read):.2f} GB/s) (reads like backout does)")
        print(f"  grep -c -E:        {t_grep:.2f} s ({gbs(t_grep):.2f} GB/s), {grep.stdout.strip()} lines")
        assert int(count) == int(rg.stdout.strip()) == int(grep.stdout.strip()), "counts differ"
        assert int(read) == size
        with open(log, "rb") as f:
            first_mb = f.read(1024 * 1024)
        with open(log, "ab") as f:
            f.write(first_mb)
        ms2, count2, read2 = sample(d)
        print(f"  then 1 MB appended: next sample {ms2:.1f} ms for {read2 / 2**20:.2f} MB, {count2:.0f} lines "
              f"({ms2 / ms * 100:.2f}% of the full scan's time)")


if __name__ == "__main__":
    main()
