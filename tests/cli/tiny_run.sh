# Sourced by the one-process checkpoint tests: `run STEPS [FLAGS...]` trains
# a tiny V-MoE (2 blocks, D 16, 4 experts every 2nd block) on $data/train.h5
# into $work/run with $train, printing its combined output and returning its
# exit code. A test sets its checkpoint flags in the array ckpt_flags.
run() {
  local steps=$1
  shift
  OPENBLAS_NUM_THREADS=1 "$train" --train_data="$data/train.h5" --run_dir="$work/run" \
    --total_steps="$steps" --batch_size=32 --hidden_size=16 --num_layers=2 --num_heads=2 \
    --mlp_dim=32 --patch_size=7 --moe_layers=every:2 --num_experts=4 \
    ${ckpt_flags[@]+"${ckpt_flags[@]}"} "$@" 2>&1
}
