#!/usr/bin/env python3
"""Decision quality: false verdicts per hour and detection delay, backout's
rules against Argo-style and Kayenta-style judges, on the same samples.

The service (issue 18): 1% failed requests; latency lognormal around 20 ms
(sigma 0.406, so a p95 near 39 ms) with rare 300 ms spikes (0.5%); one probe
every 250 ms, started up to 15 ms late. Every watch is preceded by a 60 s
baseline. Each simulated service (a lane) records, in its own state.db:

    baseline, healthy watch (5 min), baseline, incident watch (errors 1% -> 8%),
    baseline, healthy watch (5 min), baseline, incident watch (latency x 1.8)

An incident watch is healthy for 60-90 s, then the fault switches on at a
known time and lasts 120 s. The samples are generated (seeded) and written to
the state.db as a watch would have stored them; `backout replay` is the
decider for backout's rules, and the two peers are computed here over the very
same samples:

- Argo-style: the plan's threshold measured every 10 s over the last 30 s; the
  analysis fails when more than 3 measurements failed (failureLimit 3).
- Kayenta-style: at every sample, a one-sided Mann-Whitney U test of the last
  30 s against the baseline's samples, p < 0.02, and an effect (ratio of means)
  of at least 25%.

A false verdict is an entry into investigate or rollback on a healthy stretch;
detection delay runs from the fault's switch to the rule's first verdict.

Usage: python3 bench/judge.py [lanes] [seed]     (default 12 lanes, seed 18)
"""

import json
import math
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile

from common import BIN, build

EVERY = 250
MEDIAN, SIGMA, SPIKE_P, SPIKE_MS, ERR = 20.0, 0.406, 0.005, 300.0, 0.01
BASELINE_S, HEALTHY_S, FAULT_S = 60, 300, 120
WINDOW = 30_000
CAP = WINDOW // EVERY
T0 = 1_700_000_000_000

PLAN_HEAD = """[plan]
name = "noisy"
rto = "5m"
[[probe]]
name = "api"
every = "250ms"
timeout = "1s"
http = { url = "http://127.0.0.1:9/" }
"""

THRESHOLDS = PLAN_HEAD + """
[[rule]]
name = "errors"
when = "api.error_rate > 5% over 30s"
then = "rollback"
[[rule]]
name = "slow"
when = "api.latency.p95 > baseline + 50% over 30s"
then = "investigate"
"""

SEQUENTIAL = PLAN_HEAD + """
[[rule]]
name = "errors"
when = "api.error_rate > baseline (sequential) over 30s"
then = "rollback"
[[rule]]
name = "slow"
when = "api.latency.p50 > baseline + 25% (sequential) over 30s"
then = "investigate"
"""

MANN_WHITNEY = PLAN_HEAD + """
[[rule]]
name = "errors"
when = "api.error_rate > baseline + 2pp (mann-whitney, 98%) over 30s"
then = "rollback"
[[rule]]
name = "slow"
when = "api.latency.p50 > baseline + 25% (mann-whitney, 98%) over 30s"
then = "investigate"
"""

HISTORY = "[baseline]\nhistory = 5\n"

DECIDERS = [
    ("backout defaults: sequential rules, baseline + last 5 healthy watches (as `backout init` writes them)",
     SEQUENTIAL + HISTORY),
    ("backout: sequential rules, the 60 s baseline alone", SEQUENTIAL),
    ("backout: the issue's threshold rules (derived min-samples, hysteresis)", THRESHOLDS),
    ("backout: Mann-Whitney rules", MANN_WHITNEY),
]


# --- the service ---------------------------------------------------------

def one(rng, t, err=ERR, k=1.0):
    ok = rng.random() >= err
    lat = SPIKE_MS if rng.random() < SPIKE_P else MEDIAN * math.exp(SIGMA * rng.gauss(0, 1))
    return (t, ok, round(lat * k, 3))


def stretch(rng, start, seconds, fault_at=None, kind=None):
    out = []
    for i in range(seconds * 1000 // EVERY):
        t = start + i * EVERY + rng.randint(0, 15)
        bad = fault_at is not None and t >= fault_at
        out.append(one(rng, t, 0.08 if bad and kind == "errors" else ERR,
                       1.8 if bad and kind == "latency" else 1.0))
    return out


def quantile(v, p):
    v = sorted(v)
    h = p * (len(v) - 1)
    lo = int(math.floor(h))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (h - lo) * (v[hi] - v[lo])


def baseline_stats(samples):
    lat = [l for _, ok, l in samples if ok]
    n = len(samples)
    return {
        "count": n,
        "error_rate": sum(1 for _, ok, _ in samples if not ok) / n,
        "latency_median": quantile(lat, 0.5),
        "latency_p95": quantile(lat, 0.95),
        "latency_mean": statistics.fmean(lat),
        "size_mean": None,
    }


def lane(rng, index):
    """One service's timeline: [(kind, samples, fault_at, fault_kind)]."""
    t = T0 + index * 10_000_000
    ops = []
    for fault in (None, "errors", None, "latency"):
        ops.append(("baseline", stretch(rng, t, BASELINE_S), None, None))
        t += BASELINE_S * 1000 + 5000
        if fault is None:
            ops.append(("watch", stretch(rng, t, HEALTHY_S), None, None))
            t += HEALTHY_S * 1000 + 5000
        else:
            healthy = rng.randint(60, 90)
            at = t + healthy * 1000
            ops.append(("watch", stretch(rng, t, healthy + FAULT_S, at, fault), at, fault))
            t += (healthy + FAULT_S) * 1000 + 5000
    return ops


def write_lane(workdir, ops):
    """A project with a state.db holding the lane's operations; returns op ids."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "backout.toml"), "w") as f:
        f.write(THRESHOLDS)
    for i, (_, text) in enumerate(DECIDERS):
        with open(os.path.join(workdir, f"rules-{i}.toml"), "w") as f:
            f.write(text)
    # Any command creates and migrates the state.db.
    subprocess.run([BIN, "log"], cwd=workdir, check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(workdir, ".backout", "state.db"))
    ids = []
    for kind, samples, fault_at, fault in ops:
        start, end = samples[0][0], samples[-1][0] + 250
        outcome = "ok" if kind == "baseline" else ("time_up" if fault is None else "rollback_triggered")
        args = {"for_ms": end - start} if kind == "baseline" else {"deploy_at": start}
        cur = db.execute(
            "INSERT INTO operations (kind, args, started_at, ended_at, outcome) VALUES (?, ?, ?, ?, ?)",
            (kind, json.dumps(args), start, end, outcome))
        op = cur.lastrowid
        ids.append(op)
        db.executemany(
            "INSERT INTO samples (op_id, probe, at, ok, latency_ms, status, error) VALUES (?, 'api', ?, ?, ?, ?, ?)",
            [(op, at, int(ok), lat, 200 if ok else 500, None if ok else "status 500, expected 2xx")
             for at, ok, lat in samples])
        if kind == "baseline":
            db.execute("INSERT INTO baselines (op_id, probe, measured_at, stats) VALUES (?, 'api', ?, ?)",
                       (op, end, json.dumps(baseline_stats(samples))))
    db.commit()
    db.close()
    return ids


# --- the peers -----------------------------------------------------------

def norm_sf(z):
    return 0.5 * math.erfc(z / math.sqrt(2))


def mwu_greater(x, y):
    """One-sided p that x tends to exceed y (asymptotic, tie and continuity corrected)."""
    n1, n2 = len(x), len(y)
    allv = sorted([(v, 1) for v in x] + [(v, 0) for v in y])
    n = n1 + n2
    r1 = ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and allv[j + 1][0] == allv[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        r1 += rank * sum(g for _, g in allv[i:j + 1])
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    u1 = r1 - n1 * (n1 + 1) / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    return norm_sf((u1 - n1 * n2 / 2 - 0.5) / math.sqrt(var))


def windows(samples):
    """(time, window) at every sample: the last 30 s ending at it, once full."""
    first = samples[0][0]
    lo = 0
    for i, s in enumerate(samples):
        frm = s[0] - WINDOW + EVERY // 2
        while samples[lo][0] <= frm:
            lo += 1
        w = samples[max(lo, i + 1 - CAP):i + 1]
        full = len(w) >= CAP or first <= frm + EVERY
        yield s[0] + int(s[2]), s, w, full


def kayenta(samples, base):
    """Entries into failing, per rule: [(time, rule)]."""
    bl = [l for _, ok, l in base if ok]
    be = [0.0 if ok else 1.0 for _, ok, _ in base]
    mbl, mbe = statistics.fmean(bl), statistics.fmean(be)
    state, out = {"errors": False, "slow": False}, []
    for now, _, w, full in windows(samples):
        if not full:
            continue
        x = [l for _, ok, l in w if ok]
        xe = [0.0 if ok else 1.0 for _, ok, _ in w]
        me = statistics.fmean(xe)
        ratio_e = math.inf if mbe == 0 and me > 0 else (me / mbe if mbe else 1.0)
        now_state = {
            "slow": bool(x) and statistics.fmean(x) / mbl >= 1.25 and mwu_greater(x, bl) < 0.02,
            "errors": me > 0 and ratio_e >= 1.25 and mwu_greater(xe, be) < 0.02,
        }
        for r in now_state:
            if now_state[r] and not state[r]:
                out.append((now, r))
        state = now_state
    return out


def argo(samples, base):
    limit = 1.5 * quantile([l for _, ok, l in base if ok], 0.95)
    nxt, fails, out = None, {"errors": 0, "slow": 0}, []
    for now, _, w, full in windows(samples):
        if nxt is None:
            nxt = now + 10_000
        if now < nxt:
            continue
        nxt += 10_000
        if not full:
            continue
        ok = [l for _, o, l in w if o]
        failed = {
            "errors": sum(1 for _, o, _ in w if not o) / len(w) > 0.05,
            "slow": bool(ok) and quantile(ok, 0.95) > limit,
        }
        for r in failed:
            fails[r] += failed[r]
            if fails[r] > 3:
                out.append((now, r))
                fails[r] = 0
    return out


# --- scoring ---------------------------------------------------------------

RULE_OF = {"errors": "errors", "latency": "slow"}


def score(entries_by_op, ops):
    """entries_by_op[op index] = [(time, rule)] -> per-rule figures."""
    healthy_ms = 0
    false = {"errors": 0, "slow": 0}
    false_start = 0
    delays = {"errors": [], "latency": []}
    for (kind, samples, fault_at, fault), entries in zip(ops, entries_by_op):
        first, last = samples[0][0], samples[-1][0]
        healthy_ms += ((fault_at or last) - first)
        found = None
        for at, rule in entries:
            if fault_at is None or at < fault_at:
                false[rule] += 1
                if rule == "errors" and kind == "watch" and at - first <= WINDOW:
                    false_start += 1
            elif rule == RULE_OF[fault] and found is None:
                found = (at - fault_at) / 1000
        if fault is not None:
            delays[fault].append(found)
    return healthy_ms, false, false_start, delays


def replay_entries(workdir, ids, ops, decider):
    args = [BIN, "replay", "--json", "--rules", f"rules-{decider}.toml"]
    for op, (_, samples, fault_at, _) in zip(ids, ops):
        if fault_at is not None:
            args += ["--incident", f"op-{op}@{fault_at - samples[0][0]}ms"]
        else:
            args += ["--healthy", f"op-{op}"]
    r = subprocess.run(args, cwd=workdir, check=True, capture_output=True, text=True)
    by_op = {o["op"]: o for o in json.loads(r.stdout)["ops"]}
    out = []
    for op in ids:
        entries, last = [], {}
        for c in by_op.get(op, {"changes": []})["changes"]:
            verdict = c["outcome"] in ("investigate", "rollback")
            if verdict and last.get(c["rule"]) not in ("investigate", "rollback"):
                entries.append((c["at"], c["rule"]))
            last[c["rule"]] = c["outcome"]
        out.append(entries)
    return out


def fmt_delays(ds):
    got = [d for d in ds if d is not None]
    miss = len(ds) - len(got)
    if not got:
        return "—", miss
    return f"{statistics.median(got):.1f} s / {max(got):.1f} s", miss


def main():
    lanes = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 18
    build()
    rng = random.Random(seed)
    results = {name: [] for name in [d[0] for d in DECIDERS] + ["Argo-style", "Kayenta-style"]}
    all_ops = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(lanes):
            ops = lane(rng, i)
            workdir = os.path.join(tmp, f"lane-{i}")
            ids = write_lane(workdir, ops)
            watches = [(j, o) for j, o in enumerate(ops) if o[0] == "watch"]
            wops = [o for _, o in watches]
            wids = [ids[j] for j, _ in watches]
            for d, (name, _) in enumerate(DECIDERS):
                results[name].append((wops, replay_entries(workdir, wids, wops, d)))
            bases = [ops[j - 1][1] for j, _ in watches]
            results["Argo-style"].append((wops, [argo(o[1], b) for o, b in zip(wops, bases)]))
            results["Kayenta-style"].append((wops, [kayenta(o[1], b) for o, b in zip(wops, bases)]))
            all_ops += wops
            print(f"lane {i + 1}/{lanes} done", file=sys.stderr)
    rows = []
    for name, per_lane in results.items():
        healthy_ms, false, false_start, delays = 0, {"errors": 0, "slow": 0}, 0, {"errors": [], "latency": []}
        for wops, entries in per_lane:
            h, f, fs, d = score(entries, wops)
            healthy_ms += h
            false_start += fs
            for k in false:
                false[k] += f[k]
            for k in delays:
                delays[k] += d[k]
        hours = healthy_ms / 3_600_000
        rows.append((name, hours, false, false_start, delays))
    hours = rows[0][1]
    trials = len(rows[0][4]["errors"])
    print(f"\n{lanes} lanes, seed {seed}: {hours:.2f} h of healthy watching, {trials} trials per fault\n")
    print("| fault | decider | false verdicts per hour | median / max detection delay | missed |")
    print("|---|---|---|---|---|")
    for fault, rule in (("errors 1% → 8%", "errors"), ("latency × 1.8", "latency")):
        for name, h, false, _, delays in rows:
            med, miss = fmt_delays(delays[rule])
            fr = false[RULE_OF[rule]] / h
            print(f"| {fault} | {name} | {fr:.2f} | {med} | {miss} of {len(delays[rule])} |")
    print("\nfalse ROLLBACKs in the first 30 s of a watch:",
          ", ".join(f"{name}: {fs}" for name, _, _, fs, _ in rows))


if __name__ == "__main__":
    main()
