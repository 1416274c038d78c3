#!/usr/bin/env bash
# Figures for the README, on the demo project (`backout demo --keep`):
#   1. backout's own overhead in a full rollback (safety checkpoint + git revert +
#      restart + wait until healthy), i.e. the rollback's total time minus the
#      service's own start time (spawn -> first healthy /health, measured alone);
#   2. end-to-end recovery on the demo with its default plan (`backout demo`:
#      time_to_recover_ms), median of 10.
# Usage: ./bench/rollback.sh [RUNS]   (release build; takes about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
cargo build --release --quiet
B="$PWD/target/release/backout"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m }'; }

echo "== end-to-end recovery on the demo (median of $runs)"
for i in $(seq "$runs"); do
  "$B" demo --json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["time_to_recover_ms"])'
done > "$work/e2e"
echo "recovery ms: $(tr '\n' ' ' < "$work/e2e")"
echo "median recovery: $(median < "$work/e2e") ms"

echo "== backout's overhead in a full rollback (median of $runs)"
demo="$work/demo"
"$B" demo --keep "$demo" --quiet >/dev/null 2>&1
cd "$demo"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@b
port="$(grep -o '127.0.0.1:[0-9]*/health' backout.toml | head -1 | cut -d: -f2 | cut -d/ -f1)"
for i in $(seq "$runs"); do
  "$B" checkpoint --quiet >/dev/null
  sed -i 's/^version = .*/version = "1.1.0"/' app.toml
  git commit -qam "bad deploy $i"
  "$B" rollback --yes --json 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["rollback"]
steps = {s["name"]: s["duration_ms"] for s in r["steps"]}
print(r["timing"]["total_ms"], r["safety_checkpoint_ms"], *steps.values())'
done > "$work/rb"
"$B" rollback --yes --quiet >/dev/null 2>&1 || true
# The service's own start time: spawn -> first healthy answer, polled every 1ms.
python3 - "$B" "$port" "$runs" > "$work/start" <<'PY'
import socket, subprocess, sys, time
exe, port, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
subprocess.run([exe, "rollback", "--yes", "--quiet"], capture_output=True)  # nothing to do
# stop backout's own copy so the port is free
import os, signal
pid = open(".backout/run/quotes.pid").read().split()[0] if os.path.exists(".backout/run/quotes.pid") else None
if pid:
    try: os.killpg(int(pid), signal.SIGTERM)
    except ProcessLookupError: pass
    time.sleep(0.5)
def healthy():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
        s.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        ok = b" 200 " in s.recv(64).split(b"\r\n")[0]
        s.close()
        return ok
    except OSError:
        return False
for _ in range(runs):
    t = time.monotonic()
    p = subprocess.Popen([exe, "demo-app", "--config", "app.toml", "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not healthy():
        time.sleep(0.001)
    print(round((time.monotonic() - t) * 1000, 1))
    p.terminate(); p.wait()
PY
cut -d' ' -f1 "$work/rb" > "$work/total"
echo "rollback total ms (safety checkpoint + revert + restart + wait): $(tr '\n' ' ' < "$work/total")"
echo "  of which safety checkpoint ms: $(cut -d' ' -f2 "$work/rb" | tr '\n' ' ')"
echo "  steps ms (revert restart wait), per run:"; cut -d' ' -f3- "$work/rb" | sed 's/^/    /'
echo "service start ms (spawn -> healthy, alone): $(tr '\n' ' ' < "$work/start")"
t=$(median < "$work/total"); s=$(median < "$work/start")
echo "median rollback total: $t ms; median service start: $s ms"
echo "backout overhead (median total - median service start): $(python3 -c "print(round($t - $s, 1))") ms"
