#!/usr/bin/env bash
# A small V-MoE trained on 2 ranks with --backend=cuda (one GPU per rank,
# NCCL) against the same run on the CPU backend: the training losses and the
# final test precision@1 must agree. Exits 77 (skipped) where there is no
# GPU, fewer than 2, or no CUDA build, saying which.
#   gpu_training.sh MPIEXEC VMOE_TRAIN DATA_DIR SCRATCH
set -uo pipefail
mpiexec=$1
train=$2
data=$3
out=$4
rm -rf "$out"
mkdir -p "$out"
common=(--train_data="$data/test.h5" --eval_data="$data/test.h5" --total_steps=40 --batch_size=64
  --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 --patch_size=7 --warmup_steps=5
  --log_every=10 --moe_layers=every:2 --num_experts=4 --num_selected=2 --eval_batch_size=256)
if ! "$mpiexec" -np 2 --oversubscribe "$train" "${common[@]}" --backend=cuda --run_dir="$out/gpu" \
  > "$out/gpu.log" 2>&1; then
  if grep -q "sees no GPU\|has no CUDA backend\|needs one GPU per rank" "$out/gpu.log"; then
    echo "skipped: $(grep -m1 -o 'backend=cuda.*' "$out/gpu.log")"
    exit 77
  fi
  cat "$out/gpu.log"
  exit 1
fi
set -e
OPENBLAS_NUM_THREADS=1 "$mpiexec" -np 2 --oversubscribe "$train" "${common[@]}" --backend=cpu \
  --run_dir="$out/cpu" > "$out/cpu.log"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def records(name, kind):
    with open(f"{out}/{name}/metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]
cpu, gpu = records("cpu", "train"), records("gpu", "train")
assert [r["step"] for r in cpu] == [r["step"] for r in gpu], "different logged steps"
for a, b in zip(cpu, gpu):
    assert abs(a["loss"] - b["loss"]) <= 2e-3 * abs(a["loss"]), (a["step"], a["loss"], b["loss"])
pc, pg = records("cpu", "eval")[-1]["precision_at_1"], records("gpu", "eval")[-1]["precision_at_1"]
assert abs(pc - pg) <= 0.005, (pc, pg)
print(f"gpu training matches cpu: final loss {gpu[-1]['loss']:.4f} vs {cpu[-1]['loss']:.4f}, "
      f"precision@1 {pg:.4f} vs {pc:.4f}")
PY
