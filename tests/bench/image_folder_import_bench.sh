#!/usr/bin/env bash
# Images/s of vmoe_import --format=image_folder on pass-through JPEGs (read,
# header check, stored as they are) with one thread in one process, and with
# one rank per core. Makes N 224x224 JPEGs with libjpeg-turbo's cjpeg (10
# classes) under SCRATCH first; the files are then in the page cache, so this
# measures our side, not the disk.
#   tests/bench/image_folder_import_bench.sh [N=4000] [SCRATCH=/tmp/vmoe_folder_bench]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VMOE_BUILD_DIR:-$ROOT/build}/launch
n=${1:-4000}
work=${2:-/tmp/vmoe_folder_bench}
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [[ ! -f $work/src/.complete_$n ]]; then
  rm -rf "$work"
  /usr/bin/python3 - "$work/src" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f"{root}/class_{i % 10}"
    os.makedirs(d, exist_ok=True)
    row = bytes((i * 7 + x * 3 + c * 50) % 256 for x in range(224) for c in range(3))
    with open(f"{d}/{i:06d}.ppm", "wb") as f:
        f.write(b"P6 224 224 255\n" + b"".join(row[(y * 3) % 672:] + row[:(y * 3) % 672] for y in range(224)))
PY
  find "$work/src" -name '*.ppm' -print0 | xargs -0 -P "$(nproc)" -n 64 sh -c \
    'for f; do cjpeg -quality 90 "$f" > "${f%.ppm}.jpg" && rm "$f"; done' sh
  touch "$work/src/.complete_$n"
fi
bytes=$(du -sb "$work/src" | cut -f1)
run() {  # label, then the command
  local label=$1; shift
  rm -rf "$work/out"
  local t0=$(date +%s.%N)
  "$@" --format=image_folder --input="$work/src" --output="$work/out" --images_per_shard=1000 >/dev/null
  local t1=$(date +%s.%N)
  awk -v n="$n" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v l="$label" \
    'BEGIN { s = t1 - t0; printf "%-28s %6.0f images/s  %6.1f MB/s  (%d JPEGs, %.2f s)\n", l, n / s, b / s / 1e6, n, s }'
}
echo "image_folder import: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
run "1 process, 1 thread" "$BIN/vmoe_import" --threads=1
run "$(nproc) ranks, 1 thread each" mpirun -np "$(nproc)" "$BIN/vmoe_import" --threads=1
