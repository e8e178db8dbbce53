#!/usr/bin/env bash
# Fairness inside one engine shard: the p99 of small rooms alone, then beside a room of
# 10,000 members that gets a burst of 10,000 deliveries with every message. The engine
# runs one shard on core 0; both loadgen processes share core 1.
#
#   cargo build --release -p chat-engine -p loadgen
#   loadgen/bench/fairness.sh [ENGINE_BIN]
#
# Environment: BIG (10000 members), BIG_RATE (10 msg/s), SMALL_RATE (1000 msg/s over
# 100 rooms of 10), DURATION (20), RUNS (2), PORT (18290), OUT (results/fairness).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$root/target}/release/chat-engine}"
loadgen="${LOADGEN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/loadgen}"
big=${BIG:-10000}
big_rate=${BIG_RATE:-10}
small_rate=${SMALL_RATE:-1000}
duration=${DURATION:-20}
runs=${RUNS:-2}
port=${PORT:-18290}
out=${OUT:-results/fairness}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$bin" --listen "127.0.0.1:$port" --shards 1 --cpus 0 --log warn &
engine=$!
big_pid=""
trap 'kill $engine $big_pid 2>/dev/null; true' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

small() { # small NAME: the small rooms for DURATION s; prints their p50/p99
  "$loadgen" run --target "ws://127.0.0.1:$port/ws" --connections 1000 --channels 100 \
    --channel-prefix small --publishers 100 --rate "$small_rate" --duration "$duration" \
    --warmup 2 --shards 1 --cpus 1 --quiet --out "$out/$1" >/dev/null
  python3 - "$out/$1/report.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["latency"]["delivery"]
print("%-14s small rooms: p50 %.3f ms  p99 %.3f ms  reach %.4f" % (
    sys.argv[2], d["p50_us"] / 1000, d["p99_us"] / 1000, r["messages"]["reach"] or 0))
PY
}

for run in $(seq "$runs"); do
  small "alone-$run"
  # The big room: connects, then publishes for longer than the small rooms' run.
  "$loadgen" run --target "ws://127.0.0.1:$port/ws" --connections "$big" --channels 1 \
    --channel-prefix big --publishers 1 --rate "$big_rate" --duration $((duration + 20)) \
    --warmup 2 --shards 1 --cpus 1 --source-ips 127.0.0.1-127.0.0.4 --quiet \
    --out "$out/big-$run" >/dev/null &
  big_pid=$!
  # Wait until the big room is subscribed and publishing.
  for _ in $(seq 120); do
    subs="$(curl -fs "http://127.0.0.1:$port/metrics" | awk '/^chat_subscriptions/ { s += $2 } END { print s + 0 }')"
    [ "${subs%.*}" -ge "$big" ] && break
    sleep 0.5
  done
  sleep 3
  small "beside-$run"
  wait "$big_pid" || true
  big_pid=""
  python3 - "$out/big-$run/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["latency"].get("broadcast") or {}
print("%-14s big room: broadcast completion p50 %.1f ms p99 %.1f ms, reach %.4f" % (
    "", (b.get("p50_us") or 0) / 1000, (b.get("p99_us") or 0) / 1000, r["messages"]["reach"] or 0))
PY
done
