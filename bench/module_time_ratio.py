#!/usr/bin/env python3
"""Time of a stage loaded from a module against the same stage built in, interleaved.

Runs each pair of Google Benchmark cases (built in, loaded) once per round, alternating
which goes first, and prints the median CPU time of each and the loaded/built-in ratio of
every round. Only ratios measured in the same run mean anything on a shared machine; on a
quiet one the medians are the figures of docs/benchmarks.md ("Module stages vs built-in").

    bench/module_time_ratio.py [BUILD_DIR] [ROUNDS]     # defaults: build 7
"""
import json
import os
import statistics
import subprocess
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
overhead = os.path.join(build, "bench", "tmc_module_overhead")
cost = os.path.join(build, "modules", "tmc_module_cost")
pairs = [(overhead, "BM_pipeline_builtin", "BM_pipeline_module"),
         (cost, "BM_fec_linked", "BM_fec_loaded"),
         (cost, "BM_fec_linked_loss", "BM_fec_loaded_loss"),
         (cost, "BM_causal_linked", "BM_causal_loaded")]


def cpu_ns(binary: str, name: str) -> float:
    out = subprocess.run([binary, f"--benchmark_filter=^{name}$", "--benchmark_min_time=0.2",
                          "--benchmark_format=json"], capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["benchmarks"][0]["cpu_time"])


times: dict[str, list[float]] = {}
for r in range(rounds):
    for binary, a, b in pairs:
        for name in (a, b) if r % 2 == 0 else (b, a):
            times.setdefault(name, []).append(cpu_ns(binary, name))
print(f"load average {os.getloadavg()[0]:.1f} at the end, {rounds} rounds")
for _, a, b in pairs:
    ma, mb = statistics.median(times[a]), statistics.median(times[b])
    ratios = sorted(y / x for x, y in zip(times[a], times[b]))
    print(f"{a:20s} {ma:7.1f} ns   {b:20s} {mb:7.1f} ns   {100 * (mb / ma - 1):+6.1f} %   "
          f"median ratio {statistics.median(ratios):.3f} (rounds {' '.join(f'{x:.2f}' for x in ratios)})")
