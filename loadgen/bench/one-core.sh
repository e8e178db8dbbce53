#!/usr/bin/env bash
# What one loadgen core can publish and receive, beside what the engine pays per message.
# Starts a one-shard engine pinned to core 0 and runs one loadgen shard pinned to core 1
# at rising rates (1000 users, 100 channels of 10, 100 publishers, 128-byte bodies).
# The report's CPU figures cover the same window on both sides.
#
#   cargo build --release -p chat-engine -p loadgen
#   loadgen/bench/one-core.sh [BIN_DIR] [RATES...]
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release}
shift || true
rates=${*:-2000 5000 10000 20000}
port=${PORT:-18090}
out=${OUT:-results/loadgen-bench}

"$bin/chat-engine" --listen "127.0.0.1:$port" --shards 1 --cpus 0 --log warn &
engine=$!
trap 'kill $engine 2>/dev/null' EXIT
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
printf '%8s %10s %12s %10s %10s %12s %14s %12s\n' rate sent/s delivered/s p99_ms lag_p99_ms lg_cpu_% lg_us/msg srv_us/deliv
for rate in $rates; do
    "$bin/loadgen" run --target "ws://127.0.0.1:$port/ws" --connections 1000 --channels 100 \
        --publishers 100 --rate "$rate" --size 128 --duration 10 --warmup 2 \
        --shards 1 --cpus 1 --quiet --out "$out/rate-$rate" >/dev/null
    python3 - "$out/rate-$rate/report.json" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["cpu"]
shard = c["loadgen_shards"][0]
print("%8s %10.0f %12.0f %10.3f %10.3f %12.0f %14.2f %12.2f" % (
    sys.argv[2], r["throughput"]["sent_per_s"], r["throughput"]["delivered_per_s"],
    r["latency"]["delivery"]["p99_us"] / 1000, r["latency"]["send_lag"]["p99_us"] / 1000,
    shard["utilisation"] * 100, c["loadgen_us_per_message"] or 0, c["server_us_per_delivery"] or 0))
PY
done
