#!/usr/bin/python3
"""Check a tmc_net_member delivery log for one sender.

  check_log.py LOG --sender NAME --count N [--min-loss F] [--max-loss F] [--in-order]

Log lines: "<sender> <app seq> <wire seq or -> <payload hash> <ok|bad>". Prints one
summary line; exits 1 when a check fails: any bad payload, any duplicate, loss outside
[min, max], or (with --in-order) a delivery whose sequence is not above the previous one.
"""
import argparse
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("log")
    p.add_argument("--sender", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--min-loss", type=float, default=0.0)
    p.add_argument("--max-loss", type=float, default=1.0)
    p.add_argument("--in-order", action="store_true")
    a = p.parse_args()
    seqs = []
    bad = 0
    with open(a.log, encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5 or parts[0] != a.sender:
                continue
            seqs.append(int(parts[1]))
            bad += parts[4] != "ok"
    distinct = len(set(seqs))
    dups = len(seqs) - distinct
    backwards = sum(1 for x, y in zip(seqs, seqs[1:]) if y <= x)
    loss = 1.0 - distinct / a.count
    problems = []
    if bad:
        problems.append(f"{bad} bad payloads")
    if dups:
        problems.append(f"{dups} duplicates")
    if not a.min_loss <= loss <= a.max_loss:
        problems.append(f"loss {loss:.1%} outside [{a.min_loss:.0%}, {a.max_loss:.0%}]")
    if a.in_order and backwards:
        problems.append(f"{backwards} out-of-order deliveries")
    verdict = "FAIL: " + "; ".join(problems) if problems else "ok"
    print(f"  {a.log.rsplit('/', 1)[-1]}: from {a.sender}: {distinct} of {a.count} delivered "
          f"(loss {loss:.1%}), out of order {backwards}, bad {bad} -> {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
