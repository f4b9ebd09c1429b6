#!/usr/bin/env bash
# --input_pixels=uint8 (a GPU run's input: 8-bit pixels, scaled and mixed up
# after the copy; here on the CPU backend) against the float path: on a raw
# dataset (Fashion-MNIST, crops and flips) the training is bit for bit the
# same on 1 and 2 ranks; on encoded JPEG shards with mixup the pixels are the
# resized floats rounded to 8 bits, so the losses stay within 1% of each other.
#   input_pixels.sh MPIEXEC BIN_DIR FMNIST_DIR SCRATCH
set -euo pipefail
mpiexec=$1
bin=$2
fmnist=$3
out=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$out"
mkdir -p "$out"
records() { grep '"type": "train"' "$1" | sed -E 's/"(images_per_s|elapsed_s)": [^,}]*,? ?//g'; }
raw=(--train_data="$fmnist/test.h5" --total_steps=20 --batch_size=64 --hidden_size=32
  --num_layers=2 --num_heads=2 --mlp_dim=64 --patch_size=7 --log_every=2 --moe_layers=every:2
  --num_experts=4 --augment_crop_padding=2 --loader_threads=2 --checkpoint_every=0)
for ranks in 1 2; do
  for pixels in float uint8; do
    "$mpiexec" -np $ranks --oversubscribe "$bin/vmoe_train" "${raw[@]}" --input_pixels=$pixels \
      --run_dir="$out/raw_${ranks}_$pixels" >"$out/raw_${ranks}_$pixels.log" 2>&1 ||
      { tail -n 5 "$out/raw_${ranks}_$pixels.log"; exit 1; }
  done
  diff <(records "$out/raw_${ranks}_float/metrics.jsonl") \
    <(records "$out/raw_${ranks}_uint8/metrics.jsonl") >/dev/null ||
    { echo "raw data, $ranks rank(s): uint8 pixels train differently"; exit 1; }
  echo "raw data, $ranks rank(s): uint8 pixels train bit for bit as floats"
done
"$bin/vmoe_synth" --output="$out/synth" --num_images=512 --num_classes=12 --images_per_shard=256 \
  --image_size=40 --seed=3 >/dev/null
encoded=(--train_data="$out/synth/train-*.h5" --image_size=32 --patch_size=8 --hidden_size=32
  --num_layers=2 --num_heads=2 --mlp_dim=64 --moe_layers=every:2 --num_experts=4 --batch_size=64
  --total_steps=30 --log_every=5 --loader_threads=2 --mixup_alpha=0.2 --checkpoint_every=0)
for pixels in float uint8; do
  "$bin/vmoe_train" "${encoded[@]}" --input_pixels=$pixels --run_dir="$out/enc_$pixels" \
    >"$out/enc_$pixels.log" 2>&1 || { tail -n 5 "$out/enc_$pixels.log"; exit 1; }
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def losses(name):
    with open(f"{out}/{name}/metrics.jsonl") as f:
        return [r["loss"] for r in map(json.loads, f) if r["type"] == "train"]
a, b = losses("enc_float"), losses("enc_uint8")
assert len(a) == len(b) == 6, (a, b)
worst = max(abs(x - y) / x for x, y in zip(a, b))
assert worst <= 0.01, (a, b)
print(f"encoded data with mixup: uint8 losses within {worst:.1e} of the float path's")
PY
echo "input pixels ok"
