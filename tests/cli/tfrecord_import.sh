#!/usr/bin/env bash
# vmoe_import --format=tfrecord as a user runs it, on files written by the
# protobuf package (make_tfrecords.py): on 1, 2 and 4 ranks every image is
# stored byte for byte with its label (checked with h5py against the
# writer's list); a truncated file and a flipped byte stop the import with
# the file and the record's byte offset, leaving no shard for that file; a
# record whose image is not an image is named, or skipped with --skip_bad.
#   tfrecord_import.sh MPIEXEC BIN_DIR SCRATCH
set -euo pipefail
mpiexec=$1
bin=$2
work=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
command -v cjpeg >/dev/null || { echo "SKIP: cjpeg missing (launch/setup.sh installs libjpeg-turbo-progs)"; exit 77; }
/usr/bin/python3 -c "import google.protobuf" 2>/dev/null ||
  { echo "SKIP: python3-protobuf missing (launch/setup.sh installs it)"; exit 77; }
rm -rf "$work"
/usr/bin/python3 "$(dirname "$0")/make_tfrecords.py" "$work/src"
common=(--format=tfrecord --num_classes=4 --image_size=16)
for ranks in 1 2 4; do
  "$mpiexec" -np $ranks --oversubscribe "$bin/vmoe_import" "${common[@]}" \
    --input="$work/src/train.tfrecord-*" --test_input="$work/src/test.tfrecord-*" \
    --output="$work/out$ranks" > "$work/import$ranks.log"
  grep -q "wrote 26 images, kept 0 already there, skipped 0 bad records" "$work/import$ranks.log" ||
    { cat "$work/import$ranks.log"; exit 1; }
done
/usr/bin/python3 - "$work" <<'PY'
import glob, hashlib, sys
import h5py
work = sys.argv[1]
for split in ("train", "test"):
    expected = open(f"{work}/src/expected-{split}.txt").read().split("\n")[:-1]
    for ranks in (1, 2, 4):
        got = []
        for shard in sorted(glob.glob(f"{work}/out{ranks}/{split}-*.h5")):
            with h5py.File(shard) as f:
                got += [f"{hashlib.sha256(bytes(i)).hexdigest()} {int(l)}" for i, l in zip(f["images"], f["labels"])]
        assert got == expected, f"{split}, {ranks} ranks: stored images or labels differ"
print("stored bytes and labels equal the writer's, on 1, 2 and 4 ranks")
PY
expect_failure() {  # name, message regex, then the vmoe_import flags
  local name=$1 regex=$2; shift 2
  if "$bin/vmoe_import" "${common[@]}" --output="$work/$name" "$@" > "$work/$name.log" 2>&1; then
    echo "$name: imported"; exit 1
  fi
  grep -qE "$regex" "$work/$name.log" || { echo "$name:"; cat "$work/$name.log"; exit 1; }
}
mkdir -p "$work/damaged"
head -c -9 "$work/src/train.tfrecord-00001-of-00003" > "$work/damaged/truncated"
expect_failure truncated "^vmoe_import: error: .*/damaged/truncated: record at byte [0-9]+: truncated" \
  --input="$work/damaged/truncated"
cp "$work/src/train.tfrecord-00002-of-00003" "$work/damaged/flipped"
printf '\xff' | dd of="$work/damaged/flipped" bs=1 seek=700 conv=notrunc status=none
expect_failure flipped "^vmoe_import: error: .*/damaged/flipped: record at byte [0-9]+: (data|length) CRC mismatch" \
  --input="$work/damaged/flipped"
for name in truncated flipped; do
  if compgen -G "$work/$name/*.h5*" > /dev/null; then echo "$name: a shard was left"; ls "$work/$name"; exit 1; fi
done
expect_failure bad "bad.tfrecord: record at byte [0-9]+: unknown image format.*\(--skip_bad skips such records\)$" \
  --input="$work/src/bad.tfrecord"
"$bin/vmoe_import" "${common[@]}" --input="$work/src/bad.tfrecord" --output="$work/skip" --skip_bad > "$work/skip.log"
grep -q "wrote 1 images, kept 0 already there, skipped 1 bad records" "$work/skip.log" || { cat "$work/skip.log"; exit 1; }
echo "tfrecord import ok"
