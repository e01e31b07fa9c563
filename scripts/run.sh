#!/usr/bin/env bash
# Installs what is missing, builds qunbot (Release), and starts it on the embedded default
# configuration (config/qunbot.json): 127.0.0.1:8080, SQLite in var/, a demo WeCom app whose
# token and EncodingAESKey are generated into var/ on first start. It prints how to send it a
# test event. Ctrl-C (or SIGTERM) drains and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target qunbot
mkdir -p var
exec ./build/qunbot serve "$@"
