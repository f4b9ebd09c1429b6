#!/usr/bin/env bash
# Installs the Debian packages the project needs (only those missing), then
# configures and builds Release into build/. Safe to run again: it does only
# what is left to do. Without root or passwordless sudo it prints the
# apt-get line to run and stops.
#
#   launch/setup.sh            # packages + build
#   VMOE_CMAKE_ARGS="-DVMOE_CUDA=OFF" launch/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libgflags-dev libgtest-dev
  libopenblas-dev liblapacke-dev
  zlib1g-dev libpng-dev libjpeg62-turbo-dev
  libjpeg-turbo-progs  # cjpeg: JPEG folders for the image_folder import test
  dataset-fashion-mnist
  python3-h5py python3-matplotlib
  python3-protobuf  # tf.Example files for the tfrecord import test
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo)
  else
    echo "setup: these packages are missing: ${missing[*]}" >&2
    echo "setup: run this as root, then run launch/setup.sh again:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${VMOE_BUILD_DIR:-build}
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${VMOE_CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
