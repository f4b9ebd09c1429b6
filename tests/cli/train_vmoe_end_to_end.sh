#!/usr/bin/env bash
# vmoe_train ($1) on Fashion-MNIST ($2) as a small V-MoE (token routing,
# every-2, E=4, k=2) with a final capacity sweep; checks the routing metrics
# in metrics.jsonl, sweep.json, result.json, and test precision@1 > 0.6.
set -eu
train=$1
data=$2
run=$3
rm -rf "$run"
"$train" --train_data="$data/train.h5" --eval_data="$data/test.h5" --run_dir="$run" \
  --total_steps=300 --batch_size=64 --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 \
  --patch_size=7 --warmup_steps=20 --learning_rate=3e-3 --log_every=100 \
  --moe_layers=every:2 --num_experts=4 --num_selected=2 --eval_capacity_sweep=1.05,0.5
grep -q '"moe/block_1/importance_loss"' "$run/metrics.jsonl"
grep -q '"moe/block_1/load_loss"' "$run/metrics.jsonl"
grep -q '"moe/block_1/dropped"' "$run/metrics.jsonl"
grep -q '"moe/block_1/load_e3"' "$run/metrics.jsonl"
[[ $(grep -c '"capacity_ratio"' "$run/sweep.json") -eq 4 ]]
grep -q '"dropped"' "$run/result.json"
p=$(sed -n 's/.*"precision_at_1": \([0-9.]*\).*/\1/p' "$run/result.json")
echo "precision@1 = $p"
awk -v p="$p" 'BEGIN { exit !(p > 0.6) }'
