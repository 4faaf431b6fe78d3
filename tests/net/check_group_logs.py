#!/usr/bin/python3
"""Check the delivery logs of group-ordered members against each other.

  check_group_logs.py LOG LOG... --complete NAME:N[,NAME:N...] [--senders NAME,...]

Each LOG is one member's tmc_net_member log, one delivery per line, in delivery order:
"<sender> <app seq> <wire seq or -> <payload hash> <ok|bad>". A message is named by
(sender, app seq). Checks, each reported on its own line:

  identical   every log holds the same messages in the same order; on a difference the
              first differing position is printed with both logs' entries around it
  duplicates  no log delivers one message twice
  per-sender  in every log, each sender's messages appear in increasing app seq
  payloads    no "bad" payload
  complete    for every NAME:N of --complete, messages 0..N-1 of NAME are in every log
              (the senders that survived and sent N messages each)
  senders     (with --senders) no log holds a message from a sender not in the list

Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import sys


def read_log(path):
    entries = []
    bad = 0
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5:
                continue
            entries.append((parts[0], int(parts[1])))
            bad += parts[4] != "ok"
    return entries, bad


def show(entries, at):
    lo = max(0, at - 2)
    return " ".join(f"{'>' if i == at else ''}{s}:{q}" for i, (s, q) in enumerate(entries[lo:at + 3], lo)) or "(end)"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("logs", nargs="+")
    p.add_argument("--complete", default="", help="NAME:N,... senders whose N messages every log must hold")
    p.add_argument("--senders", default="", help="NAME,... the only senders allowed in the logs")
    a = p.parse_args()
    names = [path.rsplit("/", 1)[-1] for path in a.logs]
    logs = []
    problems = []
    for path, name in zip(a.logs, names):
        entries, bad = read_log(path)
        logs.append(entries)
        if bad:
            problems.append(f"{name}: {bad} bad payloads")
        counts = {}
        for s, _ in entries:
            counts[s] = counts.get(s, 0) + 1
        summary = ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
        print(f"  {name}: {len(entries)} deliveries ({summary or 'none'})")
        if len(set(entries)) != len(entries):
            seen = set()
            first = next(e for e in entries if e in seen or seen.add(e))
            problems.append(f"{name}: {len(entries) - len(set(entries))} duplicate deliveries "
                            f"(first: {first[0]}:{first[1]})")
        last = {}
        backwards = 0
        first_back = None
        for i, (s, q) in enumerate(entries):
            if s in last and q <= last[s]:
                backwards += 1
                first_back = first_back or (i, s, q, last[s])
            last[s] = max(q, last.get(s, -1))
        if backwards:
            i, s, q, prev = first_back
            problems.append(f"{name}: {backwards} deliveries out of per-sender order "
                            f"(first at position {i}: {s}:{q} after {s}:{prev})")
        if a.senders:
            allowed = set(a.senders.split(","))
            foreign = sorted(set(s for s, _ in entries) - allowed)
            if foreign:
                problems.append(f"{name}: messages from unexpected senders {foreign}")
        for item in filter(None, a.complete.split(",")):
            sender, n = item.split(":")
            have = set(q for s, q in entries if s == sender)
            missing = [q for q in range(int(n)) if q not in have]
            if missing:
                problems.append(f"{name}: {len(missing)} of {n} messages from {sender} missing "
                                f"(first missing: {sender}:{missing[0]})")
    for i in range(1, len(logs)):
        x, y = logs[0], logs[i]
        if x == y:
            continue
        at = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
        problems.append(f"{names[0]} and {names[i]} differ: lengths {len(x)} and {len(y)}, first difference "
                        f"at position {at}: {names[0]} [{show(x, at)}] vs {names[i]} [{show(y, at)}]")
    if problems:
        for pr in problems:
            print(f"  FAIL: {pr}")
        return 1
    print(f"  ok: {len(a.logs)} logs identical ({len(logs[0])} deliveries), no duplicates, per-sender order kept"
          + (f", complete for {a.complete}" if a.complete else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
