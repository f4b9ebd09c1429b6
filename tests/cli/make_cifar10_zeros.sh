#!/usr/bin/env bash
# Writes an all-zero CIFAR-10 binary set (10 records per file) into $1 and
# imports it with vmoe_import ($2) into $3: a 32x32x3 dataset for shape tests.
set -eu
mkdir -p "$1"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
  head -c $((3073 * 10)) /dev/zero >"$1/$f.bin"
done
"$2" --format=cifar10 --input="$1" --output="$3"
