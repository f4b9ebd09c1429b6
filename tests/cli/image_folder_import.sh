#!/usr/bin/env bash
# vmoe_import --format=image_folder as a user runs it: a folder of class
# folders of JPEGs (libjpeg-turbo's cjpeg) and PNGs (make_image_folder.py)
# is imported on 1, 2 and 4 ranks; every run stores the source files byte for
# byte with their labels and class names (h5py), the same in all; vmoe_train
# and vmoe_eval read the shards; a file that is not an image stops the import
# with its name, or is skipped with --skip_bad.
#   image_folder_import.sh MPIEXEC BIN_DIR SCRATCH
set -euo pipefail
mpiexec=$1
bin=$2
work=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
command -v cjpeg >/dev/null || { echo "SKIP: cjpeg missing (launch/setup.sh installs libjpeg-turbo-progs)"; exit 77; }
rm -rf "$work"
mkdir -p "$work"
/usr/bin/python3 "$(dirname "$0")/make_image_folder.py" "$work/src" shirt,shoe,bag 12 4

for ranks in 1 2 4; do
  "$mpiexec" -np $ranks --oversubscribe "$bin/vmoe_import" --format=image_folder --input="$work/src" \
    --output="$work/out$ranks" --image_size=16 --images_per_shard=10 --threads=1 > "$work/import$ranks.log"
  grep -q "wrote 48 images, kept 0 already there, skipped 0 bad files" "$work/import$ranks.log" ||
    { cat "$work/import$ranks.log"; exit 1; }
done
/usr/bin/python3 - "$work" <<'PY'
import glob, os, sys
import h5py
work = sys.argv[1]
def stored(out, split):
    rows = []
    for shard in sorted(glob.glob(f"{out}/{split}-*.h5")):
        with h5py.File(shard) as f:
            names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["class_names"]]
            rows += [(bytes(img), int(lbl)) for img, lbl in zip(f["images"], f["labels"])]
    return names, rows
for split, folder in (("train", "train"), ("test", "val")):
    names, rows = stored(f"{work}/out1", split)
    assert names == ["bag", "shirt", "shoe"], names
    source = {}
    for label, cls in enumerate(names):
        for path in sorted(glob.glob(f"{work}/src/{folder}/{cls}/*")):
            source.setdefault(label, []).append(open(path, "rb").read())
    got = {}
    for img, label in rows:
        got.setdefault(label, []).append(img)
    assert got == source, f"{split}: stored bytes or labels differ from the source files"
    for ranks in (2, 4):
        assert stored(f"{work}/out{ranks}", split) == (names, rows), f"{split}: {ranks} ranks differ"
print("stored bytes, labels and class names equal the source, on 1, 2 and 4 ranks")
PY
"$bin/vmoe_train" --train_data="$work/out2/train-*.h5" --eval_data="$work/out2/test-*.h5" \
  --run_dir="$work/run" --image_size=16 --patch_size=4 --hidden_size=16 --num_layers=2 \
  --num_heads=2 --mlp_dim=32 --moe_layers=every:2 --num_experts=4 --batch_size=16 \
  --total_steps=4 --eval_every=4 > "$work/train.log" || { tail "$work/train.log"; exit 1; }
"$bin/vmoe_eval" --checkpoint="$work/run" --eval_data="$work/out2/test-*.h5" > "$work/eval.log" ||
  { tail "$work/eval.log"; exit 1; }
grep -q "precision@1" "$work/eval.log" || { cat "$work/eval.log"; exit 1; }

printf 'not an image' > "$work/src/train/shoe/zz_broken.jpg"
if "$bin/vmoe_import" --format=image_folder --input="$work/src" --output="$work/bad" \
  --image_size=16 > "$work/bad.log" 2>&1; then
  echo "a broken file was imported"; exit 1
fi
grep -q "^vmoe_import: error: .*train/shoe/zz_broken.jpg: .*(--skip_bad skips such files)$" "$work/bad.log" ||
  { cat "$work/bad.log"; exit 1; }
"$bin/vmoe_import" --format=image_folder --input="$work/src" --output="$work/skip" --image_size=16 \
  --skip_bad > "$work/skip.log"
grep -q "skipped: .*zz_broken.jpg" "$work/skip.log" && grep -q "wrote 48 images, kept 0 already there, skipped 1 bad files" "$work/skip.log" ||
  { cat "$work/skip.log"; exit 1; }
echo "image folder import ok"
