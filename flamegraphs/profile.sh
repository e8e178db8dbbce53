#!/usr/bin/env bash
# Profiles the engine and its load driver under the single-node fan-out load and writes
# one flamegraph SVG per process, plus the hottest functions as text.
#
#   flamegraphs/profile.sh                       # 100 subscribers, bursts of 100 x 128 B
#   flamegraphs/profile.sh --paced 2000          # fixed rate instead of bursts
#   flamegraphs/profile.sh --driver loadgen      # the load generator as the driver
#   flamegraphs/profile.sh --kafka               # the engine in cluster mode: every message
#                                                # goes out to Kafka and back (starts the broker)
#   flamegraphs/profile.sh --rt                  # engine and driver at SCHED_FIFO 10 (chrt)
#   flamegraphs/profile.sh --name NAME --seconds 15 --out DIR --no-build
#
# --rt keeps other processes of a shared machine off the two measured cores for the run;
# without it, their time slices show up as latency and lost throughput (not in the SVG).
#
# The engine runs one shard on core 0, the driver on core 1. Sampling is
# `perf record -F 999 -e cpu-clock` (this VM has no hardware counters) with DWARF call
# graphs (release builds keep no frame pointers, so `-g` alone would cut stacks short).
# Needs perf (apt-get install -y linux-perf) and inferno (cargo install inferno).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name=fanout100
seconds=10
driver=fanout_load
paced=""
build=1
rt=()
kafka=0
out="$root/flamegraphs"
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --driver) driver="$2"; shift 2 ;;
    --paced) paced="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --rt) rt=(chrt -f 10); shift ;;
    --kafka) kafka=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in perf inferno-collapse-perf inferno-flamegraph curl; do
  command -v "$tool" >/dev/null || { echo "profile.sh: $tool is missing (perf: apt-get install -y linux-perf; inferno: cargo install inferno)" >&2; exit 2; }
done

target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$driver" in
  fanout_load) packages=(-p chat-engine -p benches) ;;
  loadgen) packages=(-p chat-engine -p loadgen) ;;
  *) echo "profile.sh: --driver is fanout_load or loadgen" >&2; exit 2 ;;
esac
if [ "$build" = 1 ]; then
  (cd "$root" && cargo build --release --quiet "${packages[@]}")
fi

work="$(mktemp -d)"
engine_pid=""
driver_pid=""
cleanup() {
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null || true
  [ -n "$engine_pid" ] && kill "$engine_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Private copies: a concurrent build in the same target dir cannot swap them mid-run.
engine_bin="${CHAT_ENGINE_BIN:-$target_dir/release/chat-engine}"
cp "$engine_bin" "$work/chat-engine"
cp "$target_dir/release/$driver" "$work/$driver"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
engine_args=(--listen "127.0.0.1:$port" --shards 1 --cpus 0 --log warn)
if [ "$kafka" = 1 ]; then
  bash "$root/deploy/kafka/kafka.sh" start
  # A fresh topic per run: no backlog from earlier runs is replayed into the profile.
  engine_args+=(--kafka-brokers "127.0.0.1:${KAFKA_PORT:-9092}" --kafka-topic "profile-$$-$port")
fi
"${rt[@]}" "$work/chat-engine" "${engine_args[@]}" &
engine_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null

mkdir -p "$out"
run_for=$((seconds + 4))
case "$driver" in
  fanout_load)
    args=(--target "127.0.0.1:$port" --cpu 1 --seconds "$run_for")
    [ -n "$paced" ] && args+=(--paced "$paced")
    "${rt[@]}" "$work/fanout_load" "${args[@]}" >"$out/$name-driver.txt" 2>&1 &
    ;;
  loadgen)
    "${rt[@]}" taskset -c 1 "$work/loadgen" run --target "ws://127.0.0.1:$port/ws" --connections 1000 --channels 100 \
      --publishers 100 --rate "${paced:-2000}" --size 128 --duration "$run_for" >"$out/$name-driver.txt" 2>&1 &
    ;;
esac
driver_pid=$!
sleep 2 # connections and subscriptions are set up
t_before="$(date +%s.%N)"
cpu_before="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^process_cpu_seconds_total/ { print $2 }')"
out_before="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^chat_messages_out_total/ { print $2 }')"
perf record -q -F 999 -e cpu-clock --call-graph dwarf,16384 -p "$engine_pid" -o "$work/engine.data" -- sleep "$seconds" 2>"$work/perf-engine.log" &
perf_engine=$!
perf record -q -F 999 -e cpu-clock --call-graph dwarf,16384 -p "$driver_pid" -o "$work/driver.data" -- sleep "$seconds" 2>"$work/perf-driver.log" &
perf_driver=$!
for who in engine driver; do
  pid_var="perf_$who"
  wait "${!pid_var}" || { echo "profile.sh: perf record ($who) failed:" >&2; cat "$work/perf-$who.log" >&2; }
done
t_after="$(date +%s.%N)"
cpu_after="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^process_cpu_seconds_total/ { print $2 }')"
out_after="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^chat_messages_out_total/ { print $2 }')"
wait "$driver_pid" || true
driver_pid=""

{
  echo "profile $name: ${seconds}s, engine pid $engine_pid (1 shard, core 0$([ "$kafka" = 1 ] && echo ", through Kafka")), driver $driver (core 1)${rt:+, SCHED_FIFO 10}"
  awk -v c0="$cpu_before" -v c1="$cpu_after" -v m0="$out_before" -v m1="$out_after" -v t0="$t_before" -v t1="$t_after" 'BEGIN {
    d = m1 - m0; c = c1 - c0; s = t1 - t0
    printf "while sampled (%.1f s): %d deliveries (%.0f/s); engine CPU %.2f s (%.0f%% of one core); %.0f ns engine CPU per delivery\n",
      s, d, d / s, c, 100 * c / s, (d > 0 ? 1e9 * c / d : 0) }'
  cat "$out/$name-driver.txt"
} | tee "$out/$name-summary.txt"

for who in engine driver; do
  perf script -i "$work/$who.data" 2>/dev/null | inferno-collapse-perf --all >"$out/$name-$who.folded"
  inferno-flamegraph --title "$name: $who (cpu-clock, 999 Hz, ${seconds}s)" --width 1600 <"$out/$name-$who.folded" >"$out/$name-$who.svg"
  { perf report -i "$work/$who.data" --no-children --sort symbol --stdio 2>/dev/null || true; } \
    | awk '/^ +[0-9.]+%/ { $1 = $1; print }' | sed -n '1,40p' >"$out/$name-$who.top.txt"
  echo "wrote $out/$name-$who.svg ($(wc -l <"$out/$name-$who.folded") stacks, folded in $out/$name-$who.folded); hottest functions in $out/$name-$who.top.txt"
done
