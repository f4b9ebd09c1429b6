#!/usr/bin/env bash
# launch/report.py on synthetic run directories:
#  1. a MoE run with every input (metrics with a resumed duplicate step,
#     result, sweeps, eval.json, few-shot with 2 datasets x 2 l2, routing
#     CSVs, confusion): every PNG is written, valid and linked from index.html;
#  2. a dense run with only metrics.jsonl and result.json: the training
#     figures, no expert_load.png, the html says what is not available;
#  3. a malformed metrics.jsonl line: exit 1 and an error naming the file.
#   report_test.sh SOURCE_DIR SCRATCH_DIR
set -euo pipefail
src=$1
work=$2
report=$src/launch/report.py
rm -rf "$work"
mkdir -p "$work"

fail() { echo "FAIL: $*" >&2; exit 1; }

# is_png FILE: the 8-byte PNG signature and more than 5 kB.
is_png() {
  [[ -f $1 ]] || fail "$1 missing"
  [[ $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    fail "$1 is not a PNG"
  (( $(stat -c %s "$1") > 5000 )) || fail "$1 is suspiciously small"
}

# --- 1. a MoE run with every input ------------------------------------------
moe=$work/moe
/usr/bin/python3 - "$moe" <<'EOF'
import json, math, os, sys
run = sys.argv[1]
os.makedirs(f"{run}/eval/routing/fashion_mnist")
def jdump(name, obj):
    with open(f"{run}/{name}", "w") as f:
        json.dump(obj, f)
lines = []
# Step 30 twice: a resumed run logs it again; the last one (2010 images/s) counts.
for i, step in enumerate((10, 20, 30, 30, 40)):
    rec = {"type": "train", "step": step, "epoch": step / 40, "loss": 2.3 / (1 + step / 10),
           "aux_loss": 0.01 / step, "grad_norm": 1.0, "learning_rate": 1e-3 * (1 - step / 50),
           "images_per_s": 2010 if i == 3 else 900 + step, "elapsed_s": step / 10}
    for b in (1, 3):
        p = f"moe/block_{b}/"
        rec.update({p + "importance_loss": 0.1, p + "load_loss": 0.2, p + "gshard_loss": 1.1,
                    p + "z_loss": 5.0, p + "dropped": 0.2 - step / 400})
        w = [1 + 0.5 * math.sin(step + e + b) for e in range(4)]
        rec.update({f"{p}load_e{e}": w[e] / sum(w) for e in range(4)})
    lines.append(rec)
    if step % 20 == 0:
        lines.append({"type": "eval", "step": step, "precision_at_1": 0.5 + step / 100,
                      "loss": 1.5 - step / 50, "examples": 1000, "dropped": 0.05})
lines.append({"type": "checkpoint", "step": 40, "seconds": 0.01, "path": "ckpt-40.h5"})
with open(f"{run}/metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in lines)
jdump("result.json", {"steps": 40, "epochs": 1.0, "train_seconds": 4.2, "precision_at_1": 0.9,
                      "eval_loss": 0.7, "eval_examples": 1000, "dropped": 0.05,
                      "parameters": 12345, "forward_mflops_per_image": 1.5, "ranks": 2})
points = [{"capacity_ratio": c, "batch_priority": b, "loss": 0.3, "dropped": max(0.0, 1 - c),
           "precision_at_1": 0.9 - (1.05 - c) / (5 + 5 * b)}
          for b in (1, 0) for c in (1.05, 0.5, 0.25)]
jdump("sweep.json", {"points": points})
jdump("eval/sweep.json", {"dataset": "fashion_mnist", "points": points})
jdump("eval/eval.json", {"checkpoint": "ckpt-40.h5", "step": 40, "datasets": [
    {"name": "fashion_mnist", "path": "test.h5", "precision_at_1": 0.9, "loss": 0.7,
     "examples": 1000, "dropped": 0.05}]})
datasets = []
for name, base in (("fashion_mnist", 0.6), ("cifar10", 0.3)):
    results = [{"shots": s, "l2": l2, "mean": base + 0.05 * math.log(s) - 0.01 * (l2 > 100),
                "std": 0.02, "per_seed": [base] * 3}
               for s in (1, 5, 10, 25) for l2 in (16.0, 1024.0)]
    datasets.append({"name": name, "classes": 10, "test_examples": 1000, "results": results,
                     "best_l2": 16.0})
jdump("eval/fewshot.json", {"shots": [1, 5, 10, 25], "seeds": 3, "l2": [16.0, 1024.0],
                            "datasets": datasets})
classes = ["T-shirt/top", "Trouser", "Bag"]
for b in (1, 3):
    with open(f"{run}/eval/routing/fashion_mnist/block_{b}.csv", "w") as f:
        f.write("class,e0,e1,e2,e3,dropped\n")
        for i, c in enumerate(classes):
            row = [0.1] * 4 + [0.1]
            row[(i + b) % 4] = 0.5
            f.write(",".join([c] + [str(v) for v in row]) + "\n")
with open(f"{run}/eval/routing/fashion_mnist/superclass_confusion.csv", "w") as f:
    f.write("superclass,e0,e1,e2,e3\n0,300,10,5,0\n1,4,280,20,1\n2,0,9,12,350\n")
with open(f"{run}/confusion.csv", "w") as f:
    f.write("label\\prediction," + ",".join(classes) + "\n")
    for i, c in enumerate(classes):
        f.write(",".join([c] + [str(90 if j == i else 5) for j in range(3)]) + "\n")
EOF
out=$("$report" "$moe" --out "$work/moe_report")
[[ $(tail -n 1 <<<"$out") == "report: $work/moe_report/index.html" ]] || fail "last line: $out"
html=$work/moe_report/index.html
for png in loss accuracy learning_rate expert_load routing_fashion_mnist \
    superclass_confusion_fashion_mnist capacity_sweep fewshot fewshot_l2 confusion; do
  is_png "$work/moe_report/$png.png"
  grep -q "src=\"$png.png\"" "$html" || fail "index.html does not show $png.png"
done
! grep -q "not available" "$html" || fail "MoE run: $(grep -o '<li>[^<]*' "$html")"
grep -q "<td>precision@1</td><td>90.00%</td>" "$html" || fail "no headline precision@1"
grep -q "mean 1195 images/s" "$html" || fail "the resumed step 30 is not the last one logged"
grep -q "<td>fashion_mnist</td><td>16</td><td>60.0 ± 2.0</td>" "$html" ||
  fail "no few-shot table at best_l2"

# --- 2. a dense run: only metrics.jsonl and result.json ---------------------
dense=$work/dense
mkdir -p "$dense"
/usr/bin/python3 - "$dense" <<'EOF'
import json, sys
with open(f"{sys.argv[1]}/metrics.jsonl", "w") as f:
    for step in (10, 20, 30):
        f.write(json.dumps({"type": "train", "step": step, "epoch": step / 30, "loss": 3 / step,
                            "aux_loss": 0, "grad_norm": 1, "learning_rate": 1e-3,
                            "images_per_s": 1000, "elapsed_s": step}) + "\n")
        f.write(json.dumps({"type": "eval", "step": step, "precision_at_1": step / 40,
                            "loss": 2 / step, "examples": 100}) + "\n")
with open(f"{sys.argv[1]}/result.json", "w") as f:
    json.dump({"steps": 30, "precision_at_1": 0.75, "eval_loss": 0.07, "parameters": 999}, f)
EOF
out=$("$report" "$dense")
[[ $(tail -n 1 <<<"$out") == "report: $dense/report/index.html" ]] || fail "last line: $out"
for png in loss accuracy learning_rate; do is_png "$dense/report/$png.png"; done
[[ ! -e $dense/report/expert_load.png ]] || fail "dense run has expert_load.png"
grep -q "expert_load.png: not available" "$dense/report/index.html" ||
  fail "index.html does not say expert_load.png is not available"

# --- 3. a malformed metrics.jsonl line --------------------------------------
bad=$work/bad
mkdir -p "$bad"
printf '{"type": "train", "step": 1, "loss": 2.3}\n{"type": "train", "step": 2, "loss": \n' \
  >"$bad/metrics.jsonl"
status=0
"$report" "$bad" >"$work/bad.out" 2>"$work/bad.err" || status=$?
[[ $status -eq 1 ]] || fail "malformed metrics.jsonl: exit status $status, expected 1"
[[ $(wc -l <"$work/bad.err") -eq 1 ]] || fail "not a one-line error: $(cat "$work/bad.err")"
grep -q "$bad/metrics.jsonl:2: malformed JSON" "$work/bad.err" ||
  fail "error does not name the file and line: $(cat "$work/bad.err")"
echo "ok: report.py"
