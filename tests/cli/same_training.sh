#!/usr/bin/env bash
# A flag that must not change training (--remat, --attention_pad_to): the
# same configuration and seed trained with --FLAG=A and --FLAG=B logs the
# same train records (loss, auxiliary loss, gradient norm, routing metrics;
# all but the timings) character for character, for a dense ViT on 1 rank,
# a V-MoE (noisy token routing) and a Mobile V-MoE (image routing) with
# experts sharded over 2 ranks; extra flags (e.g. --precision=bf16) apply
# to every run.
#   same_training.sh MPIEXEC VMOE_TRAIN DATA_DIR WORK_DIR FLAG A B [FLAGS...]
set -euo pipefail
mpiexec=$1
train=$2
data=$3
work=$4
flag=$5
values=("$6" "$7")
shift 7
extra=("$@")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$work"
mkdir -p "$work"
common=(--train_data="$data/test.h5" --total_steps=12 --batch_size=32 --hidden_size=32
  --num_layers=4 --num_heads=2 --mlp_dim=64 --patch_size=7 --warmup_steps=3
  --learning_rate=3e-3 --log_every=1 --checkpoint_every=0 --seed=5 "${extra[@]}")
# Train records without the timing fields.
records() { grep '"type": "train"' "$1" | sed -E 's/"(images_per_s|elapsed_s)": [^,}]*,? ?//g'; }
status=0
check() {  # NAME RANKS FLAGS...
  local name=$1 ranks=$2
  shift 2
  local a=$work/$name-${values[0]} b=$work/$name-${values[1]}
  for v in "${values[@]}"; do
    "$mpiexec" -np "$ranks" --oversubscribe "$train" "${common[@]}" "$@" --"$flag"="$v" \
      --run_dir="$work/$name-$v" >"$work/$name-$v.log" 2>&1 ||
      { cat "$work/$name-$v.log"; exit 1; }
  done
  grep -q -- "--$flag=${values[1]}" "$b/flags.txt"
  if [[ $flag == attention_pad_to ]]; then  # the layout taken is the one asked for
    grep -q 'attention strided' "$a.log"
    grep -q "attention head-major (tokens padded to a multiple of ${values[1]})" "$b.log"
  fi
  local n
  n=$(records "$a/metrics.jsonl" | wc -l)
  if [[ $n -eq 12 ]] && diff <(records "$a/metrics.jsonl") <(records "$b/metrics.jsonl") \
    >"$work/$name.diff"; then
    echo "$name: $n steps, identical with --$flag=${values[0]} and ${values[1]}"
  else
    echo "$name: train records differ between --$flag=${values[0]} and ${values[1]} ($n steps):"
    head -n 6 "$work/$name.diff"
    status=1
  fi
}
check dense 1
check vmoe 2 --moe_layers=every:2 --num_experts=4 --num_selected=2 --capacity_ratio=0.8 \
  --gshard_loss_weight=0.01 --router_z_loss_weight=0.001
check mobile_vmoe 2 --moe_layers=last:2 --num_experts=4 --num_selected=1 --routing=image
exit $status
