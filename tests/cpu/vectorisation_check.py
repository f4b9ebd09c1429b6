#!/usr/bin/env python3
"""Fails when a loop marked `#pragma omp simd` in core/cpu/cpu_loops.cpp does
not vectorise: compiles the file with the build's own flags (from
compile_commands.json) for each -march level named, and reads GCC's
vectorisation report (-fopt-info-vec). A branch in a loop body, or a libm call
without a vector form, turns a loop scalar; this says which and where.

usage: vectorisation_check.py BUILD_DIR [march ...]   (default x86-64-v3 x86-64-v4)
"""
import json
import re
import shlex
import subprocess
import sys

def simd_loops(path):
    """(first line, last line, function) of each loop under `#pragma omp simd`:
    GCC reports a loop at its pragma, its header or a line of its body."""
    loops, func = [], "?"
    lines = open(path).read().split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(?:VMOE_CPU_CLONES )?\w[\w:<>, ]*\b(\w+)\(", line)
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

def build_command(build_dir, path):
    """The build's compile command for path, without -march, -o and -c."""
    for entry in json.load(open(f"{build_dir}/compile_commands.json")):
        if entry["file"].endswith("core/cpu/cpu_loops.cpp"):
            args = shlex.split(entry["command"])
            out, skip = [], False
            for a in args:
                if skip:
                    skip = False
                elif a in ("-o", "-c"):
                    skip = True
                elif not a.startswith("-march="):
                    out.append(a)
            return out
    raise SystemExit(f"cpu_loops.cpp is not in {build_dir}/compile_commands.json")

def main():
    build_dir = sys.argv[1]
    levels = sys.argv[2:] or ["x86-64-v3", "x86-64-v4"]
    base = build_command(build_dir, "core/cpu/cpu_loops.cpp")
    path = [a for a in json.load(open(f"{build_dir}/compile_commands.json"))
            if a["file"].endswith("core/cpu/cpu_loops.cpp")][0]["file"]
    loops = simd_loops(path)
    failed = False
    for march in levels:
        cmd = base + [f"-march={march}", "-DVMOE_CPU_SINGLE_ISA", "-fopt-info-vec-optimized",
                      "-c", path, "-o", "/dev/null"]
        report = subprocess.run(cmd, capture_output=True, text=True)
        if report.returncode != 0:
            print(report.stderr)
            return 1
        done = set()
        for line in report.stderr.splitlines():
            m = re.match(r".*cpu_loops\.cpp:(\d+):\d+: optimized: .*vectorized", line)
            if m:
                done.add(int(m.group(1)))
        missed = [(a, f) for a, b, f in loops if not any(a <= n <= b for n in done)]
        for n, f in missed:
            print(f"{march}: cpu_loops.cpp:{n} ({f}) did not vectorise")
        print(f"{march}: {len(loops) - len(missed)} of {len(loops)} simd loops vectorised")
        failed |= bool(missed)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
