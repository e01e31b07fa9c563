#!/usr/bin/env bash
# Benchmarks. `scripts/bench.sh intake [SECONDS]`: starts `qunbot serve` on a fresh database in a
# temporary directory (durability "full": every acknowledged callback is fsynced), drives it
# over loopback with distinct encrypted callbacks (keep-alive, 2 threads, 32 connections), first
# as fast as it answers, then at a fixed 5,000/s, and prints throughput, latency and the journal
# check; last, GET /healthz as fast as it answers, the HTTP ceiling of the machine. Client and
# server share this machine's cores.
# `scripts/bench.sh micro`: in-process micro-benchmarks of each intake step (bench/hot_paths.cpp).
# `scripts/bench.sh rules`: the rule engine on 1,000 rules / 10,000 keywords, and the moderation
# rule set (plus 50 regexes and the ad detectors), pinned to one core (bench/rules_engine.cpp).
# `scripts/bench.sh delivery [N]`: an in-process bot drains N outbox actions into the fake WeCom
# server over TLS on loopback (bench/delivery_drain.cpp).
# `scripts/bench.sh schedule [N]`: plans one schedule slot over N groups (default 100,000) and
# commits it (bench/schedule_plan.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-intake}
seconds=${2:-10}
case "$what" in intake|micro|rules|delivery|schedule) ;; *) echo "usage: scripts/bench.sh intake [SECONDS] | micro | rules | delivery [N] | schedule [N]" >&2; exit 2 ;; esac

./scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
if [ "$what" = micro ]; then
  cmake --build build --target qunbot_bench
  exec ./build/bench/qunbot_bench --benchmark_filter=-rules_
fi
if [ "$what" = schedule ]; then
  cmake --build build --target qunbot_schedule_plan
  exec ./build/bench/qunbot_schedule_plan "${2:-100000}"
fi
if [ "$what" = delivery ]; then
  cmake --build build --target qunbot_delivery_drain
  exec ./build/bench/qunbot_delivery_drain "${2:-5000}"
fi
if [ "$what" = rules ]; then
  cmake --build build --target qunbot_bench
  exec taskset -c 0 ./build/bench/qunbot_bench --benchmark_filter='rules_|moderation_'
fi
cmake --build build --target qunbot qunbot_intake_load

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -TERM "$server_pid"; wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Intake alone by default (an empty rule directory); QUNBOT_BENCH_RULES=config/rules measures
# intake with the example rules running on every event.
mkdir -p "$work/rules"
cat > "$work/bench.json" <<JSON
{
  "listen": { "address": "127.0.0.1", "port": 0 },
  "threads": 2,
  "database": "$work/bench.db",
  "log_level": "warn",
  "journal": { "durability": "full", "max_batch": 1024 },
  "rules": { "dir": "${QUNBOT_BENCH_RULES:-$work/rules}", "watch": false },
  "http": { "max_connections": 4096 },
  "apps": [ { "name": "bench", "path": "/wecom/bench", "corp_id": "wwbench000000001",
              "secrets_file": "$work/bench.secrets.json", "generate_secrets": true } ]
}
JSON

./build/qunbot serve --config "$work/bench.json" > "$work/serve.out" 2> "$work/serve.err" &
server_pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on" "$work/serve.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
  sleep 0.05
done
grep -q "listening on" "$work/serve.out" || { echo "qunbot did not start within 10 s" >&2; cat "$work/serve.err" >&2; exit 1; }
base=$(grep -o "http://[0-9.]*:[0-9]*" "$work/serve.out" | head -1)
url=$base/wecom/bench
# The WAL's size, and how often and how long the writer paused to start it over (journal.wal_limit_mb).
# Plain bash over /dev/tcp, so the benchmark needs no HTTP client package.
wal_state() {
  local hostport=${base#http://}
  exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}"
  printf 'GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$hostport" >&3
  grep -aE '^qunbot_journal_wal_(bytes|restarts_total|catch_up_seconds_(sum|count))' <&3 | tr -d '\r' | tr '\n' ' '
  exec 3<&-
  echo
}
echo "qunbot intake benchmark: $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "== closed loop: as fast as qunbot answers"
./build/bench/qunbot_intake_load --url "$url" --app bench --config "$work/bench.json" --db "$work/bench.db" \
  --connections 32 --threads 2 --seconds "$seconds"
wal_state
echo
echo "== open loop: 5,000 callbacks/s"
./build/bench/qunbot_intake_load --url "$url" --app bench --config "$work/bench.json" --db "$work/bench.db" \
  --connections 32 --threads 2 --seconds "$seconds" --rate 5000
wal_state
echo
echo "== reference: GET /healthz on the same connections (no crypto, no journal): this machine's HTTP ceiling"
./build/bench/qunbot_intake_load --url "$url" --app bench --config "$work/bench.json" \
  --connections 32 --threads 2 --seconds "$seconds" --healthz
