#!/usr/bin/env bash
# vmoe_train ($1) on Fashion-MNIST ($2/train.h5, $2/test.h5) for 300 steps of
# a small ViT; checks the log lines, metrics.jsonl, result.json, and that the
# test precision@1 is far above chance (0.1).
set -eu
train=$1
data=$2
run=$3
rm -rf "$run"
out=$("$train" --train_data="$data/train.h5" --eval_data="$data/test.h5" --run_dir="$run" \
  --total_steps=300 --batch_size=64 --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 \
  --patch_size=7 --warmup_steps=20 --learning_rate=3e-3 --log_every=50 --eval_every=100)
echo "$out"
grep -q "^step    300/300" <<<"$out"
grep -q "^eval  step 100:" <<<"$out"
[[ $(grep -c '"type": "train"' "$run/metrics.jsonl") -eq 6 ]]
[[ $(grep -c '"type": "eval"' "$run/metrics.jsonl") -eq 3 ]]
grep -q -- "--hidden_size=32" "$run/flags.txt"
p=$(sed -n 's/.*"precision_at_1": \([0-9.]*\).*/\1/p' "$run/result.json")
echo "precision@1 = $p"
awk -v p="$p" 'BEGIN { exit !(p > 0.6) }'
