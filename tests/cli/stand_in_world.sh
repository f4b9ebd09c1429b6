#!/usr/bin/env bash
# The GPU path's shape on the CPU: every program run with a world
# communicator that is not MPI's type (VMOE_TEST_STAND_IN_WORLD=1, see
# launch/compute.h), as under --backend=cuda, where the world is NCCL. On 1
# and 2 ranks, a V-MoE goes through train (periodic checkpoints, keep 2) ->
# resume -> fine-tune (--init_from) -> vmoe_eval (precision@1, capacity
# sweep, routing analysis, few-shot), and every result must equal, bit for
# bit, the same chain under the plain MPI world: code that casts the world to
# MPI, or hands it to MPI-IO, fails here instead of on the first GPU run.
#   stand_in_world.sh MPIEXEC BIN_DIR DATA_DIR WORK_DIR
set -euo pipefail
mpiexec=$1
bin=$2
data=$3
work=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$work"
mkdir -p "$work"
model=(--train_data="$data/test.h5" --eval_data="$data/test.h5" --batch_size=64
  --eval_batch_size=512 --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 --patch_size=7
  --pre_logits_size=24 --warmup_steps=5 --learning_rate=3e-3 --log_every=1 --seed=5
  --moe_layers=every:2 --num_experts=4 --num_selected=2)

prog() {  # WORLD(mpi|stand_in) RANKS LOG PROGRAM FLAGS...
  local world=$1 ranks=$2 log=$3 program=$4
  shift 4
  local stand_in=0
  [[ $world == stand_in ]] && stand_in=1
  VMOE_TEST_STAND_IN_WORLD=$stand_in "$mpiexec" -np "$ranks" --oversubscribe -x \
    VMOE_TEST_STAND_IN_WORLD "$bin/$program" "$@" >"$log" 2>&1 ||
    { echo "FAILED ($world world, $ranks ranks): $program $*"
      grep -m1 "error" "$log" || tail -n 5 "$log"; exit 1; }
}

chain() {  # WORLD RANKS: the whole path into $work/<world>-<ranks>/
  local world=$1 ranks=$2 out=$work/$1-$2
  mkdir -p "$out"
  prog "$world" "$ranks" "$out/train.log" vmoe_train "${model[@]}" --run_dir="$out/train" \
    --total_steps=20 --checkpoint_every=5 --keep_checkpoints=2
  # Resume from step 15 (the older of the two kept) as if the job had died there.
  mkdir -p "$out/resumed/checkpoints"
  cp "$out/train/checkpoints/ckpt-0000000015.h5" "$out/resumed/checkpoints/"
  prog "$world" "$ranks" "$out/resume.log" vmoe_train "${model[@]}" --run_dir="$out/resumed" \
    --total_steps=20 --checkpoint_every=5 --resume
  grep -q "resumed at step 15" "$out/resume.log"
  prog "$world" "$ranks" "$out/finetune.log" vmoe_train "${model[@]}" --run_dir="$out/finetune" \
    --total_steps=4 --init_from="$out/resumed/checkpoints/ckpt-0000000020.h5" \
    --init_skip=head
  prog "$world" "$ranks" "$out/eval.log" vmoe_eval --checkpoint="$out/finetune" \
    --out_dir="$out/eval" --eval_capacity_sweep=0.5,1.05 --fewshot="$data" \
    --fewshot_shots=1,5 --fewshot_seeds=2 --fewshot_l2=1,1024
}

for ranks in 1 2; do
  chain mpi "$ranks"
  chain stand_in "$ranks"
  /usr/bin/python3 - "$work/mpi-$ranks" "$work/stand_in-$ranks" "$ranks" <<'PY'
import filecmp, json, os, sys
import h5py
import numpy as np
a, b, ranks = sys.argv[1], sys.argv[2], sys.argv[3]
def records(run):
    with open(f"{run}/metrics.jsonl") as f:
        out = []
        for r in map(json.loads, f):
            if r["type"] in ("train", "eval"):
                out.append({k: v for k, v in r.items() if k not in ("images_per_s", "elapsed_s")})
        return out
for run in ("train", "resumed", "finetune"):
    ra, rb = records(f"{a}/{run}"), records(f"{b}/{run}")
    assert ra and ra == rb, f"{run}: metrics differ under the stand-in world"
# Resuming at step 15 repeats the uninterrupted run's steps 16-20 exactly.
full = [r for r in records(f"{b}/train") if r["step"] > 15]
assert full == records(f"{b}/resumed"), "the resumed run differs from the uninterrupted one"
# keep 2: the newest two of 5, 10, 15, 20.
names = sorted(os.listdir(f"{b}/train/checkpoints"))
assert names == ["ckpt-0000000015.h5", "ckpt-0000000020.h5"], names
def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, d: out.__setitem__(n, d[...]) if isinstance(d, h5py.Dataset) else None)
    return out
for run, step in (("train", 20), ("resumed", 20), ("finetune", 4)):
    ta = tensors(f"{a}/{run}/checkpoints/ckpt-{step:010d}.h5")
    tb = tensors(f"{b}/{run}/checkpoints/ckpt-{step:010d}.h5")
    assert ta.keys() == tb.keys() and len(ta) > 10, (run, len(ta))
    for n in ta:
        assert np.array_equal(ta[n].view(np.uint32), tb[n].view(np.uint32)), (run, n)
def load(run, name):
    with open(f"{run}/eval/{name}") as f:
        j = json.load(f)
    j.pop("checkpoint", None)
    return j
for name in ("eval.json", "sweep.json", "fewshot.json"):
    assert load(a, name) == load(b, name), f"{name} differs under the stand-in world"
routing = f"{a}/eval/routing"
(dataset,) = os.listdir(routing)
files = os.listdir(f"{routing}/{dataset}")
match, mismatch, errors = filecmp.cmpfiles(f"{routing}/{dataset}", f"{b}/eval/routing/{dataset}",
                                           files, shallow=False)
assert files and not mismatch and not errors, (mismatch, errors)
print(f"{ranks} rank(s): train, resume, fine-tune and vmoe_eval under the stand-in world equal "
      f"the MPI world's bit for bit ({len(tb)} checkpoint tensors, {len(files)} routing tables)")
PY
done
echo "stand-in world ok"
