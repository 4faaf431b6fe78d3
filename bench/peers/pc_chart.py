#!/usr/bin/env python3
"""PNG charts of pc_tput.sh / pc_rtt.sh output directories (matplotlib; Debian's
python3-matplotlib, so run it with /usr/bin/python3).

  pc_chart.py tput OUTDIR PNG    -> slowest receiver's msg/s per (size, loss), one bar per row,
                                    median with a min..max whisker, log scale
  pc_chart.py sizes OUTDIR PNG   -> a size sweep: goodput MB/s against message size, one line per
                                    row, median with min..max whiskers, log-log
  pc_chart.py rtt OUTDIR PNG     -> ping-pong RTT p50 and p99 per implementation, median with
                                    min..max whiskers
"""
import os
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pc_summarize import load_rtt, load_runs, med, size_name  # noqa: E402


def spread(values):
    """(median, [[below], [above]]) for errorbar / bar yerr."""
    v = sorted(values)
    m = med(v)
    return m, [[m - v[0]], [v[-1] - m]]


def tput(out, png):
    runs = load_runs(out)
    labels = list(dict.fromkeys(k[0] for k in runs))
    cols = sorted({(k[1], k[2]) for k in runs})
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(cols) + 3), 5))
    for i, label in enumerate(labels):
        xs, ys, lo, hi = [], [], [], []
        for j, c in enumerate(cols):
            v = [r['rate'] for k, r in runs.items() if (k[0], k[1], k[2]) == (label, *c)]
            if not v:
                continue
            m, e = spread(v)
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(m)
            lo.append(e[0][0])
            hi.append(e[1][0])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=label)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([f'{size_name(s)}, {l / 10:g} % loss' for s, l in cols])
    ax.set_yscale('log')
    ax.set_ylabel('slowest receiver, messages/s')
    ax.set_title('1 sender -> 2 receivers across namespaces (median, min..max)')
    ax.grid(axis='y', which='both', alpha=0.3)
    ax.legend(fontsize='small', ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def sizes(out, png):
    runs = load_runs(out)
    labels = list(dict.fromkeys(k[0] for k in runs))
    fig, ax = plt.subplots(figsize=(9, 5))
    all_sizes = sorted({k[1] for k in runs})
    for label in labels:
        xs, ys, lo, hi = [], [], [], []
        for size in all_sizes:
            v = [r['mbps'] for k, r in runs.items() if k[0] == label and k[1] == size and k[2] == 0]
            if not v:
                continue
            m, e = spread(v)
            xs.append(size)
            ys.append(m)
            lo.append(e[0][0])
            hi.append(e[1][0])
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker='o', capsize=3, label=label)
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xticks(all_sizes)
    ax.set_xticklabels([size_name(s) for s in all_sizes])
    ax.set_xlabel('message size')
    ax.set_ylabel('slowest receiver, goodput MB/s')
    ax.set_title('Size sweep, 0 % loss (median, min..max)')
    ax.grid(which='both', alpha=0.3)
    ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def rtt(out, png):
    res = {k: v for k, v in load_rtt(out).items() if any(a for a, _ in v)}
    impls = list(res)
    fig, axes = plt.subplots(1, 2, figsize=(11, max(3, 0.45 * len(impls) + 1.5)), sharey=True)
    for ax, idx, title in ((axes[0], 0, 'RTT p50, us'), (axes[1], 1, 'RTT p99, us')):
        ys, ms, lo, hi = [], [], [], []
        for i, impl in enumerate(impls):
            v = [x[idx] for x in res[impl] if x[idx]]
            if not v:
                continue
            m, e = spread(v)
            ys.append(i)
            ms.append(m)
            lo.append(e[0][0])
            hi.append(e[1][0])
        ax.barh(ys, ms, xerr=[lo, hi], capsize=3, color='tab:blue' if idx == 0 else 'tab:orange')
        if idx == 1:  # p99 spans microseconds to tens of milliseconds; p50 stays linear from 0
            ax.set_xscale('log')
        ax.set_title(title)
        ax.grid(axis='x', which='both', alpha=0.3)
    axes[0].set_yticks(range(len(impls)))
    axes[0].set_yticklabels(impls)
    axes[0].invert_yaxis()
    fig.suptitle('64 B ping-pong across namespaces (median, min..max)')
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == '__main__':
    if len(sys.argv) != 4 or sys.argv[1] not in ('tput', 'sizes', 'rtt'):
        sys.exit(__doc__)
    {'tput': tput, 'sizes': sizes, 'rtt': rtt}[sys.argv[1]](sys.argv[2], sys.argv[3])
