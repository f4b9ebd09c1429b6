#!/usr/bin/env bash
# 2 ranks evaluate a file whose middle is corrupt: the rank that reads it must
# stop the job (exit non-zero, within 20 s) with its message.
#   rank_failure.sh MPIEXEC VMOE_TRAIN TRAIN_H5 CORRUPT_H5 RUN_DIR
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
start=$(date +%s)
err=$("$1" -np 2 "$2" --train_data="$3" --eval_data="$4" --run_dir="$5" --overwrite --total_steps=1 \
  --batch_size=64 --hidden_size=8 --num_heads=1 --mlp_dim=8 --num_layers=1 --patch_size=7 2>&1 >/dev/null)
code=$?
elapsed=$(($(date +%s) - start))
echo "$err" | grep "vmoe_train: error" || true
if ((code == 0)); then echo "FAIL: exit code 0"; exit 1; fi
if ! grep -Eq "vmoe_train: error \(rank [01] of 2\): .*corrupt.h5.*Fletcher32" <<<"$err"; then
  echo "FAIL: no rank message naming the file; stderr was:"; echo "$err"; exit 1
fi
if ((elapsed > 20)); then echo "FAIL: took ${elapsed}s"; exit 1; fi
echo "ok: exit $code after ${elapsed}s"
