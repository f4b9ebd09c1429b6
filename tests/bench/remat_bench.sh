#!/usr/bin/env bash
# Memory and time of activation recomputation: trains the same V-MoE on
# Fashion-MNIST with and without --remat, alternating runs (the machine is
# shared and noisy), and prints each run and a table of the medians: peak
# resident memory (/usr/bin/time -v "Maximum resident set size"; the largest
# rank's) and the mean step time (after warm-up steps), with their ratios.
# Then vmoe_plan's activation estimate for the same configuration.
#   tests/bench/remat_bench.sh [--rounds=R] [--ranks=N] [--steps=S] [vmoe_train flags...]
# The default model is chosen so that activations dominate memory: batch 512
# of 17 tokens, 8 blocks of width 64, MoE every other block (E=8, k=2).
# Later flags override the defaults. Binaries: $VMOE_BUILD_DIR (default
# build/); data: $VMOE_DATA_DIR (default data/fashion_mnist, imported from
# /usr/share/datasets/fashion-mnist when missing, as launch/run.sh does).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${VMOE_BUILD_DIR:-$ROOT/build}
DATA=${VMOE_DATA_DIR:-$ROOT/data/fashion_mnist}
TRAIN=$BUILD/launch/vmoe_train
PLAN=$BUILD/launch/vmoe_plan
rounds=2
ranks=1
steps=12
warmup=2  # steps left out of the mean (first allocations, BLAS buffers)
args=()
for a in "$@"; do
  case $a in
    --rounds=*) rounds=${a#--rounds=} ;;
    --ranks=*) ranks=${a#--ranks=} ;;
    --steps=*) steps=${a#--steps=} ;;
    *) args+=("$a") ;;
  esac
done
((steps > warmup)) || { echo "remat_bench: --steps must exceed $warmup" >&2; exit 1; }
[[ -x $TRAIN ]] || { echo "remat_bench: build first ($TRAIN missing)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "remat_bench: needs /usr/bin/time (GNU time)" >&2; exit 1; }
if [[ ! -f $DATA/train.h5 ]]; then
  "$BUILD/launch/vmoe_import" --format=fashion_mnist --input=/usr/share/datasets/fashion-mnist \
    --output="$DATA" >/dev/null
fi
model=(--batch_size=512 --patch_size=7 --hidden_size=64 --num_layers=8 --num_heads=4
  --mlp_dim=256 --moe_layers=every:2 --num_experts=8 --num_selected=2 --group_size=8 "${args[@]}")
batch=512
for a in "${model[@]}"; do [[ $a == --batch_size=* ]] && batch=${a#--batch_size=}; done

export OPENBLAS_NUM_THREADS=1
launcher=()
if ((ranks > 1)); then
  [[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  launcher=(mpirun -np "$ranks" --oversubscribe)
fi
work=$(mktemp -d /tmp/remat_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One run: prints "<peak RSS MiB> <mean step s>".
run() {  # NAME REMAT
  local dir=$work/$1
  # /usr/bin/time inside mpirun: one report per rank (on stderr), the largest counts.
  "${launcher[@]}" /usr/bin/time -v "$TRAIN" --train_data="$DATA/train.h5" --run_dir="$dir" \
    --total_steps="$steps" --log_every=1 --checkpoint_every=0 --warmup_steps=5 \
    "${model[@]}" --remat="$2" >"$dir.out" 2>"$dir.err" || { cat "$dir.err" >&2; exit 1; }
  local rss step
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\)/\1/p' "$dir.err" |
        sort -n | tail -n 1)
  step=$(sed -n 's/.*"images_per_s": \([0-9.e+-]*\).*/\1/p' "$dir/metrics.jsonl" |
         awk -v b="$batch" -v w="$warmup" 'NR > w { s += b / $1; n++ } END { printf "%.4f", s / n }')
  awk -v k="$rss" -v s="$step" 'BEGIN { printf "%.1f %s\n", k / 1024, s }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "vmoe_train ${model[*]} (ranks $ranks, $steps steps, mean over steps > $warmup)"
rss_plain=() step_plain=() rss_remat=() step_remat=()
for ((i = 0; i < rounds; i++)); do
  read -r r s < <(run "plain_$i" false)
  [[ -n ${r:-} ]] || exit 1
  rss_plain+=("$r") step_plain+=("$s")
  echo "round $i  no remat: peak RSS $r MiB, step $s s"
  read -r r s < <(run "remat_$i" true)
  [[ -n ${r:-} ]] || exit 1
  rss_remat+=("$r") step_remat+=("$s")
  echo "round $i  --remat:  peak RSS $r MiB, step $s s"
done
rp=$(median "${rss_plain[@]}") sp=$(median "${step_plain[@]}")
rr=$(median "${rss_remat[@]}") sr=$(median "${step_remat[@]}")
awk -v rp="$rp" -v sp="$sp" -v rr="$rr" -v sr="$sr" 'BEGIN {
  printf "\n%-16s %16s %15s\n", "", "peak RSS (MiB)", "mean step (s)"
  printf "%-16s %16.1f %15.4f\n", "no remat", rp, sp
  printf "%-16s %16.1f %15.4f\n", "--remat", rr, sr
  printf "%-16s %16.3f %15.3f\n", "remat / plain", rr / rp, sr / sp
  printf "%-16s %16.1f\n", "saved (MiB)", rp - rr }'

# The planner's estimate of the same run (per rank), to set against the measured saving.
if [[ -x $PLAN ]]; then
  "$PLAN" --ranks="$ranks" --image_size=28 --image_channels=1 --num_classes=10 \
    --multi_label=false "${model[@]}" --json="$work/plan.json" >/dev/null
  total() { sed -n "s/.*\"memory_$1total_bytes\": \([0-9.e+]*\).*/\1/p" "$work/plan.json"; }
  awk -v a="$(total '')" -v r="$(total remat_)" -v m="$(awk -v p="$rp" -v q="$rr" 'BEGIN { print p - q }')" 'BEGIN {
    mib = 1048576
    printf "vmoe_plan: %.1f MiB as implemented, %.1f MiB with remat (ratio %.3f): saves %.1f MiB; measured %.1f MiB\n",
      a / mib, r / mib, r / a, (a - r) / mib, m }'
fi
