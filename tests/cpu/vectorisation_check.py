#!/usr/bin/env python3
"""Fails when a loop marked `#pragma omp simd` in the CPU loop files
(core/cpu/cpu_loops.cpp, cpu_softmax.cpp and the lanes they share) does not
vectorise: compiles each file with the build's own flags (from
compile_commands.json) for each -march level named, and reads GCC's
vectorisation report (-fopt-info-vec). A branch in a loop body, or a libm call
without a vector form, turns a loop scalar; this says which and where.

usage: vectorisation_check.py BUILD_DIR [march ...]   (default x86-64-v3 x86-64-v4)
"""
import json
import os
import re
import shlex
import subprocess
import sys

SOURCES = ["core/cpu/cpu_loops.cpp", "core/cpu/cpu_softmax.cpp"]
HEADERS = ["core/cpu/cpu_lanes.h"]  # their loops are reported where inlined

def simd_loops(path):
    """(first line, last line, function) of each loop under `#pragma omp simd`:
    GCC reports a loop at its pragma, its header or a line of its body."""
    loops, func = [], "?"
    lines = open(path).read().split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(?:VMOE_CPU_CLONES |VMOE_CPU_INLINE |inline )?\w[\w:<>, ]*\b(\w+)\(", line)
        if m:
            func = m.group(1)
        if not line.strip().startswith("#pragma omp simd"):
            continue
        end, depth = i + 1, 0
        while True:  # to the closing brace, or the statement's semicolon
            depth += lines[end].count("{") - lines[end].count("}")
            if depth == 0 and lines[end].rstrip().endswith((";", "}")):
                break
            end += 1
        loops.append((i + 1, end + 1, func))
    return loops

def build_command(entries, source):
    """The build's compile command for source, without -march, -o and -c, and its path."""
    for entry in entries:
        if entry["file"].endswith(source):
            args = shlex.split(entry["command"])
            out, skip = [], False
            for a in args:
                if skip:
                    skip = False
                elif a in ("-o", "-c"):
                    skip = True
                elif not a.startswith("-march="):
                    out.append(a)
            return out, entry["file"]
    raise SystemExit(f"{source} is not in compile_commands.json")

def main():
    build_dir = sys.argv[1]
    levels = sys.argv[2:] or ["x86-64-v3", "x86-64-v4"]
    entries = json.load(open(f"{build_dir}/compile_commands.json"))
    commands = [build_command(entries, s) for s in SOURCES]
    root = commands[0][1][: -len(SOURCES[0])]
    files = [root + f for f in SOURCES + HEADERS]
    failed = False
    for march in levels:
        done = set()  # (file name, line) that GCC vectorised, in any source
        for base, path in commands:
            cmd = base + [f"-march={march}", "-DVMOE_CPU_SINGLE_ISA", "-fopt-info-vec-optimized",
                          "-c", path, "-o", "/dev/null"]
            report = subprocess.run(cmd, capture_output=True, text=True)
            if report.returncode != 0:
                print(report.stderr)
                return 1
            for line in report.stderr.splitlines():
                m = re.match(r"(.*?):(\d+):\d+: optimized: .*vectorized", line)
                if m:
                    done.add((os.path.basename(m.group(1)), int(m.group(2))))
        total = missed = 0
        for f in files:
            name = os.path.basename(f)
            for a, b, func in simd_loops(f):
                total += 1
                if not any((name, n) in done for n in range(a, b + 1)):
                    missed += 1
                    print(f"{march}: {name}:{a} ({func}) did not vectorise")
        print(f"{march}: {total - missed} of {total} simd loops vectorised")
        failed |= missed > 0
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
