#!/usr/bin/env bash
# Installs the Debian 12 packages qunbot builds and tests with, only those that are missing,
# so a second run costs one dpkg-query. Every package is explained in README.md.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config
  libboost1.81-dev      # Beast, Asio, URL: HTTP server and client, async runtime
  libssl-dev            # AES-256-CBC, SHA-1, TLS
  libsqlite3-dev libsqlitecpp-dev   # storage
  nlohmann-json3-dev    # JSON callback bodies, config
  libpugixml-dev        # XML callback bodies and event payloads
  libspdlog-dev         # structured logging
  libcli11-dev          # command line
  libyaml-cpp-dev       # staff-edited rule files (with line/column marks for diagnostics)
  libre2-dev            # user-written regexes in rules: linear time, no catastrophic backtracking
  libhowardhinnant-date-dev tzdata  # IANA time zones for schedules (the system tz database; g++ 12 has no std::chrono::tzdb)
  libzbar-dev           # QR codes in group images (ad cleanup)
  libpng-dev libturbojpeg0-dev  # decoding those images (PNG, JPEG) to grey for zbar
  libqrencode-dev       # tests only: QR codes to put in test images
  catch2                # tests (v2.13, catch_discover_tests)
  libbenchmark-dev      # in-process micro-benchmarks (bench/)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "qunbot: installing missing packages: ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
