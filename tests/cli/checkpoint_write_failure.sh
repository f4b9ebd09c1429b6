#!/usr/bin/env bash
# A checkpoint write that fails on one rank (the last, in the middle of the
# collective write: VMOE_TEST_FAIL_CHECKPOINT_DATASET), on N ranks:
#  1. the job stops (no hang), non-zero, with one line naming the checkpoint
#     and the failing rank; no .tmp is left and the earlier checkpoint is
#     intact: --resume uses it;
#  2. with --checkpoint_failures_allowed the run warns, logs the failure in
#     metrics.jsonl and finishes;
#  3. metrics.jsonl holds each step once after the resumes.
#   checkpoint_write_failure.sh MPIEXEC VMOE_TRAIN DATA_DIR WORK_DIR RANKS
set -u
mpiexec=$1
train=$2
data=$3
work=$4
n=$5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
run() {  # total_steps [flags]: stdout to out.txt, stderr to err.txt; returns the exit code
  local steps=$1
  shift
  timeout 120 "$mpiexec" -np "$n" --oversubscribe "$train" --train_data="$data/train.h5" \
    --run_dir="$work/run" --total_steps="$steps" --batch_size=32 --hidden_size=16 \
    --num_layers=2 --num_heads=2 --mlp_dim=32 --patch_size=7 --moe_layers=every:2 \
    --num_experts=4 --checkpoint_every=2 --log_every=1 "$@" >"$work/out.txt" 2>"$work/err.txt"
}
ckpt=$work/run/checkpoints

run 2 || fail "first run: $(cat "$work/err.txt")"
[[ -f $ckpt/ckpt-0000000002.h5 ]] || fail "no checkpoint at step 2"

# 1. The step-4 write fails on rank n-1 at its fourth dataset.
VMOE_TEST_FAIL_CHECKPOINT_DATASET=3 run 4 --resume
code=$?
((code != 124)) || fail "the job hung"
((code != 0)) || fail "a failed checkpoint write exited 0"
errors=$(grep "vmoe_train: error" "$work/err.txt")
[[ $(grep -c . <<<"$errors") == 1 ]] || fail "expected one error line: $(cat "$work/err.txt")"
rank=""
((n > 1)) && rank=" (rank $((n - 1)))"
grep -Fq "vmoe_train: error: cannot write checkpoint $ckpt/ckpt-0000000004.h5 (" <<<"$errors" &&
  grep -Fq "test failure of dataset 3$rank" <<<"$errors" ||
  fail "the message does not name the checkpoint and the rank: $errors"
! grep -q "MPI_ABORT" "$work/err.txt" || fail "an agreed error should not abort: $(cat "$work/err.txt")"
ls "$ckpt" | grep -q tmp && fail "a .tmp was left: $(ls "$ckpt")"
[[ $(ls "$ckpt") == ckpt-0000000002.h5 ]] || fail "expected only ckpt-2: $(ls "$ckpt")"
run 3 --resume --checkpoint_every=0 || fail "resume from ckpt-2 after the failure: $(cat "$work/err.txt")"
grep -q "resumed at step 2" "$work/out.txt" || fail "did not resume at step 2: $(cat "$work/out.txt")"
echo "ok: $errors"

# 2. Allowed failures: the run goes on (step 4 and the final step 6 fail).
VMOE_TEST_FAIL_CHECKPOINT_DATASET=3 run 6 --resume --checkpoint_failures_allowed=2 ||
  fail "with failures allowed: $(cat "$work/err.txt")"
[[ $(grep -c "^warning: cannot write checkpoint" "$work/out.txt") == 2 ]] ||
  fail "expected 2 warnings: $(cat "$work/out.txt")"
[[ $(grep -c '"type": "checkpoint_failed"' "$work/run/metrics.jsonl") == 2 ]] ||
  fail "metrics.jsonl lacks the 2 failures"
# ckpt-3 from the resume above, nothing newer.
[[ $(ls "$ckpt" | tr '\n' ' ') == "ckpt-0000000002.h5 ckpt-0000000003.h5 " ]] ||
  fail "expected ckpt-2 and ckpt-3: $(ls "$ckpt")"
VMOE_TEST_FAIL_CHECKPOINT_DATASET=3 run 8 --resume --checkpoint_failures_allowed=1
(($? != 0)) || fail "a second failure beyond --checkpoint_failures_allowed=1 exited 0"
echo "ok: failures within --checkpoint_failures_allowed are warnings"

# 3. Each train step once, though steps 4-6 ran twice: the last run resumed at
# 3 again and stopped at its second failed write, at step 6.
steps=$(grep '"type": "train"' "$work/run/metrics.jsonl" | sed 's/.*"step": \([0-9]*\).*/\1/' |
  tr '\n' ' ')
[[ $steps == "1 2 3 4 5 6 " ]] || fail "train records by step: $steps"
echo "ok: metrics.jsonl holds steps $steps once each"
