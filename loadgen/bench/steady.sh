#!/usr/bin/env bash
# Engine CPU per delivery in the named scenarios, for one or more engine binaries run
# back to back (a before/after pair in one sitting): each engine gets one shard on core
# 0, loadgen one shard on core 1. Every scenario runs twice per binary: loadgen's
# receivers waiting for readiness (io_uring polls: on loopback each send() then also pays
# for waking them) and looking at their sockets every POLL_US µs (--poll-us: nothing
# armed to wake, so the engine pays only its own work and the TCP path, as with remote
# clients; latency then includes up to POLL_US).
#
#   cargo build --release -p chat-engine -p loadgen
#   loadgen/bench/steady.sh [ENGINE_BIN...]        (default: target/release/chat-engine)
#
# Environment: SCENARIOS (steady-c steady-d burst-b), POLL_US (2000), DURATION (10),
# RUNS (1), PORT (18190), OUT (results/steady).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("${CARGO_TARGET_DIR:-$root/target}/release/chat-engine")
loadgen="${LOADGEN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/loadgen}"
scenarios=${SCENARIOS:-steady-c steady-d burst-b}
duration=${DURATION:-10}
runs=${RUNS:-1}
poll=${POLL_US:-2000}
port=${PORT:-18190}
out=${OUT:-results/steady}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

engine=""
trap '[ -n "$engine" ] && kill "$engine" 2>/dev/null; true' EXIT
printf '%-10s %-28s %6s %10s %12s %9s %12s %8s\n' scenario engine recv sent/s delivered/s p99_ms srv_us/deliv srv_cpu%
for scenario in $scenarios; do
  for bin in "${bins[@]}"; do
    for run in $(seq "$runs"); do
      for mode in wait poll; do
        # The burst scenario has one publisher far above the default per-connection cap
        # (older engines have no cap, nor the flag).
        local_args=()
        "$bin" --help | grep -q -- --max-publish-rate && local_args=(--max-publish-rate 0)
        "$bin" --listen "127.0.0.1:$port" --shards 1 --cpus 0 --log warn "${local_args[@]}" &
        engine=$!
        for _ in $(seq 100); do
          curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
          sleep 0.1
        done
        sleep 1
        dir="$out/$scenario/$(basename "$(dirname "$bin")")-$(basename "$bin")-$mode-$run"
        polled=()
        [ "$mode" = poll ] && polled=(--poll-us "$poll")
        "$loadgen" run --scenario "$root/loadgen/scenarios/$scenario.toml" --target "ws://127.0.0.1:$port/ws" \
          --shards 1 --cpus 1 "${polled[@]}" --duration "$duration" --quiet --out "$dir" >/dev/null
        kill "$engine" 2>/dev/null
        wait "$engine" 2>/dev/null || true
        engine=""
        python3 - "$dir/report.json" "$scenario" "$bin" "$mode" "$duration" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["cpu"]
util = sum(s["cpu_s"] for s in c.get("servers") or []) / float(sys.argv[5]) * 100
print("%-10s %-28s %6s %10.0f %12.0f %9.3f %12.2f %8.0f" % (
    sys.argv[2], sys.argv[3][-28:], sys.argv[4], r["throughput"]["sent_per_s"],
    r["throughput"]["delivered_per_s"], r["latency"]["delivery"]["p99_us"] / 1000,
    c["server_us_per_delivery"] or 0, util))
PY
      done
    done
  done
done
