#!/usr/bin/env bash
# Reproduces the README's Fashion-MNIST comparison: a dense ViT, V-MoE with
# k=2 (plus its capacity sweep, BPR against vanilla) and k=1, and Mobile V-MoE
# per-image routing with and without the super-class loss; all the same
# dense width and schedule (15 epochs). Prints a table and writes it to
# OUT/summary.md.
#   launch/compare_fmnist.sh [OUT_DIR]      (about 45 minutes on 2 cores)
# Runs already finished in OUT_DIR are kept, so an interrupted comparison resumes.
# Super-classes: a dense ViT trained 3 epochs on 55,000 training images is
# evaluated on the 5,000 held-out ones; vmoe_superclass clusters its confusion
# matrix into 5 balanced super-classes, written into copies of the data.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
BIN=${VMOE_BUILD_DIR:-build}/launch
OUT=${1:-runs/compare-$(date +%Y%m%d-%H%M%S)}
DATA=data/fashion_mnist
FMNIST=/usr/share/datasets/fashion-mnist
RANKS=${VMOE_RANKS:-$(nproc)}
# One rank per core, one BLAS thread per rank (as launch/run.sh).
export OPENBLAS_NUM_THREADS=1
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
launcher=()
((RANKS > 1)) && launcher=(mpirun -np "$RANKS")
mkdir -p "$OUT"
[[ -f $DATA/train.h5 && -f $DATA/test.h5 ]] ||
  "$BIN/vmoe_import" --format=fashion_mnist --input=$FMNIST --output=$DATA

train() {  # name flagfile data_dir [flags...]
  local name=$1 config=$2 data=$3
  shift 3
  [[ -f $OUT/$name/result.json ]] && return 0  # resumable: finished runs are kept
  rm -rf "${OUT:?}/$name"
  "${launcher[@]}" "$BIN/vmoe_train" --flagfile="$config" --train_data="$data/train.h5" \
    --eval_data="$data/test.h5" --run_dir="$OUT/$name" "$@" | tail -n 12
}

# Super-classes from a held-out confusion matrix.
if [[ ! -f $OUT/superclass_data/test.h5 ]]; then
  "$BIN/vmoe_import" --format=fashion_mnist --input=$FMNIST --output="$OUT/split_data" \
    --validation_size=5000
  rm -rf "${OUT:?}/superclass_model"  # an interrupted earlier attempt
  "${launcher[@]}" "$BIN/vmoe_train" --flagfile=launch/configs/vit_fmnist.flags --num_epochs=3 \
    --train_data="$OUT/split_data/train.h5" --eval_data="$OUT/split_data/val.h5" \
    --run_dir="$OUT/superclass_model" | tail -n 3
  mkdir -p "$OUT/superclass_data"
  cp $DATA/train.h5 $DATA/test.h5 "$OUT/superclass_data/"
  "$BIN/vmoe_superclass" --confusion="$OUT/superclass_model/confusion.csv" --num_superclasses=5 \
    --datasets="$OUT/superclass_data/train.h5,$OUT/superclass_data/test.h5" |
    tee "$OUT/superclasses.txt"
fi

train dense launch/configs/vit_fmnist.flags $DATA
train vmoe_k2 launch/configs/vmoe_fmnist.flags $DATA
train vmoe_k1 launch/configs/vmoe_fmnist.flags $DATA --num_selected=1 --eval_capacity_sweep=
train mobile_superclass launch/configs/mobile_vmoe_fmnist.flags "$OUT/superclass_data"
train mobile_no_superclass launch/configs/mobile_vmoe_fmnist.flags "$OUT/superclass_data" \
  --superclass_loss_weight=0

field() { sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" "$OUT/$1/result.json"; }
{
  echo "| model | test precision@1 | MFLOP/image (forward) | parameters | training time (s) |"
  echo "|---|---|---|---|---|"
  for run in dense vmoe_k2 vmoe_k1 mobile_superclass mobile_no_superclass; do
    printf "| %s | %.2f%% | %.1f | %s | %.0f |\n" "$run" "$(awk -v p="$(field $run precision_at_1)" 'BEGIN{print 100*p}')" \
      "$(field $run forward_mflops_per_image)" "$(field $run parameters)" "$(field $run train_seconds)"
  done
  echo
  echo "Capacity sweep of vmoe_k2 (precision@1, dropped choices):"
  echo
  echo "| capacity ratio | BPR | vanilla |"
  echo "|---|---|---|"
  sed -n 's/.*"capacity_ratio": \([0-9.]*\), "batch_priority": \([01]\), "precision_at_1": \([0-9.]*\), "loss": [0-9.e+-]*, "dropped": \([0-9.e+-]*\).*/\1 \2 \3 \4/p' \
    "$OUT/vmoe_k2/sweep.json" |
    awk '{ key=$1; v=sprintf("%.2f%% (%.1f%% dropped)", 100*$3, 100*$4); if ($2==1) bpr[key]=v; else van[key]=v; order[NR]=key }
         END { for (i=1;i<=NR;i++) { k=order[i]; if (!(k in seen)) { seen[k]=1; printf "| %s | %s | %s |\n", k, bpr[k], van[k] } } }'
} | tee "$OUT/summary.md"
echo "runs and summary: $OUT"
