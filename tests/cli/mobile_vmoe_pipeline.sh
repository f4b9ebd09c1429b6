#!/usr/bin/env bash
# The Mobile V-MoE pipeline on Fashion-MNIST: import with a validation split,
# train a small dense ViT and take its confusion matrix on the validation
# split, cluster it into 3 super-classes (vmoe_superclass), then train a
# per-image-routed Mobile V-MoE with the super-class loss.
#   mobile_vmoe_pipeline.sh BUILD_LAUNCH_DIR FASHION_MNIST_DIR WORK_DIR
set -eu
bin=$1
src=$2
work=$3
rm -rf "$work"
"$bin/vmoe_import" --format=fashion_mnist --input="$src" --output="$work/data" \
  --validation_size=5000
small=(--batch_size=64 --hidden_size=32 --num_layers=2 --num_heads=2 --mlp_dim=64 --patch_size=7
  --warmup_steps=20 --learning_rate=3e-3 --log_every=100)
"$bin/vmoe_train" --train_data="$work/data/train.h5" --eval_data="$work/data/val.h5" \
  --run_dir="$work/dense" --total_steps=200 "${small[@]}"
"$bin/vmoe_superclass" --confusion="$work/dense/confusion.csv" --num_superclasses=3 \
  --datasets="$work/data/train.h5,$work/data/val.h5,$work/data/test.h5"
"$bin/vmoe_train" --train_data="$work/data/train.h5" --eval_data="$work/data/test.h5" \
  --run_dir="$work/mobile" --total_steps=300 "${small[@]}" --moe_layers=last:1 \
  --num_experts=3 --num_selected=1 --routing=image
grep -q '"moe/image_router/superclass_loss"' "$work/mobile/metrics.jsonl"
grep -q '"moe/image_router/superclass_accuracy"' "$work/mobile/metrics.jsonl"
acc=$(sed -n 's/.*"router_superclass_accuracy": \([0-9.]*\).*/\1/p' "$work/mobile/result.json")
p=$(sed -n 's/.*"precision_at_1": \([0-9.]*\).*/\1/p' "$work/mobile/result.json")
echo "precision@1 = $p, router super-class accuracy = $acc"
awk -v p="$p" -v a="$acc" 'BEGIN { exit !(p > 0.6 && a > 0.5) }'
