#!/usr/bin/python3
"""summarize.py OUTDIR — TAPIR-KV matrix reports to runs.csv, cells.csv, table.md, chart.png.

Reads OUTDIR/runs/rep<R>-<variant>-l<loss bp>-c<clients>/{client*,replica*}.json and
drops.txt (written by run-netns.sh). Per run: committed txn/s over the middle third of the
run (txns that end in [first_end + D/3, first_end + 2D/3], divided by D/3, as the original
TAPIR's process_logs.py) and over the whole run, attempted txn/s, abort rate by cause,
committed-txn latency p50/p99/p99.9, fast-path fraction, IR resends per message type,
datagrams sent and dropped, CPU seconds. Per cell: mean and sd over repetitions.
"""
import csv
import glob
import json
import os
import re
import statistics
import sys

MSG_TYPES = ["propose_inconsistent", "finalize_inconsistent", "propose_consensus", "finalize_consensus", "unlogged"]
VARIANT_ORDER = ["tcp", "udp", "mcast", "tuned", "tuned-flagged"]
LABEL = {"tcp": "TCP", "udp": "UDP unicast", "mcast": "UDP multicast", "tuned": "libTMC tuned",
         "tuned-flagged": "libTMC tuned, flagged"}


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def run_row(d):
    m = re.match(r"rep(\d+)-([\w-]+?)-l(\d+)-c(\d+)$", os.path.basename(d))
    if not m:
        return None
    rep, variant, loss_bp, clients = int(m[1]), m[2], int(m[3]), int(m[4])
    reports = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, "*.json")))]
    creps = [c for r in reports for c in r["client_reports"]]
    if len(creps) != clients:
        return None
    first = next(r for r in reports if r["mode"] == "client")
    secs = first["seconds"]
    txns = [t for c in creps for t in c["txns"]]
    ends = [t[0] for t in txns]
    first_end = min(ends) if ends else 0
    lo, hi = first_end + secs * 1e9 / 3, first_end + 2 * secs * 1e9 / 3
    committed = [t for t in txns if t[2] == 0]
    mid = sum(1 for t in committed if lo <= t[0] < hi) / (secs / 3)
    lat = [t[1] / 1e6 for t in committed]
    s = lambda k: sum(c[k] for c in creps)
    started = s("started")
    fast, slow = s("fast_path"), s("slow_path")
    dropped = 0
    if os.path.exists(os.path.join(d, "drops.txt")):
        for line in open(os.path.join(d, "drops.txt")):
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                dropped += int(parts[1])
    row = {
        "rep": rep, "variant": variant, "loss_pct": loss_bp / 100, "clients": clients, "seconds": secs,
        "committed_mid_tps": round(mid, 1), "committed_run_tps": round(s("committed") / secs, 1),
        "attempted_tps": round(started / secs, 1),
        "abort_fail_pct": round(100 * s("aborted_fail") / max(1, started), 3),
        "abort_retries_pct": round(100 * s("aborted_retries") / max(1, started), 3),
        "get_timeout_pct": round(100 * s("get_timeouts") / max(1, started), 3),
        "lat_p50_ms": round(pct(lat, 0.5), 3), "lat_p99_ms": round(pct(lat, 0.99), 3),
        "lat_p999_ms": round(pct(lat, 0.999), 3), "lat_max_ms": round(max(lat) if lat else 0, 3),
        "fast_path_frac": round(fast / max(1, fast + slow), 4),
        "datagrams_sent": sum(r["transport"]["datagrams_sent"] for r in reports),
        "datagrams_dropped": dropped,
        "channel_retransmits": sum(r["transport"]["channel_retransmits"] for r in reports),
        "cpu_s": round(sum(r["cpu_s"] for r in reports), 2),
        "timers_ms": "/".join(f'{first["timers_ms"][k]:g}' for k in ("propose_resend", "slow_path", "finalize_resend", "get_timeout")),
    }
    for t in MSG_TYPES:
        row["resent_" + t] = sum(c["resent"][t] for c in creps)
    return row


def main():
    out = sys.argv[1]
    rows = [r for d in sorted(glob.glob(os.path.join(out, "runs", "rep*"))) if os.path.isdir(d) for r in [run_row(d)] if r]
    if not rows:
        sys.exit("summarize: no complete runs under " + out)
    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    cells = {}
    for r in rows:
        cells.setdefault((r["clients"], r["loss_pct"], r["variant"]), []).append(r)
    keys = sorted(cells, key=lambda k: (k[0], k[1], VARIANT_ORDER.index(k[2]) if k[2] in VARIANT_ORDER else 9))
    mean = lambda rs, k: statistics.mean(r[k] for r in rs)
    sd = lambda rs, k: statistics.stdev([r[k] for r in rs]) if len(rs) > 1 else 0.0
    crow = []
    for k in keys:
        rs = cells[k]
        c = {"clients": k[0], "loss_pct": k[1], "variant": k[2], "reps": len(rs),
             "mid_tps_mean": round(mean(rs, "committed_mid_tps"), 1), "mid_tps_sd": round(sd(rs, "committed_mid_tps"), 1),
             "run_tps_mean": round(mean(rs, "committed_run_tps"), 1), "run_tps_sd": round(sd(rs, "committed_run_tps"), 1)}
        for f in ("abort_fail_pct", "abort_retries_pct", "get_timeout_pct", "lat_p50_ms", "lat_p99_ms", "lat_p999_ms",
                  "fast_path_frac", "datagrams_sent", "datagrams_dropped", "channel_retransmits", "cpu_s"):
            c[f] = round(mean(rs, f), 4)
        c["ir_resends"] = round(statistics.mean(sum(r["resent_" + t] for t in MSG_TYPES) for r in rs), 1)
        for t in MSG_TYPES:
            c["resent_" + t] = round(mean(rs, "resent_" + t), 1)
        crow.append(c)
    with open(os.path.join(out, "cells.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(crow[0].keys()))
        w.writeheader()
        w.writerows(crow)
    timers = rows[0]["timers_ms"]
    md = [f"Committed txn/s, mean ± sd over repetitions (middle third of each {rows[0]['seconds']:g} s run; whole run in "
          f"brackets). IR timers (propose / slow path / finalize / GET, ms): {timers}.", "",
          "| clients | loss % | variant | txn/s (mid third) | txn/s (run) | abort FAIL % | abort retries % | GET timeout % "
          "| p50 ms | p99 ms | p99.9 ms | fast path | IR resends (prop-inc/fin-inc/prop-cons/fin-cons/get) | channel repairs "
          "| datagrams sent | dropped | CPU s |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in crow:
        res = "/".join(f'{c["resent_" + t]:g}' for t in MSG_TYPES)
        md.append(f'| {c["clients"]} | {c["loss_pct"]:g} | {LABEL.get(c["variant"], c["variant"])} | '
                  f'{c["mid_tps_mean"]:.0f} ± {c["mid_tps_sd"]:.0f} | ({c["run_tps_mean"]:.0f}) | {c["abort_fail_pct"]:.2f} | '
                  f'{c["abort_retries_pct"]:.2f} | {c["get_timeout_pct"]:.2f} | {c["lat_p50_ms"]:.2f} | {c["lat_p99_ms"]:.1f} | '
                  f'{c["lat_p999_ms"]:.1f} | {c["fast_path_frac"]:.3f} | {res} | {c["channel_retransmits"]:.0f} | '
                  f'{c["datagrams_sent"]:.0f} | {c["datagrams_dropped"]:.0f} | {c["cpu_s"]:.1f} |')
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    chart(out, crow)
    print("\n".join(md))


def chart(out, crow):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    clients = sorted({c["clients"] for c in crow})
    losses = sorted({c["loss_pct"] for c in crow})
    variants = [v for v in VARIANT_ORDER if any(c["variant"] == v for c in crow)]
    fig, axes = plt.subplots(1, len(clients), figsize=(5.5 * len(clients), 4), squeeze=False)
    width = 0.8 / max(1, len(variants))
    for ax, n in zip(axes[0], clients):
        for i, v in enumerate(variants):
            ys, es = [], []
            for l in losses:
                c = next((c for c in crow if c["clients"] == n and c["loss_pct"] == l and c["variant"] == v), None)
                ys.append(c["mid_tps_mean"] if c else 0)
                es.append(c["mid_tps_sd"] if c else 0)
            xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(losses))]
            ax.bar(xs, ys, width, yerr=es, capsize=2, label=LABEL.get(v, v))
        ax.set_xticks(range(len(losses)))
        ax.set_xticklabels([f"{l:g}%" for l in losses])
        ax.set_xlabel("packet loss at every receiver")
        ax.set_ylabel("committed txn/s")
        ax.set_title(f"TAPIR-KV, 3 replicas, {n} client{'s' if n > 1 else ''}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "chart.png"), dpi=110)


if __name__ == "__main__":
    main()
