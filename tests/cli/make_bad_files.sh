#!/usr/bin/env bash
# Writes broken dataset files for the command-line error tests into $1,
# starting from a good file $2: truncated, not HDF5, bytes overwritten.
set -eu
out=$1
good=$2
mkdir -p "$out"
size=$(stat -c %s "$good")
head -c $((size / 2)) "$good" >"$out/truncated.h5"
echo "this is not an HDF5 file" >"$out/text.h5"
cp "$good" "$out/corrupt.h5"
# Overwrite 4 KiB in the middle of the pixel data; Fletcher32 must notice.
dd if=/dev/urandom of="$out/corrupt.h5" bs=1 count=4096 seek=$((size / 2)) conv=notrunc status=none
