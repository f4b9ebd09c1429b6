#!/usr/bin/env bash
# The CPU loops give the same bits at every x86-64 level: the copies built
# for x86-64-v2, -v3 and -v4 (no dispatch) and the library's dispatching one
# hash their outputs over shapes with tails; every hash must agree. The -v4
# copy runs only on a CPU with AVX-512 (skipped, and said, elsewhere).
set -euo pipefail
dir=$1
ref=$("$dir/cpu_loops_bench_v2" --check)
levels=(v3)
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
  levels+=(v4)
else
  echo "note: no AVX-512 on this CPU: the x86-64-v4 copy is not run"
fi
grep -qw avx2 /proc/cpuinfo || { echo "SKIP: no AVX2 on this CPU"; exit 77; }
status=0
for bin in "${levels[@]/#/cpu_loops_bench_}" cpu_loops_bench; do
  if ! diff <(echo "$ref") <("$dir/$bin" --check) > /dev/null; then
    echo "FAIL: $bin differs from the x86-64-v2 copy:"
    diff <(echo "$ref") <("$dir/$bin" --check) || true
    status=1
  else
    echo "$bin: same bits as x86-64-v2 ($(wc -l <<< "$ref") loops)"
  fi
done
exit $status
