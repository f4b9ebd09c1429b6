#!/usr/bin/env bash
# vmoe_eval end to end: a small V-MoE (with a pre-logits layer, so few-shot
# reads its features) trained on Fashion-MNIST ($3) by
# vmoe_train on 2 ranks, then evaluated by vmoe_eval on 1 and 2 ranks with a
# capacity sweep, the routing analysis and few-shot evaluation; checks every
# output's schema, that 1 and 2 ranks agree, and that launch/report.py turns
# the run directory into every figure.
#   eval_pipeline.sh MPIEXEC BIN_DIR DATA_DIR SCRATCH SOURCE_DIR
set -euo pipefail
mpiexec=$1
bin=$2
data=$3
out=$4
src=$5
export OPENBLAS_NUM_THREADS=1
rm -rf "$out"
run=$out/run
"$mpiexec" -np 2 --oversubscribe "$bin/vmoe_train" --train_data="$data/test.h5" \
  --eval_data="$data/test.h5" --run_dir="$run" --total_steps=60 --batch_size=64 \
  --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 --patch_size=7 --warmup_steps=10 \
  --learning_rate=3e-3 --log_every=20 --moe_layers=every:2 --num_experts=4 --num_selected=2 \
  --pre_logits_size=24 \
  --eval_batch_size=256 > "$out.train.log"

for n in 1 2; do
  "$mpiexec" -np $n --oversubscribe "$bin/vmoe_eval" --checkpoint="$run" --out_dir="$out/eval$n" \
    --eval_capacity_sweep=0.5,1.05 --fewshot="$data" --fewshot_shots=1,5 --fewshot_seeds=2 \
    --fewshot_l2=1,1024 | tee "$out/eval$n.log"
done
grep -q "few-shot $(basename "$data")" "$out/eval1.log"

/usr/bin/python3 - "$out" <<'PY'
import csv, json, math, sys
out = sys.argv[1]
def load(n, name):
    with open(f"{out}/eval{n}/{name}") as f:
        return json.load(f)
for n in (1, 2):
    ev = load(n, "eval.json")
    assert ev["step"] == 60 and len(ev["datasets"]) == 1, ev
    d = ev["datasets"][0]
    assert d["name"].endswith("_test") and d["examples"] == 10000, d
    assert 0.3 < d["precision_at_1"] <= 1 and d["loss"] > 0 and 0 <= d["dropped"] < 1, d
    sweep = load(n, "sweep.json")["points"]
    assert len(sweep) == 4, sweep
    assert sorted((p["capacity_ratio"], p["batch_priority"]) for p in sweep) == \
        [(0.5, 0), (0.5, 1), (1.05, 0), (1.05, 1)], sweep
    for p in sweep:
        assert set(p) == {"capacity_ratio", "batch_priority", "precision_at_1", "loss", "dropped"}, p
    # Fewer slots drop more choices.
    drop = {(p["capacity_ratio"], p["batch_priority"]): p["dropped"] for p in sweep}
    assert drop[(0.5, 1)] > drop[(1.05, 1)], drop
    fs = load(n, "fewshot.json")
    assert fs["shots"] == [1, 5] and fs["seeds"] == 2 and fs["l2"] == [1, 1024], fs
    (t,) = fs["datasets"]
    assert t["classes"] == 10 and t["test_examples"] == 10000 and t["best_l2"] in (1, 1024), t
    assert len(t["results"]) == 4, t["results"]
    for r in t["results"]:
        assert len(r["per_seed"]) == 2 and 0.1 < r["mean"] <= 1 and r["std"] >= 0, r
        m = sum(r["per_seed"]) / 2
        assert math.isclose(m, r["mean"]), r
    for block in ("block_1",):
        with open(f"{out}/eval{n}/routing/{d['name']}/{block}.csv") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["class", "e0", "e1", "e2", "e3", "dropped"], rows[0]
        assert len(rows) == 11, len(rows)
        for r in rows[1:]:
            assert abs(sum(map(float, r[1:])) - 1) < 1e-4, r
# 1 and 2 ranks evaluate the same function.
a, b = load(1, "eval.json")["datasets"][0], load(2, "eval.json")["datasets"][0]
assert abs(a["precision_at_1"] - b["precision_at_1"]) <= 2e-4, (a, b)
fa, fb = load(1, "fewshot.json")["datasets"][0], load(2, "fewshot.json")["datasets"][0]
for x, y in zip(fa["results"], fb["results"]):
    assert abs(x["mean"] - y["mean"]) <= 2e-4, (x, y)
print("eval outputs ok")
PY

# The report of the run directory, with vmoe_eval's outputs where run.sh puts them.
cp -r "$out/eval2" "$run/eval"
"$src/launch/report.py" "$run" | tee "$out/report.log"
for png in loss accuracy learning_rate expert_load capacity_sweep fewshot fewshot_l2 confusion \
  "routing_$(basename "$(dirname "$data/test.h5")")_test"; do
  [[ -s $run/report/$png.png ]] || { echo "missing $png.png"; exit 1; }
done
tail -n 1 "$out/report.log" | grep -q "^report: .*/index.html$"
echo "eval pipeline ok"
