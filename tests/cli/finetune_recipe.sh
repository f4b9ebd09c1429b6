#!/usr/bin/env bash
# The README's fine-tuning recipe, small: two image folders (make_image_folder.py)
# imported with --format=image_folder; a V-MoE pretrained on one at 16x16;
# fine-tuned on the other at 24x24 with --init_from (a new 3-class head, the
# position embeddings resized from a 4x4 to a 6x6 patch grid) and capacity
# ratio 1.5 at evaluation; then vmoe_eval at capacity 1.5 with few-shot
# transfer on the shards. 2 ranks throughout.
#   finetune_recipe.sh MPIEXEC BIN_DIR SCRATCH
set -euo pipefail
mpiexec=$1
bin=$2
work=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
command -v cjpeg >/dev/null || { echo "SKIP: cjpeg missing (launch/setup.sh installs libjpeg-turbo-progs)"; exit 77; }
rm -rf "$work"
here=$(dirname "$0")
/usr/bin/python3 "$here/make_image_folder.py" "$work/upstream" a,b,c,d 24 6
/usr/bin/python3 "$here/make_image_folder.py" "$work/downstream" x,y,z 16 8 500
"$bin/vmoe_import" --format=image_folder --input="$work/upstream" --output="$work/data/upstream" \
  --image_size=16 > /dev/null
"$bin/vmoe_import" --format=image_folder --input="$work/downstream" --output="$work/data/downstream" \
  --image_size=24 > /dev/null
model=(--patch_size=4 --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64
  --moe_layers=every:2 --num_experts=4 --batch_size=16 --total_steps=40)
"$mpiexec" -np 2 --oversubscribe "$bin/vmoe_train" "${model[@]}" --image_size=16 \
  --train_data="$work/data/upstream/train-*.h5" --run_dir="$work/pretrain" > "$work/pretrain.log" ||
  { tail "$work/pretrain.log"; exit 1; }
"$mpiexec" -np 2 --oversubscribe "$bin/vmoe_train" "${model[@]}" --image_size=24 \
  --train_data="$work/data/downstream/train-*.h5" --eval_data="$work/data/downstream/test-*.h5" \
  --init_from="$work/pretrain" --eval_capacity_ratio=1.5 --run_dir="$work/finetune" \
  > "$work/finetune.log" || { tail "$work/finetune.log"; exit 1; }
for line in "initialised from $work/pretrain/checkpoints/ckpt-0000000040.h5" \
  "re-initialised (another class count): head/kernel, head/bias" \
  "resized to the new patch grid: pos_embedding" "capacity ratio 1.05 (eval 1.50)"; do
  grep -qF "$line" "$work/finetune.log" || { echo "missing: $line"; cat "$work/finetune.log"; exit 1; }
done
"$mpiexec" -np 2 --oversubscribe "$bin/vmoe_eval" --checkpoint="$work/finetune" \
  --eval_data="$work/data/downstream/test-*.h5" --eval_capacity_ratio=1.5 \
  --fewshot="$work/data/downstream" --fewshot_shots=1,5 > "$work/eval.log" ||
  { tail "$work/eval.log"; exit 1; }
/usr/bin/python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
log = open(f"{work}/eval.log").read()
assert "capacity ratio 1.50" in log, log
prec = json.load(open(f"{work}/finetune/eval/eval.json"))["datasets"][0]["precision_at_1"]
assert prec >= 0.6, f"fine-tuned precision@1 {prec} (chance is 0.33)"
fewshot = json.load(open(f"{work}/finetune/eval/fewshot.json"))["datasets"][0]
assert fewshot["name"] == "downstream" and fewshot["classes"] == 3, fewshot
print(f"fine-tuned precision@1 {prec:.3f} at capacity 1.5; few-shot on the shards")
PY
echo "fine-tuning recipe ok"
