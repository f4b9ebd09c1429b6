#!/usr/bin/env bash
# Crash safety and integrity of checkpoints, on one process:
#  1. a write killed midway (test hook) leaves the previous checkpoint, which
#     --resume then uses;
#  2. a corrupt or truncated newest checkpoint makes --resume fall back, with
#     a warning, to the previous one;
#  3. resuming with another model shape is an error listing the flags;
#  4. --init_from a corrupt checkpoint is an error naming file and dataset.
#   checkpoint_crash.sh VMOE_TRAIN DATA_DIR WORK_DIR
set -u
train=$1
data=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "$0")/tiny_run.sh"
ckpt_flags=(--checkpoint_every=10 --keep_checkpoints=5 --log_every=10)
ckpt=$work/run/checkpoints
run 10 >/dev/null || fail "first run"
[[ -f $ckpt/ckpt-0000000010.h5 ]] || fail "no checkpoint at step 10"

# 1. Killed during the step-20 write, after 7 datasets.
out=$(VMOE_TEST_ABORT_CHECKPOINT_AFTER=7 run 20 --resume)
code=$?
((code != 0)) || fail "the aborted run exited 0"
[[ -f $ckpt/ckpt-0000000020.h5.tmp && ! -f $ckpt/ckpt-0000000020.h5 ]] ||
  fail "expected only a partial .tmp for step 20: $(ls $ckpt)"
out=$(run 20 --resume) || fail "resume after the crash: $out"
grep -q "resumed at step 10" <<<"$out" || fail "did not resume from step 10: $out"
[[ -f $ckpt/ckpt-0000000020.h5 ]] || fail "no checkpoint at step 20 after resuming"
echo "ok: a killed write left step 10 usable"

# 2. Corrupt, then truncated newest checkpoints: fall back.
run 30 --resume >/dev/null || fail "run to 30"
size=$(stat -c %s "$ckpt/ckpt-0000000030.h5")
dd if=/dev/urandom of="$ckpt/ckpt-0000000030.h5" bs=1 count=512 seek=$((size * 3 / 4)) \
  conv=notrunc status=none
out=$(run 30 --resume --total_steps=30) || fail "resume past a corrupt checkpoint: $out"
grep -q "warning: cannot resume from .*ckpt-0000000030.h5: .*Fletcher32" <<<"$out" ||
  fail "no warning naming the corrupt checkpoint: $out"
grep -q "resumed at step 20" <<<"$out" || fail "did not fall back to step 20: $out"
truncate -s $((size / 2)) "$ckpt/ckpt-0000000030.h5"
out=$(run 30 --resume) || fail "resume past a truncated checkpoint: $out"
grep -q "warning: cannot resume from .*ckpt-0000000030.h5: .*truncated" <<<"$out" ||
  fail "no warning naming the truncated checkpoint: $out"
echo "ok: corrupt and truncated checkpoints are skipped with a warning"

# 3. Another model shape.
out=$(run 40 --resume --hidden_size=24 --num_heads=3)
(($? != 0)) || fail "resuming another model succeeded"
grep -q "the model or optimiser differs from the checkpoint's: --hidden_size: checkpoint 16, now 24; --num_heads: checkpoint 2, now 3" <<<"$out" ||
  fail "no list of differing flags: $out"
echo "ok: another model shape is refused, naming the flags"

# 4. Fine-tuning from a corrupt file names file and dataset.
cp "$ckpt/ckpt-0000000020.h5" "$work/bad.h5"
size=$(stat -c %s "$work/bad.h5")
# At 1/6: the parameters (written first); --init_from reads no optimiser state.
dd if=/dev/urandom of="$work/bad.h5" bs=1 count=512 seek=$((size / 6)) conv=notrunc status=none
out=$(OPENBLAS_NUM_THREADS=1 "$train" --train_data="$data/train.h5" --run_dir="$work/ft" \
  --total_steps=1 --batch_size=32 --hidden_size=16 --num_layers=2 --num_heads=2 --mlp_dim=32 \
  --patch_size=7 --moe_layers=every:2 --num_experts=4 --init_from="$work/bad.h5" 2>&1)
(($? != 0)) || fail "--init_from a corrupt file succeeded"
grep -Eq "error: .*(bad.h5.*params/|params/.*bad.h5)" <<<"$out" ||
  fail "the error does not name file and dataset: $out"
echo "ok: $(tail -n 1 <<<"$out")"
