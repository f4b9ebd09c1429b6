#!/usr/bin/env bash
# The same configuration and seed trained on 1, 2 and 4 ranks must give the
# same losses (first 20 steps, relative difference <= 1e-4) and the same test
# precision@1 (to 2 of 10,000 images: a prediction within float rounding of
# a tie may flip). With experts, 4 ranks once more with
# --expert_exchange=all_to_all: the exchanges in shared memory (the default on
# one node) and the all-to-alls give the same losses bit for bit.
#   world_size_invariance.sh MPIEXEC VMOE_TRAIN DATA_DIR WORK_DIR [vmoe_train flags...]
set -eu
mpiexec=$1
train=$2
data=$3
work=$4
shift 4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$work"
mkdir -p "$work"
run() {  # NAME RANKS [more flags...]
  local name=$1 n=$2
  shift 2
  "$mpiexec" -np "$n" --oversubscribe "$train" --train_data="$data/train.h5" \
    --eval_data="$data/test.h5" --run_dir="$work/$name" --total_steps=20 --batch_size=64 \
    --eval_batch_size=512 --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 \
    --patch_size=7 --warmup_steps=5 --learning_rate=3e-3 --log_every=1 --seed=3 "$@" \
    >"$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
  grep -E '^(experts|ranks):' "$work/$name.log"
}
flags=("$@")
for n in 1 2 4; do run "ranks_$n" $n "${flags[@]}"; done
losses() { sed -n 's/.*"type": "train", "step": [0-9]*, "epoch": [0-9.e+-]*, "loss": \([0-9.e+-]*\),.*/\1/p' "$1"; }
precision() { sed -n 's/.*"precision_at_1": \([0-9.]*\).*/\1/p' "$1"; }
status=0
for n in 2 4; do
  paste <(losses "$work/ranks_1/metrics.jsonl") <(losses "$work/ranks_$n/metrics.jsonl") |
    awk -v n=$n 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1);
                 if (r > worst) worst = r; count++ }
                 END { printf "%d ranks: %d losses, worst relative difference %.2e\n", n, count, worst;
                       exit (bad || count != 20 || worst > 1e-4) }' || status=1
  p1=$(precision "$work/ranks_1/result.json")
  pn=$(precision "$work/ranks_$n/result.json")
  echo "$n ranks: test precision@1 $pn (1 rank: $p1)"
  awk -v a="$p1" -v b="$pn" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.0002) }' || status=1
done
if [[ " ${flags[*]} " == *" --num_experts="* ]]; then
  run sent_4 4 "${flags[@]}" --expert_exchange=all_to_all
  if cmp -s <(losses "$work/ranks_4/metrics.jsonl") <(losses "$work/sent_4/metrics.jsonl") &&
    [[ $(losses "$work/sent_4/metrics.jsonl" | wc -l) -eq 20 ]]; then
    echo "4 ranks, --expert_exchange=all_to_all: the same 20 losses bit for bit"
  else
    echo "4 ranks, --expert_exchange=all_to_all: losses differ from the exchange in shared memory"
    status=1
  fi
fi
exit $status
