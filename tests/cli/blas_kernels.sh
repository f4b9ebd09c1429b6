#!/usr/bin/env bash
# The run header names the kernels: the CPU loops' instruction set and
# OpenBLAS's kernels. On a CPU with AVX2, generic OpenBLAS kernels are never
# used silently: forced with OPENBLAS_CORETYPE=Prescott (a user's setting is
# kept) they draw a warning naming the right ones; left to vmoe, the run
# uses AVX2/AVX-512 kernels, on 1 and 2 ranks, under mpirun too.
#   blas_kernels.sh MPIEXEC BIN_DIR FMNIST_DIR SCRATCH
set -euo pipefail
mpiexec=$1
bin=$2
fmnist=$3
out=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset OPENBLAS_CORETYPE VMOE_BLAS_AUTO
grep -qw avx2 /proc/cpuinfo || { echo "SKIP: no AVX2 on this CPU"; exit 77; }
rm -rf "$out"
mkdir -p "$out"
run=(--train_data="$fmnist/test.h5" --total_steps=2 --batch_size=32 --hidden_size=16
  --num_layers=2 --num_heads=2 --mlp_dim=32 --patch_size=7 --moe_layers=every:2 --num_experts=4
  --checkpoint_every=0)
modern='(Haswell|Zen|SkylakeX|Cooperlake|SapphireRapids|Excavator) kernels'
for ranks in 1 2; do
  log=$("$mpiexec" -np $ranks --oversubscribe "$bin/vmoe_train" "${run[@]}" --run_dir="$out/auto_$ranks" 2>&1)
  header=$(grep '^cpu: ' <<<"$log") || { echo "no cpu: line in the header"; echo "$log"; exit 1; }
  grep -qE "element-wise loops (AVX-512|AVX2)" <<<"$header" || { echo "loops not at AVX2/AVX-512: $header"; exit 1; }
  grep -qE "$modern" <<<"$header" || { echo "generic BLAS kernels left in use: $header"; exit 1; }
  if grep -q warning <<<"$log"; then echo "unexpected warning:"; echo "$log"; exit 1; fi
  echo "$ranks rank(s): $header"
done
log=$(OPENBLAS_CORETYPE=Prescott "$bin/vmoe_train" "${run[@]}" --run_dir="$out/forced" 2>&1)
grep -q "Prescott kernels" <<<"$log" || { echo "OPENBLAS_CORETYPE=Prescott not kept"; echo "$log"; exit 1; }
grep -qE "^warning: OpenBLAS runs its generic Prescott kernels on this (AVX2|AVX-512) CPU, several times slower; set OPENBLAS_CORETYPE=(Haswell|SkylakeX)$" <<<"$log" ||
  { echo "no warning for generic kernels:"; echo "$log"; exit 1; }
echo "forced Prescott: kept, with the warning"
