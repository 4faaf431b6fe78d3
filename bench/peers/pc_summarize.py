#!/usr/bin/env python3
"""Summarise pc_tput.sh / pc_rtt.sh output directories.

  pc_summarize.py tput OUTDIR   -> per (row, size, loss): slowest-receiver msg/s median (min..max)
                                   over the repetitions, delivered/sent, CPU ns per delivered msg,
                                   and libTMC/peer ratios (median of the per-repetition ratios)
  pc_summarize.py pivot OUTDIR  -> the same data compact: rows x (size, loss) rate table, then the
                                   libTMC/peer ratio table and CPU ns per delivered message
  pc_summarize.py rtt OUTDIR    -> per implementation: RTT p50 / p99 median (min..max), p50 vs
                                   raw and vs Aeron's embedded busy-spin (aeron-emb-mc, the
                                   multicast one, or aeron-emb)
  pc_summarize.py loss OUTDIR   -> per (row, size) run with LOSSES="0 10": each repetition's rate
                                   at 1 % loss / its rate at 0 % loss, and how many held >= 0.8

Receiver rate = distinct messages delivered / the receiver's window (first..last delivery),
the window floored at half the sender's sending time (as libTMC's bench/reliable_mcast.cpp
report does). "slowest" = the lower of the two receivers in that run.
"""
import glob, os, re, statistics, sys


def kv(line):
    return dict(re.findall(r'(\w+)=([^\s]+)', line))


def first(path, pat):
    try:
        for line in open(path, errors='replace'):
            if re.search(pat, line):
                return kv(line)
    except FileNotFoundError:
        pass
    return None


def parse_case(base, label):
    """-> dict(sent, send_s, recv=[(received, window_s, complete_flag)], cpu_ns or None)"""
    if label == 'raw':
        s = first(base + '.s', r'^UDP_SEND')
        rs = [first(base + f'.r{i}', r'^UDP_RECV') for i in (1, 2)]
        if not s or not all(rs):
            return None
        sent, send_s = float(s['sent']), float(s['send_time_s'])
        recv = [(float(r['recv_unique']), float(r['recv_time_s'])) for r in rs]
        return dict(sent=sent, send_s=send_s, recv=recv, cpu=None)
    if label == 'p-epgm':
        s = first(base + '.s', r'^PUB ep=')
        rs = [first(base + f'.r{i}', r'^SUB ') for i in (1, 2)]
        if not s or not all(rs):
            return None
        sent, send_s = float(s['sent']), float(s['send_time_s'])
        recv = [(float(r['recv_unique']), float(r['recv_time_s'])) for r in rs]
        return dict(sent=sent, send_s=send_s, recv=recv, cpu=None)
    s = first(base + '.s', r'^result ')
    rs = [first(base + f'.r{i}', r'^result ') for i in (1, 2)]
    if not s or not all(rs):
        return None
    sent, send_s = float(s['sent']), float(s['elapsed_ns']) / 1e9
    recv = [(float(r['received']), float(r['window_ns']) / 1e9) for r in rs]
    cpu = float(s['cpu_ns']) + sum(float(r['cpu_ns']) for r in rs)
    d = first(base + '.drvcpu', r'^driver_cpu_ns')
    if d:
        cpu += sum(float(v) for v in d.values())
    return dict(sent=sent, send_s=send_s, recv=recv, cpu=cpu)


def med(v):
    return statistics.median(v) if v else float('nan')


def fmt_rate(v):
    v = sorted(v)
    if not v:
        return 'failed'
    f = lambda x: f'{x/1e6:.2f}M' if x >= 999.5e3 else f'{x/1e3:.0f}k' if x >= 1e4 else f'{x/1e3:.1f}k'
    return f'{f(med(v))} ({f(v[0])}..{f(v[-1])})'


def load_cases(out):
    """(size, loss, label) -> {rep: slowest receiver msg/s or None}."""
    cases = {}
    for line in open(os.path.join(out, 'index.txt')):
        k = kv(line)
        c = parse_case(os.path.join(out, k['path']), k['label'])
        rate = None
        if c:
            rate = min(got / max(win, 0.5 * c['send_s']) if max(win, 0.5 * c['send_s']) > 0 else 0
                       for got, win in c['recv'])
        cases.setdefault((int(k['size']), int(k['loss']), k['label']), {})[int(k['rep'])] = rate
    return cases


def loss(out):
    cases = load_cases(out)
    print('| row | size | loss | rate at loss / rate at 0 %, per repetition | held >= 0.8 |')
    print('|---|---:|---:|---|---:|')
    for (size, lo, label), reps in sorted(cases.items()):
        if lo == 0:
            continue
        base = cases.get((size, 0, label), {})
        ratios = [reps[r] / base[r] for r in sorted(reps) if reps[r] and base.get(r)]
        held = sum(1 for x in ratios if x >= 0.8)
        print(f'| {label} | {size} B | {lo / 10:g} % | {" ".join(f"{x:.2f}" for x in ratios)} | '
              f'{held}/{len(ratios)} |')


def tput(out):
    cases = {}
    for line in open(os.path.join(out, 'index.txt')):
        k = kv(line)
        c = parse_case(os.path.join(out, k['path']), k['label'])
        key = (int(k['size']), int(k['loss']), k['label'])
        rec = None
        if c:
            rates, complete = [], True
            for got, win in c['recv']:
                w = max(win, 0.5 * c['send_s'])
                rates.append(got / w if w > 0 else 0)
                complete &= got >= c['sent']
            tot = sum(g for g, _ in c['recv'])
            rec = dict(rate=min(rates), complete=complete, frac=min(g for g, _ in c['recv']) / c['sent'] if c['sent'] else 0,
                       cpu=c['cpu'] / tot if c['cpu'] and tot else None)
        drops = [int(k[x]) for x in ('dropped_r1', 'dropped_r2') if k.get(x, '').isdigit()]
        cases.setdefault(key, {})[int(k['rep'])] = (rec, k['status'], drops)
    labels = []
    for (_, _, l) in cases:
        if l not in labels:
            labels.append(l)
    print('| size | loss | row | slowest receiver msg/s, median (min..max) | delivered/sent (worst rcvr, per rep) | '
          'CPU ns/delivered msg (median) | vs aeron | vs aeron-t | vs epgm | vs raw |')
    print('|---:|---:|---|---:|---|---:|---:|---:|---:|---:|')
    for size in sorted({k[0] for k in cases}):
        for loss in sorted({k[1] for k in cases}):
            def per_rep(label):
                return {r: v[0]['rate'] for r, v in cases.get((size, loss, label), {}).items() if v[0]}
            for label in labels:
                reps = cases.get((size, loss, label))
                if not reps:
                    continue
                ok = [v[0] for v in reps.values() if v[0]]
                rates = [x['rate'] for x in ok]
                fr = ' '.join('1' if x['complete'] else f"{x['frac']:.4f}" for x in ok)
                fails = sum(1 for v in reps.values() if not v[0] or v[1] != 'ok')
                if fails:
                    fr += f' ({fails} run(s) failed/timeout)'
                cpus = [x['cpu'] for x in ok if x['cpu']]
                cpu = f'{med(cpus):.0f}' if cpus else '-'
                ratios = []
                mine = per_rep(label)
                for peer in ('aeron', 'aeron-t', 'epgm', 'raw'):
                    if not label.startswith('tmc'):
                        ratios.append('')
                        continue
                    other = per_rep(peer)
                    rr = [mine[r] / other[r] for r in mine if r in other and other[r] > 0]
                    ratios.append(f'{med(rr):.2f} ({min(rr):.2f}..{max(rr):.2f})' if rr else 'n/a')
                print(f'| {size} B | {loss/10:.0f}% | {label} | {fmt_rate(rates)} | {fr} | {cpu} | ' + ' | '.join(ratios) + ' |')
    drops = {}
    for (size, loss, label), reps in cases.items():
        for r, v in reps.items():
            if v[2]:
                drops.setdefault((size, loss, label), []).append(sum(v[2]))
    if drops:
        print('\nnftables drops (both receivers, per run):',
              '; '.join(f'{l} {s}B: {"/".join(map(str, d))}' for (s, lo, l), d in sorted(drops.items())))


def load_runs(out):
    runs = {}
    for line in open(os.path.join(out, 'index.txt')):
        k = kv(line)
        c = parse_case(os.path.join(out, k['path']), k['label'])
        if not c:
            continue
        rates = [g / max(w, 0.5 * c['send_s']) if max(w, 0.5 * c['send_s']) > 0 else 0 for g, w in c['recv']]
        tot = sum(g for g, _ in c['recv'])
        runs[(k['label'], int(k['size']), int(k['loss']), int(k['rep']))] = dict(
            rate=min(rates), complete=all(g >= c['sent'] for g, _ in c['recv']),
            worst=min(g for g, _ in c['recv']) / c['sent'] if c['sent'] else 0,
            cpu=c['cpu'] / tot if c['cpu'] and tot else None)
    return runs


def pivot(out):
    runs = load_runs(out)
    labels = list(dict.fromkeys(k[0] for k in runs))
    cols = sorted({(k[1], k[2]) for k in runs})
    reps = sorted({k[3] for k in runs})
    name = lambda c: f'{c[0] if c[0] < 1024 else "1 KiB"}{" B" if c[0] < 1024 else ""} {c[1]/10:.0f}%'
    print('| row | ' + ' | '.join(name(c) for c in cols) + ' |')
    print('|---|' + '---:|' * len(cols))
    for l in labels:
        cells = []
        for c in cols:
            v = [runs[(l, *c, r)] for r in reps if (l, *c, r) in runs]
            cell = fmt_rate([x['rate'] for x in v])
            short = [x for x in v if not x['complete']]
            if short and not l.startswith(('raw', 'tmc-be', 'h-raw')):
                cell += ' **' + ','.join(f"{x['worst']:.2f}" for x in short) + ' delivered**'
            cells.append(cell)
        print(f'| {l} | ' + ' | '.join(cells) + ' |')
    print()
    print('| libTMC row / peer | ' + ' | '.join(name(c) for c in cols) + ' |')
    print('|---|' + '---:|' * len(cols))
    for l in [x for x in labels if x.startswith('tmc')]:
        for peer in ('aeron', 'aeron-t', 'epgm', 'raw'):
            if peer not in labels:
                continue
            cells = []
            for c in cols:
                rr = [runs[(l, *c, r)]['rate'] / runs[(peer, *c, r)]['rate'] for r in reps
                      if (l, *c, r) in runs and (peer, *c, r) in runs and runs[(peer, *c, r)]['rate'] > 0]
                cells.append(f'{med(rr):.2f} ({min(rr):.2f}..{max(rr):.2f})' if rr else 'n/a')
            print(f'| {l} / {peer} | ' + ' | '.join(cells) + ' |')
    print()
    print('CPU ns per delivered message (all processes, Aeron incl. its 3 drivers), median: ' + '; '.join(
        f'{name(c)}: ' + ', '.join(f'{l} {med([runs[(l, *c, r)]["cpu"] for r in reps if (l, *c, r) in runs and runs[(l, *c, r)]["cpu"]]):.0f}'
                                   for l in labels if any((l, *c, r) in runs and runs[(l, *c, r)]['cpu'] for r in reps))
        for c in cols))


def hdr_percentiles(path):
    p50 = p99 = None
    for line in open(path, errors='replace'):
        m = re.match(r'\s*([0-9.]+)\s+([01]\.[0-9]+)\s+\d+\s+', line)
        if not m:
            continue
        v, q = float(m.group(1)), float(m.group(2))
        if p50 is None and q >= 0.5:
            p50 = v
        if p99 is None and q >= 0.99:
            p99 = v
    return p50, p99


def rtt(out):
    res = {}
    for f in sorted(glob.glob(os.path.join(out, 'r*_*.txt'))):
        m = re.match(r'r(\d+)_(.+)\.txt$', os.path.basename(f))
        if not m:
            continue
        impl = m.group(2)
        p50 = p99 = None
        if impl.startswith('aeron-emb'):
            k = first(f, r'^rounds=')
            if k and int(k['rounds']) > 0:
                p50, p99 = float(k['p50_ns']) / 1e3, float(k['p99_ns']) / 1e3
        elif impl.startswith('aeron'):
            p50, p99 = hdr_percentiles(f)
        else:
            for line in open(f):
                cols = [c.strip() for c in line.strip().strip('|').split('|')]
                if len(cols) >= 6 and cols[0] == impl and cols[1].endswith('B') and cols[2] != 'failed':
                    p50, p99 = float(cols[3]), float(cols[4])
        res.setdefault(impl, []).append((p50, p99))
    print('| implementation | RTT p50 us, median (min..max) | RTT p99 us, median (min..max) | p50 vs raw | '
          'p50 vs Aeron busy-spin |')
    print('|---|---:|---:|---:|---:|')
    raw50 = med([a for a, _ in res.get('raw', []) if a])
    anchor = 'aeron-emb-mc' if res.get('aeron-emb-mc') else 'aeron-emb'
    aeron50 = med([a for a, _ in res.get(anchor, []) if a])
    for impl, v in res.items():
        a = sorted(x for x, _ in v if x)
        b = sorted(y for _, y in v if y)
        if not a:
            print(f'| {impl} | failed | | | |')
            continue
        vs_aeron = f'{med(a)/aeron50:.2f}' if aeron50 == aeron50 else '-'
        print(f'| {impl} | {med(a):.1f} ({a[0]:.1f}..{a[-1]:.1f}) | {med(b):.1f} ({b[0]:.1f}..{b[-1]:.1f}) | '
              f'{med(a)/raw50:.2f} | {vs_aeron} |')


if __name__ == '__main__':
    {'tput': tput, 'pivot': pivot, 'rtt': rtt, 'loss': loss}[sys.argv[1]](sys.argv[2])
