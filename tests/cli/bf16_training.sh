#!/usr/bin/env bash
# Mixed precision (--precision=bf16, emulated on the CPU backend) against
# fp32: a small V-MoE on 2 ranks (expert buffers cross the all-to-all as
# bfloat16) must train like the fp32 run, and 1 and 2 ranks must agree.
#   bf16_training.sh MPIEXEC VMOE_TRAIN DATA_DIR SCRATCH
set -euo pipefail
mpiexec=$1
train=$2
data=$3
out=$4
rm -rf "$out"
export OPENBLAS_NUM_THREADS=1
common=(--train_data="$data/test.h5" --eval_data="$data/test.h5" --total_steps=150 --batch_size=64
  --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 --patch_size=7 --warmup_steps=10
  --learning_rate=3e-3 --log_every=50 --moe_layers=every:2 --num_experts=4 --num_selected=2
  --eval_batch_size=256)
"$mpiexec" -np 2 --oversubscribe "$train" "${common[@]}" --run_dir="$out/fp32" > /dev/null
"$mpiexec" -np 2 --oversubscribe "$train" "${common[@]}" --precision=bf16 --run_dir="$out/bf16_2" > /dev/null
"$train" "${common[@]}" --precision=bf16 --run_dir="$out/bf16_1" > /dev/null
/usr/bin/python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def recs(name, kind):
    with open(f"{out}/{name}/metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]
fp, b2, b1 = (recs(n, "train") for n in ("fp32", "bf16_2", "bf16_1"))
for a, b, c in zip(fp, b2, b1):
    # bf16 inputs change the numbers a little, not the training.
    assert abs(a["loss"] - b["loss"]) <= 0.05 * a["loss"], (a["step"], a["loss"], b["loss"])
    assert b["loss"] != a["loss"], "bf16 had no effect"
    assert abs(b["loss"] - c["loss"]) <= 0.02 * b["loss"], (b["step"], b["loss"], c["loss"])
p = {n: recs(n, "eval")[-1]["precision_at_1"] for n in ("fp32", "bf16_2", "bf16_1")}
assert abs(p["fp32"] - p["bf16_2"]) <= 0.02 and abs(p["bf16_2"] - p["bf16_1"]) <= 0.02, p
print("bf16 ok:", {k: round(v, 4) for k, v in p.items()},
      "final losses", fp[-1]["loss"], b2[-1]["loss"], b1[-1]["loss"])
PY
