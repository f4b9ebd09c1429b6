#!/usr/bin/env python3
"""Where a GPU step's time goes, from Nsight Compute's per-kernel times
(standard library only).

    ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw \\
        train_step_bench ... --steps=1 --warmup=0 > kernels.csv
    kernel_times.py kernels.csv [--top N]

Prints the total, then the N kernels (grouped by name, template arguments
kept) that took the most time: share, milliseconds, launches, name.
"""
import argparse
import csv
import sys
from collections import defaultdict

UNITS = {"ns": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0, "nsecond": 1e-6}


def kernel_times(path):
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    # ncu prints its own messages before the table.
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"kernel_times: no ncu table in {path}")
    rows = list(csv.reader(lines[start:]))
    header, units = rows[0], rows[1]
    name_col = header.index("Kernel Name")
    time_col = header.index("gpu__time_duration.sum")
    scale = UNITS.get(units[time_col].strip(), 1e-6)
    totals = defaultdict(lambda: [0, 0.0])  # name -> [launches, ms]
    for r in rows[2:]:
        if len(r) <= time_col or not r[time_col]:
            continue
        t = float(r[time_col].replace(",", "")) * scale
        totals[r[name_col]][0] += 1
        totals[r[name_col]][1] += t
    return totals


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--top", type=int, default=15)
    a = p.parse_args()
    totals = kernel_times(a.csv)
    total = sum(ms for _, ms in totals.values())
    launches = sum(n for n, _ in totals.values())
    print(f"{total:.2f} ms in {launches} kernel launches")
    for name, (n, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1])[: a.top]:
        print(f"{100 * ms / max(total, 1e-30):5.1f}%  {ms:8.3f} ms  {n:5d}  {name[:110]}")


if __name__ == "__main__":
    main()
