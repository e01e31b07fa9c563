#!/usr/bin/env bash
# Installs what is missing, builds everything (warnings are errors), and runs the whole test
# suite through ctest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQUNBOT_WERROR=ON -DQUNBOT_BUILD_TESTS=ON
cmake --build build
cd build
ctest --output-on-failure -j "$(nproc)"
