#!/usr/bin/env bash
# Times our training step and the PyTorch peer's on the same model and global
# batch, alternating runs (the machine is shared and noisy), and prints every
# run plus the median images/s of each and their ratio. --ranks=N runs ours
# under mpirun -np N and the peer with --world N (both one thread per process).
#   tests/bench/vs_torch.sh [--rounds=R] [--ranks=N] [model flags shared by both,
#                           e.g. --patch=7 --experts=0]
# The peer is ../shared/bench/vmoe_torch.py next to the repository, or $VMOE_TORCH_PEER.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEER=${VMOE_TORCH_PEER:-$ROOT/../shared/bench/vmoe_torch.py}
BENCH=${VMOE_BUILD_DIR:-$ROOT/build}/tests/train_step_bench
rounds=3
ranks=1
args=()
for a in "$@"; do
  case $a in
    --rounds=*) rounds=${a#--rounds=} ;;
    --ranks=*) ranks=${a#--ranks=} ;;
    *) args+=("$a") ;;
  esac
done
launcher=()
if ((ranks > 1)); then
  [[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  launcher=(mpirun -np "$ranks" --oversubscribe)
fi
[[ -x $BENCH ]] || { echo "vs_torch: build first ($BENCH missing)" >&2; exit 1; }
[[ -f $PEER ]] || { echo "vs_torch: no PyTorch peer at $PEER (set VMOE_TORCH_PEER)" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
# The peer's PyTorch multiplies with the same OpenBLAS: both get the kernels
# ours picks (core/cpu/blas_kernels.h), not OpenBLAS's own guess.
OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$("$BENCH" --blas_core)}
export OPENBLAS_CORETYPE
ours=() theirs=()
for ((i = 0; i < rounds; i++)); do
  o=$("${launcher[@]}" "$BENCH" "${args[@]}")
  t=$(/usr/bin/python3 "$PEER" --threads=1 --world="$ranks" "${args[@]}")
  echo "ours:  $o"
  echo "torch: $t"
  ours+=("$(sed -n 's/.*images\/s=\([0-9.]*\).*/\1/p' <<<"$o")")
  theirs+=("$(sed -n 's/.*images\/s=\([0-9.]*\).*/\1/p' <<<"$t")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mo=$(median "${ours[@]}")
mt=$(median "${theirs[@]}")
# Each round's two runs are back to back: their ratio cancels the machine's
# slower spells (a shared VM drifts by +-10%), so its median is printed too.
ratios=()
for ((i = 0; i < rounds; i++)); do ratios+=("$(awk -v o="${ours[i]}" -v t="${theirs[i]}" 'BEGIN { print o / t }')"); done
mr=$(median "${ratios[@]}")
awk -v o="$mo" -v t="$mt" -v r="$mr" -v n="$ranks" -v c="$OPENBLAS_CORETYPE" 'BEGIN {
  printf "median images/s: ours %.1f, torch %.1f, ratio %.2fx; median of the rounds'"'"' ratios %.2fx (%d process(es), one thread each, OpenBLAS %s kernels for both)\n", o, t, o / t, r, n, c }'
