#!/usr/bin/env bash
# Whose checkpoints a folder holds, on one process:
#  1. a new run (no --resume) in a folder with another run's checkpoints
#     refuses to start, touching nothing; --overwrite replaces them, and the
#     new run's checkpoints are all kept (the old, higher-numbered ones do not
#     crowd them out);
#  2. --resume finding only damaged checkpoints renames them aside, starts
#     from scratch and keeps every new checkpoint;
#  3. vmoe_eval on a folder whose newest checkpoint is damaged falls back to
#     the previous one with a warning; on that file alone it refuses.
#   checkpoint_ownership.sh VMOE_TRAIN VMOE_EVAL DATA_DIR WORK_DIR
set -u
train=$1
eval=$2
data=$3
work=$4
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "$0")/tiny_run.sh"
ckpt_flags=(--checkpoint_every=2 --keep_checkpoints=2 --log_every=1)
ckpt=$work/run/checkpoints
listing() { ls "$ckpt" | tr '\n' ' '; }
damage() {  # overwrites bytes at a sixth of a file: in the parameters, written first
  local size
  size=$(stat -c %s "$1")
  dd if=/dev/urandom of="$1" bs=1 count=256 seek=$((size / 6)) conv=notrunc status=none
}

# 1. An earlier run went to step 8 (keeps 6 and 8).
run 8 --seed=1 >/dev/null || fail "first run"
[[ $(listing) == "ckpt-0000000006.h5 ckpt-0000000008.h5 " ]] || fail "first run left $(listing)"
before=$(md5sum "$work/run/metrics.jsonl" "$work/run/flags.txt")
out=$(run 4 --seed=2)
(($? != 0)) || fail "a new run in a folder of another run's checkpoints started: $out"
grep -q "error: the checkpoint folder $ckpt already holds 2 checkpoint(s) of an earlier run (newest: $ckpt/ckpt-0000000008.h5); pass --resume to continue that run, --overwrite to remove them, or another --run_dir/--checkpoint_dir" <<<"$out" ||
  fail "no clear refusal: $out"
[[ $(listing) == "ckpt-0000000006.h5 ckpt-0000000008.h5 " ]] || fail "the refused run changed $(listing)"
[[ $(md5sum "$work/run/metrics.jsonl" "$work/run/flags.txt") == "$before" ]] ||
  fail "the refused run changed metrics.jsonl or flags.txt"
echo "ok: refused: $(grep error <<<"$out")"
out=$(run 4 --seed=2 --overwrite) || fail "--overwrite: $out"
[[ $(listing) == "ckpt-0000000002.h5 ckpt-0000000004.h5 " ]] ||
  fail "--overwrite left $(listing), expected the new run's 2 and 4"
grep -q '"step": 8' "$work/run/metrics.jsonl" && fail "metrics.jsonl still holds the old run's step 8"
echo "ok: --overwrite replaced the old run's checkpoints and log"

# 2. Every checkpoint damaged: --resume starts over and keeps what it writes.
damage "$ckpt/ckpt-0000000004.h5"
damage "$ckpt/ckpt-0000000002.h5"
out=$(run 4 --seed=2 --resume) || fail "resume past damaged checkpoints: $out"
grep -q "warning: cannot resume from .*ckpt-0000000004.h5: .*renamed it to ckpt-0000000004.h5.damaged" <<<"$out" ||
  fail "no warning naming the damaged checkpoint: $out"
[[ $(listing) == "ckpt-0000000002.h5 ckpt-0000000002.h5.damaged ckpt-0000000004.h5 ckpt-0000000004.h5.damaged " ]] ||
  fail "after starting over: $(listing)"
steps=$(grep '"type": "train"' "$work/run/metrics.jsonl" | sed 's/.*"step": \([0-9]*\).*/\1/' |
  tr '\n' ' ')
[[ $steps == "1 2 3 4 " ]] || fail "metrics.jsonl train steps after starting over: $steps"
echo "ok: damaged checkpoints renamed aside, the new ones kept, each step logged once"

# 3. vmoe_eval: a folder falls back, a single damaged file is refused.
damage "$ckpt/ckpt-0000000004.h5"  # (the parameters: vmoe_eval reads no optimiser state)
out=$(OPENBLAS_NUM_THREADS=1 "$eval" --checkpoint="$ckpt" --eval_data="$data/test.h5" \
  --out_dir="$work/eval" 2>&1) || fail "vmoe_eval on the folder: $out"
grep -q "warning: .*ckpt-0000000004.h5.*" <<<"$out" || fail "no warning about step 4: $out"
grep -q "vmoe_eval: $ckpt/ckpt-0000000002.h5 (step 2)" <<<"$out" || fail "did not use step 2: $out"
out=$(OPENBLAS_NUM_THREADS=1 "$eval" --checkpoint="$ckpt/ckpt-0000000004.h5" \
  --eval_data="$data/test.h5" --out_dir="$work/eval1" 2>&1)
(($? != 0)) || fail "vmoe_eval accepted a damaged file: $out"
grep -q "vmoe_eval: error: .*ckpt-0000000004.h5" <<<"$out" || fail "no error naming the file: $out"
echo "ok: vmoe_eval fell back on the folder and refused the damaged file alone"
