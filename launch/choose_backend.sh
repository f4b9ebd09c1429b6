#!/usr/bin/env bash
# The backend and rank count of the main job (launch/run.sh), printed as
# "BACKEND RANKS":
#   launch/choose_backend.sh BUILD_DIR
# VMOE_BACKEND=auto (the default) picks cuda, one rank per GPU, where
# nvidia-smi lists a GPU and BUILD_DIR has the CUDA backend (its
# tests/cuda_backend_test is built exactly then), else cpu, one rank per
# core. VMOE_BACKEND=cpu|cuda forces the backend, VMOE_RANKS=N the ranks.
set -euo pipefail
build=${1:?usage: launch/choose_backend.sh BUILD_DIR}
backend=${VMOE_BACKEND:-auto}
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [[ $backend == auto ]]; then
  backend=cpu
  if ((gpus > 0)) && [[ -x $build/tests/cuda_backend_test ]]; then backend=cuda; fi
fi
case $backend in
  cpu) ranks=${VMOE_RANKS:-$(nproc)} ;;
  cuda)
    ((gpus > 0)) || { echo "run: VMOE_BACKEND=cuda but nvidia-smi lists no GPU" >&2; exit 2; }
    ranks=${VMOE_RANKS:-$gpus}
    ;;
  *) echo "run: VMOE_BACKEND must be cpu, cuda or auto, got '$backend'" >&2; exit 2 ;;
esac
echo "$backend $ranks"
