#!/usr/bin/env bash
# Trains 20 steps on N ranks with a checkpoint at step 10, then resumes from
# that checkpoint on M ranks and trains to step 20. Same N and M: the losses
# of steps 11-20 must be bit-identical to the uninterrupted run's; otherwise
# (resharding) equal within 1e-4 relative. Flags after M go to both runs
# (e.g. --precision=bf16: the weights' bf16 copy is rebuilt from the
# checkpoint, so the resumed run must still be bit-identical).
#   checkpoint_resume.sh MPIEXEC VMOE_TRAIN DATA_DIR WORK_DIR N M [FLAGS...]
set -eu
mpiexec=$1
train=$2
data=$3
work=$4
n=$5
m=$6
extra=("${@:7}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$work"
mkdir -p "$work"
run() {  # ranks run_dir [flags]
  local ranks=$1 dir=$2
  shift 2
  "$mpiexec" -np "$ranks" --oversubscribe "$train" --train_data="$data/train.h5" \
    --eval_data="$data/test.h5" --run_dir="$dir" --total_steps=20 --batch_size=64 \
    --eval_batch_size=512 --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 \
    --patch_size=7 --warmup_steps=5 --learning_rate=3e-3 --log_every=1 --seed=5 \
    --moe_layers=every:2 --num_experts=4 --num_selected=2 --checkpoint_every=10 \
    ${extra[@]+"${extra[@]}"} "$@" \
    >"$dir.log" 2>&1 || { cat "$dir.log"; return 1; }
}
run "$n" "$work/full"
# The interrupted run: its directory as it was after step 10.
mkdir -p "$work/resumed/checkpoints"
cp "$work/full/checkpoints/ckpt-0000000010.h5" "$work/resumed/checkpoints/"
run "$m" "$work/resumed" --resume
grep "resumed at step 10" "$work/resumed.log"
losses() { sed -n 's/.*"type": "train", "step": \([0-9]*\), "epoch": [0-9.e+-]*, "loss": \([0-9.e+-]*\),.*/\1 \2/p' "$1"; }
paste <(losses "$work/full/metrics.jsonl" | awk '$1 > 10') <(losses "$work/resumed/metrics.jsonl") |
  awk -v exact=$([[ $n == "$m" ]] && echo 1 || echo 0) -v n="$n" -v m="$m" '
    { if ($1 != $3) bad = 1; d = $2 - $4; if (d < 0) d = -d; r = d / $2; if (r > worst) worst = r;
      if ($2 != $4) differ++; count++ }
    END { printf "%d -> %d ranks: %d steps compared, %d differ, worst relative difference %.2e\n",
                 n, m, count, differ, worst;
          exit (bad || count != 10 || (exact && differ) || worst > 1e-4) }'
