#!/usr/bin/env bash
# --tensorboard_dir: a V-MoE run on 1 and 2 ranks writes one event file whose
# scalars are exactly metrics.jsonl's numbers (as float32) at their steps:
# train/loss, train/learning_rate, eval/precision_at_1, per-layer drops and
# expert loads. Read with TensorBoard's own EventAccumulator when the Python
# at $VMOE_TENSORBOARD_PYTHON (default /usr/bin/python3) has the tensorboard
# package; otherwise decoded with the protobuf package against event.proto's
# and summary.proto's fields (the test says which reader it used;
# read_events.py). Then vmoe_eval's scalars against its eval.json.
#   tensorboard_events.sh MPIEXEC BIN_DIR FMNIST_DIR SCRATCH
set -euo pipefail
mpiexec=$1
bin=$2
fmnist=$3
work=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
python=${VMOE_TENSORBOARD_PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)  # read_events.py: the event-file reader
rm -rf "$work"
mkdir -p "$work"
for ranks in 1 2; do
  "$mpiexec" -np $ranks --oversubscribe "$bin/vmoe_train" --train_data="$fmnist/test.h5" \
    --eval_data="$fmnist/test.h5" --run_dir="$work/run$ranks" --tensorboard_dir="$work/tb$ranks" \
    --total_steps=20 --log_every=5 --eval_every=10 --batch_size=32 --hidden_size=16 \
    --num_layers=2 --num_heads=2 --mlp_dim=32 --patch_size=7 --moe_layers=every:2 \
    --num_experts=4 > "$work/train$ranks.log" || { tail "$work/train$ranks.log"; exit 1; }
  PYTHONPATH=$here "$python" - "$work/tb$ranks" "$work/run$ranks/metrics.jsonl" <<'PY'
import json, struct, sys
from read_events import read
tb_dir, metrics = sys.argv[1], sys.argv[2]
got, reader = read(tb_dir)
want = {}
for line in open(metrics):
    r = json.loads(line)
    if "step" not in r:
        continue
    for k, v in r.items():
        if k not in ("step", "type") and isinstance(v, (int, float)):
            want[(f"{r['type']}/{k}", r["step"])] = struct.unpack("<f", struct.pack("<f", v))[0]
assert got == want, (sorted(set(got) ^ set(want))[:10], [k for k in want if got.get(k) != want[k]][:10])
for tag in ("train/loss", "train/learning_rate", "eval/precision_at_1", "train/moe/block_1/dropped",
            "train/moe/block_1/load_e0"):
    assert any(t == tag for t, _ in got), tag
print(f"{len(got)} scalars equal metrics.jsonl, read with {reader}")
PY
done
# vmoe_eval --tensorboard_dir: each dataset's precision@1, loss and dropped
# share at the checkpoint's step, equal to eval.json's (2 ranks, rank 0 writes).
"$mpiexec" -np 2 --oversubscribe "$bin/vmoe_eval" --checkpoint="$work/run1" \
  --eval_data="$fmnist/test.h5" --tensorboard_dir="$work/tbeval" --out_dir="$work/eval" \
  > "$work/eval.log" || { tail "$work/eval.log"; exit 1; }
PYTHONPATH=$here "$python" - "$work/tbeval" "$work/eval/eval.json" <<'PY'
import json, struct, sys
from read_events import read
got, reader = read(sys.argv[1])
e = json.load(open(sys.argv[2]))
want = {}
for d in e["datasets"]:
    for k in ("precision_at_1", "loss", "dropped"):
        want[(f"vmoe_eval/{d['name']}/{k}", e["step"])] = struct.unpack("<f", struct.pack("<f", d[k]))[0]
assert len(want) == 3 and got == want, (got, want)
print(f"vmoe_eval: {len(got)} scalars equal eval.json, read with {reader}")
PY
echo "tensorboard events ok"
