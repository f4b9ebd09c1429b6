#!/usr/bin/env bash
# Sets up and builds if needed, then runs every test (unit tests and the
# multi-rank tests under mpirun) with ctest. Extra arguments go to ctest,
# e.g. launch/test.sh -R Loader
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "${VMOE_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" "$@"
