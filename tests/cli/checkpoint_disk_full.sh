#!/usr/bin/env bash
# Checkpoints on a full disk, 2 ranks, the checkpoint folder on a small tmpfs
# (room for one and a half checkpoints). Skipped (77) where mounting is not
# allowed.
#  1. Before the first step: a folder too small for one checkpoint is an
#     error naming the folder, the free and the needed space.
#  2. The second checkpoint does not fit: the run stops with "No space left on
#     device" before writing it; the first is intact (vmoe_eval reads it).
#  3. The same past the room check (the disk filled by another writer): the
#     space reservation made before the collective write finds it; no hang,
#     the same message, no .tmp, the first checkpoint intact.
#  4. With --checkpoint_failures_allowed the run finishes.
#   checkpoint_disk_full.sh MPIEXEC VMOE_TRAIN VMOE_EVAL DATA_DIR WORK_DIR
set -u
mpiexec=$1
train=$2
eval=$3
data=$4
work=$5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }
disk=$work/disk
umount "$disk" 2>/dev/null
rm -rf "$work"
mkdir -p "$disk"
trap 'umount "$disk" 2>/dev/null' EXIT
run() {  # ckpt_dir total_steps [flags]: stdout to out.txt, stderr to err.txt
  local dir=$1 steps=$2
  shift 2
  timeout 120 "$mpiexec" -np 2 --oversubscribe "$train" --train_data="$data/train.h5" \
    --run_dir="$work/run" --checkpoint_dir="$dir" --total_steps="$steps" --batch_size=32 \
    --hidden_size=64 --num_layers=2 --num_heads=2 --mlp_dim=128 --patch_size=7 \
    --moe_layers=every:2 --num_experts=4 --checkpoint_every=1 --keep_checkpoints=5 \
    --log_every=1 "$@" >"$work/out.txt" 2>"$work/err.txt"
}
mount_disk() {  # KiB
  umount "$disk" 2>/dev/null
  mount -t tmpfs -o size="${1}k" tmpfs "$disk"
}

# The size of one checkpoint, written where there is room.
run "$work/big" 1 || fail "a run with room: $(cat "$work/err.txt")"
size=$(stat -c %s "$work/big/ckpt-0000000001.h5")
if ! mount_disk 64 2>"$work/mount.txt"; then
  echo "skipped: cannot mount a tmpfs here ($(cat "$work/mount.txt"))"
  exit 77
fi

# 1. No room for one checkpoint.
run "$disk/ckpt" 1 --overwrite
(($? != 0 && $? != 124)) || fail "no room for a checkpoint: exit $?"
grep -Eq "vmoe_train: error: checkpoint folder $disk/ckpt: No space left on device: $disk/ckpt has [0-9.]+ MiB free, a checkpoint needs about [0-9.]+ MiB" "$work/err.txt" ||
  fail "no clear pre-flight error: $(cat "$work/err.txt")"
grep -q "^step" "$work/out.txt" && fail "it trained before failing"
echo "ok: $(grep error "$work/err.txt")"

check_first_intact() {
  ls "$disk/ckpt" | grep -q tmp && fail "a .tmp was left: $(ls "$disk/ckpt")"
  [[ $(ls "$disk/ckpt") == ckpt-0000000001.h5 ]] || fail "expected ckpt-1 alone: $(ls "$disk/ckpt")"
  timeout 120 "$mpiexec" -np 2 --oversubscribe "$eval" --checkpoint="$disk/ckpt" \
    --eval_data="$data/test.h5" --out_dir="$work/eval" >/dev/null 2>"$work/eval_err.txt" ||
    fail "the first checkpoint is not readable: $(cat "$work/eval_err.txt")"
}

# 2. Room for one and a half: the second stops the run before it is written.
mount_disk $((size * 3 / 2 / 1024)) || fail "mount"
run "$disk/ckpt" 3 --overwrite
code=$?
((code != 0 && code != 124)) || fail "the full disk: exit $code"
grep -Eq "vmoe_train: error: cannot write checkpoint $disk/ckpt/ckpt-0000000002.h5: No space left on device: $disk/ckpt has [0-9.]+ MiB free, a checkpoint needs about [0-9.]+ MiB" "$work/err.txt" ||
  fail "no clear disk-full error: $(cat "$work/err.txt")"
check_first_intact
echo "ok: $(grep error "$work/err.txt")"

# 3. The room check skipped (as when another writer fills the disk after it):
# the space reservation before the collective write finds it, the job ends
# with the same message and no hang, the first checkpoint intact. Then the
# same with the reservation a file system without fallocate gets.
for emulated in "" 1; do
  mount_disk $((size * 3 / 2 / 1024)) || fail "mount"
  VMOE_TEST_EMULATED_RESERVE=$emulated VMOE_TEST_SKIP_ROOM_CHECK=1 run "$disk/ckpt" 3 --overwrite
  code=$?
  ((code != 124)) || fail "the job hung on a full disk"
  ((code != 0)) || fail "the full disk mid-write: exit 0"
  errors=$(grep "vmoe_train: error" "$work/err.txt")
  [[ $(grep -c . <<<"$errors") == 1 ]] || fail "expected one error line: $(cat "$work/err.txt")"
  grep -Eq "vmoe_train: error: cannot write checkpoint $disk/ckpt/ckpt-0000000002.h5 \(create\): No space left on device: $disk/ckpt has [0-9.]+ MiB free, the checkpoint needs about [0-9.]+ MiB \(rank 0\)" <<<"$errors" ||
    fail "no clear disk-full error: $errors"
  check_first_intact
  echo "ok: $errors"
done

# 4. Failures allowed: the run finishes, its failed checkpoints reported.
VMOE_TEST_SKIP_ROOM_CHECK=1 run "$disk/ckpt" 3 --overwrite --checkpoint_failures_allowed=5 ||
  fail "with failures allowed: $(cat "$work/err.txt")"
[[ $(grep -c "^warning: cannot write checkpoint.*No space left on device" "$work/out.txt") == 2 ]] ||
  fail "expected 2 warnings: $(cat "$work/out.txt")"
check_first_intact
echo "ok: with --checkpoint_failures_allowed=5 the run finished, 2 checkpoints failed"
