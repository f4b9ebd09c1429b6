#!/usr/bin/env bash
# --remat must not change training: the same configuration and seed trained
# with and without it logs the same train records (loss, auxiliary loss,
# gradient norm, routing metrics; all but the timings) character for
# character, for a dense ViT on 1 rank, a V-MoE (noisy token routing) and a
# Mobile V-MoE (image routing) with experts sharded over 2 ranks.
#   remat_training.sh MPIEXEC VMOE_TRAIN DATA_DIR WORK_DIR
set -euo pipefail
mpiexec=$1
train=$2
data=$3
work=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$work"
mkdir -p "$work"
common=(--train_data="$data/test.h5" --total_steps=12 --batch_size=32 --hidden_size=32
  --num_layers=4 --num_heads=2 --mlp_dim=64 --patch_size=7 --warmup_steps=3
  --learning_rate=3e-3 --log_every=1 --checkpoint_every=0 --seed=5)
# Train records without the timing fields.
records() { grep '"type": "train"' "$1" | sed -E 's/"(images_per_s|elapsed_s)": [^,}]*,? ?//g'; }
status=0
check() {  # NAME RANKS FLAGS...
  local name=$1 ranks=$2
  shift 2
  for remat in false true; do
    "$mpiexec" -np "$ranks" --oversubscribe "$train" "${common[@]}" "$@" --remat=$remat \
      --run_dir="$work/$name-$remat" >"$work/$name-$remat.log" 2>&1 ||
      { cat "$work/$name-$remat.log"; exit 1; }
  done
  grep -q -- '--remat=true' "$work/$name-true/flags.txt"
  local n
  n=$(records "$work/$name-false/metrics.jsonl" | wc -l)
  if [[ $n -eq 12 ]] && diff <(records "$work/$name-false/metrics.jsonl") \
                            <(records "$work/$name-true/metrics.jsonl") >"$work/$name.diff"; then
    echo "$name: $n steps, identical with --remat"
  else
    echo "$name: train records differ with --remat ($n steps):"
    head -n 6 "$work/$name.diff"
    status=1
  fi
}
check dense 1
check vmoe 2 --moe_layers=every:2 --num_experts=4 --num_selected=2 --capacity_ratio=0.8 \
  --gshard_loss_weight=0.01 --router_z_loss_weight=0.001
check mobile_vmoe 2 --moe_layers=last:2 --num_experts=4 --num_selected=1 --routing=image
exit $status
