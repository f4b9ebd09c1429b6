#!/usr/bin/env bash
# The main job on a fresh clone: set up (packages, build), import
# Fashion-MNIST into our HDF5 format, train the default configuration (a
# V-MoE) with one MPI rank per core (per GPU on a GPU machine), evaluate the final checkpoint with
# vmoe_eval (test precision@1, capacity sweep BPR vs vanilla, class x expert
# routing, 1/5/10/25-shot linear evaluation), and draw the report
# (RUN_DIR/report/index.html). Extra arguments go to vmoe_train (e.g.
# launch/run.sh --num_epochs=1).
#   VMOE_CONFIG=launch/configs/vit_fmnist.flags launch/run.sh   # the dense ViT
#   VMOE_RANKS=1 launch/run.sh                                  # one process
#   VMOE_BACKEND=cpu launch/run.sh     # cpu | cuda | auto (the default: cuda,
#                                      # one rank per GPU, where there are GPUs
#                                      # and a CUDA build; launch/choose_backend.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh

BUILD=${VMOE_BUILD_DIR:-build}
DATA=${VMOE_DATA_DIR:-data/fashion_mnist}
CONFIG=${VMOE_CONFIG:-launch/configs/vmoe_fmnist.flags}
# cpu (one rank per core) or cuda (one rank per GPU): launch/choose_backend.sh.
choice=$(launch/choose_backend.sh "$BUILD")
read -r BACKEND RANKS <<<"$choice"
RUN_DIR=${VMOE_RUN_DIR:-runs/$(basename "$CONFIG" .flags)-$(date +%Y%m%d-%H%M%S)}

if [[ ! -f $DATA/train.h5 || ! -f $DATA/test.h5 ]]; then
  "$BUILD/launch/vmoe_import" --format=fashion_mnist --input=/usr/share/datasets/fashion-mnist \
    --output="$DATA"
fi

# One BLAS thread per rank.
export OPENBLAS_NUM_THREADS=1
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
launcher=()
((RANKS > 1)) && launcher=(mpirun -np "$RANKS")
echo "run: $RANKS rank(s), --backend=$BACKEND"
"${launcher[@]}" "$BUILD/launch/vmoe_train" --flagfile="$CONFIG" --train_data="$DATA/train.h5" \
  --eval_data="$DATA/test.h5" --run_dir="$RUN_DIR" --backend="$BACKEND" "$@"

# Evaluation of the final checkpoint into $RUN_DIR/eval (the sweep for MoE models only).
sweep=()
grep -q '^--moe_layers=.' "$RUN_DIR/flags.txt" && sweep=(--eval_capacity_sweep=2,1.5,1.05,0.75,0.5,0.25)
"${launcher[@]}" "$BUILD/launch/vmoe_eval" --checkpoint="$RUN_DIR" --eval_data="$DATA/test.h5" \
  --fewshot="$DATA" --backend="$BACKEND" "${sweep[@]}"
report=$(launch/report.py "$RUN_DIR" | tail -n 1)

echo
echo "result:        $(cat "$RUN_DIR/result.json")"
echo "run directory: $RUN_DIR"
echo "$report"
