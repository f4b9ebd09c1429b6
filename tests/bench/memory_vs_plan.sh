#!/usr/bin/env bash
# vmoe_plan's per-rank memory estimate against what vmoe_train really uses on
# this machine (CPU backend), for a few small Fashion-MNIST configurations:
# V-MoE and the dense ViT at batch 128 and 512 on one process, and V-MoE on 2
# ranks at 128 images per rank (as "vmoe b128" plus expert parallelism's
# exchange buffers: 4 experts per rank). Prints a table and exits 1 if
# any |error| exceeds --max_error percent (error = (estimate - measured) /
# measured). Takes about a minute on 2 cores; not a ctest.
#   tests/bench/memory_vs_plan.sh [--steps=20] [--max_error=15] [flags for both
#                                 vmoe_train and vmoe_plan, e.g. --precision=bf16]
# VMOE_BUILD_DIR (default build) and VMOE_DATA_DIR (default data/fashion_mnist,
# imported from /usr/share/datasets/fashion-mnist if missing) as in launch/run.sh.
#
# Measured = peak resident set of the training run ("Maximum resident set
# size" of /usr/bin/time -v, per rank) minus what the planner deliberately
# leaves out: the binary, shared libraries, OpenBLAS/HDF5/MPI state and
# the data loader's prefetched batches (launch/README.md, "vmoe_plan"). That
# overhead is measured the same way, on the same binary, data, global batch,
# rank count and launcher, with a one-block D=8 dense model for 1 step (its
# RSS minus the planner's estimate for that tiny model itself, 0.2-10 MiB,
# so that only the overhead is subtracted). The baseline takes the same batch
# because the loader's buffers grow with it (~3 batches of 28x28 floats:
# 1 MiB at 128, 4.6 MiB at 512); a `--help` run would miss them, and MPI's
# and HDF5's initialisation too. Each run writes a final checkpoint, the
# baseline too, into a temporary run directory that is removed at the end.
# Resident memory counts only touched pages: the MoE capacity buffers are
# planned at full size but filled as the router spreads tokens, so runs much
# shorter than 20 steps measure less (5 steps: V-MoE errors of +10-15%).
# Use a build without CUDA (-DVMOE_CUDA=OFF, VMOE_BUILD_DIR=...): with the
# CUDA libraries linked, the resident pages they bring vary from run to run
# by 100 MiB and more, which the baseline cannot subtract (errors of 30-110%).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${VMOE_BUILD_DIR:-build}
DATA=${VMOE_DATA_DIR:-data/fashion_mnist}
steps=20
max_error=15
extra=()
for a in "$@"; do
  case $a in
    --steps=*) steps=${a#--steps=} ;;
    --max_error=*) max_error=${a#--max_error=} ;;
    *) extra+=("$a") ;;
  esac
done
TRAIN=$BUILD/launch/vmoe_train
PLAN=$BUILD/launch/vmoe_plan
for b in "$TRAIN" "$PLAN"; do
  [[ -x $b ]] || { echo "memory_vs_plan: build first ($b missing)" >&2; exit 2; }
done
[[ -x /usr/bin/time ]] || { echo "memory_vs_plan: needs /usr/bin/time (Debian package 'time')" >&2; exit 2; }
if [[ ! -f $DATA/train.h5 ]]; then
  "$BUILD/launch/vmoe_import" --format=fashion_mnist --input=/usr/share/datasets/fashion-mnist \
    --output="$DATA"
fi

export OPENBLAS_NUM_THREADS=1
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# name | ranks | flags (given to vmoe_train and vmoe_plan alike; --batch_size is global)
configs=(
  "vmoe b128|1|--flagfile=launch/configs/vmoe_fmnist.flags --batch_size=128"
  "vmoe b512|1|--flagfile=launch/configs/vmoe_fmnist.flags --batch_size=512"
  "dense b128|1|--flagfile=launch/configs/vit_fmnist.flags --batch_size=128"
  "dense b512|1|--flagfile=launch/configs/vit_fmnist.flags --batch_size=512"
  "vmoe b256 2 ranks|2|--flagfile=launch/configs/vmoe_fmnist.flags --batch_size=256"
)
# The baseline's model: one block, D=8, one head, dense (flags placed last win).
TINY=(--num_layers=1 --hidden_size=8 --num_heads=1 --mlp_dim=8 --moe_layers= --pre_logits_size=0
      --eval_capacity_sweep=)

run=0
# measure RANKS OUT_PREFIX FLAGS...: trains under /usr/bin/time -v, one report per rank in
# OUT_PREFIX.<rank>; the training log goes to OUT_PREFIX.log.
measure() {
  local ranks=$1 out=$2
  shift 2
  run=$((run + 1))
  local args=("$TRAIN" --train_data="$DATA/train.h5" --run_dir="$TMP/run$run" --log_every=1000000
              "$@")
  local status=0
  if ((ranks == 1)); then
    /usr/bin/time -v -o "$out.0" "${args[@]}" >"$out.log" 2>&1 || status=$?
  else
    # One report per rank: the inner sh expands the rank that mpirun gives it.
    # shellcheck disable=SC2016
    mpirun -np "$ranks" --oversubscribe sh -c \
      'exec /usr/bin/time -v -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$out" "${args[@]}" \
      >"$out.log" 2>&1 || status=$?
  fi
  if ((status != 0)); then
    echo "memory_vs_plan: vmoe_train failed (exit $status): ${args[*]}" >&2
    tail -n 20 "$out.log" >&2
    exit 2
  fi
}
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.2f", $2 / 1024}' "$1"; }
# plan_mib RANKS FLAGS...: vmoe_plan's "as implemented" per-rank total (its --json), in MiB.
plan_mib() {
  local ranks=$1
  shift
  "$PLAN" --image_size="$shape" --image_channels="$channels" --num_classes="$classes" \
    --multi_label=false --ranks="$ranks" "$@" --json="$TMP/plan.json" >/dev/null
  awk -F': ' '/"memory_total_bytes"/ {sub(/,$/, "", $2); printf "%.2f", $2 / 1048576}' \
    "$TMP/plan.json"
}

printf '%-20s %5s %13s %13s %8s   %s\n' config rank "estimate MiB" "measured MiB" "error %" \
  "(peak RSS - overhead [baseline RSS - tiny model's estimate])"
worst=0
failed=0
for entry in "${configs[@]}"; do
  IFS='|' read -r name ranks flags <<<"$entry"
  read -r -a f <<<"$flags"
  measure "$ranks" "$TMP/full" "${f[@]}" "${extra[@]}" --total_steps="$steps"
  measure "$ranks" "$TMP/base" "${f[@]}" "${extra[@]}" "${TINY[@]}" --total_steps=1
  # The dataset's shape for vmoe_plan, from vmoe_train's first line
  # ("... (60000 images 28x28x1, 10 classes) -> ..."); Fashion-MNIST is single-label.
  read -r shape channels classes < <(sed -n \
    's/^vmoe_train: .* images \([0-9]*x[0-9]*\)x\([0-9]*\), \([0-9]*\) classes.*/\1 \2 \3/p' \
    "$TMP/full.log" | head -n 1)
  [[ -n ${classes:-} ]] || { echo "memory_vs_plan: no dataset shape in vmoe_train's output" >&2; exit 2; }
  estimate=$(plan_mib "$ranks" "${f[@]}" "${extra[@]}")
  tiny=$(plan_mib "$ranks" "${f[@]}" "${extra[@]}" "${TINY[@]}")
  for ((r = 0; r < ranks; r++)); do
    peak=$(rss_mib "$TMP/full.$r")
    base=$(rss_mib "$TMP/base.$r")
    row=$(awk -v e="$estimate" -v p="$peak" -v b="$base" -v t="$tiny" 'BEGIN {
      m = p - (b - t); err = 100 * (e - m) / m
      printf "%13.1f %13.1f %+8.1f   (%.1f - %.1f [%.1f - %.1f])", e, m, err, p, b - t, b, t }')
    printf '%-20s %5s %s\n' "$name" "$r" "$row"
    err=$(awk '{print $3}' <<<"$row")
    if awk -v x="$err" -v lim="$max_error" 'BEGIN { exit !(x > lim || x < -lim) }'; then
      failed=$((failed + 1))
    fi
    worst=$(awk -v x="$err" -v w="$worst" 'BEGIN { x += 0; x = x < 0 ? -x : x; print (x > w ? x : w) }')
  done
done
echo "largest |error|: ${worst}% (limit ${max_error}%); $steps training steps per run;" \
  "OpenBLAS core ${OPENBLAS_CORETYPE:-auto}"
if ((failed > 0)); then
  echo "memory_vs_plan: $failed row(s) beyond ${max_error}%" >&2
  exit 1
fi
