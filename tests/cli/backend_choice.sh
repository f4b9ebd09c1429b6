#!/usr/bin/env bash
# launch/choose_backend.sh, the main job's choice of backend and ranks, with a
# stand-in nvidia-smi listing 0 or 2 GPUs and build folders with and without
# the CUDA backend's test program.
#   backend_choice.sh CHOOSE_BACKEND_SH
set -uo pipefail
choose=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/none" "$work/two" "$work/cuda_build/tests" "$work/cpu_build/tests"
printf '#!/bin/sh\nexit 9\n' >"$work/none/nvidia-smi"  # no driver: nothing listed
printf '#!/bin/sh\necho "GPU 0: A (UUID: a)"\necho "GPU 1: B (UUID: b)"\n' >"$work/two/nvidia-smi"
printf '#!/bin/sh\n' >"$work/cuda_build/tests/cuda_backend_test"
chmod +x "$work"/*/nvidia-smi "$work/cuda_build/tests/cuda_backend_test"
cores=$(nproc)
failed=0
# expect GPUS BUILD "EXPECTED OUTPUT or exit:N" [VAR=VALUE...]
expect() {
  local gpus=$1 build=$2 want=$3 got rc
  shift 3
  got=$(env -u VMOE_BACKEND -u VMOE_RANKS "$@" PATH="$work/$gpus:$PATH" "$choose" "$work/$build" 2>"$work/err")
  rc=$?
  [[ $rc -ne 0 ]] && got="exit:$rc"
  if [[ $got != "$want" ]]; then
    echo "FAIL: $gpus GPUs, $build, ${*:-defaults}: got '$got' ($(cat "$work/err")), want '$want'"
    failed=1
  else
    echo "ok: $gpus GPUs, $build, ${*:-defaults}: $got"
  fi
}
expect none cuda_build "cpu $cores"
expect two cuda_build "cuda 2"
expect two cpu_build "cpu $cores"  # GPUs, but a build without CUDA
expect two cuda_build "cpu $cores" VMOE_BACKEND=cpu
expect two cuda_build "cuda 1" VMOE_RANKS=1
expect none cpu_build "cpu 3" VMOE_RANKS=3
expect none cuda_build "exit:2" VMOE_BACKEND=cuda
expect two cuda_build "exit:2" VMOE_BACKEND=gpu
grep -q "must be cpu, cuda or auto" "$work/err" || { echo "FAIL: no message for a bad VMOE_BACKEND"; failed=1; }
exit $failed
