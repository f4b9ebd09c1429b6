#!/usr/bin/env bash
# Times our training step and the PyTorch peer's on the same model and batch,
# alternating runs (the machine is shared and noisy), one thread each, and
# prints every run plus the median images/s of each and their ratio.
#   tests/bench/vs_torch.sh [--rounds=N] [model flags shared by both, e.g. --patch=7 --experts=0]
# The peer is ../shared/bench/vmoe_torch.py next to the repository, or $VMOE_TORCH_PEER.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEER=${VMOE_TORCH_PEER:-$ROOT/../shared/bench/vmoe_torch.py}
BENCH=${VMOE_BUILD_DIR:-$ROOT/build}/tests/train_step_bench
rounds=3
args=()
for a in "$@"; do
  case $a in
    --rounds=*) rounds=${a#--rounds=} ;;
    *) args+=("$a") ;;
  esac
done
[[ -x $BENCH ]] || { echo "vs_torch: build first ($BENCH missing)" >&2; exit 1; }
[[ -f $PEER ]] || { echo "vs_torch: no PyTorch peer at $PEER (set VMOE_TORCH_PEER)" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
ours=() theirs=()
for ((i = 0; i < rounds; i++)); do
  o=$("$BENCH" "${args[@]}")
  t=$(/usr/bin/python3 "$PEER" --threads=1 "${args[@]}")
  echo "ours:  $o"
  echo "torch: $t"
  ours+=("$(sed -n 's/.*images\/s=\([0-9.]*\).*/\1/p' <<<"$o")")
  theirs+=("$(sed -n 's/.*images\/s=\([0-9.]*\).*/\1/p' <<<"$t")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mo=$(median "${ours[@]}")
mt=$(median "${theirs[@]}")
awk -v o="$mo" -v t="$mt" -v c="${OPENBLAS_CORETYPE:-auto}" 'BEGIN {
  printf "median images/s: ours %.1f, torch %.1f, ratio %.2fx (one thread each, OpenBLAS core %s)\n", o, t, o / t, c }'
