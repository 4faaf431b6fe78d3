#!/usr/bin/env python3
"""Plot the group-size sweep against the number of members, one line per (mode, senders):
feedback datagrams reaching the senders per data datagram (left) and every datagram on
the network per data datagram (right).

    TMC_SCALE_TABLE=scale.tsv build/tests/tmc_sim_tests --no-skip -tc='bench: group size sweep*'
    python3 bench/scale/plot.py scale.tsv docs/img/scale-feedback.png

Needs matplotlib (apt-get install python3-matplotlib)."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    lines = {}
    for r in rows:
        key = f"{r['mode']}, {r['senders']} sender{'s' if r['senders'] != '1' else ''}"
        lines.setdefault(key, []).append(
            (int(r["n"]), float(r["feedback_per_datagram"]), float(r["datagrams_per_datagram"])))
    fig, (ax, net) = plt.subplots(1, 2, figsize=(11, 4))
    for key, pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
        net.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=key)
    ax.axhline(2.0, color="grey", linestyle="--", linewidth=1, label="bound: 2")
    ax.set_xscale("log")
    ax.set_xlabel("members")
    ax.set_ylabel("feedback at the senders per data datagram")
    ax.set_title("Simulator, 1 % loss: feedback")
    ax.legend(fontsize=8)
    net.set_xscale("log")
    net.set_xlabel("members")
    net.set_ylabel("datagrams sent per data datagram")
    net.set_title("Simulator, 1 % loss: network load")
    net.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
