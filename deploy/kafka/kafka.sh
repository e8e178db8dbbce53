#!/usr/bin/env bash
# A single-node Kafka (KRaft, combined broker + controller) for development, tests and
# benchmarks, run from the jars on Maven Central: no Docker, no tarball download.
#
#   kafka.sh fetch              resolve the broker and tool jars (offline once cached)
#   kafka.sh start              format storage once, start, wait until ready
#   kafka.sh stop [--wipe]      stop (TERM, then KILL after 20 s); --wipe removes the data
#   kafka.sh status             "running" / "not running", exit 0 / 1
#   kafka.sh topics [ARGS..]    TopicCommand against the broker (default: --list)
#   kafka.sh perf [TOPIC]       Kafka's own ProducerPerformance (see perf_usage below)
#   kafka.sh pauses             the broker JVM's stop-the-world pauses since it started
#
# Listeners: PLAINTEXT on KAFKA_PORT (9092) for everything, and SASL_PLAINTEXT on
# KAFKA_SASL_PORT (9094; `off` leaves it out) for tests of Kafka client security:
# SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, one TEST-ONLY user chat-test, password
# chat-test-secret (KAFKA_SASL_USER, KAFKA_SASL_PASSWORD; made when storage is formatted).
# Environment: KAFKA_CONTROLLER_PORT (9093), KAFKA_DIR (run directory, default
# deploy/.cache/kafka/run), KAFKA_HEAP (512m), KAFKA_GC_OPTS (ZGC, see below; GC and
# safepoint log: logs/gc.log in the run directory). Every subcommand is safe to repeat.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="$ROOT/deploy/.cache/kafka"
LIBS="$CACHE/libs"
KAFKA_VERSION="4.4.0"
FETCH_MARKER="$LIBS/.fetched-$KAFKA_VERSION"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}"
# Test credentials only: the listener is on loopback and guards nothing of value.
KAFKA_SASL_USER="${KAFKA_SASL_USER:-chat-test}"
KAFKA_SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-chat-test-secret}"
KAFKA_DIR="${KAFKA_DIR:-$CACHE/run}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
# ZGC: on a small, busy machine G1's young pauses ran 10-200 ms and set the bridge's
# p99.9; ZGC's pauses stay under a millisecond (figures in README.md, "Kafka").
# No periodic "Cleanup" safepoint either: on a starved CPU even that one stalled for ms.
KAFKA_GC_OPTS="${KAFKA_GC_OPTS:--XX:+UseZGC -XX:+UnlockDiagnosticVMOptions -XX:GuaranteedSafepointInterval=0}"
HOST="127.0.0.1"
BOOTSTRAP="$HOST:$KAFKA_PORT"

PROPS="$KAFKA_DIR/server.properties"
PID_FILE="$KAFKA_DIR/kafka.pid"
OUT_LOG="$KAFKA_DIR/kafka.out"
LOG_DIR="$KAFKA_DIR/logs"
GC_LOG="$LOG_DIR/gc.log"
DATA_DIR="$KAFKA_DIR/data"
PORTS_MARKER="$DATA_DIR/.chat-ports"
SCRAM_MARKER="$DATA_DIR/.chat-scram-user"

READY_TIMEOUT_S=60
STOP_TIMEOUT_S=20

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Runs a Kafka command line tool (a main class from the cached jars) with quiet logging,
# killed after TOOL_TIMEOUT_S seconds when that is set.
run_tool() {
  local class="$1"
  shift
  timeout "${TOOL_TIMEOUT_S:-0}" java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$HERE/tools-log4j2.properties" \
    -cp "$LIBS/*" "$class" "$@"
}

cmd_fetch() {
  if [[ -f "$FETCH_MARKER" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "maven (mvn) is needed to fetch the Kafka jars"
  command -v java >/dev/null || die "java (17+) is needed to run Kafka"
  log "resolving kafka $KAFKA_VERSION and its tools into $LIBS"
  local staging="$LIBS.partial"
  rm -rf "$staging"
  mkdir -p "$staging"
  # Maven 3.8 prints colour resets even in quiet batch mode: strip them.
  mvn -q -B -f "$HERE/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$staging" 2>&1 |
    sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2 ||
    die "maven could not resolve the Kafka jars (see above)"
  local jars
  jars=$(find "$staging" -name '*.jar' | wc -l)
  [[ "$jars" -gt 0 ]] || die "maven copied no jars into $staging"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$staging/.fetched-$KAFKA_VERSION"
  # Swap in whole, so an interrupted fetch never leaves a marker over missing jars.
  rm -rf "$LIBS"
  mv "$staging" "$LIBS"
  log "fetched $jars jars"
}

# The pid of the running broker, or nothing. A stale pid file (the process is gone,
# or the pid now belongs to something else) counts as not running.
broker_pid() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid
  pid=$(<"$PID_FILE")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka'; then
    echo "$pid"
  fi
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# A metadata round trip: the broker is up, the controller has a leader and topics can
# be listed.
metadata_ok() {
  TOOL_TIMEOUT_S=30 run_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1
}

write_props() {
  local sasl_listener=""
  sasl_enabled && sasl_listener=",SASL_PLAINTEXT://$HOST:$KAFKA_SASL_PORT"
  mkdir -p "$KAFKA_DIR" "$LOG_DIR" "$DATA_DIR"
  cat >"$PROPS" <<EOF
# Written by deploy/kafka/kafka.sh start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT$sasl_listener
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT$sasl_listener
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=8
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=268435456
# The cleaner's dedupe buffer (128 MiB by default) is held on the heap for good; only
# the small compacted internal topics use it here.
log.cleaner.dedupe.buffer.size=16777216
EOF
  if sasl_enabled; then
    # SCRAM users live in the cluster metadata (added at format time); PLAIN's are
    # listed here. Brokers talk over PLAINTEXT, so the broker itself needs no login.
    cat >>"$PROPS" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
EOF
  fi
}

sasl_enabled() {
  [[ "$KAFKA_SASL_PORT" != off ]]
}

sasl_note() {
  sasl_enabled && printf ', SASL_PLAINTEXT at %s:%s' "$HOST" "$KAFKA_SASL_PORT"
  return 0
}

# Storage formatted without the test user (before the SASL listener existed, or for
# another KAFKA_SASL_USER) gets its SCRAM credentials through the running broker.
ensure_scram_user() {
  sasl_enabled || return 0
  [[ -f "$SCRAM_MARKER" && "$(<"$SCRAM_MARKER")" == "$KAFKA_SASL_USER" ]] && return 0
  log "adding the SCRAM test user $KAFKA_SASL_USER"
  local mechanism
  # One mechanism per request: Kafka 4 refuses two credentials of a user in one.
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    TOOL_TIMEOUT_S=60 run_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$BOOTSTRAP" \
      --alter --entity-type users --entity-name "$KAFKA_SASL_USER" \
      --add-config "$mechanism=[password=$KAFKA_SASL_PASSWORD]" \
      >/dev/null || die "could not add the $mechanism credential of $KAFKA_SASL_USER"
  done
  echo "$KAFKA_SASL_USER" >"$SCRAM_MARKER"
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    local formatted_for=""
    [[ -f "$PORTS_MARKER" ]] && formatted_for=$(<"$PORTS_MARKER")
    if [[ -n "$formatted_for" && "$formatted_for" != "$KAFKA_PORT/$KAFKA_CONTROLLER_PORT" ]]; then
      die "storage in $DATA_DIR was formatted for ports $formatted_for; run 'kafka.sh stop --wipe' first"
    fi
    return 0
  fi
  local cluster_id
  cluster_id=$(run_tool kafka.tools.StorageTool random-uuid)
  log "formatting $DATA_DIR (cluster id $cluster_id)"
  local -a scram=()
  if sasl_enabled; then
    local mechanism
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$mechanism=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]")
    done
  fi
  run_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$PROPS" "${scram[@]}" >/dev/null
  echo "$KAFKA_PORT/$KAFKA_CONTROLLER_PORT" >"$PORTS_MARKER"
  if sasl_enabled; then echo "$KAFKA_SASL_USER" >"$SCRAM_MARKER"; fi
}

# Waits until the broker answers a metadata request; fails early if the process dies.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + READY_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "kafka exited during startup; last lines of $OUT_LOG and $LOG_DIR/server.log:"
      tail -n 20 "$OUT_LOG" >&2 || true
      tail -n 20 "$LOG_DIR/server.log" >&2 || true
      rm -f "$PID_FILE"
      return 1
    fi
    if port_open "$KAFKA_PORT" && metadata_ok; then
      echo "kafka ready at $BOOTSTRAP$(sasl_note)"
      return 0
    fi
    sleep 0.5
  done
  log "kafka (pid $pid) not ready after ${READY_TIMEOUT_S}s; see $LOG_DIR/server.log"
  return 1
}

cmd_start() {
  local pid
  pid=$(broker_pid)
  if [[ -n "$pid" ]]; then
    # Already started (by us): report ready once it answers, without a second JVM.
    wait_ready "$pid" && ensure_scram_user
    return
  fi
  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT"; do
    [[ "$port" == off ]] && continue
    port_open "$port" && die "port $port is taken by a process this script did not start"
  done
  cmd_fetch
  write_props
  format_storage
  log "starting kafka $KAFKA_VERSION ($KAFKA_DIR)"
  # setsid: the broker outlives this shell and a Ctrl-C in it; its own session means a
  # signal to the caller's process group does not reach it.
  # shellcheck disable=SC2086 # KAFKA_GC_OPTS is a list of options
  setsid nohup java -Xmx"$KAFKA_HEAP" -Xms"$KAFKA_HEAP" $KAFKA_GC_OPTS -Djava.awt.headless=true \
    -Xlog:gc,safepoint:file="$GC_LOG":uptime:filecount=2,filesize=10m \
    -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >"$OUT_LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  wait_ready "$pid" && ensure_scram_user
}

cmd_stop() {
  local wipe=0
  case "${1:-}" in
    "") ;;
    --wipe) wipe=1 ;;
    *) die "usage: kafka.sh stop [--wipe]" ;;
  esac
  local pid
  pid=$(broker_pid)
  if [[ -n "$pid" ]]; then
    log "stopping kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "kafka did not stop within ${STOP_TIMEOUT_S}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -f "$PID_FILE"
  if ((wipe)); then
    rm -rf "$KAFKA_DIR"
    log "removed $KAFKA_DIR"
  fi
}

cmd_status() {
  local pid
  pid=$(broker_pid)
  if [[ -n "$pid" ]] && port_open "$KAFKA_PORT"; then
    echo "kafka running (pid $pid) at $BOOTSTRAP$(sasl_note)"
    return 0
  fi
  if [[ -n "$pid" ]]; then
    echo "kafka starting (pid $pid), not listening on $BOOTSTRAP yet"
  else
    echo "kafka not running"
  fi
  return 1
}

# Every stop-the-world pause (GC or not) is a safepoint; the log has their totals.
cmd_pauses() {
  [[ -f "$GC_LOG" ]] || die "no $GC_LOG (start the broker with kafka.sh start)"
  awk '/Safepoint "/ {
      match($0, /"[^"]*"/); why = substr($0, RSTART + 1, RLENGTH - 2)
      match($0, /Total: [0-9]+/); ms = substr($0, RSTART + 7, RLENGTH - 7) / 1e6
      n++; sum += ms; if (ms > max) max = ms; count[why]++
      if (ms >= 1) slow++
    }
    END {
      printf "jvm pauses: %d, total %.1f ms, max %.2f ms, %d of 1 ms or more\n", n, sum, max, slow
      for (w in count) printf "  %-28s %d\n", w, count[w]
    }' "$GC_LOG"
}

cmd_topics() {
  [[ -f "$FETCH_MARKER" ]] || die "run 'kafka.sh fetch' first"
  if (($# == 0)); then
    set -- --list
  fi
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@"
}

perf_usage() {
  cat >&2 <<'EOF'
usage: kafka.sh perf [TOPIC]
Runs org.apache.kafka.tools.ProducerPerformance once per linger value, 200-byte records,
throughput unlimited, acks=1. Environment: PERF_RECORDS (1000000), PERF_RECORD_SIZE (200),
PERF_LINGERS ("0 5"), PERF_ACKS (1), PERF_PARTITIONS (8, when the topic is created).
EOF
}

cmd_perf() {
  case "${1:-}" in -h | --help) perf_usage; return 0 ;; esac
  local topic="${1:-perf}"
  local records="${PERF_RECORDS:-1000000}" size="${PERF_RECORD_SIZE:-200}"
  local acks="${PERF_ACKS:-1}" partitions="${PERF_PARTITIONS:-8}"
  [[ -f "$FETCH_MARKER" ]] || die "run 'kafka.sh fetch' first"
  port_open "$KAFKA_PORT" || die "no broker at $BOOTSTRAP; run 'kafka.sh start' first"
  cmd_topics --create --if-not-exists --topic "$topic" --partitions "$partitions" \
    --replication-factor 1 >/dev/null
  local linger line rate
  for linger in ${PERF_LINGERS:-0 5}; do
    # Full JIT here: the tool's own speed is what is measured.
    line=$(java -Xmx512m -Dlog4j2.configurationFile="$HERE/tools-log4j2.properties" \
      -cp "$LIBS/*" org.apache.kafka.tools.ProducerPerformance \
      --topic "$topic" --num-records "$records" --record-size "$size" --throughput -1 \
      --producer-props bootstrap.servers="$BOOTSTRAP" acks="$acks" linger.ms="$linger" |
      tail -n 1)
    rate=$(sed -n 's/.* records sent, \([0-9.]*\) records\/sec.*/\1/p' <<<"$line")
    echo "ProducerPerformance linger.ms=$linger acks=$acks size=$size records=$records: ${rate:-?} records/s"
    echo "  $line"
  done
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status ;;
    topics) cmd_topics "$@" ;;
    perf) cmd_perf "$@" ;;
    pauses) cmd_pauses ;;
    *)
      sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
