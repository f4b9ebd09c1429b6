#!/usr/bin/env bash
# Streams a synthetic JFT-like dataset (vmoe_synth: sharded JPEGs, sparse
# multi-hot labels) through vmoe_train and samples the trainer's resident
# memory every few seconds: with a bounded loader it stays flat however
# large the dataset. Writes the dataset first if it is not there (1M
# 224x224 JPEGs: about 18 GB and 15 minutes on 2 cores; finished shards are
# kept, so an interrupted run resumes).
#   tests/bench/stream_synth.sh [--images=1000000] [--seconds=300] [--dir=data/synth_1m]
#                               [--ranks=1] [--threads=2] [vmoe_train flags...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VMOE_BUILD_DIR:-$ROOT/build}/launch
images=1000000 seconds=300 dir=$ROOT/data/synth_1m ranks=1 threads=2
args=()
for a in "$@"; do
  case $a in
    --images=*) images=${a#--images=} ;;
    --seconds=*) seconds=${a#--seconds=} ;;
    --dir=*) dir=${a#--dir=} ;;
    --ranks=*) ranks=${a#--ranks=} ;;
    --threads=*) threads=${a#--threads=} ;;
    *) args+=("$a") ;;
  esac
done
[[ -x $BIN/vmoe_synth && -x $BIN/vmoe_train ]] || { echo "stream_synth: build first" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1

start=$(date +%s)
"$BIN/vmoe_synth" --output="$dir" --num_images="$images" --num_classes=1000 \
  --images_per_shard=10000 --image_size=224 | grep -v "images/s on rank 0" || true
echo "stream_synth: dataset ready in $(($(date +%s) - start)) s: $(du -sh "$dir" | cut -f1)"

run=$(mktemp -d)
# A small V-MoE at 64x64 (crops of the 224 JPEGs), so decoding, not the
# model, sets the pace; far more steps than fit in --seconds.
mpirun -np "$ranks" --oversubscribe "$BIN/vmoe_train" --train_data="$dir/train-*.h5" \
  --image_size=64 --patch_size=16 --hidden_size=64 --num_layers=2 --num_heads=2 --mlp_dim=128 \
  --moe_layers=every:2 --num_experts=4 --batch_size=128 --total_steps=100000000 \
  --log_every=50 --checkpoint_every=1000000000 --loader_threads="$threads" --run_dir="$run" \
  "${args[@]}" >"$run/log.txt" 2>&1 &
launcher=$!
trap 'kill $launcher 2>/dev/null || true; rm -rf "$run"' EXIT
sleep 5
pids=$(pgrep -f "^$BIN/vmoe_train --train_data=$dir" | tr '\n' ' ')
echo "stream_synth: sampling RSS of ranks [$pids] every 10 s for $seconds s"
printf '%8s %12s %10s\n' seconds "rss MiB" images
t0=$(date +%s)
first="" last=""
while (($(date +%s) - t0 < seconds)) && kill -0 $launcher 2>/dev/null; do
  rss=0
  for p in $pids; do
    kb=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    rss=$((rss + kb))
  done
  step=$(grep -o 'step *[0-9]*' "$run/log.txt" | tail -1 | grep -o '[0-9]*' || echo 0)
  printf '%8d %12.1f %10d\n' $(($(date +%s) - t0)) "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" $((step * 128))
  [[ -z $first ]] && first=$rss
  last=$rss
  sleep 10
done
kill $launcher 2>/dev/null || true
wait $launcher 2>/dev/null || true
grep -E "img/s" "$run/log.txt" | tail -2
echo "stream_synth: RSS first $((first / 1024)) MiB, last $((last / 1024)) MiB ($(awk -v a="$first" -v b="$last" 'BEGIN {printf "%+.1f", 100 * (b - a) / a}')% change)"
